"""Faster R-CNN with a ResNet-FPN backbone: the OD API's ``faster_rcnn_resnet{50,101,152}_fpn_keras``
on Model Garden's two-stage detector (``MaskRCNNModel`` without masks).

What comes from where:

- backbone: Keras Applications' ResNet v1 (50, 101 or 152 layers), as the OD API's Keras
  feature extractor builds it, so ImageNet ``.h5`` files and the OD API's
  ``resnet50.ckpt-1``-style classification checkpoints load by name (warm_start.py). It
  takes 0-255 RGB and subtracts the OD API's channel means first. Its taps are the last
  block of each stage (levels 2-5);
- FPN, RPN head, RoI generation, RoI sampling, RoI align, the box head and the losses:
  Model Garden's (``official.vision``), with the config's sizes, thresholds and weights.
  The RoI features are max-pooled (``maxpool_kernel_size``/``maxpool_stride``) after the
  crop of ``initial_crop_size``, as the OD API's ``mask_rcnn_box_predictor`` sees them;
- second-stage NMS: per class, with the config's per-class and total caps (TF's combined
  NMS), as the OD API's ``batch_non_max_suppression``.

Images are resized as the config's image_resizer says; keep_aspect_ratio_resizer's are
then padded to ``max_dimension`` (rounded up to a multiple of 2^max_level, which the FPN
needs), so that every input has one size: batches, anchors and the exported graph need it
(``pad_to_max_dimension: false`` is refused). Boxes come out in the resized image's pixels
and are normalised by its unpadded size.

Differences from the OD API that no field controls: Model Garden's RPN conv is always
batch-normalised, and its first-stage matcher (0.7/0.3) and second-stage sampler
(foreground IoU 0.5, background below 0.5) are the OD API's fixed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import tensorflow as tf
import tf_keras
from official.vision.configs import maskrcnn as maskrcnn_config
from official.vision.modeling import maskrcnn_model
from official.vision.modeling.decoders import fpn
from official.vision.modeling.heads import dense_prediction_heads, instance_heads
from official.vision.modeling.layers import detection_generator, roi_aligner, roi_generator, roi_sampler
from official.vision.ops import anchor, preprocess_ops
from official.vision.tasks import maskrcnn as maskrcnn_task

from pipelines.models.ssd import ConvParams, combined_nms

# The OD API's ResNet preprocessing: RGB channel means subtracted, no scaling.
CHANNEL_MEANS = (123.68, 116.779, 103.939)
RESNETS = {50: "ResNet50", 101: "ResNet101", 152: "ResNet152"}
# The OD API's ResNet v1 defaults when the config does not override the backbone's hyperparameters.
ODAPI_RESNET_DEFAULTS = ConvParams(
    initializer=("variance_scaling", {"factor": 2.0, "mode": "FAN_IN", "uniform": False}),
    l2_weight=1e-4,
    batch_norm_decay=0.997,
    batch_norm_epsilon=1e-5,
)


@dataclass
class FasterRcnnSpec:
    """Everything that decides the two-stage network, its targets and its losses."""

    num_classes: int
    depth: int = 50
    resizer: str = "keep_aspect_ratio"  # or "fixed_shape"
    min_dimension: int = 600
    max_dimension: int = 1024  # keep_aspect_ratio_resizer; always padded to it (pad_to_max_dimension)
    height: int = 640  # fixed_shape_resizer
    width: int = 640
    min_level: int = 2
    max_level: int = 6
    fpn_depth: int = 256
    extractor: ConvParams = field(default_factory=ConvParams)
    override_backbone_hyperparams: bool = False
    backbone_batch_norm_trainable: bool = True
    anchor_scale: float = 4.0
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    scales_per_octave: int = 2
    clip_anchors: bool = False
    rpn: ConvParams = field(default_factory=ConvParams)
    rpn_depth: int = 512
    rpn_minibatch: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_nms_iou: float = 0.7
    rpn_score_threshold: float = 0.0
    max_proposals: int = 300
    crop_size: int = 14
    maxpool_kernel: int = 2
    maxpool_stride: int = 2
    fc: ConvParams = field(default_factory=ConvParams)
    share_box_across_classes: bool = False
    rois_per_image: int = 64
    roi_positive_fraction: float = 0.25
    score_threshold: float = 0.0
    iou_threshold: float = 0.6
    max_detections_per_class: int = 100
    max_detections: int = 300
    rpn_localization_weight: float = 1.0
    rpn_objectness_weight: float = 1.0
    localization_weight: float = 1.0
    classification_weight: float = 1.0
    kind: str = field(default="faster_rcnn", init=False)

    @property
    def stride(self) -> int:
        return 2**self.max_level

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) a ``width`` x ``height`` picture is resized to before padding (fit_images)."""
        if self.resizer == "fixed_shape":
            return self.width, self.height
        scale = min(self.min_dimension / min(width, height), self.max_dimension / max(width, height))
        return round(width * scale), round(height * scale)

    @property
    def input_shape(self) -> tuple[int, int]:
        """The network input: every image is resized and padded to it."""
        if self.resizer == "fixed_shape":
            return self.height, self.width
        side = math.ceil(self.max_dimension / self.stride) * self.stride
        return side, side

    def anchors(self) -> dict[str, tf.Tensor]:
        """Model Garden's multilevel anchors in input pixels, clipped to the input if ``clip_anchors``."""
        height, width = self.input_shape
        boxes = anchor.Anchor(
            self.min_level,
            self.max_level,
            self.scales_per_octave,
            list(self.aspect_ratios),
            self.anchor_scale,
            (height, width),
        ).multilevel_boxes
        if self.clip_anchors:
            limit = tf.constant([height, width, height, width], tf.float32)
            for level, grid in boxes.items():
                shape = tf.shape(grid)
                per_anchor = tf.reshape(grid, [shape[0], shape[1], -1, 4])
                clipped = tf.clip_by_value(per_anchor, 0.0, limit)
                boxes[level] = tf.reshape(clipped, shape)
        return boxes


