"""Augmentations that change pixel values only: the boxes stay where they are."""

from __future__ import annotations

import tensorflow as tf


def _photometric(data: dict, fn) -> dict:
    image = tf.cast(data["image"], tf.float32) / 255.0
    image = tf.clip_by_value(fn(image), 0.0, 1.0)
    return {**data, "image": tf.cast(tf.round(image * 255.0), tf.uint8)}


OPERATIONS = {
    "random_adjust_brightness": lambda data, seed, max_delta=0.2: _photometric(
        data, lambda im: tf.image.stateless_random_brightness(im, max_delta, seed)
    ),
    "random_adjust_contrast": lambda data, seed, min_delta=0.8, max_delta=1.25: _photometric(
        data, lambda im: tf.image.stateless_random_contrast(im, min_delta, max_delta, seed)
    ),
    "random_adjust_hue": lambda data, seed, max_delta=0.02: _photometric(
        data, lambda im: tf.image.stateless_random_hue(im, max_delta, seed)
    ),
    "random_adjust_saturation": lambda data, seed, min_delta=0.8, max_delta=1.25: _photometric(
        data, lambda im: tf.image.stateless_random_saturation(im, min_delta, max_delta, seed)
    ),
}
