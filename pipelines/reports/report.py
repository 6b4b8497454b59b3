"""The evaluation report: metrics.json, report.md, PR curves, confusion matrix and pictures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import ImageDraw
from tabulate import tabulate

from pipelines.artifacts import METRICS_FILE, REPORT_PAGE
from pipelines.atomic import atomic_folder
from pipelines.data.images import DEFAULT_MAX_PIXELS, ImageProblem
from pipelines.reports.draw import draw_boxes

GROUND_TRUTH_COLOUR = (255, 255, 255)
DETECTIONS_FILE = "detections.json"  # every box of every image, for odlite browse


def _plot_pr_curves(path: Path, evaluator, labels: dict[int, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = evaluator.params.recThrs
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for k, class_id in enumerate(evaluator.params.catIds):
        for t, style in ((0, "-"), (5, "--")):  # IoU 0.5 and 0.75
            precision = evaluator.eval["precision"][t, :, k, 0, -1]
            if (precision > -1).any():
                iou = evaluator.params.iouThrs[t]
                ax.plot(
                    recall, np.where(precision > -1, precision, np.nan), style, label=f"{labels[class_id]} @{iou:.2f}"
                )
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall per class")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_confusion(path: Path, matrix: np.ndarray, names: list[str], min_score: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 1.2 * len(names) + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names) + 1), names + ["missed"], rotation=30)
    ax.set_yticks(range(len(names) + 1), names + ["background"])
    ax.set(xlabel="predicted", ylabel="ground truth", title=f"Confusion (IoU >= 0.5, score >= {min_score:g})")
    peak = matrix.max() or 1
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw_sample(image: dict, truth: list[dict], found: list[dict], labels: dict, min_score: float, max_pixels: int):
    w, h = image["width"], image["height"]
    shown = [d for d in found if d["score"] >= min_score and d["label"] in labels]
    boxes = [(d["box"][1] / h, d["box"][0] / w, d["box"][3] / h, d["box"][2] / w) for d in shown]
    names = [f"{labels[d['label']]} {d['score']:.2f}" for d in shown]
    picture = draw_boxes(image["jpeg"], boxes, names, [d["label"] for d in shown], max_pixels=max_pixels)
    draw = ImageDraw.Draw(picture)
    for t in truth:
        draw.rectangle(t["box"], outline=GROUND_TRUTH_COLOUR, width=1)
    return picture


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def write_report(
    out: Path,
    metrics: dict,
    evaluator,
    detections,
    labels,
    matrix,
    min_score: float,
    samples: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
):
    """Everything is written to a temporary folder and moved into ``out`` at the end. A sample image past
    ``max_pixels`` is not drawn (the metrics are still good): ``metrics["not_drawn"]`` names it and says why."""
    with atomic_folder(out) as tmp:
        (tmp / "samples").mkdir()
        pictures, not_drawn = [], []
        for image in detections.images[:samples]:
            truth = [t for t in detections.truth if t["image_id"] == image["id"]]
            found = [d for d in detections.found if d["image_id"] == image["id"]]
            name = f"{image['id']:03d}_{Path(image['filename']).stem or 'image'}.png"
            try:
                _draw_sample(image, truth, found, labels, min_score, max_pixels).save(tmp / "samples" / name)
            except ImageProblem as problem:
                not_drawn.append(f"{image['filename']}: {problem}")
                continue
            pictures.append(name)
        if not_drawn:
            metrics["not_drawn"] = not_drawn
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / DETECTIONS_FILE).write_text(json.dumps(_all_boxes(detections, labels), separators=(",", ":")))
        _plot_pr_curves(tmp / "pr_curves.png", evaluator, labels)
        names = list(labels.values())
        _plot_confusion(tmp / "confusion_matrix.png", matrix, names, min_score)
        (tmp / REPORT_PAGE).write_text(_markdown(metrics, matrix, names, min_score, pictures))


def _all_boxes(detections, labels: dict[int, str]) -> dict:
    """Ground truth and every detection, whatever its score, in each image's pixels."""

    def box(values):
        return [round(float(v), 2) for v in values]

    return {
        "labels": {str(k): v for k, v in labels.items()},
        "images": [{k: im[k] for k in ("id", "filename", "width", "height")} for im in detections.images],
        "truth": [{"image_id": t["image_id"], "box": box(t["box"]), "label": t["label"]} for t in detections.truth],
        "found": [
            {"image_id": d["image_id"], "box": box(d["box"]), "label": d["label"], "score": round(d["score"], 4)}
            for d in detections.found
        ],
    }


def _markdown(metrics: dict, matrix, names: list[str], min_score: float, pictures: list[str]) -> str:
    overall = [[name, _fmt(metrics[name])] for name in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")]
    overall += [[name, _fmt(metrics[name])] for name in ("AR1", "AR10", "AR100")]
    per_class = [[n, v["ground_truth"], _fmt(v["AP"]), _fmt(v["AP50"])] for n, v in metrics["per_class"].items()]
    confusion = [[row_name, *row] for row_name, row in zip(names + ["background"], matrix.tolist())]
    if "model" in metrics:
        title, subject = f"Evaluation of {Path(metrics['model']).name}", f"Model `{metrics['model']}`"
    else:
        title, subject = f"Evaluation at step {metrics['step']}", f"Checkpoint `{metrics['checkpoint']}`"
    lines = [
        f"# {title}",
        "",
        f"{subject}, {metrics['images']} validation images "
        f"({metrics['images_per_second']:.1f} images/s). COCO metrics by pycocotools; "
        "AP is mAP@0.5:0.95, AP50 is mAP@0.5.",
        "",
        tabulate(overall, headers=["metric", "value"], tablefmt="github"),
        "",
        "## Per class",
        "",
        tabulate(per_class, headers=["class", "boxes", "AP", "AP50"], tablefmt="github"),
        "",
        "![precision-recall](pr_curves.png)",
        "",
        f"## Confusion matrix (IoU >= 0.5, score >= {min_score:g})",
        "",
        tabulate(confusion, headers=["truth \\ predicted", *names, "missed"], tablefmt="github"),
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## Validation pictures",
        "",
        "White: ground truth. Coloured: detections with their score.",
        "",
    ]
    lines += [f"![{p}](samples/{p})" for p in pictures]
    lines += [f"Not drawn: {reason}" for reason in metrics.get("not_drawn", [])]
    return "\n".join(lines) + "\n"
