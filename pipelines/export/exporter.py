"""The export stage: a checkpoint -> SavedModel and TFLite models an Android app loads as they are.

Two graphs are exported from the same weights:

- ``saved_model/``: serving signature ``serving_default`` taking a uint8 image batch of
  any size (resized inside) and returning ``detection_boxes`` (normalised ymin, xmin,
  ymax, xmax), ``detection_classes`` (label-map ids), ``detection_scores`` and
  ``num_detections``, with the checkpoint's own per-class NMS. This is the TF2 form of
  the OD API's frozen graph.
- the TFLite graph: the network's raw outputs go through Model Garden's TFLite
  post-processing, which the converter lowers to ``TFLite_Detection_PostProcess``.
  Its defaults do not fit the contract, so this module sets each one: the background
  column of the OD API's class head is dropped before the op (the op would otherwise
  count it as a class and shift every class index by one),
  anchors are normalised so boxes come out in [0, 1], and NMS is the op's regular
  per-class NMS with the checkpoint's IoU, score threshold and detection limits, so
  the TFLite models are scored like for like with the checkpoint.

A Faster R-CNN checkpoint exports the SavedModel alone, with the same serving signature
(``TwoStageModule``): TFLite and the Android package are for the SSD, the phone model.

The TFLite models take 0-255 pixels and normalise inside (float32 input for fp32 and
fp16, uint8 for int8), so the metadata declares mean 0 and std 1 and a client feeds
camera pixels unchanged.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from official.vision.modeling.layers import detection_generator
from tensorflow.lite.tools import flatbuffer_utils

from pipelines import defaults
from pipelines.artifacts import (
    CONFIG_NAME,
    LABELS_FILE,
    REPORT_PAGE,
    TFLITE_FILES,
    ExportRecord,
    checkpoint_step,
    config_inputs,
    export_report_folder,
    glob_inputs,
    label_lines,
    resolve_config,
)
from pipelines.atomic import atomic_folder, refuse_overlap, tempfiles_in
from pipelines.config.experiment import TrainSpec, load_train_spec, restored_network
from pipelines.config.label_map import read_label_map
from pipelines.console import native_stderr
from pipelines.data.resize import resize_to_input
from pipelines.detectors import checkpoint_detector, load_detector
from pipelines.errors import OdliteError
from pipelines.evaluate import eval_dataset
from pipelines.export.report import report_markdown
from pipelines.models.faster_rcnn import detect as faster_rcnn_detect
from pipelines.models.meta_architecture import meta_architecture
from pipelines.models.ssd import ModelSpec, normalize_pixels
from pipelines.training.best_checkpoint import chosen_checkpoint

VARIANTS = TFLITE_FILES  # what --variants names
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
IMAGES = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")  # the serving signature's input


def tflite_post_processing(spec: ModelSpec) -> dict:
    """The attributes of the TFLite_Detection_PostProcess op: the config's post_processing."""
    return {
        "max_detections": spec.max_detections,
        "max_classes_per_detection": 1,
        "detections_per_class": spec.max_detections_per_class,
        "use_regular_nms": not spec.class_agnostic_nms,
        "nms_score_threshold": spec.score_threshold,
        "nms_iou_threshold": spec.iou_threshold,
        "input_image_size": (spec.input_size, spec.input_size),
        "normalize_anchor_coordinates": True,
    }


