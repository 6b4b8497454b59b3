"""Detectors from model files: what kind of file a model is, and the detection function of each.

A detection function maps a batch of uint8 images to (normalised [ymin, xmin, ymax, xmax], scores,
classes, count), the form ``evaluate.score`` scores and ``detect`` draws: a checkpoint (``CheckpointDetector``),
an exported SavedModel (``saved_model_detector``) or .tflite (``TFLiteDetector``).
Evaluation, export, detect and training's evaluations load models from here, so none of them needs
another stage's module to read a model file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


class TFLiteDetector:
    """An exported .tflite in LiteRT, the interpreter Android ships. One interpreter; not thread-safe (LiteRT
    interpreters are not), so give each thread its own.

    Every odlite .tflite has one image input (float32 0-255, or uint8 for the int8 variant) and the four
    outputs of ``TFLite_Detection_PostProcess`` in the contract's order: boxes [1, N, 4] (normalised ymin,
    xmin, ymax, xmax), classes [1, N] (index into labelmap.txt), scores [1, N], count [1].
    """

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
        _, self.height, self.width, _ = (int(v) for v in self._input["shape"])
        self.input_type = np.dtype(self._input["dtype"])
        if self.input_type == np.uint8:
            scale, zero_point = self._input["quantization"]
            if (scale, zero_point) != (1.0, 0):
                raise OdliteError.at(
                    self.path, f"uint8 input must take raw pixels, got scale {scale} zero {zero_point}"
                )

    def detect_one(self, image: np.ndarray):
        """uint8 [H, W, 3] at the model's size -> boxes, class indices, scores, count."""
        self.interpreter.set_tensor(self._input["index"], image[None].astype(self.input_type, copy=False))
        self.interpreter.invoke()
        boxes, classes, scores, count = (self.interpreter.get_tensor(i) for i in self._outputs)
        return boxes[0], classes[0].astype(np.int64), scores[0], int(count[0])

    def __call__(self, images):
        """A batch of uint8 images -> (boxes, scores, label-map ids, counts), like a checkpoint's detector."""
        images = np.asarray(images)
        found = [self.detect_one(image) for image in images]
        n = max(len(f[1]) for f in found)
        boxes = np.zeros((len(found), n, 4), np.float32)
        scores = np.zeros((len(found), n), np.float32)
        classes = np.zeros((len(found), n), np.int64)
        for i, (b, c, s, _) in enumerate(found):
            boxes[i, : len(c)], scores[i, : len(c)], classes[i, : len(c)] = b, s, c + 1  # index 0 is label id 1
        return boxes, scores, classes, np.array([f[3] for f in found])


def export_detector(model: Path, spec: TrainSpec):
    """The detection function of an exported model, and the batch size it takes."""
    if model.suffix != ".tflite":
        return saved_model_detector(model), 8 if pipeline_input_size(spec) else 1
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
