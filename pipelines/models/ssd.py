"""SSD MobileNetV2 FPNLite, op for op as the OD API's Keras model, in Model Garden's RetinaNet frame.

The network is the OD API's (``ssd_mobilenet_v2_fpn_keras``), so that its checkpoints
load by name (warm_start.py):

- backbone: Keras Applications' MobileNetV2 built through the OD API's layer overrides
  (SAME padding everywhere; the feature extractor's conv_hyperparams when
  ``override_base_feature_extractor_hyperparams``, else the OD API's MobileNetV2 defaults;
  ``Conv_1`` shrinks with depth_multiplier < 1; ``min_depth``), tapped at ``block_5_add``,
  ``block_12_add`` and ``out_relu`` for levels 3, 4 and 5;
- FPN (``KerasFpnTopDownFeatureMaps``): a 1x1 projection with bias per tap; the top level
  is its projection alone; each level below adds its projection to the 2x nearest-neighbour
  upsampling of the (already smoothed) level above, then smooths with a separable 3x3
  (no bias) + batch norm + activation;
- levels above 5: stride-2 separable 3x3 + batch norm + activation, starting from the top
  projection;
- box predictor (``WeightSharedConvolutionalBoxPredictor``): a tower of separable 3x3
  convs shared by all levels, with a batch norm of its own per level and ReLU6, one tower
  for both predictors when ``share_prediction_tower``; separable 3x3 box and class
  predictors with bias, the class bias starting at the prior;
- anchors (anchors.py), the faster-rcnn box coder and pixels scaled to [-1, 1].

Model Garden supplies the frame: ``RetinaNetModel`` (training outputs, decoding and NMS,
its TFLite post-processing for export) and the anchor labeler in training. Initialisers
and L2 regularisers go where the OD API puts them: with separable convs the config's
initializer and regulariser reach the depthwise kernels only (pointwise kernels keep
Keras' glorot_uniform), unless apply_conv_hyperparams_pointwise / _to_heads say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf
import tf_keras
from official.vision.modeling import retinanet_model
from official.vision.modeling.layers import detection_generator

from pipelines.models.anchors import multilevel_anchors

# block_5_add (32 channels, stride 8), block_12_add (96, stride 16), out_relu (1280, stride 32).
BACKBONE_TAPS = {3: "block_5_add", 4: "block_12_add", 5: "out_relu"}
TOP_BACKBONE_LEVEL = 5


def normalize_pixels(images: tf.Tensor) -> tf.Tensor:
    """0-255 pixels of any dtype -> [-1, 1], as the zoo's models and Keras' MobileNetV2 expect."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


