"""The detect stage: run a model on photos, draw what it finds, and list it as JSON.

The model can be an exported ``.tflite`` (what the phone runs), an exported
``saved_model/`` or a training folder with checkpoints; all three answer with
label-map ids and normalised boxes, turned here into labels and pixels of the image
as a viewer shows it (EXIF orientation applied). A .tflite sees the image resized as
MediaPipe resizes it on Android, so its detections are the app's.
"""

from __future__ import annotations

import glob
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from natsort import natsorted
from PIL import Image

from pipelines import defaults
from pipelines.artifacts import checkpoint_step, labels_by_id
from pipelines.atomic import refuse_overlap, write_text_atomically
from pipelines.console import progress_bar
from pipelines.data.images import DEFAULT_MAX_PIXELS, ImageProblem, Picture, load_picture
from pipelines.data.resize import resize_to_input
from pipelines.detectors import Detector, load_detector
from pipelines.errors import OdliteError, Problem
from pipelines.reports.draw import draw_on

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


@dataclass
class Found:
    label: str
    score: float
    xmin: float
    ymin: float
    xmax: float
    ymax: float


class Model:
    """A detector and its labels: ``__call__`` maps an RGB image to every detection, strongest first."""

    def __init__(self, detector: Detector, labels: list[str]):
        self.detector, self.labels = detector, labels
        self.path, self.kind, self.checkpoint = detector.path, detector.kind, detector.checkpoint
        self.needs = detector.resized_size  # (width, height) -> the size the model resizes a picture to
        self._names = labels_by_id(labels)

    def read(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
        """An image file's bytes decoded no larger than this model needs; raises ImageProblem, ImageTooLarge
        past ``max_pixels`` (from the header, before decoding)."""
        return load_picture(data, self.needs, max_pixels)

    def __call__(self, image: Picture | np.ndarray) -> list[Found]:
        """Every detection, boxes in the pixels of the picture as displayed (its full size, also
        when it was decoded smaller), or of the array given."""
        if not isinstance(image, Picture):
            image = Picture(image, image.shape[1], image.shape[0])
        frame = image.rgb
        if self.detector.input_size:
            frame = resize_to_input(frame, *self.detector.input_size, like=self.detector.resize_like)
        detections = self.detector(frame[None])
        h, w = image.height, image.width
        found = []
        for j in range(int(detections.count[0])):
            ymin, xmin, ymax, xmax = np.clip(detections.boxes[0, j], 0.0, 1.0)
            class_id = int(detections.classes[0, j])
            label = self._names.get(class_id, f"id {class_id}")
            coords = (float(xmin * w), float(ymin * h), float(xmax * w), float(ymax * h))
            found.append(Found(label, float(detections.scores[0, j]), *(round(c, 1) for c in coords)))
        return sorted(found, key=lambda f: -f.score)


def load_model(path: str | Path, checkpoint: str | None = None, say=print, threads: int = 2) -> Model:
    """Any model file and its labels (see ``detectors.load_detector``). ``threads``: a .tflite's interpreter
    threads."""
    detector = load_detector(path, checkpoint, threads, say)
    return Model(detector, detector.labels())


def find_images(inputs: list[str]) -> list[Path]:
    """Each input is an image, a folder (its images, not recursive) or a glob pattern."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += natsorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(item):
            found += natsorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        else:
            raise OdliteError.at(path, "no such file or folder")
    if not found:
        raise OdliteError(f"no images found in {', '.join(inputs)}")
    return list(dict.fromkeys(found))


def picture_names(images: list[Path]) -> list[str]:
    """A distinct picture name per image, in order: its stem, or stem-2, stem-3, ... when taken.

    Taken means by any earlier name, compared as case-insensitive filesystems compare them, so
    a/p.jpg, b/p-2.jpg and c/p.png become p, p-2 and p-3. Named before decoding, so an image that
    fails to decode does not shift the names of those after it.
    """
    taken: set[str] = set()
    names = []
    for path in images:
        name, number = path.stem, 1
        while name.casefold() in taken:
            number += 1
            name = f"{path.stem}-{number}"
        taken.add(name.casefold())
        names.append(name)
    return names


@dataclass
class DetectResult:
    out: Path
    images: list[dict] = field(default_factory=list)  # image, width, height, picture, detections
    skipped: list[Problem] = field(default_factory=list)


def detect(
    model_path: str | Path,
    inputs: list[str],
    out: str | Path,
    min_score: float = defaults.MIN_SCORE,
    max_boxes: int = defaults.MAX_BOXES,
    classes: list[str] | None = None,
    progress: bool = True,
    checkpoint: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DetectResult:
    """Detect on every image; write OUT/<name>.png per image and OUT/detections.json for all. An image that
    cannot be read, or is past ``max_pixels``, is skipped and listed with the reason."""
    model = load_model(model_path, checkpoint)
    unknown = sorted(set(classes or []) - set(model.labels))
    if unknown:
        raise OdliteError(f"unknown class(es) {', '.join(unknown)}; the model knows {', '.join(model.labels)}")
    images = find_images(inputs)
    folders = [("images folder", item) for item in inputs if Path(item).is_dir()]
    refuse_overlap(out, [("model", model_path), *folders, *(("image", image) for image in images)])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = DetectResult(out)
    names = dict(zip(images, picture_names(images)))
    for path in progress_bar(iterable=images, unit="img", desc="detect", disable=not progress or len(images) < 2):
        try:
            image = model.read(path.read_bytes(), max_pixels)
        except (ImageProblem, OSError) as error:
            result.skipped.append(Problem(str(path), str(error)))
            continue
        found = [f for f in model(image) if f.score >= min_score and (not classes or f.label in classes)][:max_boxes]
        picture = out / f"{names[path]}.png"
        _draw(image, found, model.labels).save(picture)
        entry = {"image": str(path), "width": image.width, "height": image.height, "picture": picture.name}
        result.images.append({**entry, "detections": [asdict(f) for f in found]})
    summary = {
        "model": str(model.path),
        "model_kind": model.kind,
        **({"checkpoint": model.checkpoint, "step": checkpoint_step(model.checkpoint)} if model.checkpoint else {}),
        "min_score": min_score,
        "max_boxes": max_boxes,
        "classes": classes or model.labels,
        "images": result.images,
        "skipped": [{"image": p.file, "reason": p.reason} for p in result.skipped],
    }
    write_text_atomically(out / "detections.json", json.dumps(summary, indent=2) + "\n")
    return result


def _draw(image: Picture, found: list[Found], labels: list[str]) -> Image.Image:
    """The boxes on the picture as decoded (smaller than the photo when the model needed less)."""
    h, w = image.height, image.width
    boxes = [(f.ymin / h, f.xmin / w, f.ymax / h, f.xmax / w) for f in found]
    captions = [f"{f.label} {f.score:.2f}" for f in found]
    colours = [labels.index(f.label) if f.label in labels else 0 for f in found]
    return draw_on(Image.fromarray(image.rgb), boxes, captions, colours)
