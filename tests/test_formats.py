"""Each annotation format converts to the same records."""

from __future__ import annotations

import json

import pytest
from conftest import (
    ITEMS,
    LABEL_MAP,
    expected_boxes,
    record_boxes,
    records,
    voc_xml,
    write_coco,
    write_seed,
    write_via,
    write_voc,
)

from pipelines.config.label_map import read_label_map
from pipelines.data.convert import convert


def _check_all_items(out, items=ITEMS):
    found = records(out)
    assert sorted(found) == sorted(f"{i.name}.jpg" for i in items)
    for item in items:
        example = found[f"{item.name}.jpg"]
        assert (example["image/width"], example["image/height"]) == (item.width, item.height)
        got, want = record_boxes(example), expected_boxes(item)
        assert [g[0] for g in got] == [w[0] for w in want]
        for g, w in zip(got, want):
            assert g[1:] == pytest.approx(w[1:], abs=1e-6)
        ids = {"normal": 1, "caries": 2}
        assert list(example["image/object/class/label"]) == [ids[b[0]] for b in item.boxes]


@pytest.mark.parametrize(
    "writer",
    [
        pytest.param(lambda root: write_seed(root), id="seed-json"),
        pytest.param(lambda root: write_coco(root / "ann" / "instances.json"), id="coco"),
        pytest.param(lambda root: write_via(root / "via" / "project.json"), id="via2-project"),
        pytest.param(lambda root: write_via(root / "via" / "export.json", project=False), id="via1-export"),
        pytest.param(lambda root: write_voc(root), id="voc"),
    ],
)
def test_each_format_gives_the_same_records(tmp_path, writer):
    src = writer(tmp_path / "src")
    out = tmp_path / "out"
    result = convert(src, out, label_map_path=LABEL_MAP, val_fraction=0.0, progress=False)
    _check_all_items(out)
    assert read_label_map(out / "label_map.pbtxt") == {1: "normal", 2: "caries"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == result.format
    assert summary["splits"]["train"]["images"] == len(ITEMS)
    assert summary["splits"]["train"]["boxes"] == {"normal": 3, "caries": 2}
    assert summary["splits"]["train"]["images_without_boxes"] == 1


def test_coco_keeps_its_category_ids_and_image_ids(tmp_path):
    src = write_coco(tmp_path / "coco" / "train.json")
    data = json.loads(src.read_text())
    data["categories"] = [{"id": 7, "name": "normal"}, {"id": 3, "name": "caries"}]
    for ann in data["annotations"]:
        ann["category_id"] = {1: 7, 2: 3}[ann["category_id"]]
    src.write_text(json.dumps(data))
    convert(src, tmp_path / "out", val_fraction=0.0, progress=False)
    assert read_label_map(tmp_path / "out" / "label_map.pbtxt") == {3: "caries", 7: "normal"}
    found = records(tmp_path / "out")
    assert found["a.jpg"]["image/source_id"] == b"10"
    assert list(found["a.jpg"]["image/object/class/label"]) == [7, 3]


def test_derived_label_map_is_sorted_names(tmp_path):
    convert(write_seed(tmp_path / "src"), tmp_path / "out", val_fraction=0.0, progress=False)
    assert read_label_map(tmp_path / "out" / "label_map.pbtxt") == {1: "caries", 2: "normal"}


def test_seed_split_folders_are_kept(tmp_path):
    src = write_seed(tmp_path / "src", "train", ITEMS[:3])
    write_seed(src, "val", ITEMS[3:])
    result = convert(src, tmp_path / "out", label_map_path=LABEL_MAP, progress=False)
    assert {k: v.images for k, v in result.splits.items()} == {"train": 3, "val": 1}
    assert sorted(records(tmp_path / "out", "val")) == ["d.jpg"]


def test_split_subfolders_and_voc_imagesets(tmp_path):
    write_voc(tmp_path / "folders" / "train", ITEMS[:2])
    write_voc(tmp_path / "folders" / "val", ITEMS[2:])
    result = convert(tmp_path / "folders", tmp_path / "out1", label_map_path=LABEL_MAP, progress=False)
    assert {k: v.images for k, v in result.splits.items()} == {"train": 2, "val": 2}

    voc = write_voc(tmp_path / "voc")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\nb\nc\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("d\n")
    result = convert(voc, tmp_path / "out2", label_map_path=LABEL_MAP, progress=False)
    assert {k: v.images for k, v in result.splits.items()} == {"train": 3, "val": 1}


def test_coco_files_named_by_split(tmp_path):
    write_coco(tmp_path / "coco" / "instances_train.json", ITEMS[:3])
    write_coco(tmp_path / "coco" / "instances_val.json", ITEMS[3:])
    result = convert(tmp_path / "coco", tmp_path / "out", progress=False)
    assert {k: v.images for k, v in result.splits.items()} == {"train": 3, "val": 1}


def test_seed_pairs_by_natural_order_when_names_differ(tmp_path):
    src = tmp_path / "src"
    write_seed(src, "train", ITEMS)
    for n, item in enumerate(ITEMS, start=1):  # images renamed img1.jpg..img4.jpg, JSON keeps a..d
        (src / "img_train" / f"{item.name}.jpg").rename(src / "img_train" / f"img{n}.jpg")
    result = convert(src, tmp_path / "out", label_map_path=LABEL_MAP, progress=False)
    assert any("natural sort order" in w.reason for w in result.warnings)
    found = records(tmp_path / "out")
    assert (found["img2.jpg"]["image/width"], found["img2.jpg"]["image/height"]) == (80, 60)


def test_voc_difficult_flag_and_image_lookup_by_images_option(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    xml = voc_xml(ITEMS[0]).replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1)
    (ann / "a.xml").write_text(xml)
    write_voc(tmp_path / "elsewhere", ITEMS[:1])
    convert(
        ann, tmp_path / "out", images=tmp_path / "elsewhere", label_map_path=LABEL_MAP, val_fraction=0.0, progress=False
    )
    example = records(tmp_path / "out")["a.jpg"]
    assert list(example["image/object/difficult"]) == [1, 0]
