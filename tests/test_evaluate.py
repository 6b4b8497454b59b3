"""COCO metrics and the confusion matrix on hand-made detections, where the answers are known."""

from __future__ import annotations

import pytest

from pipelines.evaluate import Detections, coco_evaluate, confusion_matrix

LABELS = {1: "normal", 2: "caries"}


def _detections(found):
    d = Detections()
    d.images = [{"id": 1, "width": 100, "height": 100, "filename": "a.jpg", "jpeg": b""}]
    d.truth = [
        {"image_id": 1, "box": [10, 10, 40, 60], "label": 1, "is_crowd": 0},
        {"image_id": 1, "box": [50, 10, 90, 60], "label": 2, "is_crowd": 0},
    ]
    d.found = [{"image_id": 1, "box": b, "label": lab, "score": s} for b, lab, s in found]
    return d


def test_perfect_detections_score_one():
    metrics, _ = coco_evaluate(_detections([([10, 10, 40, 60], 1, 0.9), ([50, 10, 90, 60], 2, 0.8)]), LABELS)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["per_class"]["caries"] == {"AP": pytest.approx(1.0), "AP50": pytest.approx(1.0), "ground_truth": 1}


def test_missing_class_and_loose_box():
    # normal found with IoU 0.6 (counts at 0.5, not at 0.75); caries not found at all.
    metrics, _ = coco_evaluate(_detections([([10, 10, 40, 45], 1, 0.9)]), LABELS)
    assert metrics["per_class"]["normal"]["AP50"] == pytest.approx(1.0)
    assert metrics["per_class"]["caries"]["AP50"] == pytest.approx(0.0)
    assert metrics["AP50"] == pytest.approx(0.5)
    assert metrics["AP75"] == pytest.approx(0.0)


def test_no_detections_score_zero():
    metrics, _ = coco_evaluate(_detections([]), LABELS)
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0


def test_confusion_matrix_counts_confusions_misses_and_false_alarms():
    found = [
        ([10, 10, 40, 60], 2, 0.9),  # the normal tooth called caries
        ([0, 70, 20, 95], 1, 0.8),  # nothing there
        ([50, 10, 90, 60], 2, 0.3),  # right, but below the score threshold: a miss
    ]
    matrix = confusion_matrix(_detections(found), [1, 2], min_score=0.5)
    # rows: normal, caries, background; columns: normal, caries, missed
    assert matrix.tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]


def test_a_sample_image_past_the_pixel_budget_is_named_not_drawn(tmp_path):
    """The metrics stand; the picture of an image past the budget is left out, and the report says which and why."""
    import json

    from conftest import jpeg_bytes
    from made import png16

    from pipelines.reports.report import write_report

    detections = _detections([([10, 10, 40, 60], 1, 0.9)])
    detections.images[0]["jpeg"] = jpeg_bytes(100, 100)
    detections.images.append(
        {"id": 2, "width": 400, "height": 300, "filename": "img_val/b.png", "jpeg": png16(400, 300)}
    )
    metrics, evaluator = coco_evaluate(detections, LABELS)
    metrics.update(model="exported/m/model.tflite", images=2, images_per_second=1.0)  # what score() adds
    matrix = confusion_matrix(detections, [1, 2], min_score=0.5)
    write_report(tmp_path / "report", metrics, evaluator, detections, LABELS, matrix, 0.5, 6, max_pixels=100_000)
    assert [p.name for p in (tmp_path / "report" / "samples").iterdir()] == ["001_a.png"]
    reason = "img_val/b.png: image too large: 400x300 is 0.12 megapixels, over the limit of 0.1"
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["not_drawn"][0].startswith(reason)
    assert f"Not drawn: {reason}" in (tmp_path / "report" / "report.md").read_text()
