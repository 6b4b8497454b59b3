"""Detectors: any model file, loaded through one function, answering in one form.

``load_detector`` takes a checkpoint folder (its best checkpoint, else its latest), a checkpoint prefix
(``DIR/ckpt-N``), a SavedModel folder or the export folder holding one, or a .tflite, and gives a
``Detector``: ``detector(images)`` maps a batch of uint8 images to ``BatchDetections``. Whether a path is a
model, and of which kind, is decided here alone (``find_model``), and so is every kind's answer, label-map
ids included; so detect, serve, browse, evaluation, export and training's evaluations treat the three
kinds alike, and none of them needs another stage's module to read a model file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import tensorflow as tf

from pipelines.artifacts import BEST_DIR, CONFIG_NAME, FIRST_LABEL_ID, LABELS_FILE, label_lines, resolve_config
from pipelines.config.experiment import TrainSpec, build_network, load_train_spec, read_weights
from pipelines.config.label_map import read_label_map
from pipelines.errors import OdliteError
from pipelines.models.meta_architecture import meta_architecture
from pipelines.training.best_checkpoint import chosen_checkpoint

NOT_A_MODEL = "not a model: expected a checkpoint folder, a .tflite or an export folder (or its saved_model/)"


@dataclass(frozen=True)
class BatchDetections:
    """A batch's detections, alike from every kind of model. For N images and up to K detections each:
    ``boxes`` [N, K, 4] normalised (ymin, xmin, ymax, xmax), ``scores`` [N, K], ``classes`` [N, K] as
    label-map ids, ``count`` [N]: the first ``count[i]`` of image i are detections, the rest padding."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, boxes, scores, classes, count) -> BatchDetections:
        """From tensors or arrays: the classes and counts as integers, whatever type a graph gave them."""
        classes, count = np.asarray(classes).astype(np.int64), np.asarray(count).astype(np.int64)
        return cls(np.asarray(boxes), np.asarray(scores), classes, count)


class Detector(Protocol):
    """What ``load_detector`` gives, for whichever kind of model file."""

    kind: str  # "checkpoint", "saved_model" or "tflite"
    path: Path | None  # the checkpoint folder, the SavedModel folder or the .tflite
    checkpoint: str | None  # the checkpoint a checkpoint folder was read from
    input_size: tuple[int, int] | None  # (width, height) every image must have; None: any (resized inside)
    resize_like: str  # how a picture is brought to input_size: as this model's users do (``resize_to_input``)
    batch_size: int  # the images evaluation feeds it at once
    shareable: bool  # whether threads may run one instance at once (a LiteRT interpreter may not)
    resized_size: Callable[[int, int], tuple[int, int]] | None  # a picture's size -> what the model sees

    def __call__(self, images) -> BatchDetections: ...

    def labels(self) -> list[str]:
        """labelmap.txt's lines: line i names label-map id i + FIRST_LABEL_ID."""
        ...


def pipeline_input_size(spec: TrainSpec) -> int | None:
    """The size the input pipeline resizes to: SSD's square input; none for Faster R-CNN, whose
    detector resizes (keeping the aspect ratio) and pads each image itself."""
    return meta_architecture(spec.model.kind).pipeline_input_size(spec.model)


class CheckpointDetector:
    """One network, built and traced once, given each checkpoint's weights in turn: training evaluates
    every N-th checkpoint without paying for a new network and a new trace each time."""

    kind, resize_like, batch_size, shareable = "checkpoint", "tensorflow", 8, True

    def __init__(self, spec: TrainSpec, path: Path | None = None):
        self.spec, self.path, self.checkpoint = spec, path, None
        self.model = build_network(spec.model)
        self._detect = meta_architecture(spec.model.kind).detector(spec.model, self.model)
        size = pipeline_input_size(spec)
        self.input_size = (size, size) if size else None
        self.resized_size = spec.model.resized_size

    def load(self, checkpoint: str) -> CheckpointDetector:
        """This network, now with ``checkpoint``'s weights."""
        read_weights(self.model, checkpoint)
        self.checkpoint = checkpoint
        return self

    def labels(self) -> list[str]:
        return label_lines(read_label_map(self.spec.label_map_path))

    def __call__(self, images) -> BatchDetections:
        """uint8 [N, S, S, 3] (S: ``pipeline_input_size``; any size for Faster R-CNN)."""
        return BatchDetections.of(*self._detect(images))


