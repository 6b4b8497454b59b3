"""Augmentations that change the image's frame: square crops, crops padded out, downscaling.

Each keeps the OD API's meaning and parameters (its ``core/preprocessor.py``), on a uint8 image and
normalised [ymin, xmin, ymax, xmax] boxes. Boxes move into the new frame; those the OD API drops
(with their per-box fields) go, the rest are clipped where the OD API clips them.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.data.augment.geometric import crop_image, crop_to_aspect_ratio, keep_boxes, ssd_random_crop
from pipelines.data.augment.pads import random_pad
from pipelines.data.augment.photometric import back_to

# The OD API's ssd_random_crop_pad defaults: one of these crop-and-pads is drawn per image.
SSD_CROP_PAD_MIN_OBJECT_COVERED = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
# Its ssd_random_crop_fixed_aspect_ratio defaults.
SSD_FIXED_ASPECT_MIN_OBJECT_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
# random_crop_to_aspect_ratio's overlap_thresh, which ssd_random_crop_fixed_aspect_ratio leaves at its default.
ASPECT_CROP_OVERLAP_THRESH = 0.3


def _seeds(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.split(seed, n))




def _change_frame(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Boxes in the frame of ``window`` (normalised in the old frame): box_list_ops.change_coordinate_frame."""
    wy0, wx0, wy1, wx1 = tf.unstack(tf.cast(window, tf.float32))
    height, width = wy1 - wy0, wx1 - wx0
    return (boxes - tf.stack([wy0, wx0, wy0, wx0])) / tf.stack([height, width, height, width])


def _prune_outside_then_clip(data: dict, image: tf.Tensor, window: tf.Tensor) -> dict:
    """The new image with its boxes moved into ``window``: boxes wholly outside go, the rest are clipped
    (the OD API's prune_completely_outside_window, then clip_to_window without filtering)."""
    boxes = _change_frame(data["groundtruth_boxes"], window)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    inside = (ymin < 1.0) & (xmin < 1.0) & (ymax > 0.0) & (xmax > 0.0)
    return keep_boxes({**data, "image": image, "groundtruth_boxes": tf.clip_by_value(boxes, 0.0, 1.0)}, inside)


def _crop_border(max_border: int, size: tf.Tensor) -> tf.Tensor:
    """max_border halved until it is at most half of ``size``: centres are drawn at least this far in."""
    border = tf.cast(max_border, tf.float32)
    halvings = tf.math.ceil(tf.math.log(2.0 * border / tf.cast(size, tf.float32)) / tf.math.log(2.0))
    divisor = tf.cast(tf.clip_by_value(tf.pow(2.0, halvings), 1.0, border), tf.int32)
    return max_border // divisor


def square_crop_by_scale(
    data: dict, seed: tf.Tensor, max_border: int = 128, scale_min: float = 0.6, scale_max: float = 1.3, num_scales: int = 8
) -> dict:
    """random_square_crop_by_scale: a square of side scale x the longer side (one of ``num_scales`` scales
    from scale_min to scale_max) around a random centre; what falls outside the image is black.

    As the OD API does, the crop reads the image up to its last row and column but not them, and an odd
    side leaves the square's own last row and column black.
    """
    scale_seed, y_seed, x_seed = _seeds(seed, 3)
    image = data["image"]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    scales = tf.linspace(float(scale_min), float(scale_max), num_scales)
    scale = tf.gather(scales, tf.random.stateless_uniform([], scale_seed, 0, num_scales, dtype=tf.int32))
    side = tf.cast(scale * tf.cast(tf.maximum(height, width), tf.float32), tf.int32)
    y_border, x_border = _crop_border(max_border, height), _crop_border(max_border, width)
    y_center = tf.random.stateless_uniform([], y_seed, y_border, height - y_border + 1, dtype=tf.int32)
    x_center = tf.random.stateless_uniform([], x_seed, x_border, width - x_border + 1, dtype=tf.int32)
    half = side // 2
    top, left = y_center - half, x_center - half
    ymin, xmin = tf.maximum(top, 0), tf.maximum(left, 0)
    ymax, xmax = tf.minimum(y_center + half, height - 1), tf.minimum(x_center + half, width - 1)
    square = tf.image.pad_to_bounding_box(image[ymin:ymax, xmin:xmax], ymin - top, xmin - left, side, side)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    top, left, side_f = tf.cast(top, tf.float32), tf.cast(left, tf.float32), tf.cast(side, tf.float32)
    window = tf.stack([top / h, left / w, (top + side_f) / h, (left + side_f) / w])
    return _prune_outside_then_clip(data, square, window)


