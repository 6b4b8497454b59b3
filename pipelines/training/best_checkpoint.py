"""The best checkpoint of a training run, kept apart from the rotating ones.

The last checkpoint is often not the best (seed 004: 2,000 steps beat 2,500 and 3,000).
``odlite train --eval-every N`` scores checkpoints as it goes; the best by one metric is
copied to ``MODEL_DIR/best/`` with its ``metrics.json`` and the config. That folder is
a model directory of its own (``odlite eval --model-dir DIR/best`` works), the
checkpoint manager never sees it, so rotation cannot delete it, and it is replaced
whole (``atomic_folder``) only by a better one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import tensorflow as tf

from pipelines.artifacts import (
    BEST_DIR,
    CONFIG_NAME,
    METRICS_FILE,
    checkpoint_report_folder,
    checkpoint_step,
    latest_checkpoint,
)
from pipelines.atomic import atomic_folder
from pipelines.errors import OdliteError

OVERALL = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100")
PER_CLASS = ("AP", "AP50")


def check_metric(name: str, labels: list[str]) -> str:
    """``AP``, ``AP50``, ... or ``AP/<class>`` / ``AP50/<class>``: refused with the choices otherwise."""
    kind, _, label = name.partition("/")
    if (not label and kind in OVERALL) or (label and kind in PER_CLASS and label in labels):
        return name
    choices = ", ".join([*OVERALL, *(f"{k}/{label}" for k in PER_CLASS for label in labels)])
    raise OdliteError(f"--best-metric {name!r} is not a metric; choose one of {choices}")


def metric_value(metrics: dict, name: str) -> float:
    kind, _, label = name.partition("/")
    value = metrics["per_class"][label][kind] if label else metrics[kind]
    # pycocotools reports -1 where a metric has nothing to measure (no small objects, say): never best.
    return float(value) if value >= 0 else float("-inf")


def best_folder(model_dir: Path) -> Path:
    return Path(model_dir) / BEST_DIR


def best_checkpoint(model_dir: Path) -> str | None:
    folder = best_folder(model_dir)
    return tf.train.latest_checkpoint(str(folder)) if (folder / "checkpoint").exists() else None


def best_metrics(model_dir: Path) -> dict | None:
    path = best_folder(model_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def chosen_checkpoint(model_dir: Path, checkpoint: str | None = None, say=print) -> str:
    """``checkpoint`` when given, else the best one kept in ``MODEL_DIR/best/``, else the latest; says which."""
    if checkpoint:
        say(f"using checkpoint {checkpoint} (step {checkpoint_step(checkpoint)})")
        return checkpoint
    best = best_checkpoint(model_dir)
    if best:
        metrics = best_metrics(model_dir)
        metric = metrics and metrics["best_metric"]
        score = f", {metric} {metric_value(metrics, metric):.3f}" if metrics else ""
        say(f"using the best checkpoint: step {checkpoint_step(best)}{score} ({best})")
        return best
    latest = latest_checkpoint(model_dir)
    say(f"using the latest checkpoint: step {checkpoint_step(latest)} (no {BEST_DIR}/ kept: train with --eval-every)")
    return latest


class BestKeeper:
    """Offered each evaluated checkpoint; keeps the best and counts evaluations since it improved.

    A resumed run compares against the best already kept, if it was chosen by the same metric, and
    goes on counting from the evaluation reports written after it, so patience spans the resume.
    """

    def __init__(self, model_dir: Path, metric: str):
        self.model_dir, self.metric = Path(model_dir), metric
        kept = best_metrics(self.model_dir)
        same = kept is not None and kept.get("best_metric") == metric and best_checkpoint(self.model_dir)
        self.best = metric_value(kept, metric) if same else float("-inf")
        self.best_step = kept.get("step") if same else None
        self.since_improved = self._evaluations_after(self.best_step) if same else 0

    def _evaluations_after(self, step: int) -> int:
        """Evaluation reports (``DIR/eval/step-N/``, as training and odlite eval write them) after ``step``."""
        pattern = checkpoint_report_folder(self.model_dir, "*")
        reports = pattern.parent.glob(f"{pattern.name}/{METRICS_FILE}")
        return sum(1 for report in reports if checkpoint_step(report.parent.name) > step)

    def offer(self, checkpoint: str, metrics: dict) -> bool:
        """True when ``checkpoint`` is now the best (strictly better, so a tie keeps the earlier step)."""
        value = metric_value(metrics, self.metric)
        if value <= self.best:
            self.since_improved += 1
            return False
        with atomic_folder(best_folder(self.model_dir)) as tmp:
            for part in tf.io.gfile.glob(f"{checkpoint}.*"):
                shutil.copy2(part, tmp / Path(part).name)
            name = Path(checkpoint).name
            (tmp / "checkpoint").write_text(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
            shutil.copy2(self.model_dir / CONFIG_NAME, tmp / CONFIG_NAME)
            kept = {**metrics, "best_metric": self.metric, "checkpoint": str(self.model_dir / BEST_DIR / name)}
            (tmp / METRICS_FILE).write_text(json.dumps(kept, indent=2) + "\n")
        self.best, self.best_step, self.since_improved = value, checkpoint_step(checkpoint), 0
        return True