def fit_images(images: tf.Tensor, spec: FasterRcnnSpec) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 [N, H, W, 3] (one size) -> float32 network input, padded, and each image's unpadded [h, w].

    keep_aspect_ratio_resizer: the short side to min_dimension, unless the long one would then pass
    max_dimension (then the long side to max_dimension), as the OD API rounds it."""
    shape = tf.shape(images)
    if spec.resizer == "fixed_shape":
        size = tf.constant([spec.height, spec.width], tf.int32)
    else:
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        scale = tf.minimum(
            spec.min_dimension / tf.minimum(height, width), spec.max_dimension / tf.maximum(height, width)
        )
        size = tf.cast(tf.round(tf.stack([height, width]) * scale), tf.int32)
    resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
    resized = tf.image.pad_to_bounding_box(resized, 0, 0, *spec.input_shape)
    valid = tf.tile(tf.cast(size, tf.float32)[None], [shape[0], 1])
    return resized, valid


def build_backbone(spec: FasterRcnnSpec) -> tf_keras.Model:
    """Keras Applications' ResNet, mean-subtracted input, returning {level: features} for levels 2-5."""
    pixels = tf_keras.Input((None, None, 3), name="pixels")
    centred = tf_keras.layers.Rescaling(1.0, offset=[-m for m in CHANNEL_MEANS], name="channel_means")(pixels)
    resnet = getattr(tf_keras.applications, RESNETS[spec.depth])(include_top=False, weights=None, input_tensor=centred)
    taps = {}
    for layer in resnet.layers:
        if layer.name.startswith("conv") and layer.name.endswith("_out"):
            taps[str(int(layer.name[4]))] = layer.output  # the last block of each stage wins
    backbone = tf_keras.Model(pixels, taps, name=f"resnet{spec.depth}")
    params = spec.extractor if spec.override_backbone_hyperparams else ODAPI_RESNET_DEFAULTS
    for layer in backbone.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum, layer.epsilon = params.batch_norm_decay, params.batch_norm_epsilon
            layer.trainable = spec.backbone_batch_norm_trainable
    kernels = [layer.kernel for layer in backbone.layers if isinstance(layer, tf_keras.layers.Conv2D)]
    _initialise(kernels, params)
    _regularise(backbone, kernels, params)
    backbone.output_specs = {level: tensor.shape for level, tensor in taps.items()}
    return backbone


