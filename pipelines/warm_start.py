"""Where training starts: ImageNet MobileNetV2 weights, an earlier odlite checkpoint, or nothing.

``fine_tune_checkpoint_type: "classification"`` takes Keras Applications' MobileNetV2
weights: a local ``.h5`` file (``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5``
and the other alphas), or the word ``imagenet``, which lets Keras fetch it into its
cache (``~/.keras/models``) when the machine is online. ``"detection"`` takes the
backbone and FPN of an odlite checkpoint (a model directory or a checkpoint prefix),
``"full"`` the whole model. An empty ``fine_tune_checkpoint`` trains from scratch,
and so does ``--from-scratch``; a checkpoint that cannot be found is an error, never a
silent fallback.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tf_keras

from pipelines.errors import OdliteError
from pipelines.experiment import TrainSpec

KERAS_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5"


def keras_mobilenet_v2(weights: str | None, alpha: float) -> tf_keras.Model:
    return tf_keras.applications.MobileNetV2(
        include_top=False, weights=weights, input_shape=(None, None, 3), alpha=alpha
    )


def copy_keras_weights(source: tf_keras.Model, backbone: tf_keras.Model) -> int:
    """Copy Keras Applications' MobileNetV2 into Model Garden's: same layers, same order, other names.

    Both create trainable weights, then moving statistics, in network order; the
    shapes are checked pair by pair.
    """
    pairs = list(zip(source.trainable_weights, backbone.trainable_weights)) + list(
        zip(source.non_trainable_weights, backbone.non_trainable_weights)
    )
    if len(source.weights) != len(backbone.weights):
        raise OdliteError(
            f"the MobileNetV2 weights have {len(source.weights)} tensors, the backbone {len(backbone.weights)}"
        )
    for theirs, ours in pairs:
        if theirs.shape != ours.shape:
            raise OdliteError(f"MobileNetV2 weight {theirs.name} {theirs.shape} does not fit {ours.name} {ours.shape}")
    for theirs, ours in pairs:
        ours.assign(theirs)
    return len(pairs)


def _odlite_checkpoint(path: str) -> str | None:
    candidate = Path(path)
    if candidate.is_dir():
        return tf.train.latest_checkpoint(str(candidate))
    return path if tf.io.gfile.exists(f"{path}.index") else None


def warm_start(model, spec: TrainSpec, from_scratch: bool) -> str:
    """Initialise ``model`` as the config says; returns a line saying what was done."""
    source, kind = spec.fine_tune_checkpoint, spec.fine_tune_checkpoint_type
    if not source:
        return "training from scratch: fine_tune_checkpoint is empty in the config"
    where = "train_config.fine_tune_checkpoint"
    if kind == "classification":
        alpha = spec.model.depth_multiplier
        if source == "imagenet":
            try:
                weights = keras_mobilenet_v2("imagenet", alpha)
            except Exception as exc:  # offline: Keras' download fails
                return _missing(
                    spec, f"ImageNet weights could not be downloaded ({exc.__class__.__name__})", from_scratch
                )
        elif Path(source).is_file():
            try:
                weights = keras_mobilenet_v2(source, alpha)
            except (OSError, ValueError) as exc:
                raise OdliteError.at(source, f"not Keras MobileNetV2 (alpha {alpha}) no-top weights: {exc}") from None
        else:
            expected = KERAS_WEIGHTS.format(alpha=f"{alpha:.2f}".rstrip("0").rstrip(".") if alpha != 1 else "1.0")
            return _missing(spec, f"'{source}' not found (expected a Keras file like {expected})", from_scratch)
        count = copy_keras_weights(weights, model.backbone)
        return f"backbone initialised from ImageNet MobileNetV2 weights ({count} tensors) in {source}"
    checkpoint = _odlite_checkpoint(source)
    if checkpoint is None:
        return _missing(spec, f"no checkpoint at '{source}'", from_scratch)
    # Training saves Checkpoint(model=..., optimizer=...); the model tracks its parts as _backbone, _decoder.
    parts = {"_backbone": model.backbone, "_decoder": model.decoder} if kind == "detection" else {}
    target = tf.train.Checkpoint(**parts) if parts else model
    status = tf.train.Checkpoint(model=target).read(checkpoint)
    try:
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError as exc:
        raise OdliteError.at(spec.config.source, f"{checkpoint} does not fit this model: {exc}", where) from None
    return f"initialised {'backbone, FPN' if parts else 'the whole model'} from {checkpoint}"


def _missing(spec: TrainSpec, reason: str, from_scratch: bool) -> str:
    if from_scratch:
        return f"training from scratch (--from-scratch): fine_tune_checkpoint {reason}"
    raise OdliteError.at(
        spec.config.source,
        f'{reason}; point it at the weights, set it to "" or pass --from-scratch to train from scratch',
        "train_config.fine_tune_checkpoint",
    )
