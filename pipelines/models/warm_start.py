"""Where training starts: an OD API checkpoint (the model zoo's, a user's own run), Keras' ImageNet
MobileNetV2 or ResNet, an odlite checkpoint, or nothing.

``fine_tune_checkpoint_type`` as the OD API defines it:

- ``classification``: the MobileNetV2 backbone, from a Keras Applications ``.h5`` file
  (``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5``; the word
  ``imagenet`` lets Keras fetch it when online), or from any TF2 checkpoint that holds a
  Keras MobileNetV2 (the zoo configs' ``mobilenet_v2.ckpt-1``, a detection checkpoint);
- ``detection``: the feature extractor (backbone, FPN and coarse levels: 290 tensors for
  FPNLite); the box predictor starts fresh, so the number of classes may differ;
- ``full``: everything, the box predictor too, which needs the same ``num_classes``.

Faster R-CNN (faster_rcnn.py) takes ``classification`` from Keras Applications' ResNet
``.h5`` files or any TF2 checkpoint holding a Keras ResNet (the OD API's ``resnet50.ckpt-1``),
and ``detection`` (backbone and FPN) or ``full`` from an odlite Faster R-CNN checkpoint. Its
network is Model Garden's beyond the backbone, so the zoo's Faster R-CNN detection
checkpoints do not fit, and say so.

OD API checkpoints are read by variable name (``model/_feature_extractor/...``), so they load
with or without their object graph; names that a mode does not need (optimizer slots, the
step counter, a head for other classes) are ignored, and each name it needs must be there
with this model's shape, else the run stops listing what did not match. The anchors are the
OD API's own order, so a zoo head's outputs need no reordering. odlite's own checkpoints load
by object graph. An empty ``fine_tune_checkpoint`` trains from scratch, and so does
``--from-scratch`` when the checkpoint cannot be had; a missing one is an error, never a
silent fallback.
"""

from __future__ import annotations

import re
from pathlib import Path

import tensorflow as tf
import tf_keras

from pipelines.config.experiment import TrainSpec
from pipelines.errors import OdliteError
from pipelines.models.meta_architecture import meta_architecture

FEATURE_EXTRACTOR = "model/_feature_extractor/"
BACKBONE = FEATURE_EXTRACTOR + "classification_backbone/"
FPN = FEATURE_EXTRACTOR + "_fpn_features_generator/"
COARSE = FEATURE_EXTRACTOR + "_coarse_feature_layers/"
PREDICTOR = "model/_box_predictor/"
CLASS_HEAD = PREDICTOR + "_prediction_heads/class_predictions_with_background/_class_predictor_layers/0"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
SHOWN = 25  # unmatched names listed in an error


