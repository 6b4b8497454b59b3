"""autoaugment_image: the OD API's AutoAugment for detection (``distort_image_with_autoaugment``).

A policy is a list of sub-policies; each image gets one, drawn uniformly, whose steps
(operation, probability, magnitude 0-10) apply in order, each with its probability. The
operations (``autoaugment_ops``) work on uint8 pixels, as the OD API's: in odlite's float
chain the image is taken to uint8 (truncated, as the OD API's cast) and handed back as float32.
"""

from __future__ import annotations

import tensorflow as tf

import pipelines.data.augment.autoaugment_ops as ops

# The OD API's policies by name (v0 its default, the one of its paper; v1-v3 more found on COCO, v2 with
# three steps a sub-policy): sub-policies of (operation, probability, magnitude).
POLICIES = {
    "v0": (
        (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
        (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
        (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
        (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
        (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
    ),
    "v1": (
        (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
        (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
        (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
        (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
        (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
        (("Color", 0.0, 0), ("ShearX_Only_BBoxes", 0.8, 4)),
        (("ShearY_Only_BBoxes", 0.8, 2), ("Flip_Only_BBoxes", 0.0, 10)),
        (("Equalize", 0.6, 10), ("TranslateX_BBox", 0.2, 2)),
        (("Color", 1.0, 10), ("TranslateY_Only_BBoxes", 0.4, 6)),
        (("Rotate_BBox", 0.8, 10), ("Contrast", 0.0, 10)),
        (("Cutout", 0.2, 2), ("Brightness", 0.8, 10)),
        (("Color", 1.0, 6), ("Equalize", 1.0, 2)),
        (("Cutout_Only_BBoxes", 0.4, 6), ("TranslateY_Only_BBoxes", 0.8, 2)),
        (("Color", 0.2, 8), ("Rotate_BBox", 0.8, 10)),
        (("Sharpness", 0.4, 4), ("TranslateY_Only_BBoxes", 0.0, 4)),
        (("Sharpness", 1.0, 4), ("SolarizeAdd", 0.4, 4)),
        (("Rotate_BBox", 1.0, 8), ("Sharpness", 0.2, 8)),
        (("ShearY_BBox", 0.6, 10), ("Equalize_Only_BBoxes", 0.6, 8)),
        (("ShearX_BBox", 0.2, 6), ("TranslateY_Only_BBoxes", 0.2, 10)),
        (("SolarizeAdd", 0.6, 8), ("Brightness", 0.8, 10)),
    ),
    "v2": (
        (("Color", 0.0, 6), ("Cutout", 0.6, 8), ("Sharpness", 0.4, 8)),
        (("Rotate_BBox", 0.4, 8), ("Sharpness", 0.4, 2), ("Rotate_BBox", 0.8, 10)),
        (("TranslateY_BBox", 1.0, 8), ("AutoContrast", 0.8, 2)),
        (("AutoContrast", 0.4, 6), ("ShearX_BBox", 0.8, 8), ("Brightness", 0.0, 10)),
        (("SolarizeAdd", 0.2, 6), ("Contrast", 0.0, 10), ("AutoContrast", 0.6, 0)),
        (("Cutout", 0.2, 0), ("Solarize", 0.8, 8), ("Color", 1.0, 4)),
        (("TranslateY_BBox", 0.0, 4), ("Equalize", 0.6, 8), ("Solarize", 0.0, 10)),
        (("TranslateY_BBox", 0.2, 2), ("ShearY_BBox", 0.8, 8), ("Rotate_BBox", 0.8, 8)),
        (("Cutout", 0.8, 8), ("Brightness", 0.8, 8), ("Cutout", 0.2, 2)),
        (("Color", 0.8, 4), ("TranslateY_BBox", 1.0, 6), ("Rotate_BBox", 0.6, 6)),
        (("Rotate_BBox", 0.6, 10), ("BBox_Cutout", 1.0, 4), ("Cutout", 0.2, 8)),
        (("Rotate_BBox", 0.0, 0), ("Equalize", 0.6, 6), ("ShearY_BBox", 0.6, 8)),
        (("Brightness", 0.8, 8), ("AutoContrast", 0.4, 2), ("Brightness", 0.2, 2)),
        (("TranslateY_BBox", 0.4, 8), ("Solarize", 0.4, 6), ("SolarizeAdd", 0.2, 10)),
        (("Contrast", 1.0, 10), ("SolarizeAdd", 0.2, 8), ("Equalize", 0.2, 4)),
    ),
    "v3": (
        (("Posterize", 0.8, 2), ("TranslateX_BBox", 1.0, 8)),
        (("BBox_Cutout", 0.2, 10), ("Sharpness", 1.0, 8)),
        (("Rotate_BBox", 0.6, 8), ("Rotate_BBox", 0.8, 10)),
        (("Equalize", 0.8, 10), ("AutoContrast", 0.2, 10)),
        (("SolarizeAdd", 0.2, 2), ("TranslateY_BBox", 0.2, 8)),
        (("Sharpness", 0.0, 2), ("Color", 0.4, 8)),
        (("Equalize", 1.0, 8), ("TranslateY_BBox", 1.0, 8)),
        (("Posterize", 0.6, 2), ("Rotate_BBox", 0.0, 10)),
        (("AutoContrast", 0.6, 0), ("Rotate_BBox", 1.0, 6)),
        (("Equalize", 0.0, 4), ("Cutout", 0.8, 10)),
        (("Brightness", 1.0, 2), ("TranslateY_BBox", 1.0, 6)),
        (("Contrast", 0.0, 2), ("ShearY_BBox", 0.8, 0)),
        (("AutoContrast", 0.8, 10), ("Contrast", 0.2, 10)),
        (("Rotate_BBox", 1.0, 10), ("Cutout", 1.0, 10)),
        (("SolarizeAdd", 0.8, 6), ("Equalize", 0.8, 8)),
    ),
    # The OD API's debugging policy.
    "test": ((("TranslateX_BBox", 1.0, 4), ("Equalize", 1.0, 10)),),
}


def _fraction(level: float, most: float) -> float:
    return level / ops.MAX_LEVEL * most


def _signed(value: float, seed: tf.Tensor) -> tf.Tensor:
    """``value`` or ``-value``, even odds (the OD API's _randomly_negate_tensor)."""
    return tf.where(tf.random.stateless_uniform([], seed) < 0.5, value, -value)


# (image, seed, level) -> image: the boxes stay.
PIXEL_OPERATIONS = {
    "AutoContrast": lambda image, seed, level: ops.autocontrast(image),
    "Equalize": lambda image, seed, level: ops.equalize(image),
    "Posterize": lambda image, seed, level: ops.posterize(image, int(_fraction(level, 4))),
    "Solarize": lambda image, seed, level: ops.solarize(image, int(_fraction(level, 256))),
    "SolarizeAdd": lambda image, seed, level: ops.solarize_add(image, int(_fraction(level, 110))),
    "Color": lambda image, seed, level: ops.color(image, ops.enhance_factor(level)),
    "Contrast": lambda image, seed, level: ops.contrast(image, ops.enhance_factor(level)),
    "Brightness": lambda image, seed, level: ops.brightness(image, ops.enhance_factor(level)),
    "Sharpness": lambda image, seed, level: ops.sharpness(image, ops.enhance_factor(level)),
    "Cutout": lambda image, seed, level: ops.cutout(image, int(_fraction(level, ops.CUTOUT_CONST)), seed),
}


def _translate(horizontal: bool):
    def apply(image, boxes, seed, level):
        pixels = _signed(_fraction(level, ops.TRANSLATE_CONST), seed)
        height, width = ops.image_size(image)
        return ops.translate(image, pixels, horizontal), ops.shift_boxes(boxes, height, width, pixels, horizontal)

    return apply


def _shear(horizontal: bool):
    def apply(image, boxes, seed, level):
        amount = _signed(_fraction(level, 0.3), seed)
        height, width = ops.image_size(image)
        return ops.shear(image, amount, horizontal), ops.shear_boxes(boxes, height, width, amount, horizontal)

    return apply


def _rotate(image, boxes, seed, level):
    degrees = _signed(_fraction(level, 30.0), seed)
    height, width = ops.image_size(image)
    return ops.rotate(image, degrees), ops.rotate_boxes(boxes, height, width, degrees)


# (image, boxes, seed, level) -> (image, boxes): the boxes move with the pixels, or guide them.
BOX_OPERATIONS = {
    "TranslateX_BBox": _translate(horizontal=True),
    "TranslateY_BBox": _translate(horizontal=False),
    "ShearX_BBox": _shear(horizontal=True),
    "ShearY_BBox": _shear(horizontal=False),
    "Rotate_BBox": _rotate,
    "BBox_Cutout": lambda image, boxes, seed, level: (
        ops.bbox_cutout(image, boxes, seed, _fraction(level, ops.CUTOUT_MAX_PAD_FRACTION)),
        boxes,
    ),
}

# (level, step seed) -> fn(pixels, box seed) -> pixels, applied inside each box. A signed magnitude is drawn
# from the step's seed, so every box of the step moves the same way, as the OD API draws it once per step.
INSIDE_BOX_OPERATIONS = {
    "ShearX_Only_BBoxes": lambda level, seed: lambda pixels, _: ops.shear(
        pixels, _signed(_fraction(level, 0.3), seed), horizontal=True
    ),
    "ShearY_Only_BBoxes": lambda level, seed: lambda pixels, _: ops.shear(
        pixels, _signed(_fraction(level, 0.3), seed), horizontal=False
    ),
    "TranslateY_Only_BBoxes": lambda level, seed: lambda pixels, _: ops.translate(
        pixels, _signed(_fraction(level, ops.TRANSLATE_BBOX_CONST), seed), horizontal=False
    ),
    "Flip_Only_BBoxes": lambda level, seed: lambda pixels, _: tf.image.flip_left_right(pixels),
    "Equalize_Only_BBoxes": lambda level, seed: lambda pixels, _: ops.equalize(pixels),
    "Cutout_Only_BBoxes": lambda level, seed: lambda pixels, box_seed: ops.cutout(
        pixels, int(_fraction(level, ops.CUTOUT_BBOX_CONST)), box_seed
    ),
}


def apply_step(image, boxes, seed, name: str, probability: float, level: float):
    """One (operation, probability, magnitude) step. An "_Only_BBoxes" operation always runs and draws each box
    with a third of the probability (the OD API's _scale_bbox_only_op_probability)."""
    apply_seed, operation_seed = tf.unstack(tf.random.split(seed, 2))
    if name in INSIDE_BOX_OPERATIONS:
        sign_seed, box_seed = tf.unstack(tf.random.split(operation_seed, 2))
        fn = INSIDE_BOX_OPERATIONS[name](level, sign_seed)
        return ops.inside_each_box(image, boxes, box_seed, probability, fn), boxes
    if name in PIXEL_OPERATIONS:

        def operation():
            return PIXEL_OPERATIONS[name](image, operation_seed, level), boxes
    else:

        def operation():
            return BOX_OPERATIONS[name](image, boxes, operation_seed, level)

    applies = tf.random.stateless_uniform([], apply_seed) < probability
    return tf.cond(applies, operation, lambda: (image, boxes))


def apply_sub_policy(image, boxes, seed, steps):
    """The steps of one sub-policy in order, each with its own seed."""
    for step, step_seed in zip(steps, tf.unstack(tf.random.split(seed, len(steps)))):
        image, boxes = apply_step(image, boxes, step_seed, *step)
    return image, boxes


def sub_policy_index(seed: tf.Tensor, policy_name: str) -> tf.Tensor:
    """Which of the policy's sub-policies an image gets: uniform, as the OD API draws it."""
    return tf.random.stateless_uniform([], seed, 0, len(POLICIES[policy_name]), dtype=tf.int32)


def autoaugment_image(data: dict, seed: tf.Tensor, policy_name: str = "v0") -> dict:
    """autoaugment_image: one sub-policy of ``policy_name``, drawn uniformly, applied to the image and boxes."""
    image = data["image"]
    pixels = image if image.dtype == tf.uint8 else tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)
    pixels = tf.ensure_shape(pixels, [None, None, 3])  # RGB, as the OD API's operations take it
    choice_seed, steps_seed = tf.unstack(tf.random.split(seed, 2))
    branches = [
        lambda steps=steps: apply_sub_policy(pixels, data["groundtruth_boxes"], steps_seed, steps)
        for steps in POLICIES[policy_name]
    ]
    augmented, boxes = tf.switch_case(sub_policy_index(choice_seed, policy_name), branches)
    augmented = tf.ensure_shape(augmented, image.shape)
    return {**data, "image": tf.cast(augmented, image.dtype), "groundtruth_boxes": boxes}


OPERATIONS = {"autoaugment_image": autoaugment_image}
