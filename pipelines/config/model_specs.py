"""Each meta-architecture's network spec, read from a checked ``pipeline.config``.

Notes on the mapping onto odlite's networks (models/ssd.py, models/faster_rcnn.py):

- ``num_classes`` counts foreground classes; the class head adds the OD API's background
  column, trained towards 0 (``encode_background_as_zeros``) and dropped at inference.
- fixed_shape_resizer stretches the image to the square input, as the OD API does.
- No padding to a multiple of 2^max_level: at 320 with levels 3-7 the top level is
  3x3 (ceil(320/128)), matching the OD API's anchor grid, where Model Garden's default
  would pad to 384 and spend 44% more compute.
- The feature extractor's conv_hyperparams govern FPN and coarse levels, and the
  backbone when override_base_feature_extractor_hyperparams; the box predictor's govern
  its tower and heads (whose activation is always ReLU6, as in the OD API).
"""

from __future__ import annotations

from pipelines.config.pipeline_config import PipelineConfig, View
from pipelines.config.support import FASTER_RCNN_TYPES
from pipelines.models.faster_rcnn import FasterRcnnSpec
from pipelines.models.ssd import ConvParams, ModelSpec

_ACTIVATIONS = {"RELU_6": "relu6", "RELU": "relu", "NONE": "linear"}


def _conv_params(hyper: View) -> ConvParams:
    """One ``conv_hyperparams`` block."""
    initializer = hyper.initializer.which()
    norm = hyper.batch_norm
    return ConvParams(
        initializer=(initializer.removesuffix("_initializer"), getattr(hyper.initializer, initializer).fields()),
        l2_weight=float(hyper.regularizer.l2_regularizer.weight),
        activation=_ACTIVATIONS[hyper.activation],
        batch_norm_decay=float(norm.decay),
        batch_norm_epsilon=float(norm.epsilon),
        batch_norm_scale=bool(norm.scale),
        batch_norm_center=bool(norm.center),
        batch_norm_train=bool(norm.train),
    )


def model_spec(config: PipelineConfig) -> ModelSpec:
    ssd = config.view().model.ssd
    extractor, fpn = ssd.feature_extractor, ssd.feature_extractor.fpn
    predictor = ssd.box_predictor.weight_shared_convolutional_box_predictor
    anchors = ssd.anchor_generator.multiscale_anchor_generator
    coder = ssd.box_coder.faster_rcnn_box_coder
    nms = ssd.post_processing.batch_non_max_suppression
    return ModelSpec(
        num_classes=int(ssd.num_classes),
        input_size=int(ssd.image_resizer.fixed_shape_resizer.height),
        min_level=int(fpn.min_level),
        max_level=int(fpn.max_level),
        depth_multiplier=float(extractor.depth_multiplier),
        min_depth=int(extractor.min_depth),
        fpn_depth=int(fpn.additional_layer_depth),
        fpn_separable=bool(extractor.use_depthwise),
        extractor=_conv_params(extractor.conv_hyperparams),
        override_backbone_hyperparams=bool(extractor.override_base_feature_extractor_hyperparams),
        head_depth=int(predictor.depth),
        head_layers=int(predictor.num_layers_before_predictor),
        head_separable=bool(predictor.use_depthwise),
        share_prediction_tower=bool(predictor.share_prediction_tower),
        class_prior_bias=float(predictor.class_prediction_bias_init),
        initialize_pointwise=bool(predictor.apply_conv_hyperparams_pointwise),
        initialize_predictors=bool(predictor.apply_conv_hyperparams_to_heads),
        predictor=_conv_params(predictor.conv_hyperparams),
        anchor_scale=float(anchors.anchor_scale),
        aspect_ratios=[float(a) for a in anchors.aspect_ratios],
        scales_per_octave=int(anchors.scales_per_octave),
        box_coder_weights=[
            float(coder.y_scale),
            float(coder.x_scale),
            float(coder.height_scale),
            float(coder.width_scale),
        ],
        score_threshold=float(nms.score_threshold),
        iou_threshold=float(nms.iou_threshold),
        max_detections=int(nms.max_total_detections),
        max_detections_per_class=int(nms.max_detections_per_class),
        class_agnostic_nms=bool(nms.use_class_agnostic_nms),
        freeze_batchnorm=bool(ssd.freeze_batchnorm),
    )


def _head_params(config: PipelineConfig, path: str) -> ConvParams:
    """The hyperparameters of the RPN conv or the box head's fully connected layers. Model Garden
    batch-normalises both: without a batch_norm block of their own they take the feature extractor's
    decay and epsilon."""
    hyper = config.view()
    for part in path.split("."):
        hyper = getattr(hyper, part)
    params = _conv_params(hyper)
    if not config.is_set(f"{path}.batch_norm"):
        extractor = _conv_params(config.view().model.faster_rcnn.feature_extractor.conv_hyperparams)
        params.batch_norm_decay, params.batch_norm_epsilon = extractor.batch_norm_decay, extractor.batch_norm_epsilon
    return params


