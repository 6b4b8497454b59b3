"""Augmentations that resize the decoded image before odlite's one resize to the network input.

Boxes are normalised, so they hold unchanged. The OD API resizes with TensorFlow 1's
``tf.image.resize_images`` (no half-pixel centres, no antialiasing), so these do too.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.data.augment.photometric import back_to

# ResizeImage.Method -> TensorFlow 1's resize method, as the OD API's preprocessor_builder maps it.
METHODS = {
    "AREA": tf.compat.v1.image.ResizeMethod.AREA,
    "BICUBIC": tf.compat.v1.image.ResizeMethod.BICUBIC,
    "BILINEAR": tf.compat.v1.image.ResizeMethod.BILINEAR,
    "NEAREST_NEIGHBOR": tf.compat.v1.image.ResizeMethod.NEAREST_NEIGHBOR,
}
# random_resize_method draws one of TensorFlow 1's four methods by its number (0-3).
RANDOM_METHODS = (
    tf.compat.v1.image.ResizeMethod.BILINEAR,
    tf.compat.v1.image.ResizeMethod.NEAREST_NEIGHBOR,
    tf.compat.v1.image.ResizeMethod.BICUBIC,
    tf.compat.v1.image.ResizeMethod.AREA,
)


def _resized(data: dict, size: list[int], method) -> tf.Tensor:
    image = tf.cast(data["image"], tf.float32)
    return back_to(tf.compat.v1.image.resize_images(image, size, method, align_corners=False), data["image"].dtype)


def resize_image(
    data: dict, seed: tf.Tensor, new_height: int = 0, new_width: int = 0, method: str = "BILINEAR"
) -> dict:
    """resize_image: the image stretched to new_height x new_width with ``method``."""
    return {**data, "image": _resized(data, [new_height, new_width], METHODS[method])}


def random_resize_method(data: dict, seed: tf.Tensor, target_height: int = 0, target_width: int = 0) -> dict:
    """random_resize_method: the image stretched to target_height x target_width by bilinear, nearest-neighbour,
    bicubic or area resizing, one drawn at random."""
    choice = tf.random.stateless_uniform([], seed, 0, len(RANDOM_METHODS), dtype=tf.int32)
    branches = [lambda m=m: _resized(data, [target_height, target_width], m) for m in RANDOM_METHODS]
    return {**data, "image": tf.switch_case(choice, branches)}


OPERATIONS = {
    "resize_image": resize_image,
    "random_resize_method": random_resize_method,
}
