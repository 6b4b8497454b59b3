"""The crop augmentations (augment/crops.py): boxes follow their pixels into the new frame, boxes that leave
it go or are clipped as the OD API does, identity settings change nothing, a seed repeats, and the config
accepts them."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config.pipeline_config import parse_pipeline_config
from pipelines.data.augment import augmenter
from pipelines.data.augment.crops import (
    downscale_to_target_pixels,
    scale_crop_and_pad_to_square,
    square_crop_by_scale,
    ssd_random_crop_fixed_aspect_ratio,
    ssd_random_crop_pad,
    ssd_random_crop_pad_fixed_aspect_ratio,
)

COLOURS = {1: (230, 30, 30), 2: (30, 200, 30), 3: (30, 30, 230)}
BACKGROUND = (120, 120, 120)
# Pixel rectangles (y0, x0, y1, x1) on a 60 x 90 image: one in a corner, one in the middle, one at the right.
RECTANGLES = {1: (2, 3, 20, 25), 2: (24, 36, 44, 60), 3: (8, 70, 50, 86)}


def _scene(height: int = 60, width: int = 90, rectangles: dict = RECTANGLES) -> dict:
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    boxes = []
    for cls, (y0, x0, y1, x1) in rectangles.items():
        image[y0:y1, x0:x1] = COLOURS[cls]
        boxes.append([y0 / height, x0 / width, y1 / height, x1 / width])
    n = len(rectangles)
    return {
        "image": tf.constant(image),
        "groundtruth_boxes": tf.constant(boxes, tf.float32),
        "groundtruth_classes": tf.constant(list(rectangles), tf.int64),
        "groundtruth_is_crowd": tf.zeros([n], tf.bool),
        "groundtruth_area": tf.constant([float(c) for c in rectangles]),
        "source_id": tf.constant("scene"),
    }


def _seed(n: int) -> tf.Tensor:
    return tf.constant([11, n], tf.int64)


def _regions(image: np.ndarray) -> dict:
    """Each colour's pixel extent (y0, x0, y1, x1), or None where none of it shows."""
    regions = {}
    for cls, colour in COLOURS.items():
        mask = np.all(np.abs(image.astype(int) - colour) <= 40, axis=-1)
        rows, cols = np.where(mask.any(axis=1))[0], np.where(mask.any(axis=0))[0]
        regions[cls] = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) if mask.any() else None
    return regions


def _check(out: dict, tolerance: float = 2.0) -> tuple[set, dict]:
    """Each returned box on its colour's pixels (within ``tolerance`` pixels), its per-box fields with it;
    the classes returned and the colours' regions."""
    image = out["image"].numpy()
    assert out["image"].dtype == tf.uint8 and image.ndim == 3 and image.shape[-1] == 3
    height, width = image.shape[:2]
    boxes = out["groundtruth_boxes"].numpy() * [height, width, height, width]
    classes = out["groundtruth_classes"].numpy()
    regions = _regions(image)
    for box, cls in zip(boxes, classes):
        assert regions[cls] is not None, f"class {cls} kept with none of its pixels in the image"
        np.testing.assert_allclose(box, regions[cls], atol=tolerance, err_msg=f"class {cls}")
    np.testing.assert_array_equal(out["groundtruth_area"].numpy(), classes.astype(np.float32))  # fields follow
    assert out["groundtruth_is_crowd"].shape[0] == len(classes) and out["source_id"].numpy() == b"scene"
    return set(classes.tolist()), regions


def _visible(regions: dict, at_least: int = 3) -> set:
    return {c for c, r in regions.items() if r is not None and min(r[2] - r[0], r[3] - r[1]) >= at_least}


def _same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in ("image", "groundtruth_boxes"))


def test_scale_crop_and_pad_to_square_keeps_what_shows_and_clips_it():
    data, sizes, dropped = _scene(), set(), False
    for n in range(12):
        out = scale_crop_and_pad_to_square(data, _seed(n), output_size=64, scale_min=0.5, scale_max=3.0)
        assert out["image"].shape[:2] == (64, 64)
        kept, regions = _check(out, tolerance=2.5)
        assert _visible(regions) <= kept
        sizes.add(int((out["image"].numpy() != 0).any(axis=-1).sum()))
        dropped |= len(kept) < 3
    assert len(sizes) > 3 and dropped, "every draw looked alike: the test shows nothing"
    square = _scene(64, 64, {1: (5, 5, 30, 30)})
    same = scale_crop_and_pad_to_square(square, _seed(0), output_size=64, scale_min=1.0, scale_max=1.0)
    assert _same(same, square)


