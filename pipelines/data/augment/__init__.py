"""The OD API's ``data_augmentation_options``, applied to decoded images before resizing.

Each operation keeps the OD API's meaning and parameters, so a tuned config behaves the
same. They work on a uint8 image and normalised [ymin, xmin, ymax, xmax] boxes, and run
inside the tf.data pipeline, each example with a seed of its own. ``geometric`` holds the
operations that move boxes, ``pads`` those that change the image's size (padding, scaling,
self-concatenation), ``crops`` those that change its frame (square crops, crops padded out,
downscaling), ``photometric`` those that change pixel values only, ``patches`` those
that damage part of the picture, ``resizing`` those that resize it before odlite's resize to
the network input, ``labels`` those that change the labels alone, ``autoaugment`` the OD API's
AutoAugment policies.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.data.augment import autoaugment, crops, geometric, labels, pads, patches, photometric, resizing

AUGMENTATIONS = {
    **geometric.OPERATIONS,
    **pads.OPERATIONS,
    **crops.OPERATIONS,
    **photometric.OPERATIONS,
    **patches.OPERATIONS,
    **resizing.OPERATIONS,
    **labels.OPERATIONS,
    **autoaugment.OPERATIONS,
}

# Operations that take the pixels off 0-255: with one of them the chain works in float32, as the OD API's
# does, and the network sees their values (through its own normalisation, as in the OD API); without,
# in uint8, a quarter of the bytes.
FLOAT_RANGE = ("normalize_image", "subtract_channel_mean")
# Operations whose effect is measured in pixels of the OD API's full-size image (a noise patch's side,
# per-pixel noise, JPEG's 8x8 blocks, a resize, crop border or downscale in pixels, AutoAugment's translations
# and cutouts): with one of them the training input decodes the full picture rather than one reduced to the
# network input's scale.
FULL_SIZE = (
    "random_pixel_value_scale",
    "random_patch_gaussian",
    "random_jpeg_quality",
    "resize_image",
    "random_resize_method",
    "random_downscale_to_target_pixels",
    "random_square_crop_by_scale",
    "random_scale_crop_and_pad_to_square",
    "autoaugment_image",
)
# Operations with sizes in pixels that apply only when set (unset, their sizes are relative to the image).
FULL_SIZE_WHEN_SET = {
    "random_pad_image": ("min_image_height", "min_image_width", "max_image_height", "max_image_width"),
    "random_absolute_pad_image": ("max_height_padding", "max_width_padding"),
}


def works_in_float(options: list[tuple[str, dict]]) -> bool:
    """Whether the chain's image is float32 (see FLOAT_RANGE) rather than uint8."""
    return any(name in FLOAT_RANGE for name, _ in options)


def needs_full_size(options: list[tuple[str, dict]]) -> bool:
    """Whether the chain must see the full-size decoded picture (see FULL_SIZE and FULL_SIZE_WHEN_SET)."""
    return any(
        name in FULL_SIZE or any(params.get(size) for size in FULL_SIZE_WHEN_SET.get(name, ()))
        for name, params in options
    )


def augmenter(options: list[tuple[str, dict]]):
    """A function (example, seed) -> example applying the configured options in order, as the OD API does.

    Stateless random ops drawn from each example's own seed: in a parallel tf.data map a shared
    random state hands out its numbers in whatever order the threads run, so a seeded run
    would not repeat.

    Each operation hands back the image in the dtype it was given: uint8, or float32 in 0-255 from
    the start when the chain holds an operation of FLOAT_RANGE.
    """
    for name, _ in options:
        if name not in AUGMENTATIONS:
            raise ValueError(f"augmentation {name!r} is not implemented")
    dtype = tf.float32 if works_in_float(options) else tf.uint8

    def apply(data: dict, seed: tf.Tensor) -> dict:
        data = {**data, "image": tf.cast(data["image"], dtype)}
        seeds = tf.unstack(tf.random.split(seed, max(len(options), 1)))
        for (name, params), step_seed in zip(options, seeds):
            data = AUGMENTATIONS[name](data, step_seed, **params)
            if data["image"].dtype != dtype:
                raise TypeError(f"augmentation {name!r} returned a {data['image'].dtype.name} image for {dtype.name}")
        return data

    return apply
