"""Augmentations of the labels alone: the picture is untouched.

Labels are the label map's ids (1-based), as ``groundtruth_classes`` holds them when the OD API
augments: its one-hot encoding comes after.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.data.augment.geometric import keep_boxes


def drop_label(data: dict, seed: tf.Tensor, label: int = 0, drop_probability: float = 1.0) -> dict:
    """drop_label_probabilistically: each box of class ``label`` dropped (with its per-box fields) on its own
    draw, with ``drop_probability``."""
    classes = data["groundtruth_classes"]
    draws = tf.random.stateless_uniform(tf.shape(classes), seed)
    return keep_boxes(data, (draws > drop_probability) | (classes != label))


def remap_labels(data: dict, seed: tf.Tensor, original_labels: list[int] = (), new_label: int = 0) -> dict:
    """remap_labels: the boxes of any class in ``original_labels`` become class ``new_label``."""
    classes = data["groundtruth_classes"]
    originals = tf.constant(list(original_labels), classes.dtype, shape=[len(original_labels)])
    hit = tf.reduce_any(classes[:, None] == originals[None, :], axis=1)
    return {**data, "groundtruth_classes": tf.where(hit, tf.cast(new_label, classes.dtype), classes)}


OPERATIONS = {
    "drop_label_probabilistically": drop_label,
    "remap_labels": remap_labels,
}
