"""The layout of the folders stages hand to each other: a model directory and an export folder.

A model directory (``odlite train --model-dir``) holds ``pipeline.config`` (the config it
was trained with) and TF2 checkpoints ``ckpt-N``. An export folder (``odlite export
--out``) holds the SavedModel, the ``.tflite`` variants, ``labelmap.txt``, the config and
``export.json``. Every stage that reads one finds its parts here.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import tensorflow as tf

from pipelines.atomic import matched
from pipelines.errors import OdliteError

CONFIG_NAME = "pipeline.config"
LABELS_FILE = "labelmap.txt"
EXPORT_REPORT = "export.json"
REPORT_PAGE = "report.md"  # an evaluation's and an export's report, for people
METRICS_FILE = "metrics.json"  # an evaluation's metrics, for programs
BEST_DIR = "best"  # MODEL_DIR/best: the best checkpoint by a metric, with its metrics.json
# The TFLite variants of an export, by name.
TFLITE_FILES = {"fp32": "model.tflite", "fp16": "model_fp16.tflite", "int8": "model_int8.tflite"}
FIRST_LABEL_ID = 1  # label-map ids count from 1 (0 is the background): labelmap.txt's first line names id 1


def checkpoint_step(checkpoint: str) -> int:
    """The step in a checkpoint prefix such as ``model/ckpt-400`` (0 for a name without one)."""
    name = Path(checkpoint).name
    return int(name.rsplit("-", 1)[1]) if "-" in name and name.rsplit("-", 1)[1].isdigit() else 0


def checkpoints(model_dir: Path) -> list[str]:
    """The model directory's checkpoints whose files are there, oldest first.

    ``tf.train.latest_checkpoint`` answers None when the newest one the ``checkpoint`` file names
    was deleted (as a broken one is), and training would then start again silently instead of
    resuming from the one before it.
    """
    state = tf.train.get_checkpoint_state(str(model_dir))
    if state is None:
        return []
    latest = state.model_checkpoint_path  # last, as tf.train.latest_checkpoint takes it when its files are there
    named = [*(path for path in state.all_model_checkpoint_paths if path != latest), latest]
    return [path for path in named if path and tf.io.gfile.exists(f"{path}.index")]


def newest_checkpoint(model_dir: Path) -> str | None:
    found = checkpoints(model_dir)
    return found[-1] if found else None


def latest_checkpoint(model_dir: Path) -> str:
    checkpoint = newest_checkpoint(model_dir)
    if checkpoint is None:
        raise OdliteError.at(model_dir, "no checkpoint here (train first: odlite train)")
    return checkpoint


def resolve_config(config_path, folder: Path) -> Path:
    """``config_path`` when given, else the config saved in the model directory or export folder."""
    if config_path:
        return Path(config_path)
    if (folder / CONFIG_NAME).exists():
        return folder / CONFIG_NAME
    raise OdliteError.at(folder, f"no {CONFIG_NAME} here; pass --config")


def checkpoint_report_folder(model_dir: Path, step: int | str) -> Path:
    """Where a checkpoint's evaluation report goes: ``DIR/eval/step-N`` (odlite eval, training, browse)."""
    return Path(model_dir) / "eval" / f"step-{step}"


def export_report_folder(model: Path) -> Path:
    """Where an exported model's evaluation report goes: ``EXPORT/eval/<model name>``."""
    return model.parent / "eval" / model.stem


def label_lines(labels: dict[int, str]) -> list[str]:
    """labelmap.txt: line i names class index i, which is label-map id i + FIRST_LABEL_ID ("???" for unused ids)."""
    return [labels.get(i, "???") for i in range(FIRST_LABEL_ID, max(labels) + 1)]


def labels_by_id(lines: list[str]) -> dict[int, str]:
    """labelmap.txt's lines by label-map id: what ``label_lines`` wrote."""
    return dict(enumerate(lines, start=FIRST_LABEL_ID))


@dataclass
class ExportRecord:
    """export.json: what an export was made from and how each of its models scored. Written whole by
    export; read by package, eval and browse. ``variants`` maps "checkpoint", "saved_model" or a TFLite
    variant to its scores (and, for a .tflite, its file, size, latency and MediaPipe check)."""

    meta_architecture: str  # "ssd" (TFLite and the Android package) or "faster_rcnn" (a SavedModel)
    checkpoint: str
    step: int
    input_size: int | list[int]  # the SSD's square side; Faster R-CNN's [min, max] resize dimensions
    labels: list[str]  # labelmap.txt's lines
    nms: dict
    variants: dict[str, dict]
    calibration_images: int = 0  # training images the int8 model was calibrated on; 0 without one

    @property
    def tflite_files(self) -> list[str]:
        """The export's .tflite models (none for a SavedModel-only export)."""
        return [v["file"] for v in self.variants.values() if str(v.get("file", "")).endswith(".tflite")]

    def write(self, folder: Path) -> None:
        (folder / EXPORT_REPORT).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> ExportRecord:
        info = Path(folder) / EXPORT_REPORT
        if not info.exists():
            raise OdliteError.at(folder, "not an odlite export (no export.json); run odlite export first")
        try:
            found = json.loads(info.read_text())
        except json.JSONDecodeError as exc:
            raise OdliteError.at(info, f"line {exc.lineno}: not JSON ({exc.msg})") from None
        if not isinstance(found, dict):
            raise OdliteError.at(info, "not an export record: expected a JSON object")
        found.setdefault("meta_architecture", "ssd")  # exports from before the field were all SSD's
        required = [f.name for f in fields(cls) if f.default is MISSING]
        if missing := [name for name in required if name not in found]:
            raise OdliteError.at(info, f"missing {', '.join(missing)}: not an export.json that odlite export wrote")
        return cls(**{f.name: found[f.name] for f in fields(cls) if f.name in found})


def export_step(folder: Path) -> int | None:
    """The checkpoint step an export was made from, if it has an export.json."""
    return ExportRecord.read(folder).step if (Path(folder) / EXPORT_REPORT).exists() else None


def latest_export(root: Path = Path("exported")) -> Path:
    """The most recently written ``exported/*/model_int8.tflite`` (or any .tflite there)."""
    candidates = sorted(root.glob(f"*/{TFLITE_FILES['int8']}"), key=lambda p: p.stat().st_mtime) or sorted(
        root.glob("*/*.tflite"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise OdliteError.at(root, "no exported .tflite here; run odlite export first or pass --model")
    return candidates[-1]


def glob_inputs(patterns: list[str], what: str) -> list[str]:
    files = sorted({f for pattern in patterns for f in tf.io.gfile.glob(pattern)})
    if not files:
        shown = ", ".join(repr(p) for p in patterns)
        raise OdliteError(f"{what} input_path {shown} matches no files (convert the data first: odlite convert)")
    return files


def config_inputs(spec) -> list[tuple[str, str]]:
    """What a TrainSpec reads, as ``refuse_overlap`` takes it: the records, the label map and the
    fine-tune checkpoint."""
    return [
        *matched("training data", spec.train_paths),
        *matched("validation data", spec.eval_paths),
        ("label map", spec.label_map_path),
        ("fine_tune_checkpoint", spec.fine_tune_checkpoint),
    ]
