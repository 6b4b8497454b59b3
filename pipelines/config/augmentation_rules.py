"""What odlite honours of the OD API's ``data_augmentation_options`` (``PreprocessingStep``).

One rule per parameter of each operation odlite implements (``pipelines/data/augment/``),
and the reason for each it refuses; ``support.py`` merges both into its tables.
"""

from __future__ import annotations

from pipelines.config.rules import OK, REQUIRED, Rule, above, between, only

# The operations odlite implements, as PreprocessingStep names them.
AUGMENTATIONS = (
    "random_horizontal_flip",
    "random_crop_image",
    "ssd_random_crop",
    "random_adjust_brightness",
    "random_adjust_contrast",
    "random_adjust_hue",
    "random_adjust_saturation",
    "random_pixel_value_scale",
    "random_rgb_to_gray",
    "random_distort_color",
    "adjust_gamma",
    "random_black_patches",
    "random_jpeg_quality",
    "random_patch_gaussian",
    "random_resize_method",
    "resize_image",
    "drop_label_probabilistically",
    "remap_labels",
    "normalize_image",
    "subtract_channel_mean",
    "random_vertical_flip",
    "random_rotation90",
    "random_jitter_boxes",
    "random_image_scale",
    "random_pad_image",
    "random_absolute_pad_image",
    "random_crop_pad_image",
    "random_crop_to_aspect_ratio",
    "random_self_concat_image",
    "random_square_crop_by_scale",
    "random_scale_crop_and_pad_to_square",
    "ssd_random_crop_pad",
    "ssd_random_crop_fixed_aspect_ratio",
    "ssd_random_crop_pad_fixed_aspect_ratio",
    "random_downscale_to_target_pixels",
    "autoaugment_image",
)

# Padding colours are pixel values, as the OD API's float image holds them before normalisation.
PAD_COLOR = Rule(between(0.0, 255.0))

# The fields of a crop: random_crop_image's, an SSD crop operation's and those of the messages extending them.
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
    "RandomCropImage": _SSD_CROP,
    "SSDRandomCrop": {"operations": OK},
    "SSDRandomCropOperation": _SSD_CROP,
    "RandomAdjustBrightness": {"max_delta": Rule(between(0.0, 1.0))},
    "RandomAdjustContrast": {"min_delta": Rule(between(0.0)), "max_delta": Rule(between(0.0))},
    "RandomAdjustHue": {"max_delta": Rule(between(0.0, 0.5))},
    "RandomAdjustSaturation": {"min_delta": Rule(between(0.0)), "max_delta": Rule(between(0.0))},
    "RandomPixelValueScale": {"minval": Rule(between(0.0)), "maxval": Rule(between(0.0))},
    "RandomRGBtoGray": {"probability": Rule(between(0.0, 1.0))},
    "RandomDistortColor": {"color_ordering": Rule(only(0, 1))},
    "AdjustGamma": {"gamma": Rule(between(0.0)), "gain": OK},
    "RandomBlackPatches": {
        "max_black_patches": Rule(between(0)),
        "probability": Rule(between(0.0, 1.0)),
        "size_to_image_ratio": Rule(between(0.0, 1.0)),
    },
    "RandomJpegQuality": {
        "random_coef": Rule(between(0.0, 1.0)),
        "min_jpeg_quality": Rule(between(0, 100)),
        "max_jpeg_quality": Rule(between(0, 100)),
    },
    "RandomPatchGaussian": {
        "random_coef": Rule(between(0.0, 1.0)),
        "min_patch_size": Rule(between(1)),
        "max_patch_size": Rule(between(1)),
        "min_gaussian_stddev": Rule(between(0.0)),
        "max_gaussian_stddev": Rule(between(0.0)),
    },
    "RandomResizeMethod": {
        "target_height": Rule(above(0), required=True),
        "target_width": Rule(above(0), required=True),
    },
    "ResizeImage": {
        "new_height": Rule(above(0), required=True),
        "new_width": Rule(above(0), required=True),
        "method": OK,
    },
    # Label ids as the label map numbers them; augmentation_value_checks holds them within num_classes.
    "DropLabelProbabilistically": {
        "label": Rule(between(1), required=True),
        "drop_probability": Rule(between(0.0, 1.0)),
    },
    "RemapLabels": {"original_labels": Rule(required=True), "new_label": Rule(between(1), required=True)},
    "NormalizeImage": {
        "original_minval": REQUIRED,
        "original_maxval": REQUIRED,
        "target_minval": OK,
        "target_maxval": OK,
    },
    "SubtractChannelMean": {"means": REQUIRED},  # one per channel: augmentation_value_checks
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
        **_SSD_CROP,
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
    "AutoAugmentImage": {"policy_name": Rule(only("v0", "v1", "v2", "v3", "test"))},
}

