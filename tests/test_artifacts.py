"""export.json is a typed record: written whole, read back the same, older exports still read."""

from __future__ import annotations

import json

import pytest

from pipelines.artifacts import EXPORT_REPORT, ExportRecord, export_step
from pipelines.errors import OdliteError

RECORD = ExportRecord(
    meta_architecture="ssd",
    checkpoint="model/ckpt-400",
    step=400,
    input_size=320,
    labels=["normal", "caries"],
    nms={"iou_threshold": 0.6, "score_threshold": 1e-8, "max_detections": 100, "per_class": True},
    variants={"checkpoint": {"AP": 0.8, "AP50": 0.99, "per_class": {}}},
    calibration_images=300,
)


def test_an_export_record_reads_back_as_written(tmp_path):
    RECORD.write(tmp_path)
    assert ExportRecord.read(tmp_path) == RECORD
    assert export_step(tmp_path) == 400
    assert export_step(tmp_path / "elsewhere") is None


def test_an_export_from_before_the_meta_architecture_field_reads_as_the_ssd_it_was(tmp_path):
    written = json.loads(json.dumps(RECORD.__dict__))
    del written["meta_architecture"]
    (tmp_path / EXPORT_REPORT).write_text(json.dumps(written))
    assert ExportRecord.read(tmp_path).meta_architecture == "ssd"


def test_a_folder_without_an_export_record_is_not_an_export(tmp_path):
    with pytest.raises(OdliteError, match="not an odlite export"):
        ExportRecord.read(tmp_path)


def test_an_export_without_a_tflite_model_says_so():
    assert RECORD.tflite_files == []
    with_tflite = {**RECORD.variants, "int8": {"file": "model_int8.tflite", "AP": 0.79, "AP50": 0.99}}
    assert ExportRecord(**{**RECORD.__dict__, "variants": with_tflite}).tflite_files == ["model_int8.tflite"]


@pytest.mark.parametrize(
    ("text", "said"),
    [("{", "line 1: not JSON"), ("[]", "expected a JSON object"), ('{"step": 3}', "missing checkpoint, input_size")],
)
def test_a_broken_export_record_is_refused_naming_the_file(tmp_path, text, said):
    (tmp_path / EXPORT_REPORT).write_text(text)
    with pytest.raises(OdliteError, match=said) as caught:
        ExportRecord.read(tmp_path)
    assert EXPORT_REPORT in str(caught.value)
