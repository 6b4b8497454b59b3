"""The evaluation stage: COCO metrics of a checkpoint on the validation TFRecords.

Ground truth comes straight from the TFRecords and the metrics from pycocotools, the
reference implementation, with boxes in each image's own pixels; any detector that
maps a batch of uint8 images to normalised boxes can be scored the same way (a
checkpoint here; an exported model likewise). Outputs: ``metrics.json``, a
``report.md`` with the per-class table, precision-recall curves and a confusion
matrix as PNG, validation pictures with ground truth and predictions, and the
numbers in TensorBoard.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines import defaults
from pipelines.artifacts import (
    checkpoint_report_folder,
    checkpoint_step,
    config_inputs,
    export_report_folder,
    export_step,
    glob_inputs,
    latest_checkpoint,
    resolve_config,
)
from pipelines.atomic import refuse_overlap
from pipelines.config.experiment import TrainSpec, load_train_spec
from pipelines.config.label_map import read_label_map
from pipelines.console import progress_bar
from pipelines.data.images import DEFAULT_MAX_PIXELS
from pipelines.data.resize import resize_to_input
from pipelines.data.tfrecord import decode_for_input, feature_spec
from pipelines.detectors import BatchDetections, CheckpointDetector, export_detector, pipeline_input_size
from pipelines.reports.error_analysis import iou

COCO_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100"]
COCO_NAMES += ["AR_small", "AR_medium", "AR_large"]
CONFUSION_IOU = 0.5


@dataclass
class Detections:
    """Per image: ground truth and detections, boxes in pixels [xmin, ymin, xmax, ymax]."""

    images: list[dict] = field(default_factory=list)  # id, width, height, filename, jpeg
    truth: list[dict] = field(default_factory=list)  # image_id, box, label, is_crowd, area
    found: list[dict] = field(default_factory=list)  # image_id, box, label, score


def eval_dataset(paths: list[str], input_size: int | None, batch_size: int, limit: int = 0) -> tf.data.Dataset:
    """Validation records as (uint8 images resized to the model input, ground truth), in file order;
    with no ``input_size``, the images as they are, one per batch (the detector resizes)."""
    spec = feature_spec()
    spec["image/object/is_crowd"] = tf.io.VarLenFeature(tf.int64)

    def parse(raw):
        ex = tf.io.parse_single_example(raw, spec)
        # Decoded no larger than the input needs; ground truth stays in the full image's pixels.
        image, height, width = decode_for_input(ex["image/encoded"], input_size)
        resized = resize_to_input(image, input_size) if input_size else image
        dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in ex.items()}
        dense["image/height"], dense["image/width"] = height, width
        return resized, dense

    dataset = tf.data.TFRecordDataset(paths)
    if limit:
        dataset = dataset.take(limit)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.padded_batch(batch_size if input_size else 1).prefetch(2)


def run_detector(detect, paths, input_size: int, batch_size: int = 8, limit: int = 0, progress=True) -> Detections:
    result = Detections()
    total = sum(1 for path in paths for _ in tf.data.TFRecordDataset(path))
    total = min(total, limit) if limit else total
    bar = progress_bar(total=total, unit="img", desc="eval", disable=not progress)
    with bar:
        for images, gt in eval_dataset(paths, input_size, batch_size, limit):
            found = detect(images)
            for i in range(images.shape[0]):
                _collect(result, {k: v[i].numpy() for k, v in gt.items()}, found, i)
                bar.update(1)
    return result


def _collect(result: Detections, gt: dict, found: BatchDetections, i: int) -> None:
    """Image ``i`` of the batch: its ground truth ``gt`` and the detector's ``found`` on it."""
    image_id = len(result.images) + 1
    h, w = int(gt["image/height"]), int(gt["image/width"])
    result.images.append(
        {
            "id": image_id,
            "width": w,
            "height": h,
            "filename": gt["image/filename"].decode(),
            "jpeg": gt["image/encoded"],
        }
    )
    # Batching pads each image's boxes with label 0 (the background, never a label-map id): not ground truth.
    n = int(np.count_nonzero(gt["image/object/class/label"]))
    crowd = gt["image/object/is_crowd"][:n] if len(gt["image/object/is_crowd"]) >= n else np.zeros(n, int)
    for j in range(n):
        box = [gt["image/object/bbox/xmin"][j] * w, gt["image/object/bbox/ymin"][j] * h]
        box += [gt["image/object/bbox/xmax"][j] * w, gt["image/object/bbox/ymax"][j] * h]
        label = int(gt["image/object/class/label"][j])
        result.truth.append({"image_id": image_id, "box": box, "label": label, "is_crowd": int(crowd[j])})
    for j in range(int(found.count[i])):
        ymin, xmin, ymax, xmax = np.clip(found.boxes[i, j], 0.0, 1.0)
        result.found.append(
            {
                "image_id": image_id,
                "box": [float(xmin * w), float(ymin * h), float(xmax * w), float(ymax * h)],
                "label": int(found.classes[i, j]),
                "score": float(found.scores[i, j]),
            }
        )


