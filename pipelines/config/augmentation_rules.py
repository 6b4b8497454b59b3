"""What odlite honours of the OD API's ``data_augmentation_options`` (``PreprocessingStep``).

One rule per parameter of each operation odlite implements (``pipelines/data/augment/``),
and the reason for each it refuses; ``support.py`` merges both into its tables.
"""

from __future__ import annotations

from pipelines.config.rules import OK, Rule, above, between

# The operations odlite implements, as PreprocessingStep names them.
AUGMENTATIONS = (
    "random_horizontal_flip",
    "random_crop_image",
    "ssd_random_crop",
    "random_adjust_brightness",
    "random_adjust_contrast",
    "random_adjust_hue",
    "random_adjust_saturation",
    "random_vertical_flip",
    "random_rotation90",
    "random_jitter_boxes",
    "random_image_scale",
    "random_pad_image",
    "random_absolute_pad_image",
    "random_crop_pad_image",
    "random_crop_to_aspect_ratio",
    "random_self_concat_image",
)

# Padding colours are pixel values, as the OD API's float image holds them before normalisation.
PAD_COLOR = Rule(between(0.0, 255.0))

AUGMENTATION_RULES = {
    "PreprocessingStep": {name: OK for name in AUGMENTATIONS},
    "RandomHorizontalFlip": {"probability": Rule(between(0.0, 1.0))},
    "RandomCropImage": {
        "min_object_covered": Rule(between(0.0, 1.0)),
        "min_aspect_ratio": Rule(above(0.0)),
        "max_aspect_ratio": Rule(above(0.0)),
        "min_area": Rule(above(0.0, 1.0)),
        "max_area": Rule(above(0.0, 1.0)),
        "overlap_thresh": Rule(between(0.0, 1.0)),
        "clip_boxes": OK,
        "random_coef": Rule(between(0.0, 1.0)),
    },
    "SSDRandomCrop": {"operations": OK},
    "SSDRandomCropOperation": {
        "min_object_covered": Rule(between(0.0, 1.0)),
        "min_aspect_ratio": Rule(above(0.0)),
        "max_aspect_ratio": Rule(above(0.0)),
        "min_area": Rule(above(0.0, 1.0)),
        "max_area": Rule(above(0.0, 1.0)),
        "overlap_thresh": Rule(between(0.0, 1.0)),
        "clip_boxes": OK,
        "random_coef": Rule(between(0.0, 1.0)),
    },
    "RandomAdjustBrightness": {"max_delta": Rule(between(0.0, 1.0))},
    "RandomAdjustContrast": {"min_delta": Rule(between(0.0)), "max_delta": Rule(between(0.0))},
    "RandomAdjustHue": {"max_delta": Rule(between(0.0, 0.5))},
    "RandomAdjustSaturation": {"min_delta": Rule(between(0.0)), "max_delta": Rule(between(0.0))},
    "RandomVerticalFlip": {"probability": Rule(between(0.0, 1.0))},
    "RandomRotation90": {"probability": Rule(between(0.0, 1.0))},
    "RandomJitterBoxes": {"ratio": Rule(between(0.0)), "jitter_mode": OK},
    "RandomImageScale": {"min_scale_ratio": Rule(above(0.0)), "max_scale_ratio": Rule(above(0.0))},
    "RandomPadImage": {
        "min_image_height": Rule(between(0)),
        "min_image_width": Rule(between(0)),
        "max_image_height": Rule(between(0)),
        "max_image_width": Rule(between(0)),
        "pad_color": PAD_COLOR,
    },
    "RandomAbsolutePadImage": {
        "max_height_padding": Rule(between(0)),
        "max_width_padding": Rule(between(0)),
        "pad_color": PAD_COLOR,
    },
    "RandomCropPadImage": {
        "min_object_covered": Rule(between(0.0, 1.0)),
        "min_aspect_ratio": Rule(above(0.0)),
        "max_aspect_ratio": Rule(above(0.0)),
        "min_area": Rule(above(0.0, 1.0)),
        "max_area": Rule(above(0.0, 1.0)),
        "overlap_thresh": Rule(between(0.0, 1.0)),
        "clip_boxes": OK,
        "random_coef": Rule(between(0.0, 1.0)),
        "min_padded_size_ratio": Rule(between(0.0)),
        "max_padded_size_ratio": Rule(between(0.0)),
        "pad_color": PAD_COLOR,
    },
    "RandomCropToAspectRatio": {
        "aspect_ratio": Rule(above(0.0)),
        "overlap_thresh": Rule(between(0.0, 1.0)),
        "clip_boxes": OK,
    },
    "RandomSelfConcatImage": {
        "concat_vertical_probability": Rule(between(0.0, 1.0)),
        "concat_horizontal_probability": Rule(between(0.0, 1.0)),
    },
}

AUGMENTATION_REASONS = {
    "PreprocessingStep": "odlite implements " + ", ".join(AUGMENTATIONS),
    "RandomHorizontalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "RandomVerticalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "RandomRotation90.keypoint_rot_permutation": "odlite detects boxes, not keypoints",
}


def augmentation_list_problems(path: str, params: dict) -> list[tuple[str, str]]:
    """List lengths the OD API works with (its preprocessor_builder refuses other padded-size ratios; a
    pad colour of one value applies to every channel) and the pad sizes it takes only in pairs."""
    out = []
    color = params.get("pad_color", [])
    if len(color) not in (0, 1, 3):
        out.append((f"{path}.pad_color", f"must have 3 values (R, G, B) or 1 (every channel), got {len(color)}"))
    for ratio in ("min_padded_size_ratio", "max_padded_size_ratio"):
        if len(params.get(ratio, [])) not in (0, 2):
            out.append((f"{path}.{ratio}", f"must have 2 values (height, width), got {len(params[ratio])}"))
    for height, width in (("min_image_height", "min_image_width"), ("max_image_height", "max_image_width")):
        if height in params and (params[height] > 0) != (params[width] > 0):
            out.append((f"{path}.{height}", f"must be set together with {width} (the OD API refuses one alone)"))
    return out