class DetectorModule(tf.Module):
    """The detector with its pre- and post-processing, in the two forms that are exported."""

    def __init__(self, spec: TrainSpec, checkpoint: str):
        super().__init__()
        self.spec = spec.model
        model = restored_network(self.spec, checkpoint)
        # Track the weights, not the Keras model: saving a Keras model traces every layer's call
        # for Keras' own loader, which took 60 of the 84 s of each TFLite conversion.
        self.__dict__["model"] = model
        self.weights = list(model.variables)
        size = self.spec.input_size
        # Traced without autograph: graph code already, and converting the network's calls doubled the trace.
        self.serve = tf.function(self._serve, input_signature=[IMAGES], autograph=False)
        self.tflite_graph = tf.function(
            self._tflite_graph,
            input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")],
            autograph=False,
        )

    def _serve(self, images):
        size = self.spec.input_size
        resized = resize_to_input(images, size)
        out = self.model(normalize_pixels(resized), training=False)
        return {
            "detection_boxes": out["detection_boxes"] / float(size),
            "detection_classes": tf.cast(out["detection_classes"], tf.int32),
            "detection_scores": out["detection_scores"],
            "num_detections": tf.cast(out["num_detections"], tf.int32),
        }

    def _tflite_graph(self, images):
        spec, model = self.spec, self.model
        features = model.decoder(model.backbone(normalize_pixels(images), training=False), training=False)
        raw_scores, raw_boxes, _ = model.head(features, training=False)
        foreground = {}
        for level, scores in raw_scores.items():
            shape = tf.shape(scores)
            per_anchor = tf.reshape(scores, [shape[0], shape[1], shape[2], spec.num_anchors, -1])
            foreground[level] = tf.reshape(per_anchor[..., 1:], [shape[0], shape[1], shape[2], -1])
        anchors = spec.anchors()
        post = detection_generator.MultilevelDetectionGenerator(
            apply_nms=True,
            nms_version="tflite",
            box_coder_weights=list(spec.box_coder_weights),
            tflite_post_processing_config=tflite_post_processing(spec),
        )
        out = post(raw_boxes, foreground, {k: v[None] for k, v in anchors.items()}, None)
        # The converter orders outputs by name; these names sort into the contract's order.
        names = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
        return {name: out[name] for name in names}


class TwoStageModule(tf.Module):
    """Faster R-CNN behind the SSD's serving signature: uint8 images of any size in, normalised boxes,
    label-map classes, scores and count out (resized and padded inside, as in training)."""

    def __init__(self, spec: TrainSpec, checkpoint: str):
        super().__init__()
        self.spec = spec.model
        model = restored_network(self.spec, checkpoint)
        self.__dict__["model"] = model  # the weights are tracked, not the Keras model (see DetectorModule)
        self.weights = list(model.variables)
        self.serve = tf.function(self._serve, input_signature=[IMAGES], autograph=False)

    def _serve(self, images):
        return faster_rcnn_detect(self.model, self.spec, images)


def _calibration_images(spec: TrainSpec, count: int):
    """Training images at the model's size, for int8 calibration."""
    paths = glob_inputs(spec.train_paths, "train_input_reader")

    def generate():
        for images, _ in eval_dataset(paths, spec.model.input_size, 1, limit=count):
            image = images.numpy().astype(np.float32)
            # Pin the input range to 0-255 so the uint8 input takes raw pixels (scale 1, zero point 0).
            image[0, 0, 0], image[0, 0, 1] = 0.0, 255.0
            yield [image]

    return generate


