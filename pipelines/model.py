"""SSD-MobileNetV2-FPNLite, assembled from Model Garden's RetinaNet parts.

Model Garden's MobileNetV2 backbone, FPN with separable convs and weight-shared
separable head are the OD API's FPNLite; two OD API options it lacks are added
here: ``share_prediction_tower`` (one conv tower feeds both the class and the box
predictor, which halves the head's cost) and a configurable class prior bias.
The conv initializer of the config is applied to every conv kernel, as the OD API
does with ``override_base_feature_extractor_hyperparams``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf
import tf_keras
from official.vision.configs import backbones, common, decoders
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.modeling import backbones as backbone_factory
from official.vision.modeling import decoders as decoder_factory
from official.vision.modeling import retinanet_model
from official.vision.modeling.heads import dense_prediction_heads
from official.vision.modeling.layers import detection_generator

# Model Garden's normalisation (ImageNet mean and std of 0-255 RGB); the exported model applies it itself.
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def resize_to_input(image: tf.Tensor, size: int) -> tf.Tensor:
    """fixed_shape_resizer: stretched to size x size (bilinear) and rounded back to uint8, as a phone's frame is."""
    resized = tf.image.resize(image, [size, size], method="bilinear")  # a weighted mean: stays in 0-255
    return tf.cast(tf.round(resized), tf.uint8)


def normalize_pixels(images: tf.Tensor) -> tf.Tensor:
    """0-255 pixels of any dtype -> the network's input."""
    return (tf.cast(images, tf.float32) - MEAN_RGB) / STDDEV_RGB


@dataclass
class ModelSpec:
    """Everything that decides the network's shape and its post-processing."""

    num_classes: int  # foreground classes, as in the label map
    input_size: int = 320
    min_level: int = 3
    max_level: int = 7
    depth_multiplier: float = 1.0
    fpn_depth: int = 128
    fpn_separable: bool = True
    head_depth: int = 128
    head_layers: int = 4
    head_separable: bool = True
    share_prediction_tower: bool = True
    class_prior_bias: float = -4.6
    initialize_pointwise: bool = False  # apply_conv_hyperparams_pointwise
    initialize_predictors: bool = False  # apply_conv_hyperparams_to_heads
    anchor_scale: float = 4.0
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0, 2.0, 0.5])
    scales_per_octave: int = 2
    activation: str = "relu6"
    batch_norm_decay: float = 0.997
    batch_norm_epsilon: float = 0.001
    l2_weight: float = 4e-5
    # (kind, parameters) as in conv_hyperparams.initializer: the head's, the FPN's, and the backbone's
    # (None: MobileNetV2's own, as when override_base_feature_extractor_hyperparams is false).
    initializer: tuple[str, dict] = ("random_normal", {"mean": 0.0, "stddev": 0.01})
    fpn_initializer: tuple[str, dict] = ("random_normal", {"mean": 0.0, "stddev": 0.01})
    backbone_initializer: tuple[str, dict] | None = None
    box_coder_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])  # y, x, h, w
    score_threshold: float = 1e-8
    iou_threshold: float = 0.6
    max_detections: int = 100
    class_agnostic_nms: bool = False

    def retinanet_config(self) -> retinanet_cfg.RetinaNet:
        """The Model Garden config this spec corresponds to (Model Garden counts the background as class 0)."""
        return retinanet_cfg.RetinaNet(
            num_classes=self.num_classes + 1,
            input_size=[self.input_size, self.input_size, 3],
            min_level=self.min_level,
            max_level=self.max_level,
            anchor=retinanet_cfg.Anchor(
                num_scales=self.scales_per_octave, aspect_ratios=list(self.aspect_ratios), anchor_size=self.anchor_scale
            ),
            backbone=backbones.Backbone(
                type="mobilenet",
                mobilenet=backbones.MobileNet(model_id="MobileNetV2", filter_size_scale=self.depth_multiplier),
            ),
            decoder=decoders.Decoder(
                type="fpn", fpn=decoders.FPN(num_filters=self.fpn_depth, use_separable_conv=self.fpn_separable)
            ),
            head=retinanet_cfg.RetinaNetHead(
                num_convs=self.head_layers, num_filters=self.head_depth, use_separable_conv=self.head_separable
            ),
            detection_generator=retinanet_cfg.DetectionGenerator(
                pre_nms_score_threshold=self.score_threshold,
                nms_iou_threshold=self.iou_threshold,
                max_num_detections=self.max_detections,
                use_class_agnostic_nms=self.class_agnostic_nms,
                box_coder_weights=list(self.box_coder_weights),
            ),
            norm_activation=common.NormActivation(
                activation=self.activation,
                use_sync_bn=False,
                norm_momentum=self.batch_norm_decay,
                norm_epsilon=self.batch_norm_epsilon,
            ),
        )


