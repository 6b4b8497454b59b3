"""Augmentations that move pixels, and so the boxes with them: flips and crops.

Each keeps the OD API's meaning and parameters (its ``core/preprocessor.py``), on a uint8
image and normalised [ymin, xmin, ymax, xmax] boxes.
"""

from __future__ import annotations

import tensorflow as tf

# The OD API's ssd_random_crop defaults: one of these crops is drawn per image.
SSD_CROP_MIN_OBJECT_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def keep_boxes(data: dict, keep: tf.Tensor) -> dict:
    """Drop the boxes (and their per-box fields) where ``keep`` is false."""
    out = dict(data)
    for key in ("groundtruth_boxes", "groundtruth_classes", "groundtruth_is_crowd", "groundtruth_area"):
        if key in out:
            out[key] = tf.boolean_mask(out[key], keep)
    return out


def horizontal_flip(data: dict, seed: tf.Tensor, probability: float = 0.5) -> dict:
    def flip():
        ymin, xmin, ymax, xmax = tf.unstack(data["groundtruth_boxes"], axis=1)
        return tf.image.flip_left_right(data["image"]), tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)

    image, boxes = tf.cond(
        tf.random.stateless_uniform([], seed) < probability, flip, lambda: (data["image"], data["groundtruth_boxes"])
    )
    return {**data, "image": image, "groundtruth_boxes": boxes}


def crop_image(
    data: dict,
    seed: tf.Tensor,
    min_object_covered: float = 1.0,
    min_aspect_ratio: float = 0.75,
    max_aspect_ratio: float = 1.33,
    min_area: float = 0.1,
    max_area: float = 1.0,
    overlap_thresh: float = 0.3,
    clip_boxes: bool = True,
    random_coef: float = 0.0,
) -> dict:
    """random_crop_image: a crop that covers part of the boxes; boxes overlapping it less than ``overlap_thresh`` go."""
    crop_seed, skip_seed = tf.unstack(tf.random.split(seed, 2))

    def crop():
        image, boxes = data["image"], data["groundtruth_boxes"]
        begin, size, window = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.expand_dims(tf.clip_by_value(boxes, 0.0, 1.0), 0),
            seed=crop_seed,
            min_object_covered=min_object_covered,
            aspect_ratio_range=(min_aspect_ratio, max_aspect_ratio),
            area_range=(min_area, max_area),
            max_attempts=100,
            use_image_if_no_bounding_boxes=True,
        )
        wy0, wx0, wy1, wx1 = tf.unstack(window[0, 0])
        ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
        inter_h = tf.maximum(tf.minimum(ymax, wy1) - tf.maximum(ymin, wy0), 0.0)
        inter_w = tf.maximum(tf.minimum(xmax, wx1) - tf.maximum(xmin, wx0), 0.0)
        area = tf.maximum((ymax - ymin) * (xmax - xmin), 1e-8)
        keep = (inter_h * inter_w / area) > overlap_thresh
        h, w = tf.maximum(wy1 - wy0, 1e-8), tf.maximum(wx1 - wx0, 1e-8)
        moved = tf.stack([(ymin - wy0) / h, (xmin - wx0) / w, (ymax - wy0) / h, (xmax - wx0) / w], axis=1)
        if clip_boxes:
            moved = tf.clip_by_value(moved, 0.0, 1.0)
        return keep_boxes({**data, "image": tf.slice(image, begin, size), "groundtruth_boxes": moved}, keep)

    if random_coef <= 0.0:
        return crop()
    return tf.cond(tf.random.stateless_uniform([], skip_seed) < random_coef, lambda: dict(data), crop)


def ssd_random_crop(data: dict, seed: tf.Tensor, operations: list[dict] | None = None) -> dict:
    """ssd_random_crop: one of several crops drawn per image (the OD API's seven by default)."""
    if not operations:
        operations = [
            {"min_object_covered": c, "min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0, "min_area": 0.1,
             "max_area": 1.0, "overlap_thresh": c, "random_coef": 0.15}
            for c in SSD_CROP_MIN_OBJECT_COVERED
        ]  # fmt: skip
    choice_seed, crop_seed = tf.unstack(tf.random.split(seed, 2))
    branches = [lambda op=op: crop_image(data, crop_seed, **op) for op in operations]
    choice = tf.random.stateless_uniform([], choice_seed, 0, len(branches), dtype=tf.int32)
    return tf.switch_case(choice, branches)


OPERATIONS = {
    "random_horizontal_flip": horizontal_flip,
    "random_crop_image": crop_image,
    "ssd_random_crop": ssd_random_crop,
}