class FreezableBatchNorm(tf_keras.layers.BatchNormalization):
    """Batch norm that ``freeze_batchnorm`` keeps in inference mode while training, as the OD API's:
    the moving statistics stay as loaded (say, from a zoo checkpoint); gamma and beta still train."""

    def __init__(self, frozen: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.frozen = frozen

    def call(self, inputs, training=None):
        return super().call(inputs, training=False if self.frozen else training)


@dataclass
class ConvParams:
    """One ``conv_hyperparams`` block: initializer, L2 weight, activation and batch norm of its convs."""

    initializer: tuple[str, dict] = ("random_normal", {"mean": 0.0, "stddev": 0.01})
    l2_weight: float = 4e-5
    activation: str = "relu6"
    batch_norm_decay: float = 0.997
    batch_norm_epsilon: float = 0.001
    batch_norm_scale: bool = True
    batch_norm_center: bool = True
    batch_norm_train: bool = True  # false: moving statistics used, never updated (as freeze_batchnorm)

    def new_initializer(self):
        return make_initializer(self.initializer)

    def regularizer(self):
        # Keras l2(w) adds w * sum(x^2); the OD API adds 0.5 * weight * sum(x^2).
        return tf_keras.regularizers.l2(self.l2_weight / 2.0) if self.l2_weight else None

    def kernel_args(self) -> dict:
        """Initializer and L2 of a plain conv's kernel."""
        return {"kernel_initializer": self.new_initializer(), "kernel_regularizer": self.regularizer()}

    @property
    def conv_bias(self) -> bool:
        """The OD API gives a conv a bias only when its batch norm has no beta."""
        return not self.batch_norm_center

    def batch_norm(self, frozen: bool, name: str | None = None):
        return FreezableBatchNorm(
            frozen=frozen or not self.batch_norm_train,
            momentum=self.batch_norm_decay,
            epsilon=self.batch_norm_epsilon,
            center=self.batch_norm_center,
            scale=self.batch_norm_scale,
            name=name,
        )

    def activation_layer(self, name: str | None = None):
        if self.activation == "relu6":
            return tf_keras.layers.ReLU(6.0, name=name)
        if self.activation == "relu":
            return tf_keras.layers.ReLU(name=name)
        return tf_keras.layers.Activation("linear", name=name)


# The OD API's MobileNetV2 when the config does not override its hyperparameters.
ODAPI_MOBILENET_DEFAULTS = ConvParams(
    initializer=("truncated_normal", {"mean": 0.0, "stddev": 0.09}),
    l2_weight=0.00004,
    batch_norm_decay=0.9997,
)


@dataclass
class ModelSpec:
    """Everything that decides the network's shape and its post-processing."""

    num_classes: int  # foreground classes, as in the label map
    input_size: int = 320
    kind: str = field(default="ssd", init=False)
    min_level: int = 3
    max_level: int = 7
    depth_multiplier: float = 1.0
    min_depth: int = 16
    fpn_depth: int = 128
    fpn_separable: bool = True
    extractor: ConvParams = field(default_factory=ConvParams)
    override_backbone_hyperparams: bool = True
    head_depth: int = 128
    head_layers: int = 4
    head_separable: bool = True
    share_prediction_tower: bool = True
    class_prior_bias: float = -4.6
    initialize_pointwise: bool = False  # apply_conv_hyperparams_pointwise
    initialize_predictors: bool = False  # apply_conv_hyperparams_to_heads
    predictor: ConvParams = field(default_factory=ConvParams)
    anchor_scale: float = 4.0
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0, 2.0, 0.5])
    scales_per_octave: int = 2
    box_coder_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])  # y, x, h, w
    score_threshold: float = 1e-8
    iou_threshold: float = 0.6
    max_detections: int = 100
    max_detections_per_class: int = 100
    class_agnostic_nms: bool = False
    freeze_batchnorm: bool = False

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) a picture of any size is stretched to: fixed_shape_resizer's square."""
        return self.input_size, self.input_size

    @property
    def num_anchors(self) -> int:
        return len(self.aspect_ratios) * self.scales_per_octave

    @property
    def backbone_params(self) -> ConvParams:
        return self.extractor if self.override_backbone_hyperparams else ODAPI_MOBILENET_DEFAULTS

    def anchors(self) -> dict[str, tf.Tensor]:
        """{level: [H, W, A * 4]} anchors in input pixels."""
        boxes = multilevel_anchors(
            self.min_level,
            self.max_level,
            self.anchor_scale,
            self.aspect_ratios,
            self.scales_per_octave,
            self.input_size,
        )
        return {level: tf.constant(b) for level, b in boxes.items()}


def make_initializer(description: tuple[str, dict]):
    """A new Keras initializer for an OD API initializer (a fresh one each call: unseeded ones repeat)."""
    kind, p = description
    if kind == "variance_scaling":
        distribution = "uniform" if p.get("uniform") else "truncated_normal"
        return tf_keras.initializers.VarianceScaling(p["factor"], p["mode"].lower(), distribution)
    if kind == "truncated_normal":
        return tf_keras.initializers.TruncatedNormal(mean=p["mean"], stddev=p["stddev"])
    return tf_keras.initializers.RandomNormal(mean=p["mean"], stddev=p["stddev"])


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class _OdApiMobileNetLayers:
    """The layer factory Keras Applications' MobileNetV2 builds with, made to build the OD API's variant."""

    def __init__(self, spec: ModelSpec):
        self.alpha, self.min_depth, self.params = spec.depth_multiplier, spec.min_depth, spec.backbone_params
        self.frozen = spec.freeze_batchnorm

    def Conv2D(self, filters, **kwargs):  # noqa: N802 (the Keras layer names the application calls)
        name = kwargs.get("name", "")
        if name == "Conv_1":  # the OD API shrinks the last conv with alpha < 1, Keras does not
            filters = _make_divisible(1280 * self.alpha) if self.alpha < 1.0 else 1280
        if self.min_depth and filters < self.min_depth and not name.endswith("expand"):
            filters = self.min_depth
        kwargs.update(padding="same", **self.params.kernel_args())
        return tf_keras.layers.Conv2D(filters, **kwargs)

    def DepthwiseConv2D(self, **kwargs):  # noqa: N802
        kwargs.update(
            padding="same",
            depthwise_initializer=self.params.new_initializer(),
            depthwise_regularizer=self.params.regularizer(),
        )
        return tf_keras.layers.DepthwiseConv2D(**kwargs)

    def BatchNormalization(self, **kwargs):  # noqa: N802
        return self.params.batch_norm(self.frozen, kwargs.get("name"))

    def ReLU(self, *args, **kwargs):  # noqa: N802
        return self.params.activation_layer(kwargs.get("name"))

    def ZeroPadding2D(self, **kwargs):  # noqa: N802 (SAME padding replaces Keras' explicit pads)
        return lambda x: x

    def __getattr__(self, item):
        return getattr(tf_keras.layers, item)