def make_initializer(description: tuple[str, dict]):
    """A new Keras initializer for an OD API initializer (a fresh one each call: unseeded ones repeat)."""
    kind, p = description
    if kind == "variance_scaling":
        distribution = "uniform" if p.get("uniform") else "truncated_normal"
        return tf_keras.initializers.VarianceScaling(p["factor"], p["mode"].lower(), distribution)
    if kind == "truncated_normal":
        return tf_keras.initializers.TruncatedNormal(mean=p["mean"], stddev=p["stddev"])
    return tf_keras.initializers.RandomNormal(mean=p["mean"], stddev=p["stddev"])


@tf_keras.utils.register_keras_serializable(package="odlite")
class FPNLiteHead(dense_prediction_heads.RetinaNetHead):
    """RetinaNet head with the OD API's shared prediction tower and class prior bias."""

    def __init__(
        self,
        share_prediction_tower: bool = True,
        class_prior_bias: float = -4.6,
        initializer=None,
        initialize_pointwise: bool = False,
        initialize_predictors: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(initializer, dict):
            initializer = tf_keras.initializers.deserialize(initializer)
        self._classifier_kwargs["bias_initializer"] = tf_keras.initializers.Constant(class_prior_bias)
        if initializer is not None:
            # As the OD API's weight-shared predictor: with separable convs the initializer goes to the
            # tower's depthwise kernels only; pointwise kernels and the predictors keep Keras' glorot_uniform
            # unless apply_conv_hyperparams_pointwise / apply_conv_hyperparams_to_heads say otherwise.
            if self._config_dict["use_separable_conv"]:
                self._conv_kwargs.update(
                    depthwise_initializer=initializer,
                    pointwise_initializer=initializer if initialize_pointwise else "glorot_uniform",
                )
                chosen = initializer if initialize_predictors else "glorot_uniform"
                for predictor in (self._classifier_kwargs, self._box_regressor_kwargs):
                    predictor.update(depthwise_initializer=chosen, pointwise_initializer=chosen)
            else:
                for layer_kwargs in (self._conv_kwargs, self._classifier_kwargs, self._box_regressor_kwargs):
                    layer_kwargs["kernel_initializer"] = initializer
        self._config_dict.update(
            share_prediction_tower=share_prediction_tower,
            class_prior_bias=class_prior_bias,
            initializer=tf_keras.initializers.serialize(initializer) if initializer is not None else None,
            initialize_pointwise=initialize_pointwise,
            initialize_predictors=initialize_predictors,
        )

    def build(self, input_shape):
        super().build(input_shape)
        if self._config_dict["share_prediction_tower"]:
            # The box predictor reads the class tower; drop the unused box tower so it holds no weights.
            self._box_convs, self._box_norms = [], []

    def call(self, features):
        if not self._config_dict["share_prediction_tower"]:
            return super().call(features)
        scores, boxes = {}, {}
        for i, level in enumerate(range(self._config_dict["min_level"], self._config_dict["max_level"] + 1)):
            tower = self._apply_prediction_tower(features[str(level)], self._cls_convs, self._cls_norms[i])
            scores[str(level)] = self._classifier(tower)
            boxes[str(level)] = self._box_regressor(tower)
        return scores, boxes, {}


def _reinitialize_kernels(model: tf_keras.Model, description: tuple[str, dict]) -> None:
    """Give every conv kernel of ``model`` the config's initializer (the OD API's conv_hyperparams)."""
    for layer in model.submodules:
        for name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            variable = getattr(layer, name, None)
            if isinstance(variable, tf.Variable) and len(variable.shape) == 4:
                variable.assign(make_initializer(description)(variable.shape, dtype=variable.dtype))


def build_model(spec: ModelSpec) -> tf_keras.Model:
    """The detector, built and initialised; call it on normalised images of ``spec.input_size``."""
    config = spec.retinanet_config()
    input_specs = tf_keras.layers.InputSpec(shape=[None, spec.input_size, spec.input_size, 3])
    # Keras l2(w) adds w * sum(x^2); the OD API adds 0.5 * weight * sum(x^2).
    regularizer = tf_keras.regularizers.l2(spec.l2_weight / 2.0) if spec.l2_weight else None
    backbone = backbone_factory.factory.build_backbone(
        input_specs=input_specs,
        backbone_config=config.backbone,
        norm_activation_config=config.norm_activation,
        l2_regularizer=regularizer,
    )
    decoder = decoder_factory.factory.build_decoder(
        input_specs=backbone.output_specs, model_config=config, l2_regularizer=regularizer
    )
    initializer = make_initializer(spec.initializer)
    head = FPNLiteHead(
        share_prediction_tower=spec.share_prediction_tower,
        class_prior_bias=spec.class_prior_bias,
        initializer=initializer,
        initialize_pointwise=spec.initialize_pointwise,
        initialize_predictors=spec.initialize_predictors,
        min_level=spec.min_level,
        max_level=spec.max_level,
        num_classes=config.num_classes,
        num_anchors_per_location=len(spec.aspect_ratios) * spec.scales_per_octave,
        num_convs=spec.head_layers,
        num_filters=spec.head_depth,
        use_separable_conv=spec.head_separable,
        activation=spec.activation,
        use_sync_bn=False,
        norm_momentum=spec.batch_norm_decay,
        norm_epsilon=spec.batch_norm_epsilon,
        kernel_regularizer=regularizer,
    )
    post = dict(config.detection_generator.tflite_post_processing.as_dict())
    post["input_image_size"] = (spec.input_size, spec.input_size)
    generator = config.detection_generator
    detections = detection_generator.MultilevelDetectionGenerator(
        apply_nms=True,
        pre_nms_top_k=generator.pre_nms_top_k,
        pre_nms_score_threshold=generator.pre_nms_score_threshold,
        nms_iou_threshold=generator.nms_iou_threshold,
        max_num_detections=generator.max_num_detections,
        nms_version=generator.nms_version,
        use_class_agnostic_nms=generator.use_class_agnostic_nms,
        box_coder_weights=generator.box_coder_weights,
        tflite_post_processing_config=post,
    )
    model = retinanet_model.RetinaNetModel(
        backbone,
        decoder,
        head,
        detections,
        min_level=spec.min_level,
        max_level=spec.max_level,
        num_scales=spec.scales_per_octave,
        aspect_ratios=list(spec.aspect_ratios),
        anchor_size=spec.anchor_scale,
    )
    model(tf.zeros([1, spec.input_size, spec.input_size, 3]), training=False)
    if spec.backbone_initializer is not None:
        _reinitialize_kernels(backbone, spec.backbone_initializer)
    if not spec.fpn_separable:  # the OD API's separable FPN convs ignore the initializer (glorot_uniform)
        _reinitialize_kernels(decoder, spec.fpn_initializer)
    return model
