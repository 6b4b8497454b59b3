"""The meta-architecture, chosen once from the config: what differs between the SSD and Faster R-CNN.

Each one says how its network is read from the config and built, how the input pipeline labels a
training example for it, what its losses are, how its network detects, what a warm start takes
from which checkpoints, and whether it has a TFLite form. The rest of odlite asks the object that
``meta_architecture`` returns rather than testing which network the config names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import tensorflow as tf
import tf_keras

from pipelines.config.model_specs import faster_rcnn_spec, model_spec, ssd_training_settings
from pipelines.models.faster_rcnn import (
    FASTER_RCNN_LOSSES,
    RESNETS,
    FasterRcnnSpec,
    build_faster_rcnn,
    rpn_labeller,
    training_losses,
)
from pipelines.models.faster_rcnn import detect as faster_rcnn_detect
from pipelines.models.ssd import ModelSpec, build_model, normalize_pixels
from pipelines.models.ssd_training import SSD_LOSSES, anchor_labeller, detection_losses

if TYPE_CHECKING:
    from pipelines.config.experiment import TrainSpec
    from pipelines.config.pipeline_config import PipelineConfig

KERAS_MOBILENET_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5"
KERAS_RESNET_WEIGHTS = "resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"


class MetaArchitecture(ABC):
    """One meta-architecture's parts; ``spec`` is its model spec, ``train`` the whole run's TrainSpec."""

    name: str  # the config's model block, and the model spec's kind
    loss_names: tuple[str, ...]  # what a training step reports, total_loss first
    exports_tflite: bool  # a phone model: TFLite and the Android package; otherwise a SavedModel alone
    fits_odapi_detection_checkpoints: bool  # the zoo's detection checkpoints hold this network by name

    @abstractmethod
    def read_spec(self, config: PipelineConfig):
        """The model spec the config describes."""

    def training_settings(self, config: PipelineConfig) -> dict:
        """TrainSpec's fields for the targets and losses, where the model spec does not hold them."""
        return {}

    @abstractmethod
    def build(self, spec):
        """The network, built and initialised."""

    @abstractmethod
    def pipeline_input_size(self, spec) -> int | None:
        """The square the input pipeline resizes to; None where the network fits each image itself."""

    @abstractmethod
    def labeller(self, train: TrainSpec):
        """(decoded, augmented example, its [2] seed) -> (uint8 image, training targets)."""

    @abstractmethod
    def losses(self, train: TrainSpec, model):
        """(uint8 images, targets) -> {loss name: per-replica value} of one training batch."""

    @abstractmethod
    def detector(self, spec, model):
        """A tf.function: uint8 images -> (normalised [ymin, xmin, ymax, xmax], scores, classes, count)."""

    @abstractmethod
    def backbone_name(self, spec) -> str:
        """The backbone as warm start's messages call it."""

    @abstractmethod
    def keras_name(self, spec) -> str:
        """The Keras Applications model the backbone is, as warm start's messages call it."""

    @abstractmethod
    def keras_backbone(self, spec, weights: str | None) -> tf_keras.Model:
        """That Keras Applications model, with ``weights`` (None, "imagenet" or an .h5 file)."""

    @abstractmethod
    def keras_weights_file(self, spec) -> str:
        """The name of Keras' ImageNet no-top weights for the backbone."""

    @abstractmethod
    def detection_parts(self, model) -> dict:
        """Backbone and FPN under the names a training checkpoint saves them: what 'detection' restores."""