def convert(module, variant: str, calibration=None, scratch: Path | None = None, verbose: bool = False) -> bytes:
    """One TFLite variant; the converter's own temporary files go to ``scratch`` (default: the system's),
    its C++ log lines nowhere unless ``verbose`` (shown anyway if it fails)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.tflite_graph.get_concrete_function()], module)
    converter.allow_custom_ops = True  # TFLite_Detection_PostProcess is a custom op every runtime bundles
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    with tempfiles_in(scratch) if scratch else contextlib.nullcontext(), native_stderr(shown=verbose):
        model = converter.convert()
    return _outputs_in_contract_order(model)


def _outputs_in_contract_order(model: bytes) -> bytes:
    """Make the model's outputs those of TFLite_Detection_PostProcess, in the op's order.

    The converter orders a graph's outputs as it pleases (it differs between runs);
    MediaPipe and the Task Library read boxes, classes, scores, count by position.
    """
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = tree.subgraphs[0]
    post = [op for op in graph.operators if tree.operatorCodes[op.opcodeIndex].customCode == POSTPROCESS_OP.encode()]
    if len(post) != 1 or sorted(graph.outputs) != sorted(post[0].outputs):
        raise OdliteError(f"the converted model does not end in one {POSTPROCESS_OP}; cannot export it")
    graph.outputs = list(post[0].outputs)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


@dataclass
class ExportResult:
    out: Path
    step: int
    record: ExportRecord  # what export.json holds


def _latency(path: Path, runs: int, image) -> dict[str, float]:
    from pipelines.export.tflite_runner import median_latency_ms

    return {f"{threads}_threads": median_latency_ms(path, threads, runs, image=image) for threads in (1, 2)}


def first_validation_image(spec: TrainSpec) -> np.ndarray:
    """A real photo to time the models on (their post-processing cost depends on what they find)."""
    paths = glob_inputs(spec.eval_paths, "eval_input_reader")
    images, _ = next(iter(eval_dataset(paths, spec.model.input_size, 1, limit=1)))
    return images.numpy()[0]


def _measure(
    spec: TrainSpec, checkpoint: str, folder: Path, out: Path, variants, tools_python, progress, verbose
) -> dict:
    """Size, latency, COCO metrics (next to the checkpoint's) and the MediaPipe check of each variant."""
    from pipelines.evaluate import score
    from pipelines.export.android_check import check_with_mediapipe

    step = checkpoint_step(checkpoint)
    progress("evaluating the checkpoint")
    about = {"checkpoint": checkpoint, "step": step}
    reference = score(
        checkpoint_detector(spec, checkpoint), spec, folder / "eval" / "checkpoint", about, progress=False
    )
    found = {"checkpoint": {k: reference[k] for k in ("AP", "AP50", "per_class")}}
    lines = label_lines(read_label_map(spec.label_map_path))
    records = glob_inputs(spec.eval_paths, "eval_input_reader")
    photo = first_validation_image(spec)
    for variant in variants:
        path = folder / VARIANTS[variant]
        progress(f"measuring {path.name}")
        about = {"model": str(out / path.name), "step": step}
        with native_stderr(shown=verbose):  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" per interpreter
            metrics = score(load_detector(path), spec, export_report_folder(path), about, batch_size=1, progress=False)
            latency = _latency(path, 50, photo)
        entry = {"file": path.name, "bytes": path.stat().st_size, "AP": metrics["AP"], "AP50": metrics["AP50"]}
        entry.update(per_class=metrics["per_class"], latency_ms=latency)
        if tools_python:
            check = check_with_mediapipe(path, records, lines, tools_python=tools_python)
            entry["mediapipe"] = {"passed": check.passed, "images": check.images, "compared": check.compared}
            entry["mediapipe"]["mismatches"] = check.mismatches[:20]
        found[variant] = entry
    return found


def export(
    config_path: str | Path | None,
    model_dir: str | Path,
    out: str | Path,
    checkpoint: str | None = None,
    calibration_images: int = defaults.CALIBRATION_IMAGES,
    variants: tuple[str, ...] | None = None,
    tools_python: str | Path | None = None,
    overwrite: bool = False,
    progress=print,
    verbose: bool = False,
) -> ExportResult:
    """Write ``out/``: saved_model/, the TFLite variants with metadata, labelmap.txt, pipeline.config,
    export.json and report.md (sizes, latency, metrics next to the checkpoint's, the MediaPipe check).

    ``variants``: the TFLite models (default: all three for SSD; none for Faster R-CNN, which has none).
    ``verbose``: let the TFLite converter's C++ log lines through (odlite export --verbose)."""
    from pipelines.export.metadata import add_metadata

    model_dir, out = Path(model_dir), Path(out)
    progress = progress or (lambda message: None)
    config_path = resolve_config(config_path, model_dir)
    spec = load_train_spec(config_path)
    checkpoint = chosen_checkpoint(model_dir, checkpoint, say=progress)
    read = [("model directory", model_dir), ("checkpoint", checkpoint), ("pipeline config", config_path)]
    refuse_overlap(out, read + config_inputs(spec))
    if not meta_architecture(spec.model.kind).exports_tflite:
        if variants:
            raise OdliteError(
                "TFLite export is for the SSD (the phone model); a Faster R-CNN exports its SavedModel: "
                "leave out --variants"
            )
        return _export_two_stage(spec, config_path, checkpoint, out, overwrite, progress)
    variants = tuple(VARIANTS) if variants is None else variants
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise OdliteError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    labels = read_label_map(spec.label_map_path)
    if max(labels) > spec.model.num_classes:
        raise OdliteError.at(
            spec.label_map_path, f"label id {max(labels)} exceeds num_classes {spec.model.num_classes}"
        )
    module = DetectorModule(spec, checkpoint)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        (tmp / LABELS_FILE).write_text("\n".join(label_lines(labels)) + "\n")
        shutil.copyfile(config_path, tmp / CONFIG_NAME)
        progress(f"saved_model <- {checkpoint}")
        tf.saved_model.save(module, str(tmp / "saved_model"), signatures={"serving_default": module.serve})
        for variant in variants:
            progress(f"converting {VARIANTS[variant]} ({variant})")
            calibration = _calibration_images(spec, calibration_images) if variant == "int8" else None
            model = convert(module, variant, calibration, tmp / ".converter", verbose)  # scratch goes with tmp
            (tmp / VARIANTS[variant]).write_bytes(add_metadata(model, tmp / LABELS_FILE))
        record = ExportRecord(
            meta_architecture=spec.model.kind,
            checkpoint=checkpoint,
            step=checkpoint_step(checkpoint),
            input_size=spec.model.input_size,
            labels=label_lines(labels),
            calibration_images=calibration_images if "int8" in variants else 0,
            nms={
                "iou_threshold": spec.model.iou_threshold,
                "score_threshold": spec.model.score_threshold,
                "max_detections": spec.model.max_detections,
                "per_class": not spec.model.class_agnostic_nms,
            },
            variants=_measure(spec, checkpoint, tmp, out, variants, tools_python, progress, verbose),
        )
        record.write(tmp)
        (tmp / REPORT_PAGE).write_text(report_markdown(record))
    return ExportResult(out, record.step, record)


def _export_two_stage(spec: TrainSpec, config_path, checkpoint: str, out: Path, overwrite: bool, progress):
    """saved_model/, labelmap.txt, pipeline.config, export.json and report.md, with the SavedModel scored
    next to the checkpoint (they must agree: the same graph, resized the same way)."""
    from pipelines.evaluate import score

    labels = read_label_map(spec.label_map_path)
    module = TwoStageModule(spec, checkpoint)
    step = checkpoint_step(checkpoint)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        (tmp / LABELS_FILE).write_text("\n".join(label_lines(labels)) + "\n")
        shutil.copyfile(config_path, tmp / CONFIG_NAME)
        progress(f"saved_model <- {checkpoint} (Faster R-CNN: SavedModel only; TFLite is for the SSD)")
        tf.saved_model.save(module, str(tmp / "saved_model"), signatures={"serving_default": module.serve})
        progress("evaluating the checkpoint and the SavedModel")
        about = {"checkpoint": checkpoint, "step": step}
        reference = score(
            checkpoint_detector(spec, checkpoint), spec, tmp / "eval" / "checkpoint", about, progress=False
        )
        saved = score(
            load_detector(tmp / "saved_model"),
            spec,
            export_report_folder(tmp / "saved_model"),
            {"model": str(out / "saved_model"), "step": step},
            progress=False,
        )
        m = spec.model
        record = ExportRecord(
            meta_architecture=spec.model.kind,
            checkpoint=checkpoint,
            step=step,
            input_size=list(m.input_shape),
            labels=label_lines(labels),
            nms={
                "iou_threshold": m.iou_threshold,
                "score_threshold": m.score_threshold,
                "max_detections": m.max_detections,
                "per_class": True,
            },
            variants={
                "checkpoint": {k: reference[k] for k in ("AP", "AP50", "per_class")},
                "saved_model": {"file": "saved_model", "AP": saved["AP"], "AP50": saved["AP50"]},
            },
        )
        record.write(tmp)
        (tmp / REPORT_PAGE).write_text(
            f"# Export of step {step} (Faster R-CNN)\n\n"
            f"Checkpoint `{checkpoint}`: mAP@0.5:0.95 {reference['AP']:.3f}, mAP@0.5 {reference['AP50']:.3f}.\n"
            f"SavedModel `saved_model/`: mAP@0.5:0.95 {saved['AP']:.3f}, mAP@0.5 {saved['AP50']:.3f}.\n\n"
            "Serving signature `serving_default`: `images` uint8 [N, H, W, 3] of any size in; "
            "`detection_boxes` (normalised ymin, xmin, ymax, xmax), `detection_classes` (label-map ids), "
            "`detection_scores`, `num_detections` out. TFLite and the Android package are for the SSD.\n"
        )
    return ExportResult(out, step, record)