def build_backbone(spec: ModelSpec) -> tf_keras.Model:
    """MobileNetV2 -> {level: feature map} for the FPN's levels up to 5."""
    full = tf_keras.applications.MobileNetV2(
        input_shape=(None, None, 3),
        alpha=spec.depth_multiplier,
        include_top=False,
        weights=None,
        layers=_OdApiMobileNetLayers(spec),
    )
    top = min(spec.max_level, TOP_BACKBONE_LEVEL)
    outputs = {str(level): full.get_layer(BACKBONE_TAPS[level]).output for level in range(spec.min_level, top + 1)}
    return tf_keras.Model(full.inputs, outputs, name="mobilenet_v2")


def _conv(separable: bool, filters: int, params: ConvParams, strides: int = 1, use_bias=None, pointwise: bool = False):
    """A 3x3 conv as the OD API makes it: with separable convs the initializer and L2 reach the
    depthwise kernel, and the pointwise one only when ``pointwise`` (apply_conv_hyperparams_pointwise)."""
    common = dict(padding="same", strides=strides, use_bias=params.conv_bias if use_bias is None else use_bias)
    if separable:
        return tf_keras.layers.SeparableConv2D(
            filters,
            3,
            depthwise_initializer=params.new_initializer(),
            depthwise_regularizer=params.regularizer(),
            pointwise_initializer=params.new_initializer() if pointwise else "glorot_uniform",
            pointwise_regularizer=params.regularizer() if pointwise else None,
            **common,
        )
    return tf_keras.layers.Conv2D(filters, 3, **params.kernel_args(), **common)


class FPNLiteFeatures(tf_keras.layers.Layer):
    """The OD API's FPN top-down pathway and the coarse levels above it: taps -> {level: features}."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        params, depth = spec.extractor, spec.fpn_depth
        self.top_level = min(spec.max_level, TOP_BACKBONE_LEVEL)

        def projection():
            return tf_keras.layers.Conv2D(depth, 1, padding="same", use_bias=True, **params.kernel_args())

        def block(strides):
            conv = _conv(spec.fpn_separable, depth, params, strides)
            return [conv, params.batch_norm(spec.freeze_batchnorm), params.activation_layer()]

        self.top_projection = projection()
        self.lower_levels = list(range(self.top_level - 1, spec.min_level - 1, -1))  # the OD API's order: top-down
        self.projections = [projection() for _ in self.lower_levels]
        self.smoothing = [block(1) for _ in self.lower_levels]
        self.coarse = [block(2) for _ in range(self.top_level + 1, spec.max_level + 1)]
        self.upsample = tf_keras.layers.UpSampling2D(2, interpolation="nearest")

    def call(self, taps: dict, training=None):
        top = self.top_projection(taps[str(self.top_level)])
        out = {self.top_level: top}
        above = top
        for i, level in enumerate(self.lower_levels):
            above = self.upsample(above) + self.projections[i](taps[str(level)])
            for layer in self.smoothing[i]:
                above = layer(above, training=training)
            out[level] = above
        coarse = top
        for level, layers in zip(range(self.top_level + 1, self.spec.max_level + 1), self.coarse):
            for layer in layers:
                coarse = layer(coarse, training=training)
            out[level] = coarse
        return {str(level): out[level] for level in sorted(out)}


class WeightSharedBoxPredictor(tf_keras.layers.Layer):
    """The OD API's weight-shared convolutional box predictor: {level: features} -> (scores, boxes, {})."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        params = spec.predictor
        levels = range(spec.min_level, spec.max_level + 1)

        def tower():
            # No bias: the tower always has batch norm (apply_batch_norm), whatever its center says.
            return [
                _conv(spec.head_separable, spec.head_depth, params, use_bias=False, pointwise=spec.initialize_pointwise)
                for _ in range(spec.head_layers)
            ]

        def norms():
            return [[params.batch_norm(spec.freeze_batchnorm) for _ in range(spec.head_layers)] for _ in levels]

        def predictor(outputs: int, bias):
            if not spec.head_separable:
                return tf_keras.layers.Conv2D(outputs, 3, padding="same", bias_initializer=bias, **params.kernel_args())
            configured = spec.initialize_predictors
            return tf_keras.layers.SeparableConv2D(
                outputs,
                3,
                padding="same",
                bias_initializer=bias,
                depthwise_initializer=params.new_initializer() if configured else "glorot_uniform",
                pointwise_initializer=params.new_initializer() if configured else "glorot_uniform",
                depthwise_regularizer=params.regularizer() if configured else None,
                pointwise_regularizer=params.regularizer() if configured else None,
            )

        self.box_tower, self.box_tower_norms = tower(), norms()
        if spec.share_prediction_tower:
            self.class_tower, self.class_tower_norms = [], []
        else:
            self.class_tower, self.class_tower_norms = tower(), norms()
        self.box_predictor = predictor(spec.num_anchors * 4, "zeros")
        num_class_slots = spec.num_classes + 1  # the OD API's background column
        self.class_predictor = predictor(
            spec.num_anchors * num_class_slots, tf_keras.initializers.Constant(spec.class_prior_bias)
        )

    @staticmethod
    def _tower(x, convs, norms, training):
        for conv, norm in zip(convs, norms):
            x = tf.nn.relu6(norm(conv(x), training=training))  # ReLU6 whatever the config's activation
        return x

    def call(self, features: dict, training=None):
        scores, boxes = {}, {}
        for i, level in enumerate(range(self.spec.min_level, self.spec.max_level + 1)):
            x = features[str(level)]
            box_features = self._tower(x, self.box_tower, self.box_tower_norms[i], training)
            boxes[str(level)] = self.box_predictor(box_features)
            if self.spec.share_prediction_tower:
                class_features = box_features
            else:
                class_features = self._tower(x, self.class_tower, self.class_tower_norms[i], training)
            scores[str(level)] = self.class_predictor(class_features)
        return scores, boxes, {}