def _initialise(kernels: list[tf.Variable], params: ConvParams) -> None:
    for kernel in kernels:
        kernel.assign(params.new_initializer()(kernel.shape, kernel.dtype))


def _regularise(model: tf_keras.Model, kernels: list[tf.Variable], params: ConvParams) -> None:
    if params.l2_weight:
        regularizer = params.regularizer()
        for kernel in kernels:
            model.add_loss(lambda kernel=kernel: regularizer(kernel))


def _kernels(layer: tf_keras.layers.Layer) -> list[tf.Variable]:
    return [v for v in layer.trainable_weights if "kernel" in v.name]


class PooledDetectionHead(instance_heads.DetectionHead):
    """Model Garden's box head, on RoI crops max-pooled first (the OD API's maxpool after crop_and_resize)."""

    def __init__(self, pool_kernel: int, pool_stride: int, **kwargs):
        super().__init__(**kwargs)
        self.pool = (pool_kernel, pool_stride)

    def call(self, inputs, training=None):
        kernel, stride = self.pool
        if kernel > 1 or stride > 1:
            shape = tf.shape(inputs)
            crops = tf.reshape(inputs, [-1, shape[2], shape[3], inputs.shape[-1]])
            pooled = tf.nn.max_pool2d(crops, kernel, stride, "VALID")
            pooled_shape = tf.shape(pooled)
            inputs = tf.reshape(pooled, [shape[0], shape[1], pooled_shape[1], pooled_shape[2], inputs.shape[-1]])
        return super().call(inputs, training=training)


class PerClassDetections(detection_generator.DetectionGenerator):
    """Model Garden's second-stage box decoding, then per-class NMS with the config's two caps."""

    def __init__(self, spec: FasterRcnnSpec):
        super().__init__(apply_nms=False)
        self.caps = (spec.max_detections_per_class, spec.max_detections)
        self.thresholds = (spec.iou_threshold, spec.score_threshold)

    def get_config(self):
        return {**super().get_config(), "apply_nms": True}  # MaskRCNNModel asks; NMS is done here

    def __call__(self, raw_boxes, raw_scores, anchor_boxes, image_shape, regression_weights=None, bbox_per_class=True):
        decoded = super().__call__(raw_boxes, raw_scores, anchor_boxes, image_shape, regression_weights, bbox_per_class)
        return combined_nms(decoded["decoded_boxes"], decoded["decoded_box_scores"], *self.caps, *self.thresholds)


