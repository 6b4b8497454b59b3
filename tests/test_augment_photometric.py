"""The OD API's pixel-value, patch, resize and label augmentations: pixels change as the OD API's formulas
say, boxes stay (or go with all their fields), a seed repeats, and each runs in a tf.function."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config.experiment import train_spec
from pipelines.config.pipeline_config import parse_pipeline_config
from pipelines.data.augment import AUGMENTATIONS, augmenter
from pipelines.data.augment.photometric import GRAY_WEIGHTS
from pipelines.data.augment.resizing import METHODS, RANDOM_METHODS
from pipelines.errors import OdliteError

BACKGROUND = (90, 120, 150)
# (colour, [top, left, bottom, right) in pixels) on a 24 x 32 picture.
RECTANGLES = (
    ((255, 0, 0), (0, 0, 8, 10)),
    ((20, 220, 40), (10, 12, 20, 24)),
    ((30, 60, 250), (4, 26, 12, 32)),
    ((200, 200, 30), (16, 2, 23, 8)),
)
HEIGHT, WIDTH = 24, 32


def _scene(classes=(1, 2, 3, 2)) -> dict:
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[:] = BACKGROUND
    boxes = []
    for colour, (top, left, bottom, right) in RECTANGLES:
        image[top:bottom, left:right] = colour
        boxes.append([top / HEIGHT, left / WIDTH, bottom / HEIGHT, right / WIDTH])
    return {
        "image": tf.constant(image),
        "groundtruth_boxes": tf.constant(boxes, tf.float32),
        "groundtruth_classes": tf.constant(classes, tf.int64),
        "groundtruth_is_crowd": tf.constant([False, True, False, False]),
        "groundtruth_area": tf.constant([1.0, 2.0, 3.0, 4.0]),
        "source_id": tf.constant("scene"),
    }


def _seed(n: int = 0) -> tf.Tensor:
    return tf.constant([11, n], tf.int64)


def _run(name: str, seed: int = 0, data: dict | None = None, **params) -> dict:
    return {k: v.numpy() for k, v in augmenter([(name, params)])(data or _scene(), _seed(seed)).items()}


def _pixels() -> np.ndarray:
    return _scene()["image"].numpy()


def _assert_boxes_kept(out: dict) -> None:
    scene = _scene()
    for key in ("groundtruth_boxes", "groundtruth_classes", "groundtruth_is_crowd", "groundtruth_area", "source_id"):
        np.testing.assert_array_equal(out[key], scene[key].numpy(), err_msg=key)


def _assert_seeded(name: str, **params) -> None:
    """The same seed repeats, eagerly and in a tf.function (the tf.data map's graph mode)."""
    apply = augmenter([(name, params)])
    graph = tf.function(apply)
    first = apply(_scene(), _seed(3))
    for again in (apply(_scene(), _seed(3)), graph(_scene(), _seed(3))):
        for key in first:
            np.testing.assert_array_equal(again[key].numpy(), first[key].numpy(), err_msg=f"{name} {key}")


# --- pixel values --------------------------------------------------------------------------


def test_pixel_value_scale_multiplies_each_value_by_its_own_factor_and_clips():
    x = _pixels().astype(np.float64)
    out = _run("random_pixel_value_scale", minval=1.5, maxval=1.5)
    np.testing.assert_array_equal(out["image"], np.round(np.clip(x * 1.5, 0, 255)))
    _assert_boxes_kept(out)
    drawn = _run("random_pixel_value_scale", minval=0.5, maxval=0.9)["image"].astype(np.float64)
    ratio = drawn[x > 40] / x[x > 40]  # factors in [0.5, 0.9), give or take the rounding
    assert ratio.min() >= 0.5 - 0.5 / 40 and ratio.max() <= 0.9 + 0.5 / 40
    assert len(np.unique(np.round(ratio, 2))) > 10, "one factor for all values: the OD API draws one per value"
    np.testing.assert_array_equal(_run("random_pixel_value_scale", minval=1.0, maxval=1.0)["image"], _pixels())
    _assert_seeded("random_pixel_value_scale")


def test_rgb_to_gray_gives_the_luma_in_three_channels_with_its_probability():
    luma = np.round((_pixels().astype(np.float64) * GRAY_WEIGHTS).sum(axis=-1))
    out = _run("random_rgb_to_gray", probability=1.0)
    np.testing.assert_allclose(out["image"], np.repeat(luma[..., None], 3, axis=-1), atol=1)
    _assert_boxes_kept(out)
    np.testing.assert_array_equal(_run("random_rgb_to_gray", probability=0.0)["image"], _pixels())
    grey = [np.all(_run("random_rgb_to_gray", n, probability=0.5)["image"][..., 0] == luma) for n in range(12)]
    assert 0 < sum(grey) < 12
    _assert_seeded("random_rgb_to_gray", probability=0.5)


@pytest.mark.parametrize("ordering", [0, 1])
def test_distort_color_applies_the_od_apis_four_adjustments_in_its_order(ordering):
    order = [("brightness", "saturation", "hue", "contrast"), ("brightness", "contrast", "saturation", "hue")]
    adjust = {
        "brightness": lambda im, s: tf.image.stateless_random_brightness(im, 32 / 255, s),
        "saturation": lambda im, s: tf.image.stateless_random_saturation(im, 0.5, 1.5, s),
        "hue": lambda im, s: tf.image.stateless_random_hue(im, 0.2, s),
        "contrast": lambda im, s: tf.image.stateless_random_contrast(im, 0.5, 1.5, s),
    }
    for n in range(3):
        image = tf.constant(_pixels(), tf.float32) / 255
        for name, seed in zip(order[ordering], tf.unstack(tf.random.split(_seed(n), 4))):
            image = tf.clip_by_value(adjust[name](image, seed), 0.0, 1.0)
        out = AUGMENTATIONS["random_distort_color"](_scene(), _seed(n), color_ordering=ordering)
        out = {key: value.numpy() for key, value in out.items()}
        np.testing.assert_array_equal(out["image"], np.round(image.numpy() * 255))
        _assert_boxes_kept(out)
        for _, (top, left, bottom, right) in RECTANGLES:  # a solid colour stays solid
            assert len(np.unique(out["image"][top:bottom, left:right].reshape(-1, 3), axis=0)) == 1
    other = _run("random_distort_color", 0, color_ordering=1 - ordering)["image"]
    assert not np.array_equal(other, _run("random_distort_color", 0, color_ordering=ordering)["image"])
    _assert_seeded("random_distort_color", color_ordering=ordering)


def test_adjust_gamma_is_gain_times_the_power():
    x = _pixels().astype(np.float64) / 255
    out = _run("adjust_gamma", gamma=2.2, gain=1.3)
    np.testing.assert_allclose(out["image"], np.round(np.clip(1.3 * x**2.2, 0, 1) * 255), atol=1)
    _assert_boxes_kept(out)
    np.testing.assert_array_equal(_run("adjust_gamma")["image"], _pixels())
    _assert_seeded("adjust_gamma", gamma=0.5)


# --- patches -------------------------------------------------------------------------------


def test_black_patches_are_squares_of_the_ratio_of_the_shorter_side():
    side = int(min(HEIGHT, WIDTH) * 0.25)
    counts = set()
    for n in range(6):
        out = _run("random_black_patches", n, max_black_patches=3, probability=1.0, size_to_image_ratio=0.25)
        black = np.all(out["image"] == 0, axis=-1)
        np.testing.assert_array_equal(out["image"][~black], _pixels()[~black])  # the rest untouched
        _assert_boxes_kept(out)
        # Every black pixel lies in a side x side square of black pixels.
        squares = np.zeros_like(black)
        for top in range(HEIGHT - side + 1):
            for left in range(WIDTH - side + 1):
                if black[top : top + side, left : left + side].all():
                    squares[top : top + side, left : left + side] = True
        np.testing.assert_array_equal(squares, black, err_msg=f"seed {n}")
        counts.add(int(black.sum()))
    assert max(counts) > side * side, "never more than one patch"
    np.testing.assert_array_equal(_run("random_black_patches", probability=0.0)["image"], _pixels())
    _assert_seeded("random_black_patches", probability=0.7)


def test_jpeg_quality_reencodes_at_a_quality_in_its_range():
    candidates = [tf.image.adjust_jpeg_quality(_pixels(), q).numpy() for q in (20, 21)]
    for n in range(3):
        out = _run("random_jpeg_quality", n, min_jpeg_quality=20, max_jpeg_quality=22)
        assert any(np.array_equal(out["image"], c) for c in candidates)
        _assert_boxes_kept(out)
    np.testing.assert_array_equal(_run("random_jpeg_quality", random_coef=1.0)["image"], _pixels())
    _assert_seeded("random_jpeg_quality", random_coef=0.5, min_jpeg_quality=5, max_jpeg_quality=50)


def test_patch_gaussian_adds_noise_inside_one_square_only():
    for n in range(6):
        out = _run("random_patch_gaussian", n, min_patch_size=4, max_patch_size=9, min_gaussian_stddev=0.3)
        changed = np.argwhere(np.any(out["image"] != _pixels(), axis=-1))
        assert len(changed), f"seed {n}: no noise"
        extent = changed.max(axis=0) - changed.min(axis=0) + 1
        assert (extent <= 8).all(), f"seed {n}: noise over {extent}, beyond the largest patch (8)"
        _assert_boxes_kept(out)
    np.testing.assert_array_equal(_run("random_patch_gaussian", random_coef=1.0)["image"], _pixels())
    still = _run("random_patch_gaussian", min_gaussian_stddev=0.0, max_gaussian_stddev=0.0)
    np.testing.assert_array_equal(still["image"], _pixels())
    _assert_seeded("random_patch_gaussian", random_coef=0.3)


# --- resizing ------------------------------------------------------------------------------


def _resized_v1(size, method) -> np.ndarray:
    image = tf.compat.v1.image.resize_images(tf.constant(_pixels(), tf.float32), size, method)
    return np.round(np.clip(image.numpy(), 0, 255))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resize_image_stretches_to_its_size_with_its_method(method):
    out = _run("resize_image", new_height=12, new_width=48, method=method)
    assert out["image"].shape == (12, 48, 3)
    np.testing.assert_array_equal(out["image"], _resized_v1([12, 48], METHODS[method]))
    _assert_boxes_kept(out)
    if method == "NEAREST_NEIGHBOR":  # each colour's pixels where its (unchanged) box says
        for (colour, _), box in zip(RECTANGLES, out["groundtruth_boxes"]):
            where = np.argwhere(np.all(out["image"] == colour, axis=-1))
            top, left, bottom, right = np.round(box * [12, 48, 12, 48])
            assert where[:, 0].min() >= top - 1 and where[:, 0].max() <= bottom
            assert where[:, 1].min() >= left - 1 and where[:, 1].max() <= right
    _assert_seeded("resize_image", new_height=12, new_width=48, method=method)


def test_random_resize_method_draws_one_of_tensorflow_1s_four_methods():
    choices = [_resized_v1([30, 20], m) for m in RANDOM_METHODS]
    drawn = set()
    for n in range(12):
        out = _run("random_resize_method", n, target_height=30, target_width=20)
        assert out["image"].shape == (30, 20, 3)
        drawn.add(next(i for i, c in enumerate(choices) if np.array_equal(out["image"], c)))
        _assert_boxes_kept(out)
    assert len(drawn) > 1
    _assert_seeded("random_resize_method", target_height=30, target_width=20)


# --- labels --------------------------------------------------------------------------------


def test_drop_label_drops_its_boxes_with_all_their_fields():
    scene = _scene()
    out = _run("drop_label_probabilistically", label=2)  # drop_probability 1.0, the .proto's default
    keep = np.array([True, False, True, False])
    for key in ("groundtruth_boxes", "groundtruth_classes", "groundtruth_is_crowd", "groundtruth_area"):
        np.testing.assert_array_equal(out[key], scene[key].numpy()[keep], err_msg=key)
    np.testing.assert_array_equal(out["image"], _pixels())
    _assert_boxes_kept(_run("drop_label_probabilistically", label=2, drop_probability=0.0))
    _assert_boxes_kept(_run("drop_label_probabilistically", label=4))
    # Each box of the label on its own draw: with 0.5, sometimes one of the two goes.
    kept = {tuple(_run("drop_label_probabilistically", n, label=2, drop_probability=0.5)["groundtruth_area"])
            for n in range(16)}  # fmt: skip
    assert (1.0, 2.0, 3.0) in kept or (1.0, 3.0, 4.0) in kept
    assert all({1.0, 3.0} <= set(k) for k in kept)
    _assert_seeded("drop_label_probabilistically", label=2, drop_probability=0.5)


def test_remap_labels_renames_the_listed_classes():
    out = _run("remap_labels", original_labels=[1, 3], new_label=2)
    np.testing.assert_array_equal(out["groundtruth_classes"], [2, 2, 2, 2])
    np.testing.assert_array_equal(out["groundtruth_boxes"], _scene()["groundtruth_boxes"].numpy())
    np.testing.assert_array_equal(out["image"], _pixels())
    np.testing.assert_array_equal(
        _run("remap_labels", original_labels=[3], new_label=1)["groundtruth_classes"], [1, 2, 1, 2]
    )
    _assert_seeded("remap_labels", original_labels=[2], new_label=3)


# --- the pixel range -----------------------------------------------------------------------


def test_normalize_image_and_subtract_channel_mean_make_the_chain_float():
    x = _pixels().astype(np.float64)
    out = _run("normalize_image", original_minval=0.0, original_maxval=255.0, target_minval=-1.0)
    assert out["image"].dtype == np.float32
    np.testing.assert_allclose(out["image"], x / 255 * 2 - 1, atol=1e-6)
    _assert_boxes_kept(out)
    means = [123.68, 116.779, 103.939]
    np.testing.assert_allclose(_run("subtract_channel_mean", means=means)["image"], x - means, atol=1e-4)
    # The chain is float32 from its start, as the OD API's: adjust_gamma's output is not rounded.
    steps = [("adjust_gamma", {"gamma": 2.0}), ("random_horizontal_flip", {"probability": 1.0}),
             ("normalize_image", {"original_minval": 0.0, "original_maxval": 255.0})]  # fmt: skip
    out = augmenter(steps)(_scene(), _seed())
    assert out["image"].dtype == tf.float32
    np.testing.assert_allclose(out["image"].numpy(), ((x / 255) ** 2)[:, ::-1], atol=1e-6)
    _assert_seeded("subtract_channel_mean", means=means)


def test_the_chain_refuses_an_operation_that_changes_the_image_dtype(monkeypatch):
    monkeypatch.setitem(
        AUGMENTATIONS, "to_uint8", lambda data, seed: {**data, "image": tf.cast(data["image"], tf.uint8)}
    )
    with pytest.raises(TypeError, match="to_uint8"):
        augmenter([("subtract_channel_mean", {"means": [1.0, 2.0, 3.0]}), ("to_uint8", {})])(_scene(), _seed())


# --- the config ----------------------------------------------------------------------------

STEPS = """
  data_augmentation_options { random_pixel_value_scale { minval: 0.8 maxval: 1.2 } }
  data_augmentation_options { random_rgb_to_gray { probability: 0.3 } }
  data_augmentation_options { random_distort_color { color_ordering: 1 } }
  data_augmentation_options { adjust_gamma { gamma: 0.8 gain: 1.1 } }
  data_augmentation_options { random_black_patches { max_black_patches: 4 probability: 0.6 size_to_image_ratio: 0.2 } }
  data_augmentation_options { random_jpeg_quality { random_coef: 0.2 min_jpeg_quality: 30 max_jpeg_quality: 90 } }
  data_augmentation_options { random_patch_gaussian { random_coef: 0.1 min_patch_size: 5 max_patch_size: 60
    min_gaussian_stddev: 0.1 max_gaussian_stddev: 0.5 } }
  data_augmentation_options { random_resize_method { target_height: 150 target_width: 170 } }
  data_augmentation_options { resize_image { new_height: 140 new_width: 160 method: AREA } }
  data_augmentation_options { drop_label_probabilistically { label: 1 drop_probability: 0.5 } }
  data_augmentation_options { remap_labels { original_labels: 1 new_label: 1 } }
"""
RANGE = """
  data_augmentation_options { normalize_image { original_minval: 0 original_maxval: 255 target_minval: -1 } }
  data_augmentation_options { subtract_channel_mean { means: [0.1, 0.2, 0.3] } }
"""


def _config(tiny_config, steps: str) -> str:
    text = tiny_config.read_text()
    start = text.index("  data_augmentation_options")
    return text[:start] + steps + text[text.index("  optimizer {") :]


@pytest.mark.parametrize("steps, dtype", [(STEPS, tf.uint8), (STEPS + RANGE, tf.float32)])
def test_a_config_with_these_operations_trains_on_them(tiny_config, steps, dtype):
    from pipelines.data.train_input import train_dataset

    spec = train_spec(parse_pipeline_config(_config(tiny_config, steps)))
    assert [name for name, _ in spec.augmentations][:3] == ["random_pixel_value_scale", "random_rgb_to_gray",
                                                            "random_distort_color"]  # fmt: skip
    images, targets = next(iter(train_dataset(spec, 2, seed=0)))
    assert images.shape == (2, 128, 128, 3) and images.dtype == dtype
    if dtype == tf.float32:  # normalize_image's range, then the means taken off
        assert float(tf.reduce_min(images)) >= -1.31 and float(tf.reduce_max(images)) <= 0.91
    assert "cls_targets" in targets


@pytest.mark.parametrize(
    "step, problem",
    [
        ("rgb_to_gray { }", "rgb_to_gray: not supported: odlite's networks take 3-channel images"),
        ("random_jpeg_quality { min_jpeg_quality: 50 max_jpeg_quality: 50 }", "must be less than max_jpeg_quality"),
        ("random_patch_gaussian { min_patch_size: 0 }", "min_patch_size: must be at least 1"),
        ("random_distort_color { color_ordering: 2 }", "color_ordering: not supported: only 0, 1"),
        ("resize_image { new_width: 10 }", "new_height"),
        ("drop_label_probabilistically { label: 3 }", "label: must be a label map id, 1 to num_classes (2), got 3"),
        ("remap_labels { original_labels: 1 new_label: 0 }", "new_label: must be at least 1"),
        ("normalize_image { original_minval: 3 original_maxval: 3 }", "must differ from original_minval"),
        ("subtract_channel_mean { means: [1, 2] }", "must hold 3 values (one per RGB channel), got 2"),
    ],
)
def test_the_config_refuses_what_cannot_be_honoured(tiny_config, step, problem):
    text = _config(tiny_config, f"  data_augmentation_options {{ {step} }}\n")
    with pytest.raises(OdliteError) as caught:
        parse_pipeline_config(text)
    assert re.search(re.escape(problem), " ".join(str(p) for p in caught.value.problems))


@pytest.mark.parametrize(
    "step, needed",
    [
        ("adjust_gamma { gamma: 0.5 }", 128),
        ("random_patch_gaussian { }", None),
        ("random_jpeg_quality { }", None),
        ("resize_image { new_height: 50 new_width: 60 }", None),
        ("random_pad_image { }", 128),
        ("random_pad_image { min_image_height: 300 min_image_width: 300 }", None),
        ("random_absolute_pad_image { max_height_padding: 10 max_width_padding: 10 }", None),
    ],
)
def test_operations_measured_in_pixels_make_the_input_decode_the_full_picture(tiny_config, monkeypatch, step, needed):
    """The OD API augments the full-size picture: a noise patch of 250 pixels, JPEG's 8x8 blocks or a resize
    to 600 pixels mean the same only on it, so those chains skip the decode reduced to the input's scale."""
    from pipelines.data import train_input

    sizes = []

    class Recording(train_input.ReducedDecoder):
        def __init__(self, size):
            sizes.append(size)
            super().__init__(size)

    monkeypatch.setattr(train_input, "ReducedDecoder", Recording)
    spec = train_spec(parse_pipeline_config(_config(tiny_config, f"  data_augmentation_options {{ {step} }}\n")))
    train_input.train_dataset(spec, 2, seed=0)
    assert sizes == [needed]