def scale_crop_and_pad_to_square(
    data: dict, seed: tf.Tensor, output_size: int = 512, scale_min: float = 0.1, scale_max: float = 2.0
) -> dict:
    """random_scale_crop_and_pad_to_square: the image resized so its longer side is output_size x a scale
    drawn from [scale_min, scale_max), then a random output_size square of it, black beyond its edge."""
    scale_seed, y_seed, x_seed = _seeds(seed, 3)
    image = data["image"]
    height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    scale = tf.random.stateless_uniform([], scale_seed, scale_min, scale_max)
    longer = tf.maximum(height, width)
    scaled_height = tf.cast(scale * output_size * height / longer, tf.int32)
    scaled_width = tf.cast(scale * output_size * width / longer, tf.int32)
    spare_y = tf.maximum(0.0, tf.cast(scaled_height - output_size, tf.float32))
    spare_x = tf.maximum(0.0, tf.cast(scaled_width - output_size, tf.float32))
    top = tf.cast(spare_y * tf.random.stateless_uniform([], y_seed), tf.int32)
    left = tf.cast(spare_x * tf.random.stateless_uniform([], x_seed), tf.int32)
    scaled = tf.image.resize(image, tf.stack([scaled_height, scaled_width]), method="bilinear")
    square = tf.image.pad_to_bounding_box(
        scaled[top : top + output_size, left : left + output_size], 0, 0, output_size, output_size
    )
    window = tf.cast(tf.stack([top, left, top + output_size, left + output_size]), tf.float32) / tf.cast(
        tf.stack([scaled_height, scaled_width, scaled_height, scaled_width]), tf.float32
    )
    return _prune_outside_then_clip(data, back_to(square, data["image"].dtype), window)


SSD_CROP_PAD_DEFAULTS = [
    {"min_object_covered": c, "min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0, "min_area": 0.1, "max_area": 1.0,
     "overlap_thresh": c, "clip_boxes": True, "random_coef": 0.15, "min_padded_size_ratio": [1.0, 1.0],
     "max_padded_size_ratio": [2.0, 2.0], "pad_color": None}
    for c in SSD_CROP_PAD_MIN_OBJECT_COVERED
]  # fmt: skip


def ssd_random_crop_pad(data: dict, seed: tf.Tensor, operations: list[dict] | None = None) -> dict:
    """ssd_random_crop_pad: one of several random_crop_pad_image operations drawn per image (the OD API's six
    by default): a random_crop_image, then a canvas of min..max_padded_size_ratio x the original size.

    The canvas is the configured pad colour (0, 0, 0 where an operation leaves it out, as the OD API's
    builder passes it); with the default operations, the crop's mean colour.
    """
    if operations:
        operations = [
            {**op, "pad_color": (op["pad_color_r"], op["pad_color_g"], op["pad_color_b"])} for op in operations
        ]
    else:
        operations = SSD_CROP_PAD_DEFAULTS
    choice_seed, crop_seed, pad_seed = _seeds(seed, 3)
    height_width = tf.cast(tf.shape(data["image"])[:2], tf.float32)
    crop_fields = ("min_object_covered", "min_aspect_ratio", "max_aspect_ratio", "min_area", "max_area",
                   "overlap_thresh", "clip_boxes", "random_coef")  # fmt: skip

    def crop_and_pad(op: dict) -> dict:
        cropped = crop_image(data, crop_seed, **{k: op[k] for k in crop_fields})
        low = tf.cast(height_width * tf.constant(op["min_padded_size_ratio"], tf.float32), tf.int32)
        high = tf.cast(height_width * tf.constant(op["max_padded_size_ratio"], tf.float32), tf.int32)
        return random_pad(cropped, pad_seed, low, high, op["pad_color"])

    branches = [lambda op=op: crop_and_pad(op) for op in operations]
    choice = tf.random.stateless_uniform([], choice_seed, 0, len(branches), dtype=tf.int32)
    return tf.switch_case(choice, branches)


def ssd_random_crop_fixed_aspect_ratio(
    data: dict, seed: tf.Tensor, operations: list[dict] | None = None, aspect_ratio: float = 1.0
) -> dict:
    """ssd_random_crop_fixed_aspect_ratio: ssd_random_crop with crops of width/height = aspect_ratio (the OD
    API's seven by default), then trimmed to exactly that ratio.

    The trim keeps boxes at least 0.3 inside it and clips them whatever clip_boxes says, as the OD API
    does (it hands the trim the list of clip_boxes, which is always true).
    """
    ops = operations or [
        {"min_object_covered": c, "min_area": 0.1, "max_area": 1.0, "overlap_thresh": c, "clip_boxes": True,
         "random_coef": 0.15}
        for c in SSD_FIXED_ASPECT_MIN_OBJECT_COVERED
    ]  # fmt: skip
    ops = [{**op, "min_aspect_ratio": aspect_ratio, "max_aspect_ratio": aspect_ratio} for op in ops]
    crop_seed, trim_seed = _seeds(seed, 2)
    cropped = ssd_random_crop(data, crop_seed, ops)
    return crop_to_aspect_ratio(cropped, trim_seed, aspect_ratio, ASPECT_CROP_OVERLAP_THRESH, clip_boxes=True)


