"""Augmentation: each of the OD API's data_augmentation_options moves boxes with pixels, and repeats by seed."""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from pipelines.config.augmentation_rules import AUGMENTATION_RULES, AUGMENTATIONS
from pipelines.data.augment import AUGMENTATIONS as IMPLEMENTED
from pipelines.data.augment import augmenter
from pipelines.data.augment.geometric import crop_image, horizontal_flip


def test_the_config_accepts_exactly_the_implemented_operations():
    assert set(AUGMENTATIONS) == set(IMPLEMENTED)
    assert set(AUGMENTATION_RULES["PreprocessingStep"]) == set(IMPLEMENTED)


def _data(boxes):
    return {
        "image": tf.constant(np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)),
        "groundtruth_boxes": tf.constant(boxes, tf.float32),
        "groundtruth_classes": tf.constant(list(range(1, len(boxes) + 1)), tf.int64),
        "groundtruth_is_crowd": tf.zeros([len(boxes)], tf.bool),
        "groundtruth_area": tf.ones([len(boxes)]),
    }


def _seed(n: int = 0) -> tf.Tensor:
    return tf.constant([7, n], tf.int64)


def test_horizontal_flip_moves_image_and_boxes_together():
    data = _data([[0.1, 0.0, 0.5, 0.25]])
    flipped = horizontal_flip(data, _seed(), probability=1.0)
    np.testing.assert_array_equal(flipped["image"].numpy(), data["image"].numpy()[:, ::-1])
    np.testing.assert_allclose(flipped["groundtruth_boxes"].numpy(), [[0.1, 0.75, 0.5, 1.0]])
    kept = horizontal_flip(data, _seed(), probability=0.0)
    np.testing.assert_array_equal(kept["image"].numpy(), data["image"].numpy())
    np.testing.assert_array_equal(kept["groundtruth_boxes"].numpy(), data["groundtruth_boxes"].numpy())


def test_crop_keeps_boxes_in_the_cropped_frame():
    """Each pixel of the 4x6 test image holds its own position, so the crop's window is read back from the
    cropped pixels and every box is checked against where it must land (or that it must go)."""
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    data = _data(boxes)
    kept_and_dropped = set()
    for n in range(10):
        out = crop_image(data, _seed(n), min_object_covered=0.0, min_area=0.3, max_area=0.6, overlap_thresh=0.5)
        image = out["image"].numpy()
        top, left = divmod(int(image[0, 0, 0]) // 3, 6)
        height, width = image.shape[:2]
        assert height * width < 24
        window = np.array([top / 4, left / 6, (top + height) / 4, (left + width) / 6])
        inter_h = np.clip(np.minimum(boxes[:, 2], window[2]) - np.maximum(boxes[:, 0], window[0]), 0, None)
        inter_w = np.clip(np.minimum(boxes[:, 3], window[3]) - np.maximum(boxes[:, 1], window[1]), 0, None)
        keep = inter_h * inter_w / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) > 0.5
        scale = np.tile([window[2] - window[0], window[3] - window[1]], 2)
        expected = np.clip((boxes - np.tile(window[:2], 2)) / scale, 0, 1)[keep]
        np.testing.assert_allclose(out["groundtruth_boxes"].numpy(), expected, atol=1e-6, err_msg=f"seed {n}")
        np.testing.assert_array_equal(out["groundtruth_classes"].numpy(), np.array([1, 2])[keep])
        assert out["groundtruth_area"].shape[0] == int(keep.sum())
        kept_and_dropped.add(int(keep.sum()))
    assert len(kept_and_dropped) > 1, "every crop kept the same number of boxes: the test shows nothing"


def test_photometric_options_change_pixels_not_boxes():
    data = _data([[0.1, 0.1, 0.9, 0.9]])
    augment = augmenter([("random_adjust_brightness", {"max_delta": 0.5}), ("random_adjust_contrast", {})])
    out = augment(data, _seed())
    assert out["image"].dtype == tf.uint8 and out["image"].shape == data["image"].shape
    assert np.abs(out["image"].numpy().astype(int) - data["image"].numpy()).max() > 0
    np.testing.assert_array_equal(out["groundtruth_boxes"].numpy(), data["groundtruth_boxes"].numpy())
    # The same seed draws the same change; another seed another one.
    np.testing.assert_array_equal(augment(data, _seed())["image"].numpy(), out["image"].numpy())
    assert not np.array_equal(augment(data, _seed(1))["image"].numpy(), out["image"].numpy())


def test_inspect_draws_what_the_recipe_does_before_training(tiny_config, sample_converted, tmp_path, capsys):
    from pipelines.cli import main

    args = ["inspect", str(sample_converted), "--config", str(tiny_config), "--augment", "3", "--samples", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    drawn = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(drawn) == 6 and all(name.endswith(".png") for name in drawn), drawn
    assert "6 augmented picture(s)" in capsys.readouterr().out
    # The same seeds draw the same pictures; the versions of one record differ (the shipped recipe flips
    # and crops).
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for name in drawn:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    versions = {(tmp_path / "a" / name).read_bytes() for name in drawn if name.startswith("00_")}
    assert len(versions) > 1
    assert main(["inspect", str(sample_converted), "--augment", "2"]) == 1
    assert "--augment needs --config" in capsys.readouterr().err


def test_the_augmentation_page_lists_every_operation_once_as_odlite_takes_it():
    from pathlib import Path

    from pipelines.config.schema import message_spec

    page = (Path(__file__).resolve().parents[1] / "docs" / "augmentation.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", page, flags=re.M)
    listed = [name for name, _ in rows]
    operations = message_spec("PreprocessingStep").oneofs["preprocessing_step"]
    assert sorted(listed) == sorted(operations), "each of the OD API's 39 operations once"
    honoured = {name for name, said in rows if said.strip() == "honoured"}
    assert honoured == set(IMPLEMENTED)
