"""Augmentations that change the image's size: padding, scaling, crop-and-pad, self-concatenation.

Each keeps the OD API's meaning and parameters (its ``core/preprocessor.py``). Padding fills with
``pad_color`` (one value for every channel, or R, G, B) or, left out, the mean colour of the image
being padded, as the OD API does. Pixel sizes (random_pad_image's, random_absolute_pad_image's) are
of the full picture: when one is set, the training input decodes it in full, as the OD API does
(``augment.FULL_SIZE_WHEN_SET``), rather than at the network input's scale.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.data.augment.geometric import BOX_FIELDS, crop_image
from pipelines.data.augment.photometric import back_to



def _random_int(seed: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """Uniform in [low, high); ``high`` when that range is empty, as the OD API's tf.cond around each draw."""
    span = tf.maximum(high - low, 1)
    return tf.where(high > low, low + tf.random.stateless_uniform([], seed, 0, span, dtype=tf.int32), high)


def _pad_color(image: tf.Tensor, pad_color) -> tf.Tensor:
    if pad_color:
        color = tf.constant(list(pad_color), tf.float32)
    else:
        color = tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1])
    return back_to(color, image.dtype)


def random_pad(data: dict, seed: tf.Tensor, min_size: tf.Tensor, max_size: tf.Tensor, pad_color) -> dict:
    """The OD API's random_pad_image: a canvas of a size drawn from [min_size, max_size) (never smaller
    than the image), the image at a random place in it (an offset from [0, canvas - image))."""
    image = data["image"]
    shape = tf.shape(image)[:2]
    min_size = tf.maximum(tf.cast(min_size, tf.int32), shape)
    max_size = tf.maximum(tf.cast(max_size, tf.int32), shape)
    seeds = tf.unstack(tf.random.split(seed, 4))
    target = tf.stack([_random_int(seeds[i], min_size[i], max_size[i]) for i in (0, 1)])
    offset = tf.stack([_random_int(seeds[2 + i], 0, target[i] - shape[i]) for i in (0, 1)])
    padded = tf.image.pad_to_bounding_box(image, offset[0], offset[1], target[0], target[1])
    inside = tf.image.pad_to_bounding_box(tf.ones_like(image[:, :, :1]), offset[0], offset[1], target[0], target[1])
    padded = tf.where(inside > 0, padded, _pad_color(image, pad_color))
    scale = tf.cast(tf.tile(shape, [2]), tf.float32)
    boxes = (data["groundtruth_boxes"] * scale + tf.cast(tf.tile(offset, [2]), tf.float32)) / tf.cast(
        tf.tile(target, [2]), tf.float32
    )
    return {**data, "image": padded, "groundtruth_boxes": boxes}


def pad_image(
    data: dict,
    seed: tf.Tensor,
    min_image_height: int = 0,
    min_image_width: int = 0,
    max_image_height: int = 0,
    max_image_width: int = 0,
    pad_color: list[float] | tuple = (),
) -> dict:
    """random_pad_image: pad to a random size; unset (0), the minimum is the image's size and the maximum
    twice it."""
    shape = tf.shape(data["image"])[:2]
    min_size = tf.stack([min_image_height, min_image_width])
    max_size = tf.where(
        tf.constant([max_image_height, max_image_width]) > 0, [max_image_height, max_image_width], 2 * shape
    )
    return random_pad(data, seed, min_size, max_size, pad_color)


def absolute_pad_image(
    data: dict, seed: tf.Tensor, max_height_padding: int = 0, max_width_padding: int = 0, pad_color=()
) -> dict:
    """random_absolute_pad_image: add [0, max_height_padding) rows and [0, max_width_padding) columns
    (unset, none: the OD API reads 0 as 1)."""
    shape = tf.shape(data["image"])[:2]
    padding = tf.constant([max(max_height_padding, 1), max(max_width_padding, 1)])
    return random_pad(data, seed, shape, shape + padding, pad_color)


def crop_pad_image(
    data: dict,
    seed: tf.Tensor,
    min_padded_size_ratio: list[float] | tuple = (),
    max_padded_size_ratio: list[float] | tuple = (),
    pad_color: list[float] | tuple = (),
    **crop,
) -> dict:
    """random_crop_pad_image: random_crop_image (``crop``: its parameters), then a pad to between
    ``min_padded_size_ratio`` and ``max_padded_size_ratio`` (height, width; unset 1 and 2) times the
    image's size before the crop."""
    crop_seed, pad_seed = tf.unstack(tf.random.split(seed, 2))
    size = tf.cast(tf.shape(data["image"])[:2], tf.float32)
    min_size = tf.cast(size * tf.constant(list(min_padded_size_ratio or (1.0, 1.0))), tf.int32)
    max_size = tf.cast(size * tf.constant(list(max_padded_size_ratio or (2.0, 2.0))), tf.int32)
    return random_pad(crop_image(data, crop_seed, **crop), pad_seed, min_size, max_size, pad_color)


def image_scale(data: dict, seed: tf.Tensor, min_scale_ratio: float = 0.5, max_scale_ratio: float = 2.0) -> dict:
    """random_image_scale: resize by a factor drawn from [min_scale_ratio, max_scale_ratio), keeping the
    aspect ratio (sides truncated, as the OD API). Bilinear with half-pixel centres, on which normalised
    boxes stay exact (the OD API aligns corners, a sub-pixel difference)."""
    image = data["image"]
    factor = tf.random.stateless_uniform([], seed, min_scale_ratio, max_scale_ratio)
    size = tf.maximum(tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * factor, tf.int32), 1)
    scaled = tf.image.resize(image, size, method=tf.image.ResizeMethod.BILINEAR)
    return {**data, "image": back_to(scaled, image.dtype)}


def self_concat_image(
    data: dict, seed: tf.Tensor, concat_vertical_probability: float = 0.1, concat_horizontal_probability: float = 0.1
) -> dict:
    """random_self_concat_image: the image beside itself (below, then to the right, each with its own
    probability), every box and its fields repeated in the copy."""
    vertical_seed, horizontal_seed = tf.unstack(tf.random.split(seed, 2))

    def concat(data: dict, axis: int) -> dict:
        out = {key: tf.concat([data[key], data[key]], axis=0) for key in BOX_FIELDS if key in data}
        ymin, xmin, ymax, xmax = tf.unstack(data["groundtruth_boxes"], axis=1)
        if axis == 0:
            halves = [tf.stack([ymin / 2, xmin, ymax / 2, xmax], axis=1)]
            halves.append(halves[0] + [0.5, 0.0, 0.5, 0.0])
        else:
            halves = [tf.stack([ymin, xmin / 2, ymax, xmax / 2], axis=1)]
            halves.append(halves[0] + [0.0, 0.5, 0.0, 0.5])
        out["groundtruth_boxes"] = tf.concat(halves, axis=0)
        return {**data, **out, "image": tf.concat([data["image"], data["image"]], axis=axis)}

    for axis, probability, draw in (
        (0, concat_vertical_probability, vertical_seed),
        (1, concat_horizontal_probability, horizontal_seed),
    ):
        data = tf.cond(
            tf.random.stateless_uniform([], draw) < probability,
            lambda data=data, axis=axis: concat(data, axis),
            lambda data=data: dict(data),
        )
    return data


OPERATIONS = {
    "random_image_scale": image_scale,
    "random_pad_image": pad_image,
    "random_absolute_pad_image": absolute_pad_image,
    "random_crop_pad_image": crop_pad_image,
    "random_self_concat_image": self_concat_image,
}
