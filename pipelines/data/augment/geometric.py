"""Augmentations that move pixels, and so the boxes with them: flips, rotation, crops; and box jitter.

Each keeps the OD API's meaning and parameters (its ``core/preprocessor.py``), on a uint8
image and normalised [ymin, xmin, ymax, xmax] boxes.
"""

from __future__ import annotations

import tensorflow as tf

# The OD API's ssd_random_crop defaults: one of these crops is drawn per image.
SSD_CROP_MIN_OBJECT_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


# The per-box fields that travel with groundtruth_boxes: a box dropped or repeated takes them along.
BOX_FIELDS = ("groundtruth_boxes", "groundtruth_classes", "groundtruth_is_crowd", "groundtruth_area")


def keep_boxes(data: dict, keep: tf.Tensor) -> dict:
    """Drop the boxes (and their per-box fields) where ``keep`` is false."""
    out = dict(data)
    for key in BOX_FIELDS:
        if key in out:
            out[key] = tf.boolean_mask(out[key], keep)
    return out


def _with_probability(data: dict, seed: tf.Tensor, probability: float, turn_image, move_boxes) -> dict:
    """``turn_image`` on the image and ``move_boxes`` on its (ymin, xmin, ymax, xmax), with ``probability``."""

    def turn():
        return turn_image(data["image"]), tf.stack(move_boxes(*tf.unstack(data["groundtruth_boxes"], axis=1)), axis=1)

    image, boxes = tf.cond(
        tf.random.stateless_uniform([], seed) < probability, turn, lambda: (data["image"], data["groundtruth_boxes"])
    )
    return {**data, "image": image, "groundtruth_boxes": boxes}


def horizontal_flip(data: dict, seed: tf.Tensor, probability: float = 0.5) -> dict:
    return _with_probability(
        data, seed, probability, tf.image.flip_left_right, lambda y0, x0, y1, x1: (y0, 1.0 - x1, y1, 1.0 - x0)
    )


def vertical_flip(data: dict, seed: tf.Tensor, probability: float = 0.5) -> dict:
    return _with_probability(
        data, seed, probability, tf.image.flip_up_down, lambda y0, x0, y1, x1: (1.0 - y1, x0, 1.0 - y0, x1)
    )


def rotation90(data: dict, seed: tf.Tensor, probability: float = 0.5) -> dict:
    """random_rotation90: a quarter turn counter-clockwise; the image's height and width swap."""
    return _with_probability(
        data, seed, probability, tf.image.rot90, lambda y0, x0, y1, x1: (1.0 - x1, y0, 1.0 - x0, y1)
    )


def jitter_boxes(data: dict, seed: tf.Tensor, ratio: float = 0.05, jitter_mode: str = "DEFAULT") -> dict:
    """random_jitter_boxes: each box's sides move by up to ``ratio`` / 2 of its size, the pixels stay.

    As the OD API: DEFAULT draws a factor in [1 - ratio, 1 + ratio] per side, EXPAND / SHRINK only
    above / below 1; the SYMMETRIC modes keep the centre (one factor for the height and one for the
    width, or one for both with _XY), limited so that no side leaves the image. Boxes are clipped.
    """
    mode = jitter_mode.lower()
    low, high = {"default": (-ratio, ratio), "expand": (0.0, ratio), "shrink": (-ratio, 0.0)}[mode.split("_")[0]]
    boxes = data["groundtruth_boxes"]
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    ycenter, xcenter = (ymin + ymax) / 2.0, (xmin + xmax) / 2.0
    height = tf.maximum(tf.abs(ymax - ymin), 1e-6)
    width = tf.maximum(tf.abs(xmax - xmin), 1e-6)
    if "symmetric" in mode:
        scale_y, scale_x = tf.unstack(
            1.0 + tf.random.stateless_uniform([tf.shape(boxes)[0], 2], seed, low, high), axis=1
        )
        # The largest factor that keeps both sides of the box in the image.
        limit_y = tf.abs(tf.minimum(2.0 * ycenter / height, 2.0 * (1.0 - ycenter) / height))
        limit_x = tf.abs(tf.minimum(2.0 * xcenter / width, 2.0 * (1.0 - xcenter) / width))
        if mode.endswith("_xy"):
            scale_x = scale_y
            limit_y = limit_x = tf.minimum(limit_y, limit_x)
        scale_y = tf.clip_by_value(scale_y, -limit_y, limit_y)
        scale_x = tf.clip_by_value(scale_x, -limit_x, limit_x)
        top = bottom = height * scale_y / 2.0
        left = right = width * scale_x / 2.0
    else:
        factors = 1.0 + tf.random.stateless_uniform([tf.shape(boxes)[0], 4], seed, low, high)
        top, left, bottom, right = tf.unstack(factors * tf.stack([height, width, height, width], axis=1) / 2.0, axis=1)
    jittered = tf.stack([ycenter - top, xcenter - left, ycenter + bottom, xcenter + right], axis=1)
    return {**data, "groundtruth_boxes": tf.clip_by_value(jittered, 0.0, 1.0)}


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


def crop_to_aspect_ratio(
    data: dict, seed: tf.Tensor, aspect_ratio: float = 1.0, overlap_thresh: float = 0.3, clip_boxes: bool = True
) -> dict:
    """random_crop_to_aspect_ratio: the largest crop of width / height ``aspect_ratio``, placed at random.

    As the OD API, a box stays if at least ``overlap_thresh`` of its area is inside the crop; clipped,
    a box left with no area goes too (its clip_to_window).
    """
    image = data["image"]
    height, width = tf.unstack(tf.shape(image)[:2])
    size = tf.cast(tf.stack([height, width]), tf.float32)
    wider = size[1] / size[0] >= aspect_ratio
    crop_height = tf.where(wider, height, tf.cast(tf.round(size[1] / aspect_ratio), tf.int32))
    crop_width = tf.where(wider, tf.cast(tf.round(size[0] * aspect_ratio), tf.int32), width)
    top_seed, left_seed = tf.unstack(tf.random.split(seed, 2))
    top = tf.random.stateless_uniform([], top_seed, 0, height - crop_height + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], left_seed, 0, width - crop_width + 1, dtype=tf.int32)
    window = tf.cast(tf.stack([top, left, top + crop_height, left + crop_width]), tf.float32) / tf.tile(size, [2])
    wy0, wx0, wy1, wx1 = tf.unstack(window)
    boxes = data["groundtruth_boxes"]
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    inter_h = tf.maximum(tf.minimum(ymax, wy1) - tf.maximum(ymin, wy0), 0.0)
    inter_w = tf.maximum(tf.minimum(xmax, wx1) - tf.maximum(xmin, wx0), 0.0)
    keep = inter_h * inter_w / tf.maximum((ymax - ymin) * (xmax - xmin), 1e-8) >= overlap_thresh
    h, w = wy1 - wy0, wx1 - wx0
    moved = tf.stack([(ymin - wy0) / h, (xmin - wx0) / w, (ymax - wy0) / h, (xmax - wx0) / w], axis=1)
    if clip_boxes:
        moved = tf.clip_by_value(moved, 0.0, 1.0)
        keep &= (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
    cropped = tf.image.crop_to_bounding_box(image, top, left, crop_height, crop_width)
    return keep_boxes({**data, "image": cropped, "groundtruth_boxes": moved}, keep)


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
    "random_vertical_flip": vertical_flip,
    "random_rotation90": rotation90,
    "random_jitter_boxes": jitter_boxes,
    "random_crop_image": crop_image,
    "random_crop_to_aspect_ratio": crop_to_aspect_ratio,
    "ssd_random_crop": ssd_random_crop,
}