class Ssd(MetaArchitecture):
    """SSD MobileNetV2 FPNLite (ssd.py): anchors labelled in the input pipeline, focal + smooth-L1 loss."""

    name = "ssd"
    loss_names = SSD_LOSSES
    exports_tflite = True
    fits_odapi_detection_checkpoints = True

    def read_spec(self, config: PipelineConfig) -> ModelSpec:
        return model_spec(config)

    def training_settings(self, config: PipelineConfig) -> dict:
        return ssd_training_settings(config)

    def build(self, spec: ModelSpec):
        return build_model(spec)

    def pipeline_input_size(self, spec: ModelSpec) -> int:
        return spec.input_size

    def labeller(self, train: TrainSpec):
        label = anchor_labeller(train)
        return lambda example, seed: label(example)

    def losses(self, train: TrainSpec, model):
        def ssd_losses(images, labels):
            outputs = model(normalize_pixels(images), training=True)
            return detection_losses(train, outputs, labels, model.losses)

        return ssd_losses

    def detector(self, spec: ModelSpec, model):
        size = float(spec.input_size)

        @tf.function(autograph=False)  # graph code already: converting the network's calls doubled the trace
        def detect(images):
            out = model(normalize_pixels(images), training=False)
            boxes = out["detection_boxes"] / size
            return boxes, out["detection_scores"], out["detection_classes"], out["num_detections"]

        return detect

    def backbone_name(self, spec: ModelSpec) -> str:
        return "MobileNetV2 backbone"

    def keras_name(self, spec: ModelSpec) -> str:
        return f"MobileNetV2 (alpha {spec.depth_multiplier})"

    def keras_backbone(self, spec: ModelSpec, weights: str | None) -> tf_keras.Model:
        return keras_mobilenet_v2(weights, spec.depth_multiplier)

    def keras_weights_file(self, spec: ModelSpec) -> str:
        alpha = spec.depth_multiplier
        return KERAS_MOBILENET_WEIGHTS.format(alpha=f"{alpha:.2f}".rstrip("0").rstrip(".") if alpha != 1 else "1.0")

    def detection_parts(self, model) -> dict:
        return {"_backbone": model.backbone, "_decoder": model.decoder}  # RetinaNetModel's own names


class FasterRcnn(MetaArchitecture):
    """Faster R-CNN ResNet-FPN (faster_rcnn.py): RPN targets in the input pipeline, Model Garden's losses."""

    name = "faster_rcnn"
    loss_names = FASTER_RCNN_LOSSES
    exports_tflite = False
    fits_odapi_detection_checkpoints = False  # Model Garden's network beyond the backbone

    def read_spec(self, config: PipelineConfig) -> FasterRcnnSpec:
        return faster_rcnn_spec(config)

    def build(self, spec: FasterRcnnSpec):
        return build_faster_rcnn(spec)

    def pipeline_input_size(self, spec: FasterRcnnSpec) -> None:
        return None  # resized keeping the aspect ratio, then padded, by the network's own fit_images

    def labeller(self, train: TrainSpec):
        return rpn_labeller(train.model, train.max_boxes)

    def losses(self, train: TrainSpec, model):
        losses = training_losses(train.model)
        return lambda images, labels: losses(model, images, labels)

    def detector(self, spec: FasterRcnnSpec, model):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], autograph=False)
        def detect_two_stage(images):
            out = faster_rcnn_detect(model, spec, images)
            return out["detection_boxes"], out["detection_scores"], out["detection_classes"], out["num_detections"]

        return detect_two_stage

    def backbone_name(self, spec: FasterRcnnSpec) -> str:
        return f"ResNet-{spec.depth} backbone"

    def keras_name(self, spec: FasterRcnnSpec) -> str:
        return f"ResNet{spec.depth}"

    def keras_backbone(self, spec: FasterRcnnSpec, weights: str | None) -> tf_keras.Model:
        application = getattr(tf_keras.applications, RESNETS[spec.depth])
        return application(include_top=False, weights=weights, input_shape=(None, None, 3))

    def keras_weights_file(self, spec: FasterRcnnSpec) -> str:
        return KERAS_RESNET_WEIGHTS.format(depth=spec.depth)

    def detection_parts(self, model) -> dict:
        return {"backbone": model.backbone, "decoder": model.decoder}  # MaskRCNNModel's own names


def keras_mobilenet_v2(weights: str | None, alpha: float) -> tf_keras.Model:
    return tf_keras.applications.MobileNetV2(
        include_top=False, weights=weights, input_shape=(None, None, 3), alpha=alpha
    )


META_ARCHITECTURES = {architecture.name: architecture for architecture in (Ssd(), FasterRcnn())}


def meta_architecture(name: str) -> MetaArchitecture:
    """The meta-architecture called ``name``: the config's model block (``config.which("model")``),
    which is also its model spec's ``kind``. The config checks have refused any other."""
    return META_ARCHITECTURES[name]
