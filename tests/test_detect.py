"""detect: the three kinds of model, pictures and JSON, EXIF, filters, unreadable images."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from conftest import CONFIDENT, assert_same_detections, jpeg_bytes
from made import FindsNothing
from PIL import Image

from pipelines.data.resize import resize_to_input
from pipelines.detect import Model, detect, find_images, load_model, picture_names
from pipelines.errors import OdliteError


@pytest.fixture(scope="module")
def photos(exported_model, tmp_path_factory):
    """Four validation images as JPEG files, with their original bytes."""
    from pipelines.config.experiment import load_train_spec

    spec = load_train_spec(exported_model / "pipeline.config")
    folder = tmp_path_factory.mktemp("photos")
    feature = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    records = [p for pattern in spec.eval_paths for p in tf.io.gfile.glob(pattern)]
    for i, raw in enumerate(tf.data.TFRecordDataset(records).take(4)):
        (folder / f"val_{i}.jpg").write_bytes(tf.io.parse_single_example(raw, feature)["image/encoded"].numpy())
    return folder


def _strong(found, min_score=CONFIDENT):
    return [f for f in found if f.score >= min_score]


def test_detect_writes_a_picture_per_image_and_one_json(exported_model, photos, tmp_path):
    (tmp_path / "broken.jpg").write_bytes((photos / "val_0.jpg").read_bytes()[:2000])
    (tmp_path / "notes.png").write_text("not a picture")
    inputs = [str(photos), str(tmp_path / "broken.jpg"), str(tmp_path / "notes.png")]
    result = detect(exported_model / "model_int8.tflite", inputs, tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(summary["images"]) == 4 and len(result.images) == 4
    reasons = {Path(s["image"]).name: s["reason"] for s in summary["skipped"]}
    assert "truncated" in reasons["broken.jpg"] and "not an image" in reasons["notes.png"]
    found = [d for entry in summary["images"] for d in entry["detections"]]
    assert found, "the trained model should find teeth in validation images"
    for entry in summary["images"]:
        with Image.open(tmp_path / "out" / entry["picture"]) as picture:
            picture.load()  # a whole picture of the photo (drawn on its reduced decode when large)
            assert picture.width <= entry["width"] and picture.height <= entry["height"]
            assert picture.width / picture.height == pytest.approx(entry["width"] / entry["height"], rel=0.02)
        for d in entry["detections"]:
            assert set(d) == {"label", "score", "xmin", "ymin", "xmax", "ymax"}
            assert d["label"] in ("normal", "caries") and d["score"] >= 0.5
            assert 0 <= d["xmin"] < d["xmax"] <= entry["width"] and 0 <= d["ymin"] < d["ymax"] <= entry["height"]


def test_tflite_saved_model_and_checkpoint_agree(exported_model, trained_model, photos):
    """The three forms of one network give the same boxes. Each resizes a photo its own way (the .tflite
    as MediaPipe does), which moves a weak model's scores by more than any fixed tolerance; so the network
    is compared on a picture already at its input size, where every resize is the identity, and the
    SavedModel, whose serving function resizes as training does, also on the full photo."""
    models = {
        kind: load_model(path)
        for kind, path in [("tflite", exported_model / "model.tflite"), ("saved_model", exported_model),
                           ("checkpoint", trained_model)]
    }  # fmt: skip
    photo = np.asarray(Image.open(photos / "val_0.jpg").convert("RGB"))
    width, height = models["checkpoint"].needs(photo.shape[1], photo.shape[0])
    framed = resize_to_input(photo, width, height).numpy()

    def assert_agree(image, one, other):
        # Every detection of the other side is looked at, so a score just over the bar finds its twin.
        confident = _strong(models[one](image))
        assert confident, f"{one} detects nothing"
        assert_same_detections(confident, models[other](image), max(image.shape[:2]), score=0.02, box=0.01)

    for one, other in itertools.permutations(models, 2):
        assert_agree(framed, one, other)
    assert_agree(photo, "saved_model", "checkpoint")
    assert_agree(photo, "checkpoint", "saved_model")


def test_exif_orientation_is_respected(exported_model, photos, tmp_path):
    upright = Image.open(photos / "val_1.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes; EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=98, exif=exif.tobytes())
    (tmp_path / "rotated.jpg").write_bytes(buffer.getvalue())
    upright.save(tmp_path / "upright.png")
    images = [str(tmp_path / "*.*")]
    result = detect(exported_model / "model.tflite", images, tmp_path / "out", min_score=0.2, progress=False)
    rotated, straight = sorted(result.images, key=lambda e: e["image"])
    assert (rotated["width"], rotated["height"]) == upright.size == (straight["width"], straight["height"])
    # The JPEG may be read at a reduced scale and the PNG is read in full: the same boxes, within tolerance.
    expected = [SimpleNamespace(**d) for d in straight["detections"] if d["score"] >= CONFIDENT]
    assert expected, "nothing detected"
    assert_same_detections(expected, rotated["detections"], max(upright.size))


def test_classes_and_max_boxes_filter(exported_model, photos, tmp_path):
    # Down to score 0, so that every image has more than two caries boxes and both filters bite.
    result = detect(exported_model / "model.tflite", [str(photos)], tmp_path / "all", min_score=0.0, progress=False)
    some = detect(
        exported_model / "model.tflite", [str(photos)], tmp_path / "some", min_score=0.0, max_boxes=2,
        classes=["caries"], progress=False,
    )  # fmt: skip
    for full, kept in zip(result.images, some.images):
        caries = [d for d in full["detections"] if d["label"] == "caries"]
        assert len(caries) > 2 and len(caries) < len(full["detections"])
        assert kept["detections"] == caries[:2]
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


def test_a_large_photo_is_decoded_small_and_answered_in_its_own_pixels(exported_model, photos, tmp_path):
    """A picture at 4x its size is read at a reduced scale, and its detections, in the photo's own pixels,
    are those of the same photo decoded in full."""
    small = Image.open(photos / "val_0.jpg").convert("RGB")
    large = small.resize((small.width * 4, small.height * 4), Image.BICUBIC)
    large.save(tmp_path / "large.jpg", quality=95)
    model = load_model(exported_model / "model_int8.tflite")
    picture = model.read((tmp_path / "large.jpg").read_bytes())
    assert (picture.width, picture.height) == large.size
    # The smallest libjpeg scale leaving both sides at least the model's input.
    need_width, need_height = model.needs(*large.size)
    scale = max(r for r in (1, 2, 4, 8) if large.width // r >= need_width and large.height // r >= need_height)
    assert scale >= 2 and picture.rgb.shape[:2] == (-(-large.height // scale), -(-large.width // scale))
    found = detect(model.path, [str(tmp_path / "large.jpg")], tmp_path / "out", min_score=0.2, progress=False)
    (entry,) = found.images
    assert (entry["width"], entry["height"]) == large.size
    full = _strong(model(np.asarray(Image.open(tmp_path / "large.jpg").convert("RGB"))))
    assert full, "nothing detected"
    assert_same_detections(full, entry["detections"], large.width)


def test_pictures_of_images_with_the_same_name_never_overwrite_each_other(tmp_path, monkeypatch):
    """a/p.jpg, b/p-2.jpg and c/p.png once drew two pictures to p-2.png; the JSON names each one's own."""
    import pipelines.detect as detect_module

    widths = {"a/p.jpg": 40, "b/p-2.jpg": 50, "c/p.png": 60}
    for name, width in widths.items():
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_bytes(jpeg_bytes(width, 30, fmt="PNG" if name.endswith(".png") else "JPEG"))
    nothing = Model(FindsNothing(tmp_path / "m.tflite"), ["normal", "caries"])
    monkeypatch.setattr(detect_module, "load_model", lambda path, checkpoint=None: nothing)
    inputs = [str(tmp_path / name) for name in widths]
    detect(tmp_path / "m.tflite", inputs, tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out" / "detections.json").read_text())
    pictures = {Path(entry["image"]).relative_to(tmp_path).as_posix(): entry["picture"] for entry in summary["images"]}
    assert pictures == {"a/p.jpg": "p.png", "b/p-2.jpg": "p-2.png", "c/p.png": "p-3.png"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["detections.json", "p-2.png", "p-3.png", "p.png"]
    for image, picture in pictures.items():
        with Image.open(tmp_path / "out" / picture) as drawn:
            assert drawn.width == widths[image]  # each picture is of its own image
    again = picture_names([Path("x/P.jpg"), Path("y/p.jpg"), Path("z/p-2.png"), Path("w/p.gif")])
    assert again == ["P", "p-2", "p-2-2", "p-3"]  # case-insensitive filesystems would merge P.png and p.png


def test_an_image_past_the_pixel_budget_is_refused_and_named(stub_tflite, tmp_path, capsys):
    """Refused from its header (a 125 KB PNG of 64 megapixels): named with its size and the limit, exit 1 when
    nothing else was read, no picture of it; --max-megapixels moves the limit."""
    from conftest import jpeg_bytes
    from made import png16

    from pipelines.cli import main

    (tmp_path / "bomb.png").write_bytes(png16(8000, 8000))
    (tmp_path / "photo.jpg").write_bytes(jpeg_bytes(300, 200))
    out = tmp_path / "out"
    command = ["detect", "--quiet", "--model", str(stub_tflite), "--out", str(out)]
    assert main([*command, str(tmp_path / "bomb.png")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bomb.png'}: image too large: 8000x8000 is 64 megapixels, over the limit of 50" in err
    assert sorted(p.name for p in out.iterdir()) == ["detections.json"]  # no picture, no temporary file
    skipped = json.loads((out / "detections.json").read_text())["skipped"]
    assert [s["image"] for s in skipped] == [str(tmp_path / "bomb.png")] and "64 megapixels" in skipped[0]["reason"]

    assert main([*command, "--max-megapixels", "0.05", str(tmp_path / "photo.jpg")]) == 1
    assert "300x200 is 0.06 megapixels, over the limit of 0.05" in capsys.readouterr().err
    assert main([*command, str(tmp_path / "photo.jpg")]) == 0
    assert (out / "photo.png").exists()