class PerClassNms(detection_generator.MultilevelDetectionGenerator):
    """Model Garden's box decoding, then the OD API's multiclass NMS: at most ``per_class`` boxes of a
    class and ``total`` in all (TF's combined NMS, the OD API's ``use_combined_nms`` op); Model Garden's
    own NMS caps both at one number."""

    def __init__(self, per_class: int, total: int, iou_threshold: float, score_threshold: float, **kwargs):
        super().__init__(apply_nms=False, **kwargs)
        self.caps = (per_class, total)
        self.thresholds = (iou_threshold, score_threshold)

    def get_config(self):
        # Decoding alone is Model Garden's part; the layer as a whole applies NMS (RetinaNetModel asks).
        return {**super().get_config(), "apply_nms": True}

    def __call__(self, raw_boxes, raw_scores, anchor_boxes, image_shape, raw_attributes=None):
        decoded = super().__call__(raw_boxes, raw_scores, anchor_boxes, image_shape, raw_attributes)
        return combined_nms(decoded["decoded_boxes"], decoded["decoded_box_scores"], *self.caps, *self.thresholds)


def combined_nms(boxes, scores, per_class: int, total: int, iou_threshold: float, score_threshold: float) -> dict:
    """TF's combined NMS on Model Garden's decoded boxes [N, boxes, classes or 1, 4] and foreground
    scores [N, boxes, classes]: the detection outputs, classes counted from 1 (label-map ids)."""
    # float32 under mixed precision too: the NMS kernel takes no float16.
    boxes, scores, classes, count = tf.image.combined_non_max_suppression(
        tf.cast(boxes, tf.float32),
        tf.cast(scores, tf.float32),
        max_output_size_per_class=per_class,
        max_total_size=total,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        clip_boxes=False,
    )
    # Class 0 is the background column, which decoding has dropped.
    return {
        "detection_boxes": boxes,
        "detection_scores": scores,
        "detection_classes": tf.cast(classes, tf.int32) + 1,
        "num_detections": count,
    }


def detection_generator_for(spec: ModelSpec) -> detection_generator.MultilevelDetectionGenerator:
    """Model Garden's decoder with the config's post_processing: per-class NMS, or Model Garden's
    class-agnostic NMS when use_class_agnostic_nms (where the OD API has no per-class cap either)."""
    if spec.class_agnostic_nms:
        return detection_generator.MultilevelDetectionGenerator(
            apply_nms=True,
            pre_nms_score_threshold=spec.score_threshold,
            nms_iou_threshold=spec.iou_threshold,
            max_num_detections=spec.max_detections,
            nms_version="v2",
            use_class_agnostic_nms=True,
            box_coder_weights=list(spec.box_coder_weights),
        )
    return PerClassNms(
        spec.max_detections_per_class,
        spec.max_detections,
        spec.iou_threshold,
        spec.score_threshold,
        box_coder_weights=list(spec.box_coder_weights),
    )


def build_model(spec: ModelSpec) -> retinanet_model.RetinaNetModel:
    """The detector, built and initialised; call it on normalised images of ``spec.input_size``."""
    model = retinanet_model.RetinaNetModel(
        build_backbone(spec),
        FPNLiteFeatures(spec, name="fpn"),
        WeightSharedBoxPredictor(spec, name="box_predictor"),
        detection_generator_for(spec),
        anchor_boxes=spec.anchors(),
        min_level=spec.min_level,
        max_level=spec.max_level,
        num_scales=spec.scales_per_octave,
        aspect_ratios=list(spec.aspect_ratios),
        anchor_size=spec.anchor_scale,
    )
    model(tf.zeros([1, spec.input_size, spec.input_size, 3]), training=False)
    return model
