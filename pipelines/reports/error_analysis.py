"""Why a detector fails on each image: every box that is wrong, with one reason.

A table of mAP says how much a model fails, not where. At a score threshold, each
detection is matched to the ground truth of its image in the spirit of COCO (by
score, the best-overlapping unmatched box of the same class at IoU >= 0.5 makes it
correct); what is left is explained once:

- a ground-truth box not found is a **wrong class** when a left-over detection of
  another class covers it at IoU >= 0.5, a **poor localisation** when one of its own
  class overlaps it at 0.1 <= IoU < 0.5, and **missed** otherwise;
- a left-over detection that explains no such box is a **false alarm** (duplicates
  of a found box included).

So a missed lesion and the box drawn beside it count as one error, not two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MATCH_IOU = 0.5
BACKGROUND_IOU = 0.1
KINDS = ("missed", "false_alarm", "wrong_class", "poor_localisation")


def iou(a, b) -> float:
    """Intersection over union of two [xmin, ymin, xmax, ymax] boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Outcome:
    """What became of one box: ``kind`` is ``correct`` / ``found`` or one of KINDS; ``partner`` the
    index of the box on the other side that decided it (a detection for a truth, and back)."""

    kind: str
    iou: float = 0.0
    partner: int | None = None


@dataclass
class ImageAnalysis:
    truth: list[Outcome] = field(default_factory=list)
    found: dict[int, Outcome] = field(default_factory=dict)  # by index into the image's detections

    def errors(self) -> list[tuple[str, int, str]]:
        """(kind, 'truth' or 'found', index) of every error, each counted once."""
        out = [(o.kind, "truth", i) for i, o in enumerate(self.truth) if o.kind != "found"]
        return out + [(o.kind, "found", j) for j, o in self.found.items() if o.kind == "false_alarm"]


def analyse_image(truth: list[dict], found: list[dict], threshold: float) -> ImageAnalysis:
    """``truth``: dicts with box and label; ``found``: with box, label and score. Detections under
    ``threshold`` take no part (and get no outcome)."""
    kept = sorted((j for j, d in enumerate(found) if d["score"] >= threshold), key=lambda j: -found[j]["score"])
    overlaps = {j: [iou(found[j]["box"], t["box"]) for t in truth] for j in kept}
    result = ImageAnalysis(truth=[Outcome("missed") for _ in truth])
    left = []
    for j in kept:  # correct detections first, greedily by score, as COCO matches them
        best, best_iou = None, MATCH_IOU
        for i, t in enumerate(truth):
            if result.truth[i].kind == "missed" and t["label"] == found[j]["label"] and overlaps[j][i] >= best_iou:
                best, best_iou = i, overlaps[j][i]
        if best is None:
            left.append(j)
        else:
            result.truth[best] = Outcome("found", best_iou, j)
            result.found[j] = Outcome("correct", best_iou, best)
    explained = set()
    for j in left:  # each left-over detection explains at most one box not found, by score
        reason = _explain(truth, found[j], overlaps[j], result.truth, explained)
        if reason is None:
            nearest = max(overlaps[j], default=0.0)
            result.found[j] = Outcome("false_alarm", nearest, overlaps[j].index(nearest) if nearest > 0 else None)
        else:
            kind, i = reason
            explained.add(i)
            result.truth[i] = Outcome(kind, overlaps[j][i], j)
            result.found[j] = Outcome(kind, overlaps[j][i], i)
    for i, outcome in enumerate(result.truth):
        if outcome.kind == "missed":
            nearest = [(overlaps[j][i], j) for j in kept]
            outcome.iou = max(nearest)[0] if nearest else 0.0
    return result


def _explain(truth, detection, overlaps, outcomes, explained):
    wrong = [(v, i) for i, v in enumerate(overlaps) if v >= MATCH_IOU and truth[i]["label"] != detection["label"]]
    poor = [
        (v, i)
        for i, v in enumerate(overlaps)
        if BACKGROUND_IOU <= v < MATCH_IOU and truth[i]["label"] == detection["label"]
    ]
    for kind, candidates in (("wrong_class", wrong), ("poor_localisation", poor)):
        open_ = [(v, i) for v, i in candidates if outcomes[i].kind == "missed" and i not in explained]
        if open_:
            return kind, max(open_)[1]
    return None


def count_errors(truth: list[dict], found: list[dict], analysis: ImageAnalysis, counts: dict) -> None:
    """Add the image's errors to ``counts[label][kind]``: under the true class for a box not found,
    the predicted one for a false alarm."""
    for kind, side, index in analysis.errors():
        label = (truth if side == "truth" else found)[index]["label"]
        per_kind = counts.setdefault(label, dict.fromkeys(KINDS, 0))
        per_kind[kind] += 1
