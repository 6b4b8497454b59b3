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
    "random_square_crop_by_scale",
    "random_scale_crop_and_pad_to_square",
    "ssd_random_crop_pad",
    "ssd_random_crop_fixed_aspect_ratio",
    "ssd_random_crop_pad_fixed_aspect_ratio",
    "random_downscale_to_target_pixels",
)

# The fields of an SSD crop operation (SSDRandomCropOperation and the messages that extend it).
_SSD_CROP = {
    "min_object_covered": Rule(between(0.0, 1.0)),
    "min_aspect_ratio": Rule(above(0.0)),
    "max_aspect_ratio": Rule(above(0.0)),
    "min_area": Rule(above(0.0, 1.0)),
    "max_area": Rule(above(0.0, 1.0)),
    "overlap_thresh": Rule(between(0.0, 1.0)),
    "clip_boxes": OK,
    "random_coef": Rule(between(0.0, 1.0)),
}

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
    "RandomSquareCropByScale": {
        "max_border": Rule(between(1)),
        "scale_min": Rule(above(0.0)),
        "scale_max": Rule(above(0.0)),
        "num_scales": Rule(between(1)),
    },
    "RandomScaleCropAndPadToSquare": {
        "output_size": Rule(between(1)),
        "scale_min": Rule(above(0.0)),
        "scale_max": Rule(above(0.0)),
    },
    "SSDRandomCropPad": {"operations": OK},
    "SSDRandomCropPadOperation": {
        **_SSD_CROP,
        "min_padded_size_ratio": Rule(between(0.0)),
        "max_padded_size_ratio": Rule(between(0.0)),
        "pad_color_r": Rule(between(0.0, 255.0)),
        "pad_color_g": Rule(between(0.0, 255.0)),
        "pad_color_b": Rule(between(0.0, 255.0)),
    },
    "SSDRandomCropFixedAspectRatio": {"operations": OK, "aspect_ratio": Rule(above(0.0))},
    "SSDRandomCropFixedAspectRatioOperation": {
        name: rule for name, rule in _SSD_CROP.items() if not name.endswith("_aspect_ratio")
    },
    "SSDRandomCropPadFixedAspectRatio": {
        "operations": OK,
        "aspect_ratio": Rule(above(0.0)),
        "min_padded_size_ratio": Rule(between(0.0)),
        "max_padded_size_ratio": Rule(between(0.0)),
    },
    "SSDRandomCropPadFixedAspectRatioOperation": _SSD_CROP,
    "RandomDownscaleToTargetPixels": {
        "random_coef": Rule(between(0.0, 1.0)),
        "min_target_pixels": Rule(between(1)),
        "max_target_pixels": Rule(between(1)),
    },
}

AUGMENTATION_REASONS = {
    "PreprocessingStep": "odlite implements random_horizontal_flip, random_crop_image, ssd_random_crop, "
    "random_adjust_brightness/contrast/hue/saturation, random_square_crop_by_scale, "
    "random_scale_crop_and_pad_to_square, ssd_random_crop_pad, ssd_random_crop_fixed_aspect_ratio, "
    "ssd_random_crop_pad_fixed_aspect_ratio, random_downscale_to_target_pixels",
    "RandomHorizontalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "PreprocessingStep.autoaugment_image": "odlite does not reproduce the OD API's AutoAugment policies (v0-v3 mix "
    "colour, geometric and box-only operations with autoaugment_utils' own rules); choose the operations instead",
}


def step_problems(path: str, name: str, params: dict) -> list[tuple[str, str]]:
    """What the OD API cannot run in one step's fields together: it multiplies padded size ratios with an
    image's [height, width], so ssd_random_crop_pad's operations need one (for both) or two, and
    ssd_random_crop_pad_fixed_aspect_ratio takes two or none; ssd_random_crop_fixed_aspect_ratio without
    operations crops to 1.0, whatever its aspect_ratio says."""
    out = []
    ratios = ("min_padded_size_ratio", "max_padded_size_ratio")
    if name == "ssd_random_crop_pad":
        for i, op in enumerate(params.get("operations", [])):
            for field in ratios:
                if (count := len(op.get(field, []))) not in (1, 2):
                    why = f"needs 1 or 2 values (the height and width ratios), got {count}"
                    out.append((f"{path}.operations[{i}].{field}", why))
    if name == "ssd_random_crop_pad_fixed_aspect_ratio":
        for field in ratios:
            if (count := len(params.get(field, []))) not in (0, 2):
                out.append((f"{path}.{field}", f"takes 2 values (the height and width ratios), got {count}"))
    if name == "ssd_random_crop_fixed_aspect_ratio" and not params.get("operations") and params["aspect_ratio"] != 1.0:
        why = "is used only with operations (without them the OD API crops to 1.0): add operations or leave it out"
        out.append((f"{path}.aspect_ratio", why))
    return out
