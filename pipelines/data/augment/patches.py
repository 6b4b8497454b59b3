"""Augmentations that damage part of the picture: black squares, a patch of Gaussian noise, JPEG
artefacts. Pixels only: the boxes stay where they are.

Sizes in pixels (the noise patch, JPEG's 8x8 blocks) mean the OD API's full-size image, so a chain
holding one of these decodes the full picture (``augment.FULL_SIZE``).
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.data.augment.photometric import back_to


def _square_mask(height, width, top, left, bottom, right) -> tf.Tensor:
    """bool [height, width]: inside any of the rectangles [top, bottom) x [left, right) (each [K])."""
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = tf.cast((rows >= top[:, None]) & (rows < bottom[:, None]), tf.float32)  # [K, height]
    in_cols = tf.cast((cols >= left[:, None]) & (cols < right[:, None]), tf.float32)  # [K, width]
    return tf.matmul(in_rows, in_cols, transpose_a=True) > 0.0  # [height, width], without a [K, H, W] tensor


def black_patches(
    data: dict,
    seed: tf.Tensor,
    max_black_patches: int = 10,
    probability: float = 0.5,
    size_to_image_ratio: float = 0.1,
) -> dict:
    """random_black_patches: up to ``max_black_patches`` black squares, each there with ``probability``, of
    side size_to_image_ratio * the shorter side, their corners uniform in [0, 1 - ratio) of each side."""
    image = data["image"]
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    size = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * size_to_image_ratio, tf.int32)
    draw_seed, y_seed, x_seed = tf.unstack(tf.random.split(seed, 3))
    present = tf.random.stateless_uniform([max_black_patches], draw_seed) <= probability
    top = tf.cast(
        tf.random.stateless_uniform([max_black_patches], y_seed, 0.0, 1.0 - size_to_image_ratio)
        * tf.cast(height, tf.float32),
        tf.int32,
    )
    left = tf.cast(
        tf.random.stateless_uniform([max_black_patches], x_seed, 0.0, 1.0 - size_to_image_ratio)
        * tf.cast(width, tf.float32),
        tf.int32,
    )
    bottom = tf.where(present, top + size, top)  # an absent patch covers nothing
    mask = _square_mask(height, width, top, left, bottom, left + size)
    return {**data, "image": tf.where(mask[:, :, None], tf.zeros_like(image), image)}


def patch_gaussian(
    data: dict,
    seed: tf.Tensor,
    random_coef: float = 0.0,
    min_patch_size: int = 1,
    max_patch_size: int = 250,
    min_gaussian_stddev: float = 0.0,
    max_gaussian_stddev: float = 1.0,
) -> dict:
    """random_patch_gaussian: unless skipped (``random_coef``), Gaussian noise of a stddev drawn from
    [min_gaussian_stddev, max_gaussian_stddev) (on the image in [0, 1], clipped there) inside a square of a
    side drawn from [min_patch_size, max_patch_size) pixels centred on a random pixel, cut at the edges."""
    skip_seed, size_seed, stddev_seed, y_seed, x_seed, noise_seed = tf.unstack(tf.random.split(seed, 6))
    image = tf.cast(data["image"], tf.float32) / 255.0
    shape = tf.shape(image)

    def noisy():
        size = tf.random.stateless_uniform([], size_seed, min_patch_size, max_patch_size, dtype=tf.int32)
        stddev = tf.random.stateless_uniform([], stddev_seed, min_gaussian_stddev, max_gaussian_stddev)
        y = tf.random.stateless_uniform([], y_seed, 0, shape[0], dtype=tf.int32)
        x = tf.random.stateless_uniform([], x_seed, 0, shape[1], dtype=tf.int32)
        # An even side reaches one pixel further up and left of the centre, as the OD API's patch mask does.
        before, after = size // 2, size - size // 2
        mask = _square_mask(shape[0], shape[1], (y - before)[None], (x - before)[None], (y + after)[None], (x + after)[None])
        noise = tf.random.stateless_normal(shape, noise_seed, stddev=stddev)
        return tf.where(mask[:, :, None], tf.clip_by_value(image + noise, 0.0, 1.0), image)

    apply = tf.random.stateless_uniform([], skip_seed) >= random_coef
    image = tf.cond(apply, noisy, lambda: image)
    return {**data, "image": back_to(image * 255.0, data["image"].dtype)}


def jpeg_quality(
    data: dict, seed: tf.Tensor, random_coef: float = 0.0, min_jpeg_quality: int = 0, max_jpeg_quality: int = 100
) -> dict:
    """random_jpeg_quality: unless skipped (``random_coef``), the image encoded as a JPEG of a quality drawn
    from [min_jpeg_quality, max_jpeg_quality) and decoded again."""
    skip_seed, quality_seed = tf.unstack(tf.random.split(seed, 2))
    image = data["image"]

    def encoded():
        quality = tf.random.stateless_uniform(
            [], quality_seed, min_jpeg_quality, max_jpeg_quality, dtype=tf.int32
        )
        # The OD API casts its float image to uint8 (truncating) before encoding.
        again = tf.image.adjust_jpeg_quality(tf.cast(image, tf.uint8), quality)
        return tf.cast(again, image.dtype)

    apply = tf.random.stateless_uniform([], skip_seed) >= random_coef
    return {**data, "image": tf.cond(apply, encoded, lambda: image)}


OPERATIONS = {
    "random_black_patches": black_patches,
    "random_patch_gaussian": patch_gaussian,
    "random_jpeg_quality": jpeg_quality,
}
