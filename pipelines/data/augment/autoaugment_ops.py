"""The operations of the OD API's AutoAugment policies (its ``utils/autoaugment_utils.py``).

Each works on a uint8 image, as the OD API's do, and normalised [ymin, xmin, ymax, xmax] boxes, and
is ``(image, boxes, seed, level) -> (image, boxes)``: ``level`` (0-10) is the policy's magnitude,
turned into the operation's argument with the OD API's constants. Sizes are in pixels of the image
(translations of up to 250 pixels, cutout squares of up to 200), as the OD API measures them.
Pixels an operation uncovers are grey (128), the OD API's fill.

Box rules, as the OD API's: a box moved by translate, shear or rotate is taken to whole pixels
(truncated), moved, clipped to the image, and, where that leaves it no height or width, widened to
0.05 of the image at the border it reached (the OD API keeps every box: none is dropped). The
"_Only_BBoxes" operations change the pixels inside each box (each box with a third of the step's
probability, in a random order) and leave the boxes as they are.
"""

from __future__ import annotations

import math

import tensorflow as tf

MAX_LEVEL = 10.0
FILL = 128
# The OD API's AutoAugment hyperparameters (distort_image_with_autoaugment).
CUTOUT_CONST = 100
TRANSLATE_CONST = 250
CUTOUT_BBOX_CONST = 50
TRANSLATE_BBOX_CONST = 120
CUTOUT_MAX_PAD_FRACTION = 0.75
# A box clipped to no height or width is widened to this fraction of the image (the OD API's _check_bbox_area).
MIN_BOX_SIDE = 0.05
GRAY_TO_RGB = 3


def _float(x) -> tf.Tensor:
    return tf.cast(x, tf.float32)


def enhance_factor(level: float) -> float:
    """Color, Contrast, Brightness and Sharpness's blend factor: 0.1 (level 0) to 1.9 (level 10)."""
    return level / MAX_LEVEL * 1.8 + 0.1


def blend(image1: tf.Tensor, image2: tf.Tensor, factor: float) -> tf.Tensor:
    """image1 + factor * (image2 - image1), truncated to uint8; clipped to 0-255 when factor extrapolates."""
    if factor == 0.0:
        return image1
    if factor == 1.0:
        return image2
    mixed = _float(image1) + factor * (_float(image2) - _float(image1))
    if not 0.0 < factor < 1.0:
        mixed = tf.clip_by_value(mixed, 0.0, 255.0)
    return tf.cast(mixed, tf.uint8)


def color(image: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL's Color: a blend with the image's grey version."""
    return blend(tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image)), image, factor)


def contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
    """A blend with a flat grey image. Its grey is the OD API's: the sum of the grey histogram over 256
    (the pixel count / 256, not PIL's mean grey), clipped to 255."""
    shape = tf.shape(image)
    level = tf.minimum(_float(shape[0] * shape[1]) / 256.0, 255.0)
    return blend(tf.cast(tf.fill(shape, level), tf.uint8), image, factor)


def brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL's Brightness: a blend with black."""
    return blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL's Sharpness: a blend with the image smoothed by PIL's 3x3 SMOOTH kernel (border pixels kept)."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(_float(image)[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8)
    inner = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
    smoothed = tf.where(inner, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
    return blend(smoothed, image, factor)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """PIL's Equalize, per channel: each value mapped through its channel's cumulative histogram, in steps
    of (pixels - the count of the highest value present) // 255; a channel with no step stays."""
    channels = []
    for channel in tf.unstack(tf.cast(image, tf.int32), axis=-1):
        histogram = tf.math.bincount(channel, minlength=256, maxlength=256)
        highest_count = tf.gather(histogram, tf.reduce_max(tf.where(histogram > 0)))
        step = (tf.reduce_sum(histogram) - highest_count) // 255
        safe_step = tf.maximum(step, 1)
        lut = (tf.cumsum(histogram) + safe_step // 2) // safe_step
        lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
        channels.append(tf.where(step > 0, tf.gather(lut, channel), channel))
    return tf.cast(tf.stack(channels, axis=-1), tf.uint8)


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """PIL's AutoContrast, per channel: its lowest value to 0, its highest to 255 (a flat channel stays)."""
    pixels = _float(image)
    low = tf.reduce_min(pixels, axis=[0, 1])
    high = tf.reduce_max(pixels, axis=[0, 1])
    scale = 255.0 / tf.maximum(high - low, 1.0)
    stretched = tf.cast(tf.clip_by_value((pixels - low) * scale, 0.0, 255.0), tf.uint8)
    return tf.where(high > low, stretched, image)


def posterize(image: tf.Tensor, bits: int) -> tf.Tensor:
    """The ``bits`` highest bits of each value kept (TensorFlow's shifts, as the OD API's: 0 bits shifts by 7)."""
    shift = tf.constant(8 - bits, tf.uint8)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def solarize(image: tf.Tensor, threshold: int) -> tf.Tensor:
    """Values at or above ``threshold`` inverted (255 - value)."""
    return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def solarize_add(image: tf.Tensor, addition: int, threshold: int = 128) -> tf.Tensor:
    """Values below ``threshold`` raised by ``addition``, clipped to 255."""
    values = tf.cast(image, tf.int32)
    added = tf.cast(tf.clip_by_value(values + addition, 0, 255), tf.uint8)
    return tf.where(values < threshold, added, image)


def _grey_square(image: tf.Tensor, center_y, center_x, half_height, half_width) -> tf.Tensor:
    """``image`` grey over rows [cy - half_height, cy + half_height) and the same columns, inside the image."""
    shape = tf.shape(image)
    rows = tf.range(shape[0])[:, None]
    cols = tf.range(shape[1])[None, :]
    inside = (
        (rows >= center_y - half_height)
        & (rows < center_y + half_height)
        & (cols >= center_x - half_width)
        & (cols < center_x + half_width)
    )
    return tf.where(inside[:, :, None], tf.constant(FILL, image.dtype), image)


def _random_int(seed: tf.Tensor, low, high) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed, low, high, dtype=tf.int32)


def cutout(image: tf.Tensor, pad_size: int, seed: tf.Tensor) -> tf.Tensor:
    """A grey square of side 2 * pad_size, its centre uniform over the image (it may overhang)."""
    shape = tf.shape(image)
    y_seed, x_seed = tf.unstack(tf.random.split(seed, 2))
    return _grey_square(image, _random_int(y_seed, 0, shape[0]), _random_int(x_seed, 0, shape[1]), pad_size, pad_size)


def transform(image: tf.Tensor, matrix) -> tf.Tensor:
    """``image`` resampled (nearest pixel) at the input points the projective ``matrix`` (8 values, output
    (x, y) -> input) names; points outside the image grey."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.cast(tf.reshape(tf.stack(matrix), [1, 8]), tf.float32),
        output_shape=tf.shape(image)[:2],
        fill_value=float(FILL),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]


def translate(image: tf.Tensor, pixels, horizontal: bool) -> tf.Tensor:
    """The content moved ``pixels`` left (horizontal) or up, as PIL's translate by ``pixels``."""
    if horizontal:
        return transform(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0, 0.0, 0.0])
    return transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels, 0.0, 0.0])