def _pad_to_aspect_ratio(data: dict, seed: tf.Tensor, aspect_ratio: float, min_ratio, max_ratio) -> dict:
    """random_pad_to_aspect_ratio: black added below and right to width/height = aspect_ratio, the canvas
    scaled by a random factor kept within min..max_ratio x the image where the ratio allows."""
    image = data["image"]
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    target_h = tf.where(w / h <= aspect_ratio, h, w / aspect_ratio)
    target_w = tf.where(w / h >= aspect_ratio, w, h * aspect_ratio)
    min_h, min_w = tf.maximum(min_ratio[0] * h, target_h), tf.maximum(min_ratio[1] * w, target_w)
    max_h, max_w = tf.maximum(max_ratio[0] * h, target_h), tf.maximum(max_ratio[1] * w, target_w)
    max_scale = tf.minimum(max_h / target_h, max_w / target_w)
    min_scale = tf.minimum(max_scale, tf.maximum(min_h / target_h, min_w / target_w))
    scale = tf.random.stateless_uniform([], seed, min_scale, max_scale)
    target_h, target_w = tf.round(scale * target_h), tf.round(scale * target_w)
    padded = tf.image.pad_to_bounding_box(image, 0, 0, tf.cast(target_h, tf.int32), tf.cast(target_w, tf.int32))
    boxes = _change_frame(data["groundtruth_boxes"], tf.stack([0.0, 0.0, target_h / h, target_w / w]))
    return {**data, "image": padded, "groundtruth_boxes": boxes}


def ssd_random_crop_pad_fixed_aspect_ratio(
    data: dict,
    seed: tf.Tensor,
    operations: list[dict] | None = None,
    aspect_ratio: float = 1.0,
    min_padded_size_ratio: list[float] | None = None,
    max_padded_size_ratio: list[float] | None = None,
) -> dict:
    """ssd_random_crop_pad_fixed_aspect_ratio: ssd_random_crop (the OD API's seven crops by default), then
    black padding below and right to width/height = aspect_ratio, min..max_padded_size_ratio x the crop."""
    crop_seed, pad_seed = _seeds(seed, 2)
    cropped = ssd_random_crop(data, crop_seed, operations or None)
    return _pad_to_aspect_ratio(
        cropped, pad_seed, aspect_ratio, min_padded_size_ratio or (1.0, 1.0), max_padded_size_ratio or (2.0, 2.0)
    )


def downscale_to_target_pixels(
    data: dict,
    seed: tf.Tensor,
    random_coef: float = 0.0,
    min_target_pixels: int = 300000,
    max_target_pixels: int = 500000,
) -> dict:
    """random_downscale_to_target_pixels: unless skipped (chance random_coef), an image of more pixels than
    a target drawn from [min_target_pixels, max_target_pixels) is shrunk to about that many, keeping its
    aspect ratio; boxes are normalised, so they stay.

    The image is the decoded one, which for SSD is decoded no larger than needed for the network's input
    (train_input.ReducedDecoder): targets above that size leave it as it is.
    """
    skip_seed, target_seed = _seeds(seed, 2)
    image = data["image"]
    apply = tf.random.stateless_uniform([], skip_seed) >= random_coef
    spread = max(max_target_pixels - min_target_pixels, 1)  # min == max: that target
    target = min_target_pixels + tf.random.stateless_uniform([], target_seed, 0, spread, dtype=tf.int32)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pixels = height * width
    factor = tf.sqrt(tf.cast(target, tf.float32) / tf.cast(pixels, tf.float32))
    size = tf.cast(factor * tf.cast(tf.stack([height, width]), tf.float32), tf.int32)
    shrunk = tf.cond(
        apply & (pixels > target), lambda: back_to(tf.image.resize(image, size, method="bilinear"), image.dtype), lambda: image
    )
    return {**data, "image": shrunk}


OPERATIONS = {
    "random_square_crop_by_scale": square_crop_by_scale,
    "random_scale_crop_and_pad_to_square": scale_crop_and_pad_to_square,
    "ssd_random_crop_pad": ssd_random_crop_pad,
    "ssd_random_crop_fixed_aspect_ratio": ssd_random_crop_fixed_aspect_ratio,
    "ssd_random_crop_pad_fixed_aspect_ratio": ssd_random_crop_pad_fixed_aspect_ratio,
    "random_downscale_to_target_pixels": downscale_to_target_pixels,
}
