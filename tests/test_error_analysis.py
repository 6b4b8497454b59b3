"""Each wrong box gets exactly one reason, at IoU 0.5 and the score threshold."""

from __future__ import annotations

from pipelines.reports.error_analysis import KINDS, analyse_image, count_errors, iou

NORMAL, CARIES = 1, 2


def truth(label, *box):
    return {"label": label, "box": list(box)}


def found(label, score, *box):
    return {"label": label, "score": score, "box": list(box)}


def kinds(analysis):
    return [o.kind for o in analysis.truth], {j: o.kind for j, o in analysis.found.items()}


def test_iou():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == 50 / 150
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_each_kind_of_error():
    gt = [
        truth(CARIES, 0, 0, 10, 10),  # found
        truth(CARIES, 20, 0, 30, 10),  # seen as normal: wrong class
        truth(NORMAL, 40, 0, 50, 10),  # boxed too loosely: poor localisation
        truth(NORMAL, 60, 0, 70, 10),  # nothing near: missed
    ]
    dets = [
        found(CARIES, 0.9, 0, 0, 10, 9),
        found(NORMAL, 0.8, 20, 0, 30, 10),
        found(NORMAL, 0.7, 40, 0, 60, 20),  # IoU 100/400 = 0.25
        found(CARIES, 0.6, 80, 80, 90, 90),  # on nothing: false alarm
        found(CARIES, 0.55, 0, 0, 10, 10),  # a second box on a found one: false alarm too
        found(NORMAL, 0.2, 60, 0, 70, 10),  # would find the missed one, but is under the threshold
    ]
    result = analyse_image(gt, dets, threshold=0.5)
    assert kinds(result) == (
        ["found", "wrong_class", "poor_localisation", "missed"],
        {0: "correct", 1: "wrong_class", 2: "poor_localisation", 3: "false_alarm", 4: "false_alarm"},
    )
    assert result.truth[2].partner == 2 and abs(result.truth[2].iou - 0.25) < 1e-9
    counts = {}
    count_errors(gt, dets, result, counts)
    assert counts == {
        CARIES: {"missed": 0, "false_alarm": 2, "wrong_class": 1, "poor_localisation": 0},
        NORMAL: {"missed": 1, "false_alarm": 0, "wrong_class": 0, "poor_localisation": 1},
    }
    assert len(result.errors()) == 5


def test_threshold_decides_what_takes_part():
    gt = [truth(NORMAL, 60, 0, 70, 10)]
    dets = [found(NORMAL, 0.2, 60, 0, 70, 10)]
    assert kinds(analyse_image(gt, dets, 0.5)) == (["missed"], {})
    assert kinds(analyse_image(gt, dets, 0.1)) == (["found"], {0: "correct"})


def test_matching_is_by_score_then_overlap():
    """As COCO: the stronger detection takes the box; the weaker, on the same box, is a false alarm."""
    gt = [truth(CARIES, 0, 0, 10, 10)]
    dets = [found(CARIES, 0.6, 0, 0, 10, 10), found(CARIES, 0.9, 1, 0, 10, 10)]
    result = analyse_image(gt, dets, 0.5)
    assert kinds(result) == (["found"], {1: "correct", 0: "false_alarm"})
    assert result.truth[0].partner == 1


def test_one_detection_explains_one_box():
    """Two wrong-class boxes on one lesion: one wrong-class error, one false alarm."""
    gt = [truth(CARIES, 0, 0, 10, 10)]
    dets = [found(NORMAL, 0.9, 0, 0, 10, 10), found(NORMAL, 0.8, 0, 0, 10, 9)]
    assert kinds(analyse_image(gt, dets, 0.5)) == (["wrong_class"], {0: "wrong_class", 1: "false_alarm"})


def test_empty_image():
    assert kinds(analyse_image([], [found(NORMAL, 0.9, 0, 0, 5, 5)], 0.5)) == ([], {0: "false_alarm"})
    assert kinds(analyse_image([truth(NORMAL, 0, 0, 5, 5)], [], 0.5)) == (["missed"], {})
    assert set(KINDS) == {"missed", "false_alarm", "wrong_class", "poor_localisation"}