def faster_rcnn_spec(config: PipelineConfig) -> FasterRcnnSpec:
    frcnn = config.view().model.faster_rcnn
    extractor, fpn = frcnn.feature_extractor, frcnn.feature_extractor.fpn
    resizer = frcnn.image_resizer
    anchors = frcnn.first_stage_anchor_generator.multiscale_anchor_generator
    predictor = frcnn.second_stage_box_predictor.mask_rcnn_box_predictor
    nms = frcnn.second_stage_post_processing.batch_non_max_suppression
    keep, fixed = resizer.keep_aspect_ratio_resizer, resizer.fixed_shape_resizer
    return FasterRcnnSpec(
        num_classes=int(frcnn.num_classes),
        depth=FASTER_RCNN_TYPES[str(extractor.type)],
        resizer="fixed_shape" if resizer.which() == "fixed_shape_resizer" else "keep_aspect_ratio",
        min_dimension=int(keep.min_dimension),
        max_dimension=int(keep.max_dimension),
        height=int(fixed.height),
        width=int(fixed.width),
        min_level=int(fpn.min_level),
        max_level=int(fpn.max_level),
        fpn_depth=int(fpn.additional_layer_depth),
        extractor=_conv_params(extractor.conv_hyperparams),
        override_backbone_hyperparams=bool(extractor.override_base_feature_extractor_hyperparams),
        backbone_batch_norm_trainable=bool(extractor.batch_norm_trainable),
        anchor_scale=float(anchors.anchor_scale),
        aspect_ratios=[float(a) for a in anchors.aspect_ratios],
        scales_per_octave=int(anchors.scales_per_octave),
        clip_anchors=bool(frcnn.clip_anchors_to_image),
        rpn=_head_params(config, "model.faster_rcnn.first_stage_box_predictor_conv_hyperparams"),
        rpn_depth=int(frcnn.first_stage_box_predictor_depth),
        rpn_minibatch=int(frcnn.first_stage_minibatch_size),
        rpn_positive_fraction=float(frcnn.first_stage_positive_balance_fraction),
        rpn_nms_iou=float(frcnn.first_stage_nms_iou_threshold),
        rpn_score_threshold=float(frcnn.first_stage_nms_score_threshold),
        max_proposals=int(frcnn.first_stage_max_proposals),
        crop_size=int(frcnn.initial_crop_size),
        maxpool_kernel=int(frcnn.maxpool_kernel_size),
        maxpool_stride=int(frcnn.maxpool_stride),
        fc=_head_params(config, "model.faster_rcnn.second_stage_box_predictor.mask_rcnn_box_predictor.fc_hyperparams"),
        share_box_across_classes=bool(predictor.share_box_across_classes),
        rois_per_image=int(frcnn.second_stage_batch_size),
        roi_positive_fraction=float(frcnn.second_stage_balance_fraction),
        score_threshold=float(nms.score_threshold),
        iou_threshold=float(nms.iou_threshold),
        max_detections_per_class=int(nms.max_detections_per_class),
        max_detections=int(nms.max_total_detections),
        rpn_localization_weight=float(frcnn.first_stage_localization_loss_weight),
        rpn_objectness_weight=float(frcnn.first_stage_objectness_loss_weight),
        localization_weight=float(frcnn.second_stage_localization_loss_weight),
        classification_weight=float(frcnn.second_stage_classification_loss_weight),
    )


def ssd_training_settings(config: PipelineConfig) -> dict:
    """The SSD's matcher and loss, TrainSpec fields: Faster R-CNN's live in its FasterRcnnSpec."""
    ssd = config.view().model.ssd
    focal, huber = ssd.loss.classification_loss.weighted_sigmoid_focal, ssd.loss.localization_loss.weighted_smooth_l1
    matcher = ssd.matcher.argmax_matcher
    return dict(
        classification_weight=float(ssd.loss.classification_weight),
        localization_weight=float(ssd.loss.localization_weight),
        focal_alpha=float(focal.alpha),
        focal_gamma=float(focal.gamma),
        huber_delta=float(huber.delta),
        loss_per_code=bool(ssd.normalize_loc_loss_by_codesize),
        normalize_by_matches=bool(ssd.normalize_loss_by_num_matches),
        matched_threshold=float(matcher.matched_threshold),
        unmatched_threshold=float(matcher.unmatched_threshold),
    )
