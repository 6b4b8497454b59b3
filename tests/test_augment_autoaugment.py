"""autoaugment_image: the OD API's AutoAugment operations by their definitions, boxes that follow their
pixels, each sub-policy reachable and repeatable by seed, in graph mode and in the float chain."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config.augmentation_rules import AUGMENTATION_RULES
from pipelines.config.pipeline_config import parse_pipeline_config
from pipelines.data.augment import autoaugment_ops as ops
from pipelines.data.augment.autoaugment import (
    BOX_OPERATIONS,
    INSIDE_BOX_OPERATIONS,
    PIXEL_OPERATIONS,
    POLICIES,
    apply_step,
    apply_sub_policy,
    autoaugment_image,
    sub_policy_index,
)
from pipelines.errors import OdliteError

HEIGHT, WIDTH = 120, 160
BACKGROUND = (40, 40, 40)
# Solid rectangles (top, left, bottom, right in pixels, bottom/right exclusive) and their colours.
RECTANGLES = {(20, 30, 50, 70): (220, 20, 20), (60, 90, 100, 140): (20, 220, 20), (70, 10, 110, 40): (20, 20, 220)}


def _seed(n: int = 0) -> tf.Tensor:
    return tf.constant([11, n], tf.int64)


def _scene() -> tuple[tf.Tensor, tf.Tensor]:
    image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    boxes = []
    for (top, left, bottom, right), colour in RECTANGLES.items():
        image[top:bottom, left:right] = colour
        boxes.append([top / HEIGHT, left / WIDTH, bottom / HEIGHT, right / WIDTH])
    return tf.constant(image), tf.constant(boxes, tf.float32)


def _random_image(seed: int = 0, shape=(9, 11, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _assert_boxes_enclose_their_colours(image: tf.Tensor, boxes: tf.Tensor, slack: float = 2.0) -> None:
    image, boxes = image.numpy(), boxes.numpy()
    for box, colour in zip(boxes, RECTANGLES.values()):
        rows, cols = np.nonzero(np.all(image == colour, axis=-1))
        if not len(rows):
            continue  # the rectangle left the image
        top, left, bottom, right = box * [HEIGHT, WIDTH, HEIGHT, WIDTH]
        assert rows.min() >= top - slack and rows.max() + 1 <= bottom + slack, (colour, box, rows.min(), rows.max())
        assert cols.min() >= left - slack and cols.max() + 1 <= right + slack, (colour, box, cols.min(), cols.max())


# --- pixel operations, against their definitions ---------------------------------------------------------


def _blend_reference(image1, image2, factor):
    mixed = image1.astype(np.float32) + factor * (image2.astype(np.float32) - image1.astype(np.float32))
    return np.clip(mixed, 0, 255).astype(np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(tf.constant(image))).numpy()


@pytest.mark.parametrize("factor", [0.1, 0.5, 1.3, 1.9])
def test_enhance_operations_blend_with_their_degenerate_image(factor):
    image = _random_image()
    np.testing.assert_array_equal(
        ops.brightness(tf.constant(image), factor), _blend_reference(0 * image, image, factor)
    )
    np.testing.assert_array_equal(ops.color(tf.constant(image), factor), _blend_reference(_gray(image), image, factor))
    flat = np.full_like(image, 9 * 11 // 256)  # the OD API's contrast grey: pixel count / 256
    np.testing.assert_array_equal(ops.contrast(tf.constant(image), factor), _blend_reference(flat, image, factor))
    assert ops.enhance_factor(0) == pytest.approx(0.1) and ops.enhance_factor(10) == pytest.approx(1.9)


def test_sharpness_blends_with_the_smoothed_inside_and_keeps_the_border():
    image = _random_image(1)
    pixels = image.astype(np.float32)
    smooth = image.copy()
    for y in range(1, image.shape[0] - 1):
        for x in range(1, image.shape[1] - 1):
            window = pixels[y - 1 : y + 2, x - 1 : x + 2]
            smooth[y, x] = ((window.sum(axis=(0, 1)) + 4 * window[1, 1]) / 13).astype(np.uint8)
    np.testing.assert_array_equal(ops.sharpness(tf.constant(image), 1.5), _blend_reference(smooth, image, 1.5))


def test_solarize_posterize_and_autocontrast_follow_their_definitions():
    image = _random_image(2)
    values = image.astype(np.int32)
    np.testing.assert_array_equal(ops.solarize(tf.constant(image), 100), np.where(values < 100, values, 255 - values))
    np.testing.assert_array_equal(ops.solarize(tf.constant(image), 256), image)  # level 10: no value reaches 256
    added = np.where(values < 128, np.minimum(values + 66, 255), values)
    np.testing.assert_array_equal(ops.solarize_add(tf.constant(image), 66), added)
    np.testing.assert_array_equal(ops.posterize(tf.constant(image), 2), image & 0b11000000)
    np.testing.assert_array_equal(ops.posterize(tf.constant(image), 0), image & 0b10000000)  # TensorFlow's shift by 8
    low, high = values.min(axis=(0, 1)), values.max(axis=(0, 1))
    stretched = np.clip((values - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(ops.autocontrast(tf.constant(image)), stretched)
    flat = np.full((4, 4, 3), 77, np.uint8)
    np.testing.assert_array_equal(ops.autocontrast(tf.constant(flat)), flat)


def test_equalize_maps_each_channel_through_its_cumulative_histogram():
    image = _random_image(3, (20, 30, 3)) // 4  # values 0-63, so the histogram has gaps
    expected = np.empty_like(image)
    for c in range(3):
        histogram = np.bincount(image[:, :, c].ravel(), minlength=256)
        step = (histogram.sum() - histogram[np.nonzero(histogram)[0][-1]]) // 255
        lut = np.clip(np.concatenate([[0], ((np.cumsum(histogram) + step // 2) // step)[:-1]]), 0, 255)
        expected[:, :, c] = lut[image[:, :, c]]
    np.testing.assert_array_equal(ops.equalize(tf.constant(image)), expected)
    tiny = _random_image(4, (3, 3, 3))  # fewer than 256 pixels: no step, unchanged
    np.testing.assert_array_equal(ops.equalize(tf.constant(tiny)), tiny)


def test_cutout_greys_a_square_of_twice_its_pad_size_around_a_pixel():
    image = tf.zeros([HEIGHT, WIDTH, 3], tf.uint8)
    for n in range(5):
        grey = np.all(ops.cutout(image, 10, _seed(n)).numpy() == ops.FILL, axis=-1)
        rows, cols = np.nonzero(grey)
        assert rows.max() - rows.min() < 20 and cols.max() - cols.min() < 20
        assert grey.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one rectangle
        assert (
            grey.sum() == 400
            or rows.min() == 0
            or cols.min() == 0
            or rows.max() == HEIGHT - 1
            or cols.max() == WIDTH - 1
        )


# --- operations that move boxes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, level",
    [
        ("TranslateX_BBox", 1),
        ("TranslateY_BBox", 1),
        ("ShearX_BBox", 6),
        ("ShearY_BBox", 6),
        ("Rotate_BBox", 10),
        ("Rotate_BBox", 4),
    ],  # fmt: skip
)
def test_boxes_move_with_their_rectangles(name, level):
    image, boxes = _scene()
    moved = set()
    for n in range(4):
        augmented, new_boxes = apply_step(image, boxes, _seed(n), name, 1.0, level)
        _assert_boxes_enclose_their_colours(augmented, new_boxes)
        assert new_boxes.shape == boxes.shape  # the OD API keeps every box
        moved.add(tuple(np.round(new_boxes.numpy()[0], 4)))
    assert len(moved) == 2  # the magnitude's sign: either way


def test_a_box_moved_off_the_image_becomes_a_sliver_at_the_border_it_left_by():
    image, boxes = _scene()
    shifted = ops.shift_boxes(boxes, float(HEIGHT), float(WIDTH), 100.0, horizontal=True).numpy()
    # The first box's right edge is at pixel 70: moved 100 left it is clipped to [0, 0] and widened to 0.05.
    np.testing.assert_allclose(shifted[0], [20 / HEIGHT, 0.0, 50 / HEIGHT, ops.MIN_BOX_SIDE], atol=1e-6)
    np.testing.assert_allclose(shifted[1], [60 / HEIGHT, 0.0, 100 / HEIGHT, 40 / WIDTH], atol=1e-6)  # clipped
    back = ops.shift_boxes(boxes, float(HEIGHT), float(WIDTH), -200.0, horizontal=True).numpy()
    np.testing.assert_allclose(back[:, 1], 1.0 - ops.MIN_BOX_SIDE, atol=1e-6)
    np.testing.assert_allclose(back[:, 3], 1.0, atol=1e-6)


def test_translate_moves_the_pixels_and_greys_what_it_uncovers():
    image, _ = _scene()
    moved = ops.translate(image, 25.0, horizontal=True).numpy()
    np.testing.assert_array_equal(moved[:, : WIDTH - 25], image.numpy()[:, 25:])
    assert np.all(moved[:, WIDTH - 25 :] == ops.FILL)


def test_bbox_cutout_greys_part_of_one_box():
    image, boxes = _scene()
    for n in range(4):
        augmented, same = apply_step(image, boxes, _seed(n), "BBox_Cutout", 1.0, 10)
        np.testing.assert_array_equal(same, boxes)
        grey = np.all(augmented.numpy() == ops.FILL, axis=-1)
        rows, cols = np.nonzero(grey)
        assert len(rows) and any(
            top - 20 <= rows.min() and rows.max() < bottom + 20 and left - 20 <= cols.min() and cols.max() < right + 20
            for top, left, bottom, right in RECTANGLES
        )
    empty = tf.zeros([0, 4])
    np.testing.assert_array_equal(apply_step(image, empty, _seed(), "BBox_Cutout", 1.0, 10)[0], image)


@pytest.mark.parametrize("name", sorted(INSIDE_BOX_OPERATIONS))
def test_box_only_operations_change_pixels_inside_boxes_only(name):
    image, boxes = _scene()
    inside = np.zeros((HEIGHT, WIDTH), bool)
    for top, left, bottom, right in RECTANGLES:
        inside[top : bottom + 1, left : right + 1] = True
    changed_any = False
    for n in range(6):
        augmented, same = apply_step(image, boxes, _seed(n), name, 1.0, 6)
        np.testing.assert_array_equal(same, boxes)
        changed = np.any(augmented.numpy() != image.numpy(), axis=-1)
        assert not np.any(changed & ~inside)
        changed_any |= changed.any()
    # A third of probability 1 per box: some box changes in six draws of three boxes (unless the operation
    # leaves a solid rectangle as it is: flip, equalize of one colour).
    assert changed_any or name in ("Equalize_Only_BBoxes", "Flip_Only_BBoxes")
    np.testing.assert_array_equal(apply_step(image, boxes, _seed(), name, 0.0, 6)[0], image)


# --- policies -------------------------------------------------------------------------------------------------


def _data() -> dict:
    image, boxes = _scene()
    return {
        "image": image,
        "groundtruth_boxes": boxes,
        "groundtruth_classes": tf.constant([1, 2, 3], tf.int64),
        "groundtruth_is_crowd": tf.zeros([3], tf.bool),
        "groundtruth_area": tf.ones([3]),
    }


def test_the_od_api_policies_are_all_here_and_name_known_operations():
    accepts = AUGMENTATION_RULES["AutoAugmentImage"]["policy_name"].check
    assert set(POLICIES) == {"v0", "v1", "v2", "v3", "test"}
    assert all(accepts(name) is None for name in POLICIES) and accepts("v4") is not None
    known = {**PIXEL_OPERATIONS, **BOX_OPERATIONS, **INSIDE_BOX_OPERATIONS}
    steps = [step for policy in POLICIES.values() for sub_policy in policy for step in sub_policy]
    assert all(name in known and 0.0 <= probability <= 1.0 and 0 <= level <= 10 for name, probability, level in steps)
    assert {name for name, _, _ in steps} == set(known)


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_every_sub_policy_is_reachable_and_the_seed_repeats_it(policy_name):
    data = _data()
    count = len(POLICIES[policy_name])
    seen = set()
    for n in range(12 * count):
        seed = _seed(n)
        choice_seed, steps_seed = tf.unstack(tf.random.split(seed, 2))
        index = int(sub_policy_index(choice_seed, policy_name))
        if index in seen:
            continue
        seen.add(index)
        out = autoaugment_image(data, seed, policy_name)
        expected_image, expected_boxes = apply_sub_policy(
            data["image"], data["groundtruth_boxes"], steps_seed, POLICIES[policy_name][index]
        )
        np.testing.assert_array_equal(out["image"], expected_image)
        np.testing.assert_array_equal(out["groundtruth_boxes"], expected_boxes)
        again = autoaugment_image(data, seed, policy_name)
        np.testing.assert_array_equal(out["image"], again["image"])
        np.testing.assert_array_equal(out["groundtruth_boxes"], again["groundtruth_boxes"])
        _assert_boxes_enclose_their_colours(out["image"], out["groundtruth_boxes"])
        np.testing.assert_array_equal(out["groundtruth_classes"], data["groundtruth_classes"])
    assert seen == set(range(count))


def test_it_runs_in_graph_mode_and_in_the_float_chain_as_eagerly():
    data = _data()
    graph = tf.function(lambda d, s: autoaugment_image(d, s, "v0"))
    as_float = {**data, "image": tf.cast(data["image"], tf.float32)}
    outputs = {tuple(np.round(graph(data, _seed(n))["groundtruth_boxes"].numpy().ravel(), 4)) for n in range(8)}
    assert len(outputs) > 1
    for n in range(3):
        eager = autoaugment_image(data, _seed(n))
        in_graph = graph(data, _seed(n))
        floated = graph(as_float, _seed(n))
        np.testing.assert_array_equal(eager["image"], in_graph["image"])
        np.testing.assert_allclose(eager["groundtruth_boxes"], in_graph["groundtruth_boxes"], atol=1e-6)
        assert floated["image"].dtype == tf.float32
        np.testing.assert_array_equal(floated["image"], tf.cast(eager["image"], tf.float32))
        np.testing.assert_allclose(floated["groundtruth_boxes"], eager["groundtruth_boxes"], atol=1e-6)


# --- the config -----------------------------------------------------------------------------------------------


def _with_steps(config_text: str, steps: str) -> str:
    start = config_text.index("data_augmentation_options")
    return config_text[:start] + steps + config_text[start:]


def test_the_config_accepts_autoaugment_and_the_training_input_runs_it(tiny_config):
    from pipelines.config.experiment import train_spec
    from pipelines.data.train_input import train_dataset

    step = 'data_augmentation_options { autoaugment_image { policy_name: "v0" } }\n'
    spec = train_spec(parse_pipeline_config(_with_steps(tiny_config.read_text(), step)))
    assert ("autoaugment_image", {"policy_name": "v0"}) in spec.augmentations
    images, _ = next(iter(train_dataset(spec, 2, seed=0)))
    assert images.shape[0] == 2


def test_the_config_refuses_a_policy_the_od_api_does_not_have(tiny_config):
    step = 'data_augmentation_options { autoaugment_image { policy_name: "v9" } }\n'
    with pytest.raises(OdliteError) as refused:
        parse_pipeline_config(_with_steps(tiny_config.read_text(), step))
    assert "policy_name" in str(refused.value) and "v0" in str(refused.value), str(refused.value)