def build_faster_rcnn(spec: FasterRcnnSpec) -> maskrcnn_model.MaskRCNNModel:
    """The detector, built and initialised; call it on ``fit_images`` output."""
    backbone = build_backbone(spec)
    extractor = spec.extractor
    decoder = fpn.FPN(
        backbone.output_specs,
        min_level=spec.min_level,
        max_level=spec.max_level,
        num_filters=spec.fpn_depth,
        activation=extractor.activation,
        norm_momentum=extractor.batch_norm_decay,
        norm_epsilon=extractor.batch_norm_epsilon,
        kernel_regularizer=extractor.regularizer(),
    )
    num_anchors = len(spec.aspect_ratios) * spec.scales_per_octave
    rpn_head = dense_prediction_heads.RPNHead(
        spec.min_level,
        spec.max_level,
        num_anchors,
        num_filters=spec.rpn_depth,
        activation=spec.rpn.activation,
        norm_momentum=spec.rpn.batch_norm_decay,
        norm_epsilon=spec.rpn.batch_norm_epsilon,
        kernel_regularizer=spec.rpn.regularizer(),
    )
    detection_head = PooledDetectionHead(
        spec.maxpool_kernel,
        spec.maxpool_stride,
        num_classes=spec.num_classes + 1,  # Model Garden's class 0 is background
        class_agnostic_bbox_pred=spec.share_box_across_classes,
        activation=spec.fc.activation,
        norm_momentum=spec.fc.batch_norm_decay,
        norm_epsilon=spec.fc.batch_norm_epsilon,
        kernel_regularizer=spec.fc.regularizer(),
        name="detection_head",
    )
    model = maskrcnn_model.MaskRCNNModel(
        backbone=backbone,
        decoder=decoder,
        rpn_head=rpn_head,
        detection_head=detection_head,
        roi_generator=roi_generator.MultilevelROIGenerator(
            pre_nms_score_threshold=spec.rpn_score_threshold,
            nms_iou_threshold=spec.rpn_nms_iou,
            num_proposals=spec.max_proposals,
            test_pre_nms_score_threshold=spec.rpn_score_threshold,
            test_nms_iou_threshold=spec.rpn_nms_iou,
            test_num_proposals=spec.max_proposals,
        ),
        roi_sampler=roi_sampler.ROISampler(
            num_sampled_rois=spec.rois_per_image, foreground_fraction=spec.roi_positive_fraction
        ),
        roi_aligner=roi_aligner.MultilevelROIAligner(crop_size=spec.crop_size),
        detection_generator=PerClassDetections(spec),
        class_agnostic_bbox_pred=spec.share_box_across_classes,
        min_level=spec.min_level,
        max_level=spec.max_level,
        num_scales=spec.scales_per_octave,
        aspect_ratios=list(spec.aspect_ratios),
        anchor_size=spec.anchor_scale,
    )
    height, width = spec.input_shape
    images = tf.zeros([1, height, width, 3])
    model(images, tf.constant([[height, width]], tf.float32), batched_anchors(spec, 1), training=False)
    # The config's initializers, where the OD API puts them: the FPN's convs, the RPN's, the box head's.
    _initialise(_kernels(decoder), extractor)
    _initialise(_kernels(rpn_head), spec.rpn)
    _initialise(_kernels(detection_head), spec.fc)
    return model


def batched_anchors(spec: FasterRcnnSpec, batch) -> dict[str, tf.Tensor]:
    return {k: tf.tile(v[None], [batch, 1, 1, 1]) for k, v in spec.anchors().items()}


class SeededRpnAnchorLabeler(anchor.RpnAnchorLabeler):
    """Model Garden's RPN anchor labeller, its anchor minibatch drawn from each example's own seed.

    Model Garden's sampler shuffles with a stateful op, whose draws parallel input threads take in
    any order, so a seeded run would not repeat. The rule is its non-static balanced sampler's: up to
    ``positive fraction x minibatch`` positives chosen at random, negatives filling the rest.
    """

    seed = None  # the example's [2] int64 seed; set before each label_anchors

    def _get_rpn_samples(self, match_results):
        candidates, positive = match_results > -2, match_results > -1
        keys = tf.random.stateless_uniform(tf.shape(match_results), self.seed)

        def draw(among, count):
            # A uniformly random subset of ``count`` of them (all, when fewer): the largest keys.
            count = tf.minimum(count, tf.reduce_sum(tf.cast(among, tf.int32)))
            chosen = tf.argsort(tf.where(among, keys, -1.0), direction="DESCENDING")[:count]
            return tf.scatter_nd(chosen[:, None], tf.ones_like(chosen, tf.bool), tf.shape(match_results))

        positives = draw(candidates & positive, int(self._rpn_fg_fraction * self._rpn_batch_size_per_im))
        taken = tf.reduce_sum(tf.cast(positives, tf.int32))
        negatives = draw(candidates & ~positive, self._rpn_batch_size_per_im - taken)
        scores = tf.where(positives, 1, tf.where(negatives, 0, -1))
        return scores, tf.cast(positives, tf.int32), tf.cast(negatives, tf.int32)


