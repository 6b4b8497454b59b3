"""Check an exported .tflite in MediaPipe Tasks' ObjectDetector, the library an Android app loads it with.

MediaPipe runs in its own environment (``.venv-tools``, see ``mediapipe_client.py``).
On the same validation images it must agree with odlite's own TFLite runner: the same
labels, boxes within 1% of the image size (at least 2 px: MediaPipe reports whole-pixel
origins and sizes, so a right or bottom edge may sit up to 2 px short), scores within
0.02, for every detection at or above ``min_score``. A box that overhangs the image is
compared as MediaPipe reports it (``as_mediapipe_reports``). A model MediaPipe refuses
(no metadata, wrong outputs) fails the check with MediaPipe's own message.

The images are decoded at full size here, unlike every inference path
(``images.load_picture``): the check compares pixels with MediaPipe's own decoding of
the same file, so both sides must start from the same full-size decode.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from pipelines.artifacts import labels_by_id
from pipelines.data.resize import resize_to_input
from pipelines.detectors import TFLiteDetector
from pipelines.errors import OdliteError
from pipelines.reports.error_analysis import iou

CLIENT = Path(__file__).with_name("mediapipe_client.py")
DEFAULT_TOOLS_PYTHON = Path(".venv-tools/bin/python")
BOX_TOLERANCE = 0.01  # of the image's larger side
PIXEL_TOLERANCE = 2.0  # MediaPipe truncates origin and size to whole pixels: an edge can be 2 px off
SCORE_TOLERANCE = 0.02
NMS_TWIN_IOU = 0.8  # when MediaPipe resizes: a near-duplicate box the NMS kept instead (check_with_mediapipe)


@dataclass
class CheckResult:
    model: Path
    images: int
    compared: int = 0  # detections at or above min_score, from either side
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches


def _validation_images(record_paths: list[str], count: int, folder: Path, size: tuple[int, int] | None) -> list[Path]:
    """The first ``count`` validation images as PNG files, stretched to ``size`` (width, height) if given."""
    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in ("image/encoded", "image/filename")}
    images = []
    for raw in tf.data.TFRecordDataset(record_paths).take(count):
        example = tf.io.parse_single_example(raw, spec)
        image = cv2.imdecode(np.frombuffer(example["image/encoded"].numpy(), np.uint8), cv2.IMREAD_COLOR)
        if size is not None:
            image = resize_to_input(image, *size, like="mediapipe")
        path = folder / f"{len(images):04d}_{Path(example['image/filename'].numpy().decode()).stem}.png"
        cv2.imwrite(str(path), image)
        images.append(path)
    return images


def mediapipe_detections(model: Path, images: list[Path], tools_python: Path) -> dict[str, list[dict]]:
    if not Path(tools_python).exists():
        raise OdliteError.at(tools_python, "no MediaPipe tools environment here; create it with: make tools")
    done = subprocess.run(
        [str(tools_python), str(CLIENT), str(model), *map(str, images)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise OdliteError.at(model, f"MediaPipe's ObjectDetector failed on it:\n{tail}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["image"]: line["detections"] for line in lines}


def odlite_detections(detector: TFLiteDetector, images: list[Path], labels: list[str]) -> dict[str, tuple]:
    """Per image path: (detections in pixels, (width, height))."""
    names = labels_by_id(labels)
    found = {}
    for path in images:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        answer = detector(resize_to_input(image, *detector.input_size, like="mediapipe")[None])
        boxes = answer.boxes[0]
        detections = [
            {
                "label": names[int(answer.classes[0, j])],
                "score": float(answer.scores[0, j]),
                "box": [float(boxes[j][1] * w), float(boxes[j][0] * h), float(boxes[j][3] * w), float(boxes[j][2] * h)],
            }
            for j in range(int(answer.count[0]))
        ]
        found[str(path)] = (detections, (w, h))
    return found


def as_mediapipe_reports(box: list[float], width: int, height: int) -> list[float]:
    """``box`` (xmin, ymin, xmax, ymax in pixels) as MediaPipe's ObjectDetector reports it.

    MediaPipe clamps the box's origin and its size, each on its own, to the image: a box that
    overhangs the left or top comes back moved inside with its size kept, not cut
    (-8..39 becomes 0..47). Measured on every detection of 60 images, float and int8.
    """
    x0, y0 = min(max(box[0], 0), width), min(max(box[1], 0), height)
    w, h = min(max(box[2] - box[0], 0), width), min(max(box[3] - box[1], 0), height)
    return [x0, y0, x0 + w, y0 + h]


def _unmatched(
    side: list[dict], other: list[dict], min_score: float, tolerance: float, twin_iou: float | None = None
) -> list[dict]:
    """Detections of ``side`` at or above ``min_score`` with no counterpart in ``other``: the same label,
    the score within SCORE_TOLERANCE, each edge within ``tolerance`` (or, given ``twin_iou``, that IoU)."""
    missing = []
    for d in side:
        if d["score"] < min_score:
            continue
        if not any(
            o["label"] == d["label"]
            and abs(o["score"] - d["score"]) <= SCORE_TOLERANCE
            and (
                np.max(np.abs(np.subtract(o["box"], d["box"]))) <= tolerance
                or (twin_iou is not None and iou(o["box"], d["box"]) >= twin_iou)
            )
            for o in other
        ):
            missing.append(d)
    return missing


def check_with_mediapipe(
    model: str | Path,
    record_paths: list[str],
    labels: list[str],
    images: int = 20,
    min_score: float = 0.3,
    tools_python: str | Path = DEFAULT_TOOLS_PYTHON,
    at_model_size: bool = True,
) -> CheckResult:
    """Compare MediaPipe with odlite's runner on the first ``images`` validation images.

    ``at_model_size``: the images are stretched to the model's input first, so both sides
    see the same pixels and the check is about how MediaPipe reads the model (metadata,
    output order, labels, box coordinates). With False they go in at their own size and
    MediaPipe resizes them itself: a float model still agrees, but an int8 model's scores
    move in steps of about 0.02, so one grey level of resampling difference can flip them.
    There, too, scores differ by up to about 0.002, enough for the NMS to keep the other of
    two near-duplicate boxes of almost equal score; so a box of the same label and score
    overlapping at IoU >= ``NMS_TWIN_IOU`` counts as its twin as well.
    """
    model = Path(model)
    detector = TFLiteDetector(model)
    size = detector.input_size if at_model_size else None
    with tempfile.TemporaryDirectory() as folder:
        paths = _validation_images(record_paths, images, Path(folder), size)
        theirs = mediapipe_detections(model, paths, Path(tools_python))
        ours = odlite_detections(detector, paths, labels)
    result = CheckResult(model, len(paths))
    for path in map(str, paths):
        mine, (w, h) = ours[path]
        mine = [{**d, "box": as_mediapipe_reports(d["box"], w, h)} for d in mine]
        other = theirs.get(path, [])
        tolerance = max(BOX_TOLERANCE * max(w, h), PIXEL_TOLERANCE)
        result.compared += sum(d["score"] >= min_score for d in mine + other)
        # A detection just under min_score on one side may sit just over it on the other.
        twin_iou = None if at_model_size else NMS_TWIN_IOU
        for d in _unmatched(mine, other, min_score, tolerance, twin_iou):
            result.mismatches.append(f"{Path(path).name}: odlite found {_describe(d)}; MediaPipe did not")
        for d in _unmatched(other, mine, min_score + SCORE_TOLERANCE, tolerance, twin_iou):
            result.mismatches.append(f"{Path(path).name}: MediaPipe found {_describe(d)}; odlite did not")
    return result


def _describe(d: dict) -> str:
    return f"{d['label']} {d['score']:.3f} at [{', '.join(f'{v:.0f}' for v in d['box'])}]"