def checkpoint_detector(spec: TrainSpec, checkpoint: str) -> CheckpointDetector:
    """``spec``'s network with ``checkpoint``'s weights: for a caller that holds the config already (export)."""
    return CheckpointDetector(spec).load(checkpoint)


def _label_file_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class SavedModelDetector:
    """An exported SavedModel's serving signature: uint8 images of any size in (it resizes them itself)."""

    kind, resize_like, batch_size, shareable = "saved_model", "tensorflow", 8, True
    checkpoint, input_size = None, None

    def __init__(self, path: Path, spec: TrainSpec | None = None):
        """``spec``: the config it was exported with, which says how it resizes a picture (None: unknown)."""
        self.path = path
        self._serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        self.resized_size = spec.model.resized_size if spec else None

    def labels(self) -> list[str]:
        labels_file = self.path.parent / LABELS_FILE
        if not labels_file.exists():
            raise OdliteError.at(self.path, "no labelmap.txt beside this SavedModel (use an odlite export folder)")
        return _label_file_lines(labels_file)

    def __call__(self, images) -> BatchDetections:
        out = self._serve(images=tf.cast(images, tf.uint8))
        keys = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
        return BatchDetections.of(*(out[key] for key in keys))


class TFLiteDetector:
    """An exported .tflite in LiteRT, the interpreter Android ships. One interpreter; not thread-safe (LiteRT
    interpreters are not), so give each thread its own.

    Every odlite .tflite has one image input (float32 0-255, or uint8 for the int8 variant) and the four
    outputs of ``TFLite_Detection_PostProcess`` in the contract's order: boxes [1, N, 4] (normalised ymin,
    xmin, ymax, xmax), classes [1, N] (index into labelmap.txt), scores [1, N], count [1].
    """

    kind, resize_like, batch_size, shareable = "tflite", "mediapipe", 1, False  # resized as the app's MediaPipe
    checkpoint = None

    def __init__(self, path: str | Path, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter  # LiteRT only when a .tflite is read

        self.path = Path(path)
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise OdliteError.at(self.path, f"not a loadable TFLite model: {error}") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 4 or len(inputs[0]["shape"]) != 4:
            raise OdliteError.at(self.path, "not an odlite detector: expected 1 image input and 4 outputs")
        self._input = inputs[0]
        self._outputs = [o["index"] for o in outputs]
        _, height, width, _ = (int(v) for v in self._input["shape"])
        self.input_size = (width, height)
        self.input_type = np.dtype(self._input["dtype"])
        if self.input_type == np.uint8:
            scale, zero_point = self._input["quantization"]
            if (scale, zero_point) != (1.0, 0):
                raise OdliteError.at(
                    self.path, f"uint8 input must take raw pixels, got scale {scale} zero {zero_point}"
                )

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """Its input size, whatever the picture's: the model stretches every picture to it."""
        return self.input_size

    def labels(self) -> list[str]:
        """The labelmap.txt embedded in its metadata (packed as a zip, which is how the metadata carries
        files), else the one beside it."""
        try:
            with zipfile.ZipFile(self.path) as packed:
                return packed.read(LABELS_FILE).decode().split()
        except (zipfile.BadZipFile, KeyError):
            beside = self.path.parent / LABELS_FILE
            if not beside.exists():
                reason = "no labels: neither embedded metadata nor labelmap.txt beside it"
                raise OdliteError.at(self.path, reason) from None
            return _label_file_lines(beside)

    def feed(self, image: np.ndarray) -> None:
        """Make ``image`` (uint8 [H, W, 3] at the input size) the interpreter's input."""
        self.interpreter.set_tensor(self._input["index"], image[None].astype(self.input_type, copy=False))

    def __call__(self, images) -> BatchDetections:
        answers = []
        for image in np.asarray(images):
            self.feed(image)
            self.interpreter.invoke()
            answers.append([self.interpreter.get_tensor(i)[0] for i in self._outputs])
        boxes, classes, scores, count = (np.stack(outputs) for outputs in zip(*answers))
        # The model's class i is line i of labelmap.txt; here alone does it become a label-map id.
        return BatchDetections.of(boxes, scores, classes + FIRST_LABEL_ID, count)


@dataclass(frozen=True)
class ModelFile:
    """A model on disk and its kind, before anything is read: enough to refuse one (serve takes no
    checkpoint) or to date it (browse's cached detections)."""

    kind: str  # "checkpoint", "saved_model" or "tflite"
    path: Path  # the checkpoint folder, the SavedModel folder or the .tflite
    checkpoint: str | None = None  # the checkpoint the path named (DIR/ckpt-N)

    def load(self, checkpoint: str | None = None, threads: int = 2, say=print) -> Detector:
        """``checkpoint``: a checkpoint folder's, when the path named none; else its best, else its latest.
        ``threads``: a .tflite's interpreter threads."""
        if self.kind == "tflite":
            return TFLiteDetector(self.path, threads)
        if self.kind == "saved_model":
            config = self.path.parent / CONFIG_NAME  # an export folder's: how its model resizes a picture
            return SavedModelDetector(self.path, load_train_spec(config) if config.exists() else None)
        spec = load_train_spec(resolve_config(None, self.path))
        chosen = chosen_checkpoint(self.path, self.checkpoint or checkpoint, say)
        return CheckpointDetector(spec, self.path).load(chosen)


def find_model(path: str | Path) -> ModelFile:
    """What ``path`` is: a .tflite; a SavedModel, also inside an export folder; a folder with checkpoints
    (or only ``best/``); or a checkpoint prefix. ``OdliteError`` naming the path for anything else."""
    path = Path(path)
    if path.suffix == ".tflite" and path.is_file():
        return ModelFile("tflite", path)
    for folder in (path, path / "saved_model"):
        if (folder / "saved_model.pb").exists():
            return ModelFile("saved_model", folder)
    if (path / "checkpoint").exists() or (path / BEST_DIR / "checkpoint").exists():
        return ModelFile("checkpoint", path)
    if Path(f"{path}.index").exists():
        return ModelFile("checkpoint", path.parent, str(path))
    raise OdliteError.at(path, NOT_A_MODEL if path.exists() else "no such file or folder")


def load_detector(path: str | Path, checkpoint: str | None = None, threads: int = 2, say=print) -> Detector:
    """The detector of any model file (see ``find_model`` and ``ModelFile.load``)."""
    return find_model(path).load(checkpoint, threads, say)


def export_detector(model: Path, spec: TrainSpec) -> Detector:
    """An exported model, checked against the config it is evaluated with."""
    found = find_model(model)
    if found.kind == "checkpoint":
        raise OdliteError.at(model, "a checkpoint, not an exported model: evaluate it with --model-dir")
    detector = found.load()
    if detector.kind != "tflite":
        return detector
    if not meta_architecture(spec.model.kind).exports_tflite:
        raise OdliteError.at(
            model, f"TFLite models are exported for SSD only; this config's model is {spec.model.kind}"
        )
    if detector.input_size != (spec.model.input_size,) * 2:
        width, height = detector.input_size
        raise OdliteError.at(model, f"input is {width}x{height}, the config says {spec.model.input_size}")
    return detector
