"""Every class of bad input: named file and reason, non-zero exit, nothing written; or skipped on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ITEMS, LABEL_MAP, copy_model, jpeg_bytes, records, write_coco, write_images, write_seed
from made import FindsNothing, png16

from pipelines.cli import main


def _json(root, name="b"):
    return root / "json_train" / f"{name}.json"


def _set_region(root, **shape):
    path = _json(root)
    data = json.loads(path.read_text())
    data["annotation"]["regions"][0]["shape_attributes"].update(shape)
    path.write_text(json.dumps(data))


def _drop_key(root):
    path = _json(root)
    data = json.loads(path.read_text())
    del data["annotation"]["regions"][0]["shape_attributes"]["width"]
    path.write_text(json.dumps(data))


def _nan(root):
    path = _json(root)
    path.write_text(path.read_text().replace('"x": 10', '"x": NaN'))


def _label(root, label):
    path = _json(root)
    data = json.loads(path.read_text())
    data["annotation"]["regions"][0]["region_attributes"]["label"] = label
    path.write_text(json.dumps(data))


def _truncate(root):
    image = root / "img_train" / "b.jpg"
    image.write_bytes(image.read_bytes()[: len(image.read_bytes()) // 2])


# (mutation of image "b" of a seed-format dataset, file named in the message, reason fragment)
CASES = {
    "malformed-json": (lambda r: _json(r).write_text('{"annotation": {'), "json_train/b.json", "malformed JSON"),
    "missing-key": (_drop_key, "json_train/b.json", "missing key 'width'"),
    "non-numeric": (lambda r: _set_region(r, x="ten"), "json_train/b.json", "'x' is 'ten', not a number"),
    "nan": (_nan, "json_train/b.json", "not a finite number"),
    "zero-box": (lambda r: _set_region(r, width=0), "json_train/b.json", "zero or negative size"),
    "negative-box": (lambda r: _set_region(r, height=-5), "json_train/b.json", "zero or negative size"),
    "far-outside": (lambda r: _set_region(r, x=200), "json_train/b.json", "lies 100% outside the 80x60 image"),
    "mostly-outside": (lambda r: _set_region(r, x=70, width=30), "json_train/b.json", "67% outside the 80x60 image"),
    "corrupt-image": (
        lambda r: (r / "img_train" / "b.jpg").write_bytes(b"\x00garbage" * 50),
        "img_train/b.jpg",
        "not an image",
    ),
    "truncated-image": (_truncate, "img_train/b.jpg", "truncated"),
    "missing-image": (lambda r: (r / "img_train" / "b.jpg").unlink(), "json_train/b.json", "without its image"),
    "empty-json": (lambda r: _json(r).write_text(""), "json_train/b.json", "empty file"),
    "empty-image": (lambda r: (r / "img_train" / "b.jpg").write_bytes(b""), "img_train/b.jpg", "empty file"),
    "unknown-label": (lambda r: _label(r, "molar"), "json_train/b.json", "known labels: normal, caries"),
    "wrong-shape": (lambda r: _set_region(r, name="point"), "json_train/b.json", "'point' is not supported"),
    "too-many-pixels": (  # a 125 KB PNG that decodes to 128 MB, refused from its header
        lambda r: (r / "img_train" / "b.jpg").write_bytes(png16(8000, 8000)),
        "img_train/b.jpg",
        "image too large: 8000x8000 is 64 megapixels, over the limit of 50 (--max-megapixels)",
    ),
}


@pytest.fixture
def dataset(tmp_path):
    return write_seed(tmp_path / "src")


def _convert(src, out, *extra):
    return main(["convert", str(src), "--out", str(out), "--label-map", str(LABEL_MAP), "--quiet", *extra])


@pytest.mark.parametrize("case", list(CASES))
def test_strict_mode_reports_and_writes_nothing(dataset, tmp_path, capsys, case):
    mutate, named, reason = CASES[case]
    mutate(dataset)
    out = tmp_path / "out"
    assert _convert(dataset, out) == 1
    err = capsys.readouterr().err
    assert named in err and reason in err, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"], "temporary output left behind"


@pytest.mark.parametrize("case", list(CASES))
def test_skip_invalid_converts_the_rest(dataset, tmp_path, capsys, case):
    mutate, named, reason = CASES[case]
    mutate(dataset)
    out = tmp_path / "out"
    assert _convert(dataset, out, "--skip-invalid", "--val-fraction", "0") == 0
    assert sorted(records(out)) == ["a.jpg", "c.jpg", "d.jpg"]
    skipped = json.loads((out / "summary.json").read_text())["skipped"]
    assert len(skipped) == 1 and skipped[0]["file"].endswith(named) and reason in skipped[0]["reason"]
    assert named in capsys.readouterr().err


def test_all_problems_are_listed_at_once(dataset, tmp_path, capsys):
    CASES["zero-box"][0](dataset)
    (dataset / "img_train" / "d.jpg").write_bytes(b"not a jpeg")
    assert _convert(dataset, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "2 invalid input file(s)" in err and "b.json" in err and "d.jpg" in err


def test_a_box_mostly_inside_is_clipped_with_a_warning_and_counted(dataset, tmp_path, capsys):
    _set_region(dataset, x=60, width=30)  # b is 80 px wide: 10 of the box's 30 px stick out
    assert _convert(dataset, tmp_path / "out", "--val-fraction", "0") == 0
    captured = capsys.readouterr()
    assert "overhangs the 80x60 image: clipped, keeping 67% of it" in captured.err
    assert "1 box(es) overhanging their image clipped" in captured.out
    example = records(tmp_path / "out")["b.jpg"]
    assert example["image/object/bbox/xmin"][0] == pytest.approx(0.75)
    assert example["image/object/bbox/xmax"][0] == pytest.approx(1.0)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["clipped_boxes"] == 1 and summary["skipped"] == []
    warning = summary["warnings"][0]
    assert warning["file"].endswith("b.json") and warning["where"] == "annotation.regions[0]"


def test_existing_output_is_kept_without_overwrite(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert _convert(dataset, out) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"
    assert _convert(dataset, out, "--overwrite") == 0
    assert not (out / "precious.txt").exists() and (out / "summary.json").exists()


def test_failed_overwrite_keeps_the_old_output(dataset, tmp_path):
    out = tmp_path / "out"
    assert _convert(dataset, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _truncate(dataset)
    assert _convert(dataset, out, "--overwrite") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_coco_with_unknown_category_and_missing_image(tmp_path, capsys):
    src = write_coco(tmp_path / "coco" / "instances.json")
    data = json.loads(src.read_text())
    data["annotations"][0]["category_id"] = 99
    data["images"][1]["file_name"] = "nowhere.jpg"
    src.write_text(json.dumps(data))
    assert main(["convert", str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "instances.json:annotations[0]: category_id 99 is not among 'categories'" in err
    assert "instances.json:images[1]: image 'nowhere.jpg' not found" in err


def test_malformed_voc_names_line_and_column(tmp_path, capsys):
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "x.jpg").write_bytes(jpeg_bytes(10, 10))
    (tmp_path / "voc" / "x.xml").write_text("<annotation>\n<filename>x.jpg</filename>\n<object>\n</annotation>")
    assert main(["convert", str(tmp_path / "voc"), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "x.xml:4:2: malformed XML" in err


def test_bad_label_map_is_reported_with_line(tmp_path, dataset, capsys):
    bad = tmp_path / "labels.pbtxt"
    bad.write_text("item {\n  id: 1\n  name: 'normal'\n  colour: 'red'\n}\n")
    assert main(["convert", str(dataset), "--out", str(tmp_path / "out"), "--label-map", str(bad)]) == 1
    assert f"{bad}:4:3:" in capsys.readouterr().err


def test_missing_source_and_bad_options(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    write_seed(tmp_path / "src", items=ITEMS[:1])
    assert main(["convert", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--val-fraction", "1.5"]) == 1
    assert "--val-fraction must be in [0, 1)" in capsys.readouterr().err


# --- an output never takes the place of an input -----------------------------------------------------


def _tree(folder):
    """Every file under ``folder`` with its bytes: to show an input is left byte for byte."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_into_its_own_source_is_refused_and_the_source_kept(dataset, tmp_path, capsys):
    before = _tree(dataset)
    assert _convert(dataset, dataset, "--overwrite") == 1
    err = capsys.readouterr().err
    assert (
        f"odlite convert: error: {dataset}: is the source data ({dataset}): writing or replacing the output "
        "could destroy it; choose a place apart from the inputs (nothing was written)"
    ) in err
    assert _tree(dataset) == before
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


