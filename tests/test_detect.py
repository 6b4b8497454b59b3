"""detect: the three kinds of model, pictures and JSON, EXIF, filters, unreadable images."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines.detect import detect, find_images, load_model
from pipelines.errors import OdliteError


@pytest.fixture(scope="module")
def photos(exported_model, tmp_path_factory):
    """Four validation images as JPEG files, with their original bytes."""
    from pipelines.experiment import load_train_spec

    spec = load_train_spec(exported_model / "pipeline.config")
    folder = tmp_path_factory.mktemp("photos")
    feature = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    records = [p for pattern in spec.eval_paths for p in tf.io.gfile.glob(pattern)]
    for i, raw in enumerate(tf.data.TFRecordDataset(records).take(4)):
        (folder / f"val_{i}.jpg").write_bytes(tf.io.parse_single_example(raw, feature)["image/encoded"].numpy())
    return folder


def _strong(found, min_score=0.5):
    return [f for f in found if f.score >= min_score]


def test_detect_writes_a_picture_per_image_and_one_json(exported_model, photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    try:
        result = detect(exported_model / "model_int8.tflite", [str(photos)], tmp_path / "out", progress=False)
    finally:
        (photos / "broken.jpg").unlink()
    summary = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(summary["images"]) == 4 and len(result.images) == 4
    assert summary["skipped"][0]["image"].endswith("broken.jpg") and "not an image" in summary["skipped"][0]["reason"]
    found = [d for entry in summary["images"] for d in entry["detections"]]
    assert found, "the trained model should find teeth in validation images"
    for entry in summary["images"]:
        assert (tmp_path / "out" / entry["picture"]).exists()
        for d in entry["detections"]:
            assert set(d) == {"label", "score", "xmin", "ymin", "xmax", "ymax"}
            assert d["label"] in ("normal", "caries") and d["score"] >= 0.5
            assert 0 <= d["xmin"] < d["xmax"] <= entry["width"] and 0 <= d["ymin"] < d["ymax"] <= entry["height"]


def test_tflite_saved_model_and_checkpoint_agree(exported_model, trained_model, photos):
    rgb = np.asarray(Image.open(photos / "val_0.jpg").convert("RGB"))
    answers = {
        kind: _strong(load_model(path)(rgb))
        for kind, path in [("tflite", exported_model / "model.tflite"), ("saved_model", exported_model),
                           ("checkpoint", trained_model)]
    }  # fmt: skip
    assert answers["tflite"], "nothing detected"
    size = max(rgb.shape[:2])
    for kind in ("saved_model", "checkpoint"):
        assert [f.label for f in answers[kind]] == [f.label for f in answers["tflite"]], kind
        for a, b in zip(answers[kind], answers["tflite"]):
            # The .tflite sees the image resized as MediaPipe resizes it; the others as in training.
            assert abs(a.score - b.score) < 0.05
            assert (
                max(abs(a.xmin - b.xmin), abs(a.ymin - b.ymin), abs(a.xmax - b.xmax), abs(a.ymax - b.ymax))
                < 0.02 * size
            )


def test_exif_orientation_is_respected(exported_model, photos, tmp_path):
    upright = Image.open(photos / "val_1.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes; EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=98, exif=exif.tobytes())
    (tmp_path / "rotated.jpg").write_bytes(buffer.getvalue())
    upright.save(tmp_path / "upright.png")
    result = detect(exported_model / "model.tflite", [str(tmp_path / "*.*")], tmp_path / "out", progress=False)
    rotated, straight = sorted(result.images, key=lambda e: e["image"])
    assert (rotated["width"], rotated["height"]) == upright.size == (straight["width"], straight["height"])
    assert [d["label"] for d in rotated["detections"]] == [d["label"] for d in straight["detections"]]
    for a, b in zip(rotated["detections"], straight["detections"]):
        assert abs(a["xmin"] - b["xmin"]) < 0.02 * max(upright.size)


def test_classes_and_max_boxes_filter(exported_model, photos, tmp_path):
    result = detect(exported_model / "model.tflite", [str(photos)], tmp_path / "all", min_score=0.3, progress=False)
    some = detect(
        exported_model / "model.tflite", [str(photos)], tmp_path / "some", min_score=0.3, max_boxes=2,
        classes=["caries"], progress=False,
    )  # fmt: skip
    for full, kept in zip(result.images, some.images):
        expected = [d for d in full["detections"] if d["label"] == "caries"][:2]
        assert kept["detections"] == expected
    with pytest.raises(OdliteError, match="unknown class.*knows normal, caries"):
        detect(exported_model / "model.tflite", [str(photos)], tmp_path / "x", classes=["molar"], progress=False)


def test_bad_inputs_are_named(exported_model, tmp_path):
    with pytest.raises(OdliteError, match="no such file"):
        find_images([str(tmp_path / "missing.jpg")])
    with pytest.raises(OdliteError, match="not a model"):
        load_model(tmp_path)
    command = [sys.executable, "-m", "pipelines.cli", "detect", "--model", str(tmp_path), str(tmp_path),
               "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "not a model" in done.stderr


def test_detect_verb_on_a_folder(exported_model, photos, tmp_path):
    command = [sys.executable, "-m", "pipelines.cli", "detect", "--model", str(exported_model / "model_int8.tflite"),
               str(photos), "--out", str(tmp_path / "out"), "--classes", "caries", "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "4 image(s)" in done.stdout
    summary = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert summary["classes"] == ["caries"] and summary["model_kind"] == "tflite"