def _xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def coco_evaluate(detections: Detections, labels: dict[int, str]) -> tuple[dict, COCOeval]:
    """pycocotools' bbox metrics, overall and per class."""
    coco = COCO()
    coco.dataset = {
        "images": [{k: v for k, v in im.items() if k in ("id", "width", "height")} for im in detections.images],
        "annotations": [
            {
                "id": i,
                "image_id": t["image_id"],
                "category_id": t["label"],
                "bbox": _xywh(t["box"]),
                "area": (t["box"][2] - t["box"][0]) * (t["box"][3] - t["box"][1]),
                "iscrowd": t["is_crowd"],
            }
            for i, t in enumerate(detections.truth, start=1)
        ],
        "categories": [{"id": k, "name": v} for k, v in labels.items()],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        results = [
            {"image_id": d["image_id"], "category_id": d["label"], "bbox": _xywh(d["box"]), "score": d["score"]}
            for d in detections.found
            if d["label"] in labels
        ]
        found = coco.loadRes(results) if results else COCO()
        if not results:
            found.dataset = {
                "images": coco.dataset["images"],
                "annotations": [],
                "categories": coco.dataset["categories"],
            }
            found.createIndex()
        evaluator = COCOeval(coco, found, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = {name: float(value) for name, value in zip(COCO_NAMES, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [iou, recall, class, area, max dets]
    per_class = {}
    for k, class_id in enumerate(evaluator.params.catIds):

        def mean_valid(p):
            valid = p[p > -1]
            return float(valid.mean()) if valid.size else float("nan")

        per_class[labels[class_id]] = {
            "AP": mean_valid(precision[:, :, k, 0, -1]),
            "AP50": mean_valid(precision[0, :, k, 0, -1]),
            "ground_truth": sum(1 for t in detections.truth if t["label"] == class_id),
        }
    metrics["per_class"] = per_class
    return metrics, evaluator


def confusion_matrix(detections: Detections, class_ids: list[int], min_score: float) -> np.ndarray:
    """Rows: true class then 'background' (false positives); columns: predicted class then 'missed'."""
    index = {c: i for i, c in enumerate(class_ids)}
    k = len(class_ids)
    matrix = np.zeros((k + 1, k + 1), dtype=int)
    by_image: dict[int, tuple[list, list]] = {}
    for t in detections.truth:
        by_image.setdefault(t["image_id"], ([], []))[0].append(t)
    for d in detections.found:
        if d["score"] >= min_score and d["label"] in index:
            by_image.setdefault(d["image_id"], ([], []))[1].append(d)
    for truth, found in by_image.values():
        taken = set()
        for d in sorted(found, key=lambda d: -d["score"]):
            best, best_iou = None, CONFUSION_IOU
            for j, t in enumerate(truth):
                overlap = iou(d["box"], t["box"])
                if j not in taken and overlap >= best_iou:
                    best, best_iou = j, overlap
            if best is None:
                matrix[k, index[d["label"]]] += 1
            else:
                taken.add(best)
                matrix[index.get(truth[best]["label"], k), index[d["label"]]] += 1
        for j, t in enumerate(truth):
            if j not in taken and t["label"] in index:
                matrix[index[t["label"]], k] += 1
    return matrix


def score(
    detect,
    spec: TrainSpec,
    out: Path,
    about: dict,
    min_score: float = defaults.MIN_SCORE,
    samples: int = defaults.EVAL_SAMPLES,
    batch_size: int = 8,
    progress=True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """Run ``detect`` over the validation records, compute the COCO metrics and write the report to ``out``.

    ``about`` names what was evaluated (checkpoint and step, or model); it joins the metrics. A sample picture
    past ``max_pixels`` is not drawn (``metrics["not_drawn"]`` says so).
    """
    from pipelines.reports.report import write_report

    labels = read_label_map(spec.label_map_path)
    paths = glob_inputs(spec.eval_paths, "eval_input_reader")
    start = time.perf_counter()
    size = pipeline_input_size(spec)
    detections = run_detector(detect, paths, size, batch_size, spec.eval_examples, progress)
    seconds = time.perf_counter() - start
    metrics, evaluator = coco_evaluate(detections, labels)
    metrics.update(about, images=len(detections.images), images_per_second=len(detections.images) / seconds)
    matrix = confusion_matrix(detections, list(labels), min_score)
    write_report(out, metrics, evaluator, detections, labels, matrix, min_score, samples, max_pixels)
    metrics["out"] = str(out)
    return metrics


def evaluate(
    config_path: str | Path | None,
    model_dir: str | Path,
    checkpoint: str | None = None,
    out: str | Path | None = None,
    min_score: float = defaults.MIN_SCORE,
    samples: int = defaults.EVAL_SAMPLES,
    batch_size: int = 8,
    progress: bool = True,
    detector: CheckpointDetector | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """Evaluate one checkpoint (default: the latest) and write the report; returns the metrics.
    ``detector``: a network of this config to reuse (training's evaluations pass theirs)."""
    model_dir = Path(model_dir)
    config_path = resolve_config(config_path, model_dir)
    spec = load_train_spec(config_path)
    checkpoint = checkpoint or latest_checkpoint(model_dir)
    step = checkpoint_step(checkpoint)
    if out:  # the report folder is replaced whole: never by an input (the default is MODEL_DIR/eval/step-N)
        read = [("model directory", model_dir), ("checkpoint", checkpoint), ("pipeline config", config_path)]
        refuse_overlap(out, read + config_inputs(spec), may_hold_output=["model directory"])
    out = Path(out) if out else checkpoint_report_folder(model_dir, step)
    about = {"checkpoint": checkpoint, "step": step}
    detect = (detector or CheckpointDetector(spec)).load(checkpoint)
    metrics = score(detect, spec, out, about, min_score, samples, batch_size, progress, max_pixels)
    writer = tf.summary.create_file_writer(str(model_dir / "eval"))
    with writer.as_default():
        for name in COCO_NAMES:
            tf.summary.scalar(f"eval/{name}", metrics[name], step=step)
        for name, values in metrics["per_class"].items():
            tf.summary.scalar(f"eval_per_class/AP50/{name}", values["AP50"], step=step)
    writer.flush()
    return metrics


def evaluate_export(
    model: str | Path,
    config_path: str | Path | None = None,
    out: str | Path | None = None,
    min_score: float = defaults.MIN_SCORE,
    samples: int = defaults.EVAL_SAMPLES,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """Evaluate an exported model, a .tflite or the SavedModel folder (``EXPORT/saved_model``), on the same
    records with the same metrics as a checkpoint; the report goes to ``EXPORT/eval/<name>`` by default."""
    model = Path(model)
    config_path = resolve_config(config_path, model.parent)
    spec = load_train_spec(config_path)
    if out:
        refuse_overlap(out, [("model", model), ("pipeline config", config_path), *config_inputs(spec)])
    detector = export_detector(model, spec)
    out = Path(out) if out else export_report_folder(model)
    about = {"model": str(model), "step": export_step(model.parent)}
    return score(detector, spec, out, about, min_score, samples, detector.batch_size, progress, max_pixels)


def evaluate_continuously(config_path, model_dir, timeout: float = defaults.WATCH_TIMEOUT_S, **kwargs):
    """Evaluate each new checkpoint as training writes it, until the last step, eval_config.max_evals
    evaluations (when set), or ``timeout`` seconds without a new checkpoint."""
    model_dir = Path(model_dir)
    spec = load_train_spec(resolve_config(config_path, model_dir))
    detector = CheckpointDetector(spec)
    checkpoints = tf.train.checkpoints_iterator(str(model_dir), min_interval_secs=5, timeout=timeout)
    for done, checkpoint in enumerate(checkpoints, start=1):
        metrics = evaluate(config_path, model_dir, checkpoint=checkpoint, detector=detector, **kwargs)
        yield metrics
        if metrics["step"] >= spec.num_steps or done == spec.max_evals:
            return


def summary_line(metrics: dict) -> str:
    what = f"step {metrics['step']}" if "model" not in metrics else Path(metrics["model"]).name
    return (
        f"{what}: mAP@0.5:0.95 {metrics['AP']:.3f}  mAP@0.5 {metrics['AP50']:.3f}  "
        f"({metrics['images']} images, {metrics['images_per_second']:.1f} img/s)"
    )