@pytest.mark.parametrize(
    "out, relation",
    [
        ("src/records", "lies inside the source data"),  # the next convert of src would read the records
        (".", "holds the source data"),  # replacing it would delete src
        ("link", "is the source data"),  # a symlink to the source is the source
        ("labels", "holds the label map"),
    ],
)
def test_convert_output_overlapping_an_input_is_refused(dataset, tmp_path, capsys, out, relation):
    (tmp_path / "link").symlink_to(dataset)
    (tmp_path / "labels").mkdir()
    label_map = tmp_path / "labels" / "map.pbtxt"
    label_map.write_bytes(LABEL_MAP.read_bytes())
    before = _tree(tmp_path)
    target = tmp_path / out
    assert main(["convert", str(dataset), "--out", str(target), "--label-map", str(label_map), "--overwrite"]) == 1
    assert f"{target}: {relation}" in capsys.readouterr().err
    assert _tree(tmp_path) == before and not (dataset / "records").exists()


def test_images_found_elsewhere_are_inputs_too(tmp_path, capsys):
    src = write_coco(tmp_path / "coco" / "instances.json")  # its images beside it, in coco/
    assert main(["convert", str(src), "--out", str(tmp_path / "coco" / "records"), "--quiet"]) == 1
    assert f"lies inside the images folder ({src.parent})" in capsys.readouterr().err
    assert not (tmp_path / "coco" / "records").exists()


