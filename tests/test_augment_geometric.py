"""The OD API's flips, rotation, box jitter, scaling, padding, crops to an aspect ratio and self-concatenation:
boxes follow their pixels, seeds repeat, and each runs in a tf.data-style graph."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config.pipeline_config import parse_pipeline_config
from pipelines.data.augment.geometric import crop_to_aspect_ratio, jitter_boxes, rotation90, vertical_flip
from pipelines.data.augment.pads import (
    absolute_pad_image,
    crop_pad_image,
    image_scale,
    pad_image,
    self_concat_image,
)
from pipelines.errors import OdliteError

HEIGHT, WIDTH = 40, 60
BACKGROUND = (128, 128, 128)
# Solid rectangles of distinct colours, in pixels: (top, left, bottom, right), bottom/right exclusive.
RECTANGLES = {(255, 0, 0): (4, 6, 14, 20), (0, 255, 0): (20, 30, 36, 56), (0, 0, 255): (10, 40, 18, 50)}
COLORS = list(RECTANGLES)


def _scene() -> dict:
    image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    boxes = []
    for color, (top, left, bottom, right) in RECTANGLES.items():
        image[top:bottom, left:right] = color
        boxes.append([top / HEIGHT, left / WIDTH, bottom / HEIGHT, right / WIDTH])
    n = len(boxes)
    return {
        "image": tf.constant(image),
        "groundtruth_boxes": tf.constant(boxes, tf.float32),
        "groundtruth_classes": tf.constant(range(1, n + 1), tf.int64),
        "groundtruth_is_crowd": tf.zeros([n], tf.bool),
        "groundtruth_area": tf.constant([float(i) for i in range(n)]),
        "source_id": tf.constant("scene"),
    }


def _seed(n: int) -> tf.Tensor:
    return tf.constant([11, n], tf.int64)


def _region(image: np.ndarray, color) -> tuple[int, int, int, int] | None:
    """The pixel bounds (top, left, bottom, right; exclusive) of ``color`` in ``image``."""
    rows, cols = np.nonzero(np.all(image == np.array(color, np.uint8), axis=-1))
    if not len(rows):
        return None
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def _check_boxes_enclose_colors(out: dict, tolerance: float = 1.5) -> None:
    """Each returned box matches the region of its class's colour (within ``tolerance`` pixels)."""
    image = out["image"].numpy()
    height, width = image.shape[:2]
    boxes = out["groundtruth_boxes"].numpy() * [height, width, height, width]
    classes = out["groundtruth_classes"].numpy()
    assert out["groundtruth_is_crowd"].shape[0] == out["groundtruth_area"].shape[0] == len(classes) == len(boxes)
    for box, label in zip(boxes, classes):
        region = _region(image, COLORS[label - 1])
        assert region is not None, f"class {label}'s box is kept but its colour is gone"
        np.testing.assert_allclose(box, region, atol=tolerance, err_msg=f"class {label}")


def _unchanged(out: dict, data: dict) -> None:
    """The same image, classes and boxes (to float rounding: jitter recomputes them from their centres)."""
    np.testing.assert_array_equal(out["image"].numpy(), data["image"].numpy())
    np.testing.assert_array_equal(out["groundtruth_classes"].numpy(), data["groundtruth_classes"].numpy())
    np.testing.assert_allclose(out["groundtruth_boxes"].numpy(), data["groundtruth_boxes"].numpy(), atol=1e-6)


def _repeats_and_runs_in_a_graph(fn, **params) -> None:
    data = _scene()
    eager = fn(data, _seed(3), **params)
    again = fn(data, _seed(3), **params)
    graph = tf.function(lambda d, s: fn(d, s, **params))(data, _seed(3))
    for key in ("image", "groundtruth_boxes", "groundtruth_classes"):
        np.testing.assert_array_equal(eager[key].numpy(), again[key].numpy())
    # The graph may fuse float arithmetic differently: boxes agree to rounding.
    _unchanged(graph, eager)
    assert graph["image"].dtype == tf.uint8


def _outputs(fn, seeds: int = 8, **params) -> list[dict]:
    data = _scene()
    return [fn(data, _seed(n), **params) for n in range(seeds)]


def test_vertical_flip_and_rotation_move_boxes_with_their_colours():
    data = _scene()
    flipped = vertical_flip(data, _seed(0), probability=1.0)
    np.testing.assert_array_equal(flipped["image"].numpy(), data["image"].numpy()[::-1])
    _check_boxes_enclose_colors(flipped, tolerance=1e-4)
    rotated = rotation90(data, _seed(0), probability=1.0)
    np.testing.assert_array_equal(rotated["image"].numpy(), np.rot90(data["image"].numpy()))
    assert rotated["image"].shape[:2] == (WIDTH, HEIGHT)
    _check_boxes_enclose_colors(rotated, tolerance=1e-4)
    for fn in (vertical_flip, rotation90):
        _unchanged(fn(data, _seed(0), probability=0.0), data)
        images = [fn(data, _seed(n))["image"].numpy() for n in range(8)]
        changed = {image.shape != data["image"].shape or not np.array_equal(image, data["image"]) for image in images}
        assert changed == {True, False}, "probability 0.5 should both apply and skip over 8 seeds"
        _repeats_and_runs_in_a_graph(fn)


