"""detectors: each kind of model path reaches its detector, every detector answers in one form (label-map
ids), and a path that is no model is named with the reason. On stub models: nothing is trained."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from made import write_stub_export

from pipelines.detectors import BatchDetections, SavedModelDetector, TFLiteDetector, find_model, load_detector
from pipelines.errors import OdliteError

CARIES = 2  # its label-map id: the stubs' class index 1, line 2 of their labelmap.txt


@pytest.fixture(scope="module")
def stub_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stub") / "export"
    write_stub_export(folder)
    return folder


def test_each_kind_of_path_is_found_as_its_kind(stub_tflite, stub_export, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\n')
    (model_dir / "ckpt-3.index").write_bytes(b"")
    only_best = tmp_path / "only-best"
    (only_best / "best").mkdir(parents=True)
    (only_best / "best" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    found = {
        "tflite": find_model(stub_tflite),
        "export folder": find_model(stub_export),
        "SavedModel": find_model(stub_export / "saved_model"),
        "checkpoint folder": find_model(model_dir),
        "best/ only": find_model(only_best),
        "checkpoint prefix": find_model(model_dir / "ckpt-3"),
    }
    assert {name: (f.kind, f.path, f.checkpoint) for name, f in found.items()} == {
        "tflite": ("tflite", stub_tflite, None),
        "export folder": ("saved_model", stub_export / "saved_model", None),
        "SavedModel": ("saved_model", stub_export / "saved_model", None),
        "checkpoint folder": ("checkpoint", model_dir, None),
        "best/ only": ("checkpoint", only_best, None),
        "checkpoint prefix": ("checkpoint", model_dir, str(model_dir / "ckpt-3")),
    }


def test_a_path_that_is_no_model_is_named_with_the_reason(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    cases = {
        tmp_path / "missing": "no such file or folder",
        tmp_path / "missing.tflite": "no such file or folder",
        tmp_path: "not a model: expected a checkpoint folder, a .tflite or an export folder",
        tmp_path / "notes.txt": "not a model: expected a checkpoint folder, a .tflite or an export folder",
        tmp_path / "broken.tflite": "not a loadable TFLite model",
    }
    for path, reason in cases.items():
        with pytest.raises(OdliteError) as raised:
            load_detector(path)
        assert str(raised.value).startswith(f"{path}: {reason}")


def test_a_tflite_and_a_saved_model_answer_alike_in_label_map_ids(stub_tflite, stub_export):
    tflite, saved_model = load_detector(stub_tflite), load_detector(stub_export)
    assert isinstance(tflite, TFLiteDetector) and isinstance(saved_model, SavedModelDetector)
    assert tflite.input_size == (64, 64) and saved_model.input_size is None
    images = np.stack([np.full((64, 64, 3), 51, np.uint8), np.full((64, 64, 3), 204, np.uint8)])
    for detector in (tflite, saved_model):
        found = detector(images)
        assert isinstance(found, BatchDetections) and found.boxes.shape == (2, 1, 4)
        np.testing.assert_array_equal(found.classes, [[CARIES], [CARIES]])
        np.testing.assert_array_equal(found.count, [1, 1])
        np.testing.assert_allclose(found.scores, [[0.2], [0.8]], atol=1e-6)
        np.testing.assert_allclose(found.boxes[:, 0], [[0.25, 0.25, 0.75, 0.75]] * 2)
        assert detector.labels() == ["normal", "caries"]


def test_a_tflite_reads_the_labels_embedded_in_its_metadata(stub_tflite, tmp_path):
    from pipelines.export.metadata import add_metadata

    (tmp_path / "labelmap.txt").write_text("molar\nincisor\n")
    (tmp_path / "with-metadata").mkdir()
    model = tmp_path / "with-metadata" / "model.tflite"
    model.write_bytes(add_metadata(stub_tflite.read_bytes(), tmp_path / "labelmap.txt"))
    assert load_detector(model).labels() == ["molar", "incisor"]  # with no labelmap.txt beside it
    bare = tmp_path / "bare" / "model.tflite"
    bare.parent.mkdir()
    shutil.copyfile(stub_tflite, bare)
    with pytest.raises(OdliteError, match="no labels: neither embedded metadata nor labelmap.txt beside it"):
        load_detector(bare).labels()


def test_serve_refuses_a_checkpoint_before_reading_it(tmp_path):
    from pipelines.serve import ModelPool

    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    with pytest.raises(OdliteError, match="serve takes an exported .tflite or SavedModel"):
        ModelPool(tmp_path, 1)