def _short(variable: tf.Variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def _names(prefix: str, layer) -> dict[str, tf.Variable]:
    return {f"{prefix}/{_short(v)}": v for v in layer.weights}


def backbone_names(backbone: tf_keras.Model, prefix: str = BACKBONE) -> dict[str, tf.Variable]:
    """A Keras functional model's checkpoint names: its layers with weights, numbered in order."""
    names = {}
    for i, layer in enumerate(layer for layer in backbone.layers if layer.weights):
        names.update(_names(f"{prefix}layer_with_weights-{i}", layer))
    return names


def feature_extractor_names(model) -> dict[str, tf.Variable]:
    """OD API name -> variable for backbone, FPN and coarse levels (``SSDMobileNetV2FpnKerasFeatureExtractor``)."""
    fpn = model.decoder
    names = backbone_names(model.backbone)
    names.update(_names(f"{FPN}top_layers/0", fpn.top_projection))
    for i, (projection, (conv, norm, _)) in enumerate(zip(fpn.projections, fpn.smoothing)):
        names.update(_names(f"{FPN}residual_blocks/{i}/0", projection))
        names.update(_names(f"{FPN}conv_layers/{i}/0", conv))
        names.update(_names(f"{FPN}conv_layers/{i}/1", norm))
    for i, (conv, norm, _) in enumerate(fpn.coarse):
        names.update(_names(f"{COARSE}{i}/0", conv))
        names.update(_names(f"{COARSE}{i}/1", norm))
    return names


def box_predictor_names(model) -> dict[str, tf.Variable]:
    """OD API name -> variable for ``WeightSharedConvolutionalBoxPredictor``.

    Its tower lists hold [conv, batch norm, activation] per layer, so a level's batch norms
    sit at 1, 4, 7, ...; the shared convs are saved under ``_head_scope_conv_layers``.
    """
    head = model.head
    if head.spec.share_prediction_tower:
        towers = [("PredictionTower", "box_encodings", head.box_tower, head.box_tower_norms)]
    else:
        towers = [
            ("BoxPredictionTower", "box_encodings", head.box_tower, head.box_tower_norms),
            ("ClassPredictionTower", "class_predictions_with_background", head.class_tower, head.class_tower_norms),
        ]
    names = {}
    for scope, key, convs, norms in towers:
        for j, conv in enumerate(convs):
            names.update(_names(f"{PREDICTOR}_head_scope_conv_layers/{scope}/{j}", conv))
        for level, level_norms in enumerate(norms):
            for j, norm in enumerate(level_norms):
                names.update(_names(f"{PREDICTOR}_base_tower_layers_for_heads/{key}/{level}/{3 * j + 1}", norm))
    names.update(_names(f"{PREDICTOR}_box_prediction_head/_box_encoder_layers/0", head.box_predictor))
    names.update(_names(CLASS_HEAD, head.class_predictor))
    return names


def odapi_names(model, kind: str) -> dict[str, tf.Variable]:
    """What ``fine_tune_checkpoint_type`` ``kind`` restores from an OD API detection checkpoint."""
    names = feature_extractor_names(model)
    if kind == "full":
        names.update(box_predictor_names(model))
    return names


def mismatches(shapes: dict[str, list[int]], wanted: dict[str, tf.Variable]) -> list[str]:
    """One line per name that is missing from ``shapes`` or has another shape there."""
    lines = []
    for name, variable in wanted.items():
        ours = variable.shape.as_list()
        theirs = shapes.get(name + VALUE)
        if theirs is None:
            lines.append(f"missing: {name} {ours}")
        elif list(theirs) != ours:
            lines.append(f"shape: {name} is {list(theirs)} in the checkpoint, {ours} in this model")
    return lines


def restore_by_name(reader, wanted: dict[str, tf.Variable], spec: TrainSpec, checkpoint: str) -> int:
    """Assign each variable the checkpoint tensor of its name (checked beforehand with ``mismatches``)."""
    for name, variable in wanted.items():
        try:
            value = reader.get_tensor(name + VALUE)
        except (tf.errors.OpError, ValueError) as exc:  # the index is there, the values are not
            raise _checkpoint_error(
                spec,
                f"{checkpoint}: cannot read {name} ({_first_line(exc)}); is its .data-00000-of-00001 file complete?",
            ) from None
        variable.assign(tf.cast(value, variable.dtype))
    return len(wanted)


def _checkpoint_error(spec: TrainSpec, text: str) -> OdliteError:
    return OdliteError.at(spec.config.source, text, "train_config.fine_tune_checkpoint")


def _first_line(exc: Exception) -> str:
    return getattr(exc, "message", str(exc)).splitlines()[0]


def _fail(spec: TrainSpec, checkpoint: str, what: str, lines: list[str], hint: str = "") -> None:
    shown = "\n  ".join(lines[:SHOWN]) + (f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else "")
    raise _checkpoint_error(
        spec, f"{checkpoint} does not fit this model's {what} ({len(lines)} of its tensors unmatched){hint}:\n  {shown}"
    )


def _backbone_prefixes(shapes: dict) -> list[str]:
    """Where a checkpoint keeps Keras functional models: the prefixes of their ``layer_with_weights-0``."""
    pattern = re.compile(r"^(.*?)layer_with_weights-0/[^/]+" + re.escape(VALUE) + "$")
    return sorted({m.group(1) for key in shapes if (m := pattern.match(key))})


def _open_checkpoint(spec: TrainSpec, checkpoint: str):
    """The checkpoint's reader and {name: shape}; an unreadable index is the config's error, not a trace."""
    try:
        reader = tf.train.load_checkpoint(checkpoint)
    except (tf.errors.OpError, ValueError) as exc:
        raise _checkpoint_error(spec, f"{checkpoint} is not a readable TF2 checkpoint ({_first_line(exc)})") from None
    return reader, reader.get_variable_to_shape_map()


def _restore_backbone(model, spec: TrainSpec, checkpoint: str, reader, shapes: dict) -> str:
    candidates = []
    for prefix in _backbone_prefixes(shapes):
        wanted = backbone_names(model.backbone, prefix)
        candidates.append((mismatches(shapes, wanted), prefix, wanted))
    what = meta_architecture(spec.model.kind).backbone_name(spec.model)
    if not candidates:
        _fail(spec, checkpoint, what, ["no Keras model ('layer_with_weights-0') in the checkpoint"])
    lines, prefix, wanted = min(candidates, key=lambda c: len(c[0]))
    if lines:
        _fail(spec, checkpoint, what, lines, f" (read under '{prefix}')")
    count = restore_by_name(reader, wanted, spec, checkpoint)
    return f"backbone initialised from {checkpoint}: {count} tensors by name under '{prefix}'"


def _restore_odapi(model, spec: TrainSpec, checkpoint: str, reader, shapes: dict) -> str:
    kind = spec.fine_tune_checkpoint_type
    wanted = odapi_names(model, kind)
    lines = mismatches(shapes, wanted)
    if lines:
        hint = ""
        theirs = shapes.get(f"{CLASS_HEAD}/bias{VALUE}")
        if kind == "full" and theirs and theirs[0] != model.head.class_predictor.bias.shape[0]:
            slots = theirs[0] // spec.model.num_anchors - 1
            hint = (
                f"; 'full' needs the checkpoint's num_classes ({slots}, here {spec.model.num_classes}): "
                "use 'detection' to train a new box predictor"
            )
        _fail(spec, checkpoint, "feature extractor" if kind == "detection" else "network", lines, hint)
    count = restore_by_name(reader, wanted, spec, checkpoint)
    part = "backbone, FPN and coarse levels; box predictor fresh" if kind == "detection" else "the whole network"
    return f"initialised {part} from OD API checkpoint {checkpoint}: {count} tensors by name"


def _restore_odlite(model, spec: TrainSpec, checkpoint: str) -> str:
    # Training saves Checkpoint(model=..., optimizer=...), the model's parts under its own names.
    detection = spec.fine_tune_checkpoint_type == "detection"
    parts = meta_architecture(spec.model.kind).detection_parts(model) if detection else {}
    target = tf.train.Checkpoint(**parts) if parts else model
    status = tf.train.Checkpoint(model=target).read(checkpoint)
    try:
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError as exc:
        raise _checkpoint_error(spec, f"{checkpoint} does not fit this model: {exc}") from None
    return f"initialised {'backbone, FPN' if parts else 'the whole model'} from odlite checkpoint {checkpoint}"


def copy_keras_weights(source: tf_keras.Model, backbone: tf_keras.Model) -> int:
    """A Keras Applications model into odlite's backbone, layer by layer name (the same application
    builds both)."""
    lines, pairs = [], []
    for layer in backbone.layers:
        if not layer.weights:
            continue
        try:
            theirs = source.get_layer(layer.name).weights
        except ValueError:
            lines.append(f"missing: layer {layer.name}")
            continue
        for ours, weight in zip(layer.weights, theirs):
            if ours.shape != weight.shape:
                lines.append(f"shape: {weight.name} is {weight.shape.as_list()}, {ours.shape.as_list()} in this model")
            pairs.append((ours, weight))
    if lines:
        raise OdliteError(f"the {source.name} weights do not fit the backbone:\n  " + "\n  ".join(lines[:SHOWN]))
    for ours, weight in pairs:
        ours.assign(weight)
    return len(pairs)


def _checkpoint_prefix(path: str) -> str | None:
    candidate = Path(path)
    if candidate.is_dir():
        return tf.train.latest_checkpoint(str(candidate))
    return path if tf.io.gfile.exists(f"{path}.index") else None


def _keras_weights(model, spec: TrainSpec, source: str, from_scratch: bool) -> str:
    architecture = meta_architecture(spec.model.kind)
    what = architecture.keras_name(spec.model)
    if source == "imagenet":
        try:
            weights = architecture.keras_backbone(spec.model, "imagenet")
        except Exception as exc:  # offline: Keras' download fails
            return _missing(spec, f"ImageNet weights could not be downloaded ({exc.__class__.__name__})", from_scratch)
    else:
        try:
            weights = architecture.keras_backbone(spec.model, source)
        except (OSError, ValueError) as exc:
            raise OdliteError.at(source, f"not Keras {what} no-top weights: {_first_line(exc)}") from None
    count = copy_keras_weights(weights, model.backbone)
    return f"backbone initialised from ImageNet {what.split(' ')[0]} weights ({count} tensors) in {source}"


def warm_start(model, spec: TrainSpec, from_scratch: bool) -> str:
    """Initialise ``model`` as the config says; returns a line saying what was restored, and from where."""
    source, kind = spec.fine_tune_checkpoint, spec.fine_tune_checkpoint_type
    if not source:
        return "training from scratch: fine_tune_checkpoint is empty in the config"
    if kind == "classification" and (source == "imagenet" or source.endswith(".h5")):
        if source != "imagenet" and not Path(source).is_file():
            expected = meta_architecture(spec.model.kind).keras_weights_file(spec.model)
            return _missing(spec, f"'{source}' not found (expected a Keras file like {expected})", from_scratch)
        return _keras_weights(model, spec, source, from_scratch)
    checkpoint = _checkpoint_prefix(source)
    if checkpoint is None:
        return _missing(
            spec, f"no checkpoint at '{source}' (a TF2 checkpoint prefix such as .../checkpoint/ckpt-0)", from_scratch
        )
    reader, shapes = _open_checkpoint(spec, checkpoint)
    if kind == "classification":
        return _restore_backbone(model, spec, checkpoint, reader, shapes)
    architecture = meta_architecture(spec.model.kind)
    if not architecture.fits_odapi_detection_checkpoints and any(key.startswith("model/_") for key in shapes):
        raise _checkpoint_error(
            spec,
            f"{checkpoint} is an OD API detection checkpoint; odlite's Faster R-CNN is Model Garden's beyond the "
            "backbone, so only its ResNet can be taken: set fine_tune_checkpoint_type to 'classification'",
        )
    if any(key.startswith(FEATURE_EXTRACTOR) for key in shapes):
        return _restore_odapi(model, spec, checkpoint, reader, shapes)
    return _restore_odlite(model, spec, checkpoint)


def _missing(spec: TrainSpec, reason: str, from_scratch: bool) -> str:
    if from_scratch:
        return f"training from scratch (--from-scratch): fine_tune_checkpoint {reason}"
    raise _checkpoint_error(
        spec, f'{reason}; point it at the weights, set it to "" or pass --from-scratch to train from scratch'
    )
