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
    "random_crop_to_aspect_ratio",
)

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
    "RandomCropToAspectRatio": {
        "aspect_ratio": Rule(above(0.0)),
        "overlap_thresh": Rule(between(0.0, 1.0)),
        "clip_boxes": OK,
    },
}

AUGMENTATION_REASONS = {
    "PreprocessingStep": "odlite implements " + ", ".join(AUGMENTATIONS),
    "RandomHorizontalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "RandomVerticalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "RandomRotation90.keypoint_rot_permutation": "odlite detects boxes, not keypoints",
}