def test_square_crop_by_scale_pads_black_and_drops_boxes_wholly_outside():
    data, dropped, padded = _scene(), False, False
    for n in range(12):
        out = square_crop_by_scale(data, _seed(n), max_border=16, scale_min=0.3, scale_max=1.2, num_scales=4)
        image = out["image"].numpy()
        assert image.shape[0] == image.shape[1]
        kept, regions = _check(out)
        assert _visible(regions) <= kept
        dropped |= len(kept) < 3
        padded |= bool((image == 0).all(axis=-1).any())
    assert dropped and padded


def test_ssd_random_crop_pad_places_the_crop_on_a_canvas_of_its_colour():
    data = _scene()
    op = {"min_object_covered": 0.0, "min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0, "min_area": 0.2,
          "max_area": 0.8, "overlap_thresh": 0.3, "clip_boxes": True, "random_coef": 0.0,
          "min_padded_size_ratio": [1.2, 1.0], "max_padded_size_ratio": [2.0, 2.0],
          "pad_color_r": 0.0, "pad_color_g": 0.0, "pad_color_b": 0.0}  # fmt: skip
    grew = False
    for n in range(10):
        out = ssd_random_crop_pad(data, _seed(n), operations=[op])
        image = out["image"].numpy()
        assert image.shape[0] >= 72  # at least 1.2 x the original height
        kept, regions = _check(out)
        assert kept <= {c for c, r in regions.items() if r is not None}
        assert (image == 0).all(axis=-1).any(), "no black canvas around the crop"
        grew |= image.shape[1] > 90
    assert grew
    # The OD API's six default operations pad with the crop's mean colour.
    for n in range(4):
        _check(ssd_random_crop_pad(data, _seed(n)))
    identity = {**op, "random_coef": 1.0, "min_padded_size_ratio": [1.0], "max_padded_size_ratio": [1.0]}
    assert _same(ssd_random_crop_pad(data, _seed(0), operations=[identity]), data)


def test_ssd_random_crop_fixed_aspect_ratio_crops_to_that_ratio():
    data = _scene()
    op = {"min_object_covered": 0.0, "min_area": 0.2, "max_area": 0.7, "overlap_thresh": 0.1, "clip_boxes": True,
          "random_coef": 0.0}  # fmt: skip
    for aspect_ratio, operations in ((1.0, None), (0.75, [op]), (2.0, [op, {**op, "random_coef": 1.0}])):
        for n in range(6):
            out = ssd_random_crop_fixed_aspect_ratio(data, _seed(n), operations=operations, aspect_ratio=aspect_ratio)
            height, width = out["image"].shape[:2]
            assert abs(width / height - aspect_ratio) <= 1.0 / min(height, width) + 1e-6
            kept, regions = _check(out)
            assert kept <= {c for c, r in regions.items() if r is not None}
    skip = {**op, "random_coef": 1.0}
    assert _same(ssd_random_crop_fixed_aspect_ratio(data, _seed(0), [skip], aspect_ratio=1.5), data)


def test_ssd_random_crop_fixed_aspect_ratio_trims_with_its_own_overlap_rule():
    """The trim to the exact ratio keeps boxes at least 0.3 inside it: a box the crop left unclipped
    (clip_boxes false) counts its part outside the crop and can go where a clipped one stays."""
    data = _scene(300, 400, {1: (20, 30, 200, 190), 2: (100, 210, 280, 380), 3: (10, 300, 90, 390)})
    op = {"min_object_covered": 0.3, "min_area": 0.1, "max_area": 0.5, "overlap_thresh": 0.0, "random_coef": 0.0}
    fewer = 0
    for n in range(8):
        clipped = ssd_random_crop_fixed_aspect_ratio(data, _seed(n), [{**op, "clip_boxes": True}], 1.2)
        unclipped = ssd_random_crop_fixed_aspect_ratio(data, _seed(n), [{**op, "clip_boxes": False}], 1.2)
        kept, _ = _check(clipped)
        assert _check(unclipped)[0] <= kept
        fewer += len(unclipped["groundtruth_classes"]) < len(kept)
    assert fewer


