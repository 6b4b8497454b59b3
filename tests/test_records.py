"""TFRecords: Model Garden reads them back, same inputs give the same bytes, inspect counts them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import LABEL_MAP, records, write_seed

from pipelines.cli import main
from pipelines.config.label_map import format_label_map, parse_label_map
from pipelines.data.convert import convert
from pipelines.data.inspect_data import inspect_records
from pipelines.data.sample_data import generate


def test_model_garden_decoder_reads_back_boxes_and_labels(sample_converted):
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    decoder = TfExampleDecoder()
    shard = next(sample_converted.glob("train-*.tfrecord"))
    checked = 0
    for raw, example in zip(tf.data.TFRecordDataset(str(shard)), records(sample_converted, "train").values()):
        decoded = decoder.decode(raw)
        ours = np.stack([example[f"image/object/bbox/{k}"] for k in ("ymin", "xmin", "ymax", "xmax")], axis=-1)
        np.testing.assert_allclose(decoded["groundtruth_boxes"].numpy().reshape(-1, 4), ours.reshape(-1, 4))
        np.testing.assert_array_equal(decoded["groundtruth_classes"].numpy(), example["image/object/class/label"])
        assert decoded["image"].shape[:2] == (example["image/height"], example["image/width"])
        assert int(decoded["source_id"].numpy()) > 0
        checked += len(ours)
    assert checked > 10


def test_sample_records_match_the_sample_annotations(sample_src, sample_converted):
    assert (len(records(sample_converted, "train")), len(records(sample_converted, "val"))) == (16, 6)
    annotation = json.loads((sample_src / "json_val" / "tooth_0001.json").read_text())
    regions = annotation["annotation"]["regions"]
    example = records(sample_converted, "val")["tooth_0001.jpg"]
    assert example["image/filename"] == b"img_val/tooth_0001.jpg"
    assert example["image/encoded"] == (sample_src / "img_val" / "tooth_0001.jpg").read_bytes()
    w = example["image/width"]
    assert [round(x * w) for x in example["image/object/bbox/xmin"]] == [r["shape_attributes"]["x"] for r in regions]


def test_same_inputs_and_seed_give_identical_bytes(sample_src, sample_converted, tmp_path):
    convert(sample_src, tmp_path / "again", label_map_path=LABEL_MAP, progress=False, workers=1)
    for path in sample_converted.iterdir():
        if path.is_file():
            assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name


def test_random_split_is_seeded_and_stable(tmp_path):
    src = tmp_path / "src"
    generate(src, seed=3, splits={"all": 20})
    (src / "img_all").rename(src / "img")
    (src / "json_all").rename(src / "json")

    def val_names(out, seed, **kw):
        convert(src, out, label_map_path=LABEL_MAP, seed=seed, val_fraction=0.25, progress=False, **kw)
        return sorted(records(out, "val"))

    first = val_names(tmp_path / "a", seed=1)
    assert len(first) == 5
    assert val_names(tmp_path / "b", seed=1, num_shards=3) == first
    assert val_names(tmp_path / "c", seed=2) != first
    assert len(list((tmp_path / "b").glob("train-*-of-00003.tfrecord"))) == 3


def test_inspect_counts_and_draws(sample_converted, tmp_path):
    summary = json.loads((sample_converted / "summary.json").read_text())
    result = inspect_records(sample_converted, samples=2, out=tmp_path / "pictures")
    for split, counts in result.splits.items():
        assert counts.images == summary["splits"][split]["images"]
        assert dict(counts.boxes) == {k: v for k, v in summary["splits"][split]["boxes"].items() if v}
        assert counts.anomalies == []
    assert len(result.pictures) == 4 and all(p.stat().st_size > 0 for p in result.pictures)


def test_inspect_flags_records_from_elsewhere_with_bad_boxes(tmp_path, capsys):
    from conftest import jpeg_bytes

    from pipelines.data.images import prepare_image
    from pipelines.data.tfrecord import feature_spec  # noqa: F401  (the keys inspect reads)

    image = prepare_image(jpeg_bytes(10, 10))
    feature = tf.train.Feature
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": feature(bytes_list=tf.train.BytesList(value=[image.jpeg])),
                "image/object/bbox/xmin": feature(float_list=tf.train.FloatList(value=[0.5])),
                "image/object/bbox/xmax": feature(float_list=tf.train.FloatList(value=[1.5])),
                "image/object/bbox/ymin": feature(float_list=tf.train.FloatList(value=[0.1])),
                "image/object/bbox/ymax": feature(float_list=tf.train.FloatList(value=[0.2])),
                "image/object/class/label": feature(int64_list=tf.train.Int64List(value=[5])),
            }
        )
    )
    (tmp_path / "data").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "data" / "train.record")) as writer:
        writer.write(example.SerializeToString())
    (tmp_path / "data" / "label_map.pbtxt").write_text(format_label_map({1: "normal"}))
    assert main(["inspect", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "not in [0, 1]" in err and "class id 5, not in the label map" in err
    assert "not drawn" not in err
    assert main(["inspect", str(tmp_path / "data"), "--max-megapixels", "0.00005"]) == 1
    assert "record 1: not drawn: image too large: 10x10 is 0.0001 megapixels" in capsys.readouterr().err


def test_label_map_round_trip_and_errors():
    labels = {1: "normal", 2: "caries"}
    assert parse_label_map(format_label_map(labels)) == labels
    assert parse_label_map("item { id: 2 name: 'b' } item { id: 1 name: 'a' display_name: 'A' }") == {1: "a", 2: "b"}
    for text, reason in [
        ("item { id: 0 name: 'x' }", "ids start at 1"),
        ("item { id: 1 name: 'x' } item { id: 1 name: 'y' }", "id 1 is used twice"),
        ("item { id: 1 name: 'x' } item { id: 2 name: 'x' }", "name 'x' is used twice"),
        ("item { id: 1 }", "needs both 'id' and 'name'"),
        ("", "no items"),
        ("item { id: 1 name: 'x' keypoints {} }", 'no field named "keypoints"'),
    ]:
        with pytest.raises(Exception, match=reason):
            parse_label_map(text, "m.pbtxt")


def test_sample_dataset_is_deterministic_and_plausible(tmp_path):
    generate(tmp_path / "one", seed=7, splits={"train": 12})
    generate(tmp_path / "two", seed=7, splits={"train": 12})
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 24
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    labels = [
        r["region_attributes"]["label"]
        for p in (tmp_path / "one" / "json_train").glob("*.json")
        for r in json.loads(p.read_text())["annotation"]["regions"]
    ]
    assert {"normal", "caries"} <= set(labels) and len(labels) > 24


def test_console_command_runs(sample_src, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "convert", str(sample_src), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "| train" in done.stdout and "caries" in done.stdout
    write_seed(tmp_path / "s")
    again = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "convert", str(tmp_path / "s"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