def rpn_labeller(spec: FasterRcnnSpec, max_boxes: int):
    """(decoded, augmented example, its [2] seed) -> (network input, targets): the image fitted and
    padded, the RPN's anchor targets and the ground truth in input pixels, padded with -1."""
    labeller = SeededRpnAnchorLabeler(0.7, 0.3, spec.rpn_minibatch, spec.rpn_positive_fraction)
    anchors = spec.anchors()

    def label(data: dict, seed):
        image, valid = fit_images(data["image"][None], spec)
        image, valid = image[0], valid[0]
        boxes = data["groundtruth_boxes"] * tf.tile(valid, [2])
        keep = ~data["groundtruth_is_crowd"] & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(boxes, keep)[:max_boxes]
        classes = tf.boolean_mask(data["groundtruth_classes"], keep)[:max_boxes]
        labeller.seed = tf.random.experimental.stateless_fold_in(seed, 1)  # not the augmentation's draws
        scores, deltas = labeller.label_anchors(anchors, boxes, classes[:, None])
        # Padded to a static max_boxes, as Model Garden's parser does: its RoI sampler needs the static shape.
        targets = {
            "image_shape": valid,
            "rpn_score_targets": scores,
            "rpn_box_targets": deltas,
            "gt_boxes": preprocess_ops.clip_or_pad_to_fixed_size(boxes, max_boxes, -1),
            "gt_classes": preprocess_ops.clip_or_pad_to_fixed_size(tf.cast(classes, tf.int32), max_boxes, -1),
        }
        return image, targets

    return label


def _loss_task(spec: FasterRcnnSpec) -> maskrcnn_task.MaskRCNNTask:
    """Model Garden's Mask R-CNN task, for its losses only, with the config's four weights."""
    config = maskrcnn_config.MaskRCNNTask(
        model=maskrcnn_config.MaskRCNN(num_classes=spec.num_classes + 1, include_mask=False),
        losses=maskrcnn_config.Losses(
            rpn_score_weight=spec.rpn_objectness_weight,
            rpn_box_weight=spec.rpn_localization_weight,
            frcnn_class_weight=spec.classification_weight,
            frcnn_box_weight=spec.localization_weight,
        ),
    )
    config.model.detection_head.class_agnostic_bbox_pred = spec.share_box_across_classes
    return maskrcnn_task.MaskRCNNTask(config)


FASTER_RCNN_LOSSES = (
    "total_loss",
    "rpn_objectness_loss",
    "rpn_localization_loss",
    "classification_loss",
    "localization_loss",
    "regularization_loss",
)


def training_losses(spec: FasterRcnnSpec):
    """(model, images, targets) -> the losses of one training batch, as Model Garden's task computes them."""
    task = _loss_task(spec)

    def losses(model, images, targets) -> dict:
        outputs = model(
            images,
            targets["image_shape"],
            batched_anchors(spec, tf.shape(images)[0]),
            targets["gt_boxes"],
            targets["gt_classes"],
            training=True,
        )
        # Losses in float32 under a mixed policy, as Model Garden's own train step casts them.
        outputs = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, outputs)
        # model.losses evaluates every L2 term anew on each access: once per step.
        regularization = model.losses
        values = task.build_losses(outputs, targets, regularization)
        reg = tf.add_n(regularization) if regularization else tf.constant(0.0)
        return {
            "total_loss": values["total_loss"],
            "rpn_objectness_loss": values["rpn_score_loss"],
            "rpn_localization_loss": values["rpn_box_loss"],
            "classification_loss": values["frcnn_cls_loss"],
            "localization_loss": values["frcnn_box_loss"],
            "regularization_loss": reg,
        }

    return losses


def detect(model, spec: FasterRcnnSpec, images: tf.Tensor) -> dict:
    """uint8 images of one size -> normalised boxes, label-map classes, scores and counts."""
    fitted, valid = fit_images(images, spec)
    out = model(fitted, valid, batched_anchors(spec, tf.shape(fitted)[0]), training=False)
    scale = tf.tile(valid, [1, 2])[:, None, :]
    return {
        "detection_boxes": out["detection_boxes"] / scale,
        "detection_scores": out["detection_scores"],
        "detection_classes": tf.cast(out["detection_classes"], tf.int32),
        "num_detections": tf.cast(out["num_detections"], tf.int32),
    }