def test_detect_refuses_to_draw_over_its_images(tmp_path, capsys, monkeypatch):
    import pipelines.detect as detect_module

    photos = tmp_path / "in" / "photos"
    write_images(photos)
    before = _tree(photos)
    model = tmp_path / "m.tflite"
    finds_nothing = detect_module.Model(FindsNothing(model), ["caries"])
    monkeypatch.setattr(detect_module, "load_model", lambda path, checkpoint=None: finds_nothing)
    assert main(["detect", "--model", str(model), str(photos), "--out", str(photos)]) == 1
    assert f"{photos}: is the images folder ({photos})" in capsys.readouterr().err
    pattern = str(photos / "*.jpg")
    assert main(["detect", "--model", str(model), pattern, "--out", str(photos.parent)]) == 1
    assert f"{photos.parent}: holds the image ({photos / 'a.jpg'})" in capsys.readouterr().err
    assert main(["detect", "--model", str(model), str(photos), "--out", str(photos / "boxes")]) == 1
    assert f"{photos / 'boxes'}: lies inside the images folder" in capsys.readouterr().err
    assert _tree(photos) == before and [p.name for p in photos.parent.iterdir()] == ["photos"]
    assert main(["detect", "--model", str(model), str(photos), "--out", str(tmp_path / "out"), "--quiet"]) == 0


def test_train_refuses_a_model_dir_holding_the_data(tiny_config, capsys):
    from pipelines.config.experiment import load_train_spec

    data = Path(load_train_spec(tiny_config).train_paths[0]).parent
    before = _tree(data)
    for model_dir in (data, data.parent):
        assert main(["train", "--config", str(tiny_config), "--model-dir", str(model_dir), "--quiet"]) == 1
        assert f"{model_dir}: holds the training data ({data}/train-" in capsys.readouterr().err
    assert _tree(data) == before


def test_eval_refuses_to_replace_the_model_dir_or_the_data(tiny_model, tiny_config, tmp_path, capsys):
    from pipelines.config.experiment import load_train_spec

    model_dir = copy_model(tiny_model, tmp_path / "m")
    data = Path(load_train_spec(tiny_config).eval_paths[0]).parent
    before = _tree(model_dir), _tree(data)
    assert main(["eval", "--model-dir", str(model_dir), "--out", str(model_dir), "--quiet"]) == 1
    assert f"{model_dir}: is the model directory ({model_dir})" in capsys.readouterr().err
    assert main(["eval", "--model-dir", str(model_dir), "--out", str(data), "--quiet"]) == 1
    assert f"{data}: holds the training data" in capsys.readouterr().err
    assert (_tree(model_dir), _tree(data)) == before


def test_package_refuses_an_archive_inside_the_export(tmp_path, capsys):
    export_dir = tmp_path / "tooth"
    export_dir.mkdir()
    (export_dir / "export.json").write_text("{}")
    assert main(["package", str(export_dir), "--out", str(export_dir / "tooth.tar.gz")]) == 1
    assert "lies inside the export folder" in capsys.readouterr().err
    assert [p.name for p in export_dir.iterdir()] == ["export.json"]


def test_max_megapixels_moves_the_limit(dataset, tmp_path, capsys):
    # b is 80x60, 4800 pixels; the other images are smaller
    assert _convert(dataset, tmp_path / "out", "--max-megapixels", "0.0045") == 1
    assert (
        "img_train/b.jpg: image too large: 80x60 is 0.0048 megapixels, over the limit of 0.0045"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()
    assert _convert(dataset, tmp_path / "out", "--max-megapixels", "0.0048") == 0