@pytest.mark.parametrize(
    "mode",
    [
        "DEFAULT",
        "EXPAND",
        "SHRINK",
        "EXPAND_SYMMETRIC",
        "SHRINK_SYMMETRIC",
        "EXPAND_SYMMETRIC_XY",
        "SHRINK_SYMMETRIC_XY",
    ],
)
def test_jitter_boxes_moves_each_side_within_its_ratio(mode):
    data = _scene()
    boxes = data["groundtruth_boxes"].numpy()
    size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    for n in range(4):
        out = jitter_boxes(data, _seed(n), ratio=0.2, jitter_mode=mode)
        np.testing.assert_array_equal(out["image"].numpy(), data["image"].numpy())
        moved = out["groundtruth_boxes"].numpy()
        outward = (boxes - moved) * [1, 1, -1, -1]  # > 0: that side moved out
        assert np.all(np.abs(outward) <= 0.1 * size + 1e-6), "a side moved more than ratio / 2 of the box"
        assert np.abs(outward).max() > 0
        if mode.startswith("EXPAND"):
            assert np.all(outward >= -1e-6)
        if mode.startswith("SHRINK"):
            assert np.all(outward <= 1e-6)
        if "SYMMETRIC" in mode:
            np.testing.assert_allclose((moved[:, :2] + moved[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-6)
        if mode.endswith("_XY"):
            np.testing.assert_allclose(outward[:, 0] / size[:, 0], outward[:, 1] / size[:, 1], atol=1e-5)
    _unchanged(jitter_boxes(data, _seed(0), ratio=0.0, jitter_mode=mode), data)
    _repeats_and_runs_in_a_graph(jitter_boxes, ratio=0.2, jitter_mode=mode)


def test_symmetric_jitter_keeps_a_box_at_the_edge_inside_the_image():
    data = {**_scene(), "groundtruth_boxes": tf.constant([[0.0, 0.0, 0.5, 0.5]])}
    out = jitter_boxes(data, _seed(0), ratio=0.5, jitter_mode="EXPAND_SYMMETRIC")
    np.testing.assert_allclose(out["groundtruth_boxes"].numpy(), [[0.0, 0.0, 0.5, 0.5]], atol=1e-6)


def test_image_scale_resizes_in_its_range_and_keeps_boxes_on_their_colours():
    sizes = set()
    for out in _outputs(image_scale, min_scale_ratio=0.5, max_scale_ratio=2.0):
        height, width = out["image"].shape[:2]
        assert 0.5 * HEIGHT - 1 <= height <= 2 * HEIGHT and abs(width / height - WIDTH / HEIGHT) < 0.1
        np.testing.assert_array_equal(out["groundtruth_boxes"].numpy(), _scene()["groundtruth_boxes"].numpy())
        image = out["image"].numpy()
        for box, color in zip(out["groundtruth_boxes"].numpy(), COLORS):
            # Bilinear edges blend colours: the box's inside, a pixel in from each side, is the colour.
            top, left, bottom, right = np.round(box * [height, width, height, width]).astype(int)
            assert np.all(image[top + 1 : bottom - 1, left + 1 : right - 1] == color)
        sizes.add((height, width))
    assert len(sizes) > 4
    _unchanged(image_scale(_scene(), _seed(0), min_scale_ratio=1.0, max_scale_ratio=1.0), _scene())
    _repeats_and_runs_in_a_graph(image_scale)


def _check_padding(out: dict, pad_color) -> tuple[int, int]:
    """The original scene sits whole in the padded image, the rest is ``pad_color``; its size."""
    image = out["image"].numpy()
    top, left, _, _ = _region(image, COLORS[0])
    top, left = top - RECTANGLES[COLORS[0]][0], left - RECTANGLES[COLORS[0]][1]
    np.testing.assert_array_equal(image[top : top + HEIGHT, left : left + WIDTH], _scene()["image"].numpy())
    mask = np.ones(image.shape[:2], bool)
    mask[top : top + HEIGHT, left : left + WIDTH] = False
    assert np.all(image[mask] == pad_color)
    _check_boxes_enclose_colors(out, tolerance=1e-3)
    return image.shape[:2]


def test_pad_image_pads_within_its_sizes_with_the_mean_or_the_given_colour():
    mean = np.round(_scene()["image"].numpy().reshape(-1, 3).mean(0)).astype(np.uint8)
    sizes = set()
    for out in _outputs(pad_image):  # unset: from the image's size to twice it
        height, width = _check_padding(out, mean)
        assert HEIGHT <= height < 2 * HEIGHT and WIDTH <= width < 2 * WIDTH
        sizes.add((height, width))
    assert len(sizes) > 4
    for out in _outputs(pad_image, min_image_height=50, min_image_width=70, max_image_height=60, max_image_width=90,
                        pad_color=[10.0, 20.0, 30.0]):  # fmt: skip
        height, width = _check_padding(out, (10, 20, 30))
        assert 50 <= height < 60 and 70 <= width < 90
    out = pad_image(_scene(), _seed(0), max_image_height=HEIGHT, max_image_width=WIDTH, pad_color=[7.0])
    _unchanged(out, _scene())
    _repeats_and_runs_in_a_graph(pad_image, pad_color=[7.0])


def test_absolute_pad_image_adds_fewer_than_its_maximum_rows_and_columns():
    mean = np.round(_scene()["image"].numpy().reshape(-1, 3).mean(0)).astype(np.uint8)
    padded = set()
    for out in _outputs(absolute_pad_image, max_height_padding=5, max_width_padding=9):
        height, width = _check_padding(out, mean)
        assert HEIGHT <= height < HEIGHT + 5 and WIDTH <= width < WIDTH + 9
        padded.add((height, width))
    assert len(padded) > 3
    _unchanged(absolute_pad_image(_scene(), _seed(0)), _scene())  # unset: no padding, as the OD API's 0 -> 1
    _repeats_and_runs_in_a_graph(
        absolute_pad_image, max_height_padding=5, max_width_padding=9, pad_color=[1.0, 2.0, 3.0]
    )


def test_crop_pad_image_crops_then_pads_relative_to_the_original_size():
    counts = set()
    params = {"min_padded_size_ratio": [1.0, 1.2], "max_padded_size_ratio": [1.5, 1.5], "pad_color": [0.0, 0.0, 0.0]}
    for out in _outputs(crop_pad_image, seeds=12, min_object_covered=0.0, min_area=0.2, overlap_thresh=0.5, **params):
        height, width = out["image"].shape[:2]
        assert HEIGHT <= height < 1.5 * HEIGHT and 1.2 * WIDTH <= width < 1.5 * WIDTH
        # Clipped boxes of rectangles cut by the crop still match what is left of their colour.
        _check_boxes_enclose_colors(out)
        counts.add(len(out["groundtruth_classes"]))
    assert len(counts) > 1, "every crop kept the same boxes: the test shows nothing"
    out = crop_pad_image(_scene(), _seed(0), random_coef=1.0, max_padded_size_ratio=[1.0, 1.0])
    _unchanged(out, _scene())
    _repeats_and_runs_in_a_graph(crop_pad_image, min_object_covered=0.5)


def test_crop_to_aspect_ratio_keeps_overlapping_boxes_and_clips_them():
    counts = set()
    for out in _outputs(crop_to_aspect_ratio, seeds=12, aspect_ratio=0.5, overlap_thresh=0.4):
        assert out["image"].shape[:2] == (HEIGHT, HEIGHT // 2)
        _check_boxes_enclose_colors(out)
        counts.add(len(out["groundtruth_classes"]))
    assert len(counts) > 1
    tall = crop_to_aspect_ratio(_scene(), _seed(0), aspect_ratio=3.0)
    assert tall["image"].shape[:2] == (WIDTH // 3, WIDTH)
    # Unclipped, a kept box reaches past the crop, where its colour would be.
    unclipped = [crop_to_aspect_ratio(_scene(), _seed(n), aspect_ratio=0.5, overlap_thresh=0.0, clip_boxes=False)
                 for n in range(12)]  # fmt: skip
    assert any(
        (o["groundtruth_boxes"].numpy() < 0).any() or (o["groundtruth_boxes"].numpy() > 1).any() for o in unclipped
    )
    _unchanged(crop_to_aspect_ratio(_scene(), _seed(0), aspect_ratio=WIDTH / HEIGHT), _scene())
    _repeats_and_runs_in_a_graph(crop_to_aspect_ratio, aspect_ratio=0.7)


def test_self_concat_repeats_the_image_and_every_box():
    data = _scene()
    both = self_concat_image(data, _seed(0), concat_vertical_probability=1.0, concat_horizontal_probability=1.0)
    image = both["image"].numpy()
    np.testing.assert_array_equal(image, np.tile(data["image"].numpy(), (2, 2, 1)))
    assert len(both["groundtruth_classes"]) == 4 * 3
    np.testing.assert_array_equal(both["groundtruth_classes"].numpy(), np.tile([1, 2, 3], 4))
    np.testing.assert_array_equal(both["groundtruth_area"].numpy(), np.tile([0.0, 1.0, 2.0], 4))
    boxes = both["groundtruth_boxes"].numpy() * [2 * HEIGHT, 2 * WIDTH, 2 * HEIGHT, 2 * WIDTH]
    for box, label in zip(boxes, both["groundtruth_classes"].numpy()):
        top, left, bottom, right = np.round(box).astype(int)
        assert np.all(image[top:bottom, left:right] == COLORS[label - 1])
    down = self_concat_image(data, _seed(0), concat_vertical_probability=1.0, concat_horizontal_probability=0.0)
    assert down["image"].shape[:2] == (2 * HEIGHT, WIDTH)
    _unchanged(self_concat_image(data, _seed(0), 0.0, 0.0), data)
    _repeats_and_runs_in_a_graph(self_concat_image, concat_vertical_probability=0.5, concat_horizontal_probability=0.5)


GEOMETRIC_STEPS = """
  data_augmentation_options { random_vertical_flip { probability: 0.3 } }
  data_augmentation_options { random_rotation90 { probability: 0.7 } }
  data_augmentation_options { random_jitter_boxes { ratio: 0.1 jitter_mode: SHRINK } }
  data_augmentation_options { random_image_scale { min_scale_ratio: 0.8 max_scale_ratio: 1.2 } }
  data_augmentation_options { random_pad_image { min_image_height: 600 min_image_width: 700 max_image_height: 650
    max_image_width: 800 pad_color: [0.0, 0.0, 0.0] } }
  data_augmentation_options { random_absolute_pad_image { max_height_padding: 10 max_width_padding: 20
    pad_color: 255 } }
  data_augmentation_options { random_crop_pad_image { min_object_covered: 0.5 min_area: 0.3 clip_boxes: false
    random_coef: 0.1 min_padded_size_ratio: [1.0, 1.1] max_padded_size_ratio: [1.5, 1.6] } }
  data_augmentation_options { random_crop_to_aspect_ratio { aspect_ratio: 1.5 overlap_thresh: 0.5 clip_boxes: false } }
  data_augmentation_options { random_self_concat_image { concat_vertical_probability: 0.5
    concat_horizontal_probability: 0.2 } }
"""


def _with_steps(config_text: str, steps: str) -> str:
    start = config_text.index("data_augmentation_options")
    return config_text[:start] + steps + config_text[start:]


def test_the_config_accepts_these_operations_and_the_training_input_runs_them(tiny_config):
    from pipelines.config.experiment import train_spec
    from pipelines.data.train_input import train_dataset

    config = parse_pipeline_config(_with_steps(tiny_config.read_text(), GEOMETRIC_STEPS))
    spec = train_spec(config)
    names = [name for name, _ in spec.augmentations]
    assert names[:9] == ["random_vertical_flip", "random_rotation90", "random_jitter_boxes", "random_image_scale",
                         "random_pad_image", "random_absolute_pad_image", "random_crop_pad_image",
                         "random_crop_to_aspect_ratio", "random_self_concat_image"]  # fmt: skip
    images, _ = next(iter(train_dataset(spec, 2, seed=0)))
    assert images.shape == (2, 128, 128, 3) and images.dtype == tf.uint8


@pytest.mark.parametrize(
    "step, complaint",
    [
        ("random_rotation90 { keypoint_rot_permutation: 1 }", "odlite detects boxes, not keypoints"),
        ("random_vertical_flip { keypoint_flip_permutation: 1 }", "odlite detects boxes, not keypoints"),
        ("random_image_scale { min_scale_ratio: 2.5 }", "min_scale_ratio: must be at most max_scale_ratio"),
        ("random_pad_image { pad_color: [1.0, 2.0] }", "pad_color: must have 3 values"),
        ("random_pad_image { pad_color: 300 }", "pad_color: must be between 0.0 and 255.0"),
        ("random_pad_image { min_image_height: 500 }", "min_image_height: must be set together with min_image_width"),
        ("random_crop_pad_image { max_padded_size_ratio: 2.0 }", "max_padded_size_ratio: must have 2 values"),
        ("random_crop_to_aspect_ratio { aspect_ratio: 0.0 }", "aspect_ratio: must be more than 0"),
        ("random_self_concat_image { concat_vertical_probability: 1.5 }", "must be between 0.0 and 1.0"),
    ],
)
def test_the_config_refuses_what_the_od_api_cannot_do(tiny_config, step, complaint):
    with pytest.raises(OdliteError) as refused:
        parse_pipeline_config(_with_steps(tiny_config.read_text(), f"data_augmentation_options {{ {step} }}\n"))
    assert complaint in str(refused.value), str(refused.value)