def test_ssd_random_crop_pad_fixed_aspect_ratio_pads_black_below_and_right():
    data = _scene()
    for n in range(8):
        out = ssd_random_crop_pad_fixed_aspect_ratio(
            data, _seed(n), aspect_ratio=0.5, min_padded_size_ratio=[1.0, 1.0], max_padded_size_ratio=[3.0, 3.0]
        )
        height, width = out["image"].shape[:2]
        assert abs(width / height - 0.5) <= 1.0 / min(height, width) + 1e-6
        kept, regions = _check(out)
        assert kept <= {c for c, r in regions.items() if r is not None}
        assert (out["image"].numpy()[-1] == 0).all(), "the canvas's last row is padding"
    skip = {"min_object_covered": 0.0, "min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0, "min_area": 0.2,
            "max_area": 0.8, "overlap_thresh": 0.3, "clip_boxes": True, "random_coef": 1.0}  # fmt: skip
    same = ssd_random_crop_pad_fixed_aspect_ratio(data, _seed(0), [skip], 1.5, [1.0, 1.0], [1.0, 1.0])
    assert _same(same, data)


def test_downscale_to_target_pixels_shrinks_large_images_only():
    data = _scene()  # 5400 pixels
    out = downscale_to_target_pixels(data, _seed(0), min_target_pixels=1300, max_target_pixels=1400)
    height, width = out["image"].shape[:2]
    assert 1200 <= height * width < 1400 and abs(width / height - 1.5) < 0.1
    np.testing.assert_array_equal(out["groundtruth_boxes"].numpy(), data["groundtruth_boxes"].numpy())
    _check(out, tolerance=1.5)
    assert _same(downscale_to_target_pixels(data, _seed(0), min_target_pixels=6000, max_target_pixels=7000), data)
    assert _same(downscale_to_target_pixels(data, _seed(0), 1.0, 1300, 1400), data)


_CROP = {
    "min_object_covered": 0.3,
    "min_area": 0.3,
    "max_area": 1.0,
    "overlap_thresh": 0.3,
    "clip_boxes": True,
    "random_coef": 0.15,
}
_PAD = {
    "min_padded_size_ratio": [1.0],
    "max_padded_size_ratio": [1.5, 2.0],
    "pad_color_r": 0.0,
    "pad_color_g": 9.0,
    "pad_color_b": 0.0,
}
_ASPECT = {"min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0}
# One operation per SSD step: tracing each of the OD API's six or seven default operations takes long.
ALL_STEPS = [
    ("random_scale_crop_and_pad_to_square", {"output_size": 80, "scale_min": 0.5, "scale_max": 2.0}),
    ("random_square_crop_by_scale", {"max_border": 16, "scale_min": 0.6, "scale_max": 1.3, "num_scales": 8}),
    ("ssd_random_crop_pad", {"operations": [{**_CROP, **_ASPECT, **_PAD}]}),
    ("ssd_random_crop_fixed_aspect_ratio", {"operations": [_CROP], "aspect_ratio": 1.2}),
    ("ssd_random_crop_pad_fixed_aspect_ratio",
     {"operations": [{**_CROP, **_ASPECT}], "aspect_ratio": 0.8, "min_padded_size_ratio": [],
      "max_padded_size_ratio": []}),
    ("random_downscale_to_target_pixels", {"random_coef": 0.0, "min_target_pixels": 2000, "max_target_pixels": 3000}),
]  # fmt: skip


def test_every_crop_repeats_by_seed_and_runs_in_a_graph():
    augment = augmenter(ALL_STEPS)
    signature = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "groundtruth_boxes": tf.TensorSpec([None, 4], tf.float32),
        "groundtruth_classes": tf.TensorSpec([None], tf.int64),
        "groundtruth_is_crowd": tf.TensorSpec([None], tf.bool),
        "groundtruth_area": tf.TensorSpec([None], tf.float32),
        "source_id": tf.TensorSpec([], tf.string),
    }
    # As train_input maps it: graph code, not converted by autograph.
    graph = tf.function(augment, input_signature=[signature, tf.TensorSpec([2], tf.int64)], autograph=False)
    data = _scene()
    outputs = [graph(data, _seed(n)) for n in (0, 0, 1)]
    assert _same(outputs[0], outputs[1]) and not _same(outputs[0], outputs[2])
    for out in outputs:
        _check(out, tolerance=3.0)
    eager = augment(data, _seed(0))
    np.testing.assert_array_equal(eager["image"].numpy(), outputs[0]["image"].numpy())