AUGMENTATION_REASONS = {
    "PreprocessingStep": "odlite has no equivalent",
    "PreprocessingStep.scale_boxes_to_pixel_coordinates": "it turns boxes into pixel coordinates for the OD API's "
    "keypoint and mask heads; odlite's boxes stay normalised to [0, 1] from the records to the loss",
    "PreprocessingStep.convert_class_logits_to_softmax": "it acts on soft class labels (logits), which odlite's "
    "TFRecords and losses do not carry",
    "RandomHorizontalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "PreprocessingStep.rgb_to_gray": "odlite's networks take 3-channel images and rgb_to_gray makes a 1-channel one "
    "(what sets it apart from random_rgb_to_gray); random_rgb_to_gray { probability: 1.0 } gives the same grey "
    "picture in 3 channels",
    "RandomVerticalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "RandomRotation90.keypoint_rot_permutation": "odlite detects boxes, not keypoints",
}


def augmentation_value_checks(path: str, name: str, params: dict, num_classes: int | None) -> list[tuple[str, str]]:
    """(path, reason) for each constraint between one step's fields broken: integers drawn from [low, high)
    need a range (TensorFlow refuses an empty one); normalize_image's range a width; subtract_channel_mean a
    mean per RGB channel (as the OD API requires); the label operations' ids must be the label map's."""
    out = []
    for low, high in (("min_jpeg_quality", "max_jpeg_quality"), ("min_patch_size", "max_patch_size")):
        if low in params and params[low] >= params[high]:
            out.append((f"{path}.{low}", f"must be less than {high} ({params[high]}), got {params[low]}"))
    if "original_minval" in params and params["original_minval"] == params["original_maxval"]:
        out.append((f"{path}.original_maxval", f"must differ from original_minval ({params['original_minval']})"))
    if "means" in params and len(params["means"]) != 3:
        out.append((f"{path}.means", f"must hold 3 values (one per RGB channel), got {len(params['means'])}"))
    for field in ("label", "new_label", "original_labels"):
        ids = params.get(field, [])
        for label in ids if isinstance(ids, list) else [ids]:
            if num_classes and not 1 <= label <= num_classes:
                out.append(
                    (f"{path}.{field}", f"must be a label map id, 1 to num_classes ({num_classes}), got {label}")
                )
    return out + _list_problems(path, name, params) + _step_problems(path, name, params)


def _list_problems(path: str, name: str, params: dict) -> list[tuple[str, str]]:
    """List lengths the OD API works with (its preprocessor_builder refuses other padded-size ratios; a
    pad colour of one value applies to every channel) and the pad sizes it takes only in pairs."""
    out = []
    color = params.get("pad_color", [])
    if len(color) not in (0, 1, 3):
        out.append((f"{path}.pad_color", f"must have 3 values (R, G, B) or 1 (every channel), got {len(color)}"))
    for ratio in ("min_padded_size_ratio", "max_padded_size_ratio"):
        if name == "random_crop_pad_image" and len(params.get(ratio, [])) not in (0, 2):
            out.append((f"{path}.{ratio}", f"must have 2 values (height, width), got {len(params[ratio])}"))
    for height, width in (("min_image_height", "min_image_width"), ("max_image_height", "max_image_width")):
        if height in params and (params[height] > 0) != (params[width] > 0):
            out.append((f"{path}.{height}", f"must be set together with {width} (the OD API refuses one alone)"))
    return out


def _step_problems(path: str, name: str, params: dict) -> list[tuple[str, str]]:
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
