"""Augmentations that change pixel values only: the boxes stay where they are.

The OD API augments a float32 image in [0, 255]. odlite's chain is uint8 unless it holds
normalize_image or subtract_channel_mean (then float32 throughout, see ``augmenter``): each
operation computes in float32 and hands back the dtype it was given, rounded to uint8 or,
in the float chain, as the OD API's float value.
"""

from __future__ import annotations

import tensorflow as tf

# The OD API's _rgb_to_grayscale weights (luma).
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def back_to(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """A float image in 0-255 as ``dtype``: uint8 rounded and saturated; float32 unchanged (the OD API's)."""
    if dtype == tf.uint8:
        return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    return image


def _photometric(data: dict, fn) -> dict:
    """``fn`` on the image scaled to [0, 1], clipped there and scaled back, as the OD API's random_adjust_* do."""
    image = tf.cast(data["image"], tf.float32) / 255.0
    image = tf.clip_by_value(fn(image), 0.0, 1.0)
    return {**data, "image": back_to(image * 255.0, data["image"].dtype)}


def pixel_value_scale(data: dict, seed: tf.Tensor, minval: float = 0.9, maxval: float = 1.1) -> dict:
    """random_pixel_value_scale: every value of every pixel times its own factor in [minval, maxval),
    clipped to 0-255."""
    image = tf.cast(data["image"], tf.float32)
    factors = tf.random.stateless_uniform(tf.shape(image), seed, minval, maxval)
    return {**data, "image": back_to(tf.clip_by_value(image * factors, 0.0, 255.0), data["image"].dtype)}


def _gray(image: tf.Tensor) -> tf.Tensor:
    """The luma of a float image, in all three channels."""
    luma = tf.reduce_sum(image * tf.constant(GRAY_WEIGHTS), axis=-1, keepdims=True)
    return tf.tile(luma, [1, 1, 3])


def rgb_to_gray(data: dict, seed: tf.Tensor, probability: float = 0.1) -> dict:
    """random_rgb_to_gray: with ``probability``, the image's luma in all three channels."""
    image = tf.cast(data["image"], tf.float32)
    gray = tf.random.stateless_uniform([], seed) <= probability  # the OD API keeps the image when its draw is above
    image = tf.cond(gray, lambda: _gray(image), lambda: image)
    return {**data, "image": back_to(image, data["image"].dtype)}


# random_distort_color's adjustments at the OD API's fixed strengths: (image in [0, 1], seed) -> image.
DISTORTIONS = {
    "brightness": lambda image, seed: tf.image.stateless_random_brightness(image, 32.0 / 255.0, seed),
    "saturation": lambda image, seed: tf.image.stateless_random_saturation(image, 0.5, 1.5, seed),
    "hue": lambda image, seed: tf.image.stateless_random_hue(image, 0.2, seed),
    "contrast": lambda image, seed: tf.image.stateless_random_contrast(image, 0.5, 1.5, seed),
}
# Its two orders, by color_ordering.
DISTORTION_ORDERS = (("brightness", "saturation", "hue", "contrast"), ("brightness", "contrast", "saturation", "hue"))


def distort_color(data: dict, seed: tf.Tensor, color_ordering: int = 0) -> dict:
    """random_distort_color: brightness up to 32/255, saturation and contrast in [0.5, 1.5), hue up to 0.2,
    in the order ``color_ordering`` names, each clipped to [0, 1] as the OD API's own adjustments are."""
    seeds = tf.unstack(tf.random.split(seed, 4))

    def distort(image):
        for name, step_seed in zip(DISTORTION_ORDERS[color_ordering], seeds):
            image = tf.clip_by_value(DISTORTIONS[name](image, step_seed), 0.0, 1.0)
        return image

    return _photometric(data, distort)


def adjust_gamma(data: dict, seed: tf.Tensor, gamma: float = 1.0, gain: float = 1.0) -> dict:
    """adjust_gamma: gain * x ** gamma on the image in [0, 1] (not random: the OD API's is not either)."""
    return _photometric(data, lambda im: tf.image.adjust_gamma(im, gamma, gain))


def normalize_image(
    data: dict,
    seed: tf.Tensor,
    original_minval: float = 0.0,
    original_maxval: float = 0.0,
    target_minval: float = 0.0,
    target_maxval: float = 1.0,
) -> dict:
    """normalize_image: [original_minval, original_maxval] mapped linearly onto [target_minval, target_maxval].
    A float32 image out: the chain holding it is float32 throughout (``augmenter``)."""
    scale = (target_maxval - target_minval) / (original_maxval - original_minval)
    image = (tf.cast(data["image"], tf.float32) - original_minval) * scale + target_minval
    return {**data, "image": image}


def subtract_channel_mean(data: dict, seed: tf.Tensor, means: list[float] = ()) -> dict:
    """subtract_channel_mean: ``means`` (one per channel) taken from the image; float32 out, as normalize_image."""
    return {**data, "image": tf.cast(data["image"], tf.float32) - tf.constant(list(means), tf.float32)}


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
    "random_pixel_value_scale": pixel_value_scale,
    "random_rgb_to_gray": rgb_to_gray,
    "random_distort_color": distort_color,
    "adjust_gamma": adjust_gamma,
    "normalize_image": normalize_image,
    "subtract_channel_mean": subtract_channel_mean,
}