def shear(image: tf.Tensor, level, horizontal: bool) -> tf.Tensor:
    """Row y moved ``level * y`` left (horizontal), or column x moved ``level * x`` up."""
    if horizontal:
        return transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    return transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def rotate(image: tf.Tensor, degrees) -> tf.Tensor:
    """The content turned ``degrees`` counter-clockwise about the image's centre."""
    radians = degrees * math.pi / 180.0
    cos, sin = tf.cos(radians), tf.sin(radians)
    shape = tf.shape(image)
    last_x, last_y = _float(shape[1] - 1), _float(shape[0] - 1)
    x_offset = (last_x - (cos * last_x - sin * last_y)) / 2.0
    y_offset = (last_y - (sin * last_x + cos * last_y)) / 2.0
    return transform(image, [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])


def _widen_flat(low: tf.Tensor, high: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A side clipped to nothing widened to MIN_BOX_SIDE at the border it reached (the OD API's _check_bbox_area)."""
    flat = tf.equal(high - low, 0.0)
    return tf.where(flat, tf.minimum(low, 1.0 - MIN_BOX_SIDE), low), tf.where(
        flat, tf.maximum(high, MIN_BOX_SIDE), high
    )


def _finish_boxes(ymin, xmin, ymax, xmax) -> tf.Tensor:
    """Normalised sides clipped to the image, flat ones widened: [N, 4]."""
    ymin, xmin, ymax, xmax = (tf.clip_by_value(side, 0.0, 1.0) for side in (ymin, xmin, ymax, xmax))
    ymin, ymax = _widen_flat(ymin, ymax)
    xmin, xmax = _widen_flat(xmin, xmax)
    return tf.stack([ymin, xmin, ymax, xmax], axis=1)


def image_size(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.shape(image)
    return _float(shape[0]), _float(shape[1])


def _whole_pixels(boxes: tf.Tensor, height, width) -> list[tf.Tensor]:
    """ymin, xmin, ymax, xmax in pixels, truncated as the OD API converts them."""
    return tf.unstack(_float(tf.cast(boxes * tf.stack([height, width, height, width]), tf.int32)), axis=1)


def shift_boxes(boxes: tf.Tensor, height, width, pixels, horizontal: bool) -> tf.Tensor:
    """Boxes moved ``pixels`` left (or up) with translate's content, held inside the image."""
    ymin, xmin, ymax, xmax = _whole_pixels(boxes, height, width)
    pixels = _float(tf.cast(pixels, tf.int32))
    if horizontal:
        xmin, xmax = tf.maximum(0.0, xmin - pixels), tf.minimum(width, xmax - pixels)
    else:
        ymin, ymax = tf.maximum(0.0, ymin - pixels), tf.minimum(height, ymax - pixels)
    return _finish_boxes(ymin / height, xmin / width, ymax / height, xmax / width)


def _corner_boxes(ys: tf.Tensor, xs: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """The extent of each box's four corners ([N, 4] each), truncated to whole pixels as the OD API does."""
    ys, xs = _float(tf.cast(ys, tf.int32)), _float(tf.cast(xs, tf.int32))
    return (tf.reduce_min(ys, 1), tf.reduce_min(xs, 1), tf.reduce_max(ys, 1), tf.reduce_max(xs, 1))


def shear_boxes(boxes: tf.Tensor, height, width, level, horizontal: bool) -> tf.Tensor:
    """The boxes around their corners sheared with the content."""
    ymin, xmin, ymax, xmax = _whole_pixels(boxes, height, width)
    ys = tf.stack([ymin, ymin, ymax, ymax], axis=1)
    xs = tf.stack([xmin, xmax, xmin, xmax], axis=1)
    if horizontal:
        xs = xs - level * ys
    else:
        ys = ys - level * xs
    ymin, xmin, ymax, xmax = _corner_boxes(ys, xs)
    return _finish_boxes(ymin / height, xmin / width, ymax / height, xmax / width)


def rotate_boxes(boxes: tf.Tensor, height, width, degrees) -> tf.Tensor:
    """The boxes around their corners turned with the content, about the image's centre (y up, as the OD API)."""
    radians = degrees * math.pi / 180.0
    cos, sin = tf.cos(radians), tf.sin(radians)
    centred = boxes - 0.5
    up = -_float(tf.cast(centred[:, 0::2] * height, tf.int32))  # [N, 2]: ymin, ymax
    right = _float(tf.cast(centred[:, 1::2] * width, tf.int32))  # [N, 2]: xmin, xmax
    ys = tf.stack([up[:, 0], up[:, 0], up[:, 1], up[:, 1]], axis=1)
    xs = tf.stack([right[:, 0], right[:, 1], right[:, 0], right[:, 1]], axis=1)
    low_up, low_x, high_up, high_x = _corner_boxes(cos * ys + sin * xs, cos * xs - sin * ys)
    return _finish_boxes(0.5 - high_up / height, low_x / width + 0.5, 0.5 - low_up / height, high_x / width + 0.5)


def bbox_cutout(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, pad_fraction: float) -> tf.Tensor:
    """A grey rectangle pad_fraction of one random box's size (each side), centred at a random pixel of it."""
    height, width = image_size(image)
    index_seed, y_seed, x_seed = tf.unstack(tf.random.split(seed, 3))

    def cut():
        box = tf.gather(boxes, _random_int(index_seed, 0, tf.shape(boxes)[0]))
        ymin, xmin, ymax, xmax = tf.unstack(tf.cast(box * tf.stack([height, width, height, width]), tf.int32))
        half_height = tf.cast(pad_fraction * _float(ymax - ymin + 1) / 2.0, tf.int32)
        half_width = tf.cast(pad_fraction * _float(xmax - xmin + 1) / 2.0, tf.int32)
        center_y, center_x = _random_int(y_seed, ymin, ymax + 1), _random_int(x_seed, xmin, xmax + 1)
        return _grey_square(image, center_y, center_x, half_height, half_width)

    return tf.cond(tf.shape(boxes)[0] > 0, cut, lambda: image)


def inside_each_box(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, probability: float, fn) -> tf.Tensor:
    """``fn(pixels, seed)`` on the pixels of each box, each with probability / 3, the boxes in a random order
    (a later box sees what an earlier one changed where they overlap): the OD API's "_Only_BBoxes"."""
    shape = tf.shape(image)
    height, width = _float(shape[0]), _float(shape[1])
    count = tf.shape(boxes)[0]
    order_seed, apply_seed, box_seed = tf.unstack(tf.random.split(seed, 3))
    order = tf.argsort(tf.random.stateless_uniform([count], order_seed))
    chosen = tf.random.stateless_uniform([count], apply_seed) < probability / 3.0
    corners = tf.cast(boxes * tf.stack([height, width, height, width]), tf.int32)
    last = tf.stack([shape[0] - 1, shape[1] - 1])
    corners = tf.concat([corners[:, :2], tf.minimum(corners[:, 2:], last)], axis=1)

    def step(i, image):
        index = order[i]
        top, left, bottom, right = tf.unstack(corners[index])

        def augment():
            changed = fn(
                image[top : bottom + 1, left : right + 1], tf.random.experimental.stateless_fold_in(box_seed, index)
            )
            padding = [[top, shape[0] - 1 - bottom], [left, shape[1] - 1 - right], [0, 0]]
            inside = tf.pad(tf.ones_like(changed, tf.uint8), padding) > 0
            return tf.where(inside, tf.pad(changed, padding), image)

        applies = chosen[index] & (bottom >= top) & (right >= left)
        return i + 1, tf.cond(applies, augment, lambda: image)

    _, image = tf.while_loop(lambda i, _: i < count, step, [tf.constant(0), image])
    return image
