"""Detectors from model files: what kind of file a model is, and the detection function of each.

A detection function maps a batch of uint8 images to (normalised [ymin, xmin, ymax, xmax], scores,
classes, count), the form ``evaluate.score`` scores and ``detect`` draws: a checkpoint (``CheckpointDetector``),
an exported SavedModel (``saved_model_detector``) or .tflite (``export.tflite_runner.TFLiteDetector``).
Evaluation, export, detect and training's evaluations load models from here, so none of them needs
another stage's module to read a model file.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from pipelines.config.experiment import TrainSpec, build_network, read_weights
from pipelines.errors import OdliteError
from pipelines.models.faster_rcnn import detect as faster_rcnn_detect
from pipelines.models.ssd import normalize_pixels


def pipeline_input_size(spec: TrainSpec) -> int | None:
    """The size the input pipeline resizes to: SSD's square input; none for Faster R-CNN, whose
    detector resizes (keeping the aspect ratio) and pads each image itself."""
    return None if spec.model.kind == "faster_rcnn" else spec.model.input_size


class CheckpointDetector:
    """One network, built and traced once, given each checkpoint's weights in turn: training evaluates
    every N-th checkpoint without paying for a new network and a new trace each time."""

    def __init__(self, spec: TrainSpec):
        self.model = build_network(spec.model)
        self.detect = _detector(spec, self.model)

    def load(self, checkpoint: str):
        """uint8 [N, S, S, 3] (S: ``pipeline_input_size``; any size for Faster R-CNN) -> (normalised
        [ymin, xmin, ymax, xmax], scores, classes, count), with ``checkpoint``'s weights."""
        read_weights(self.model, checkpoint)
        return self.detect


def checkpoint_detector(spec: TrainSpec, checkpoint: str):
    """The detection function of one checkpoint (see ``CheckpointDetector.load``)."""
    return CheckpointDetector(spec).load(checkpoint)


def _detector(spec: TrainSpec, model):
    if spec.model.kind == "faster_rcnn":

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], autograph=False)
        def detect_two_stage(images):
            out = faster_rcnn_detect(model, spec.model, images)
            return out["detection_boxes"], out["detection_scores"], out["detection_classes"], out["num_detections"]

        return detect_two_stage
    size = float(spec.model.input_size)

    @tf.function(autograph=False)  # graph code already: converting the network's calls doubled the trace
    def detect(images):
        out = model(normalize_pixels(images), training=False)
        return out["detection_boxes"] / size, out["detection_scores"], out["detection_classes"], out["num_detections"]

    return detect


def saved_model_detector(path: Path):
    """A SavedModel's serving signature as ``evaluate.score`` calls a detector: one uint8 image batch in."""
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]

    def detect(images):
        out = serve(images=tf.cast(images, tf.uint8))
        return out["detection_boxes"], out["detection_scores"], out["detection_classes"], out["num_detections"]

    return detect


def export_detector(model: Path, spec: TrainSpec):
    """The detection function of an exported model, and the batch size it takes."""
    if model.suffix != ".tflite":
        return saved_model_detector(model), 8 if pipeline_input_size(spec) else 1
    from pipelines.export.tflite_runner import TFLiteDetector  # LiteRT only when a .tflite is read

    if spec.model.kind != "ssd":
        raise OdliteError.at(model, "TFLite models are exported for SSD only; this config is Faster R-CNN")
    detector = TFLiteDetector(model)
    if (detector.height, detector.width) != (spec.model.input_size,) * 2:
        raise OdliteError.at(
            model, f"input is {detector.width}x{detector.height}, the config says {spec.model.input_size}"
        )
    return detector, 1


def saved_model_folder(path: Path) -> Path | None:
    """``path`` itself when it is a SavedModel, its ``saved_model/`` when it is an export folder."""
    for folder in (path, path / "saved_model"):
        if (folder / "saved_model.pb").exists():
            return folder
    return None


def model_kind(path: Path) -> tuple[str, Path]:
    """What ``path`` is: ("tflite", the file), ("saved_model", the SavedModel folder, also inside an
    export folder) or ("checkpoint", a folder with checkpoints); ``OdliteError`` for anything else."""
    if path.suffix == ".tflite" and path.is_file():
        return "tflite", path
    if folder := saved_model_folder(path):
        return "saved_model", folder
    if (path / "checkpoint").exists():
        return "checkpoint", path
    raise OdliteError.at(path, "not a model: expected a .tflite, a SavedModel or a folder with checkpoints")