CONFIG_STEPS = """data_augmentation_options { random_scale_crop_and_pad_to_square { output_size: 256 scale_min: 0.5
    scale_max: 1.5 } }
  data_augmentation_options { random_square_crop_by_scale { max_border: 64 scale_min: 0.7 num_scales: 4 } }
  data_augmentation_options { ssd_random_crop_pad { operations { min_object_covered: 0.1 min_aspect_ratio: 0.5
    max_aspect_ratio: 2.0 min_area: 0.2 max_area: 0.9 overlap_thresh: 0.2 random_coef: 0.1
    min_padded_size_ratio: [1.0, 1.1] max_padded_size_ratio: [1.5, 1.6] pad_color_g: 128 } } }
  data_augmentation_options { ssd_random_crop_fixed_aspect_ratio { aspect_ratio: 1.2 operations {
    min_object_covered: 0.2 min_area: 0.3 max_area: 0.9 overlap_thresh: 0.2 random_coef: 0.1 } } }
  data_augmentation_options { ssd_random_crop_pad_fixed_aspect_ratio { aspect_ratio: 0.8
    min_padded_size_ratio: [1.0, 1.0] max_padded_size_ratio: [1.5, 1.5] } }
  data_augmentation_options { random_downscale_to_target_pixels { random_coef: 0.2 min_target_pixels: 20000
    max_target_pixels: 40000 } }
  optimizer {"""


def _with_steps(text: str, steps: str) -> str:
    text = re.sub(r"#.*", "", text)
    start, end = text.index("data_augmentation_options"), text.index("optimizer {") + len("optimizer {")
    return text[:start] + steps + text[end:]


def test_the_config_takes_the_crops_and_the_training_input_uses_them(tiny_config, tmp_path):
    from pipelines.config.experiment import load_train_spec
    from pipelines.data.train_input import train_dataset

    path = tmp_path / "crops.config"
    path.write_text(_with_steps(tiny_config.read_text(), CONFIG_STEPS))
    spec = load_train_spec(path)
    assert [name for name, _ in spec.augmentations] == [name for name, _ in ALL_STEPS]
    images, _ = next(iter(train_dataset(spec, 2, seed=0)))
    assert images.shape[0] == 2 and images.dtype == tf.uint8


@pytest.mark.parametrize(
    ("steps", "complaint"),
    [
        (
            "ssd_random_crop_pad { operations { min_area: 0.1 max_area: 1.0 min_aspect_ratio: 1.0 max_aspect_ratio: 1.0"
            " min_padded_size_ratio: [1.0, 1.0, 1.0] max_padded_size_ratio: 2.0 } }",
            "needs 1 or 2 values",
        ),
        ("ssd_random_crop_pad_fixed_aspect_ratio { min_padded_size_ratio: 1.0 }", "takes 2 values"),
        ("ssd_random_crop_fixed_aspect_ratio { aspect_ratio: 2.0 }", "used only with operations"),
        ("random_downscale_to_target_pixels { min_target_pixels: 9 max_target_pixels: 8 }", "must be at most"),
        ("random_square_crop_by_scale { scale_min: 2.0 }", "must be at most"),
    ],
)
def test_the_config_refuses_what_the_od_api_cannot_run(tiny_config, steps, complaint):
    text = _with_steps(tiny_config.read_text(), f"data_augmentation_options {{ {steps} }} optimizer {{")
    with pytest.raises(Exception, match=complaint):
        parse_pipeline_config(text)
