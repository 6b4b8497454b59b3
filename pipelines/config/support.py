"""What odlite honours of a ``pipeline.config``: the rules per field, the no-ops and the reasons.

``SUPPORTED`` is the table of what odlite honours of the OD API's schema (``schema.py``,
``od_api.proto``), with the value restrictions; every other declared field is rejected
with the reason from ``REASONS``. A message type shared by both meta-architectures has
one rule per field here; where the two differ (SSD's resizer, Faster R-CNN's score
converter), the cross-checks in ``checks.py`` say which value each one takes.
"""

from __future__ import annotations

from pipelines.config.augmentation_rules import AUGMENTATION_REASONS, AUGMENTATION_RULES
from pipelines.config.rules import OK, REQUIRED, Rule, above, between, only, show


def _square_size(value) -> str | None:
    if not 128 <= value <= 1024 or value % 32:
        return f"not supported: must be a multiple of 32 from 128 to 1024 (the FPN halves it 5 times), got {value}"
    return None


FASTER_RCNN_TYPES = {
    "faster_rcnn_resnet50_fpn_keras": 50,
    "faster_rcnn_resnet101_fpn_keras": 101,
    "faster_rcnn_resnet152_fpn_keras": 152,
}


def _faster_rcnn_type(value) -> str | None:
    if value in FASTER_RCNN_TYPES:
        return None
    shown = ", ".join(show(t) for t in FASTER_RCNN_TYPES)
    fpn = str(value).replace("_keras", "_fpn_keras")
    if fpn in FASTER_RCNN_TYPES:
        return f"not supported: odlite's Faster R-CNN has an FPN; use {show(fpn)} (the FPN variant)"
    return f"not supported: only {shown}"


# message -> field -> Rule. A declared field missing here is rejected as "not supported".
SUPPORTED: dict[str, dict[str, Rule]] = {
    "TrainEvalPipelineConfig": {
        "model": REQUIRED,
        "train_config": REQUIRED,
        "train_input_reader": REQUIRED,
        "eval_config": OK,
        "eval_input_reader": REQUIRED,
    },
    "DetectionModel": {"ssd": OK, "faster_rcnn": OK},
    "FasterRcnn": {
        "number_of_stages": Rule(only(2, why="odlite trains and runs both stages")),
        "num_classes": Rule(between(1), required=True),
        "image_resizer": REQUIRED,
        "feature_extractor": REQUIRED,
        "first_stage_anchor_generator": REQUIRED,
        "first_stage_atrous_rate": Rule(only(1, why="the FPN variants convolve without dilation")),
        "first_stage_box_predictor_conv_hyperparams": REQUIRED,
        "first_stage_box_predictor_kernel_size": Rule(only(3, why="Model Garden's RPN head convolves 3x3")),
        "first_stage_box_predictor_depth": Rule(between(1)),
        "first_stage_minibatch_size": Rule(between(1)),
        "first_stage_positive_balance_fraction": Rule(above(0.0, 1.0)),
        "first_stage_nms_score_threshold": Rule(between(0.0, 1.0)),
        "first_stage_nms_iou_threshold": Rule(above(0.0, 1.0)),
        "first_stage_max_proposals": Rule(between(1)),
        "first_stage_localization_loss_weight": Rule(between(0.0)),
        "first_stage_objectness_loss_weight": Rule(between(0.0)),
        "initial_crop_size": Rule(between(1), required=True),
        "maxpool_kernel_size": Rule(between(1), required=True),
        "maxpool_stride": Rule(between(1), required=True),
        "second_stage_box_predictor": REQUIRED,
        "second_stage_batch_size": Rule(between(1)),
        "second_stage_balance_fraction": Rule(above(0.0, 1.0)),
        "second_stage_post_processing": REQUIRED,
        "second_stage_localization_loss_weight": Rule(between(0.0)),
        "second_stage_classification_loss_weight": Rule(between(0.0)),
        "inplace_batchnorm_update": OK,
        "use_matmul_crop_and_resize": OK,
        "clip_anchors_to_image": OK,
        "use_matmul_gather_in_matcher": OK,
        "use_static_balanced_label_sampler": OK,
        "use_static_shapes": OK,
        "use_static_shapes_for_eval": OK,
    },
    "FasterRcnnFeatureExtractor": {
        "type": Rule(_faster_rcnn_type, required=True),
        "batch_norm_trainable": OK,
        "conv_hyperparams": REQUIRED,
        "override_base_feature_extractor_hyperparams": OK,
        "fpn": REQUIRED,
    },
    "Ssd": {
        "num_classes": Rule(between(1), required=True),
        "image_resizer": REQUIRED,
        "feature_extractor": REQUIRED,
        "box_coder": REQUIRED,
        "matcher": REQUIRED,
        "similarity_calculator": REQUIRED,
        "encode_background_as_zeros": Rule(only(True, why="the sigmoid head has no background class")),
        "box_predictor": REQUIRED,
        "anchor_generator": REQUIRED,
        "post_processing": REQUIRED,
        "normalize_loss_by_num_matches": OK,
        "normalize_loc_loss_by_codesize": OK,
        "loss": REQUIRED,
        "freeze_batchnorm": OK,
        "inplace_batchnorm_update": OK,
    },
    "SsdFeatureExtractor": {
        "type": Rule(only("ssd_mobilenet_v2_fpn_keras", why="SSD MobileNetV2 FPNLite"), required=True),
        "depth_multiplier": Rule(between(0.1, 2.0)),
        "min_depth": Rule(between(1)),
        "conv_hyperparams": REQUIRED,
        "override_base_feature_extractor_hyperparams": OK,
        "use_depthwise": OK,
        "fpn": REQUIRED,
    },
    "FeaturePyramidNetworks": {  # SSD's levels start at 3: a cross-check
        "min_level": Rule(between(2, 5)),
        "max_level": Rule(between(2, 7)),
        "additional_layer_depth": Rule(between(1)),
    },
    "BoxCoder": {"faster_rcnn_box_coder": OK},
    "FasterRcnnBoxCoder": {"y_scale": OK, "x_scale": OK, "height_scale": OK, "width_scale": OK},
    "Matcher": {"argmax_matcher": OK},
    "ArgMaxMatcher": {
        "matched_threshold": Rule(between(0.0, 1.0)),
        "unmatched_threshold": Rule(between(0.0, 1.0)),
        "ignore_thresholds": Rule(only(False)),
        "negatives_lower_than_unmatched": Rule(only(True)),
        "force_match_for_each_row": Rule(only(True)),
        "use_matmul_gather": OK,  # a no-op: NO_OPS says why
    },
    "RegionSimilarityCalculator": {"iou_similarity": OK},
    "IouSimilarity": {},
    "AnchorGenerator": {"multiscale_anchor_generator": OK},
    "MultiscaleAnchorGenerator": {
        "min_level": OK,  # must match the FPN's levels: checked in pipeline_config
        "max_level": OK,
        "anchor_scale": Rule(between(0.5)),
        "aspect_ratios": Rule(between(0.05, 20.0)),
        "scales_per_octave": Rule(between(1, 8)),
        "normalize_coordinates": OK,  # SSD's are normalised, Faster R-CNN's in pixels: a cross-check
    },
    "ImageResizer": {"fixed_shape_resizer": OK, "keep_aspect_ratio_resizer": OK},  # SSD: fixed only
    "KeepAspectRatioResizer": {
        "min_dimension": Rule(between(32, 2048)),
        "max_dimension": Rule(between(32, 2048)),
        "pad_to_max_dimension": OK,  # only true: a cross-check
    },
    "FixedShapeResizer": {"height": Rule(_square_size), "width": Rule(_square_size)},
    "BoxPredictor": {"weight_shared_convolutional_box_predictor": OK, "mask_rcnn_box_predictor": OK},
    "MaskRCNNBoxPredictor": {
        "fc_hyperparams": REQUIRED,
        "use_dropout": Rule(only(False, why="Model Garden's box head has no dropout")),
        "dropout_keep_probability": OK,
        "share_box_across_classes": OK,
    },
    "WeightSharedConvolutionalBoxPredictor": {
        "conv_hyperparams": REQUIRED,
        "num_layers_before_predictor": Rule(between(0, 8)),
        "depth": Rule(between(1)),
        "kernel_size": Rule(only(3)),
        "class_prediction_bias_init": OK,
        "share_prediction_tower": OK,
        "use_depthwise": OK,
        "apply_conv_hyperparams_to_heads": OK,
        "apply_conv_hyperparams_pointwise": OK,
    },
    "Hyperparams": {
        "op": OK,  # CONV, or FC for fc_hyperparams: a cross-check
        "regularizer": REQUIRED,
        "initializer": REQUIRED,
        "activation": Rule(only("RELU_6", "RELU", "NONE")),
        "batch_norm": OK,  # required where odlite's layers are batch-normalised: a cross-check
    },
    "Regularizer": {"l2_regularizer": OK},
    "L2Regularizer": {"weight": Rule(between(0.0))},
    "Initializer": {
        "random_normal_initializer": OK,
        "truncated_normal_initializer": OK,
        "variance_scaling_initializer": OK,
    },
    "VarianceScalingInitializer": {"factor": Rule(between(0.0)), "uniform": OK, "mode": OK},
    "RandomNormalInitializer": {"mean": OK, "stddev": Rule(between(0.0))},
    "TruncatedNormalInitializer": {"mean": OK, "stddev": Rule(between(0.0))},
    "BatchNorm": {
        "decay": Rule(between(0.0, 1.0)),
        "epsilon": Rule(between(0.0)),
        "scale": OK,
        "center": OK,
        "train": OK,
    },
    "Loss": {
        "classification_loss": REQUIRED,
        "localization_loss": REQUIRED,
        "classification_weight": Rule(between(0.0)),
        "localization_weight": Rule(between(0.0)),
    },
    "ClassificationLoss": {"weighted_sigmoid_focal": OK},
    "SigmoidFocalClassificationLoss": {"alpha": Rule(between(0.0, 1.0)), "gamma": Rule(between(0.0))},
    "LocalizationLoss": {"weighted_smooth_l1": OK},
    "WeightedSmoothL1LocalizationLoss": {"delta": Rule(between(0.0))},
    "PostProcessing": {
        "batch_non_max_suppression": OK,
        "score_converter": Rule(only("SIGMOID", "SOFTMAX")),  # SSD: sigmoid, Faster R-CNN: softmax
    },
    "BatchNonMaxSuppression": {
        "score_threshold": Rule(between(0.0, 1.0)),
        "iou_threshold": Rule(between(0.0, 1.0)),
        "max_detections_per_class": Rule(between(1)),
        "max_total_detections": Rule(between(1)),
        "use_class_agnostic_nms": OK,
    },
    "TrainConfig": {
        "batch_size": Rule(between(1)),
        "num_steps": Rule(between(1, what=" (odlite trains for a set number of steps)")),
        "fine_tune_checkpoint": OK,
        "fine_tune_checkpoint_type": Rule(only("classification", "detection", "full"), set_only=True),
        "fine_tune_checkpoint_version": Rule(only("V2", why="TF2 object-based checkpoints"), set_only=True),
        "sync_replicas": OK,
        # Only a written value is checked: the TF2 OD API ignores the default of 15 as well.
        "startup_delay_steps": Rule(only(0.0), set_only=True),
        "replicas_to_aggregate": Rule(between(1)),
        "max_number_of_boxes": Rule(between(1)),
        "unpad_groundtruth_tensors": OK,
        "use_bfloat16": OK,  # Keras' mixed_bfloat16 policy
        "optimizer": REQUIRED,
        "data_augmentation_options": OK,
    },
    "Optimizer": {
        "momentum_optimizer": OK,
        "use_moving_average": Rule(only(False, why="odlite keeps no moving average of the weights")),
    },
    "MomentumOptimizer": {"learning_rate": REQUIRED, "momentum_optimizer_value": Rule(between(0.0, 1.0))},
    "LearningRate": {"cosine_decay_learning_rate": OK, "constant_learning_rate": OK},
    "ConstantLearningRate": {"learning_rate": Rule(between(0.0))},
    "CosineDecayLearningRate": {
        "learning_rate_base": Rule(between(0.0)),
        "total_steps": Rule(between(1)),
        "warmup_learning_rate": Rule(between(0.0)),
        "warmup_steps": OK,
        "hold_base_rate_steps": OK,
    },
    **AUGMENTATION_RULES,
    "InputReader": {
        "label_map_path": OK,
        "tf_record_input_reader": OK,
        "shuffle": OK,
        "num_epochs": OK,
        "num_readers": Rule(between(1)),
    },
    "TFRecordInputReader": {"input_path": REQUIRED},
    "EvalConfig": {
        "metrics_set": Rule(only("coco_detection_metrics", why="COCO mAP from pycocotools")),
        "use_moving_averages": Rule(only(False, why="odlite keeps no moving average of the weights")),
        "num_examples": Rule(between(1)),
        "max_evals": OK,
        "include_metrics_per_category": OK,
    },
}

# Supported fields that change nothing in odlite, by dotted path, with the reason. Every other
# supported field changes what is built or run: tests/test_config_honesty.py proves it leaf by leaf.
NO_OPS: dict[str, str] = {
    "model.ssd.inplace_batchnorm_update": "TF1 graph mode's choice of where batch-norm updates run; "
    "Keras batch norm always updates its statistics in place",
    "model.ssd.matcher.argmax_matcher.use_matmul_gather": "a speed choice for TPUs (gather by matrix "
    "product); the match is the same",
    "model.faster_rcnn.inplace_batchnorm_update": "TF1 graph mode's choice of where batch-norm updates run; "
    "Keras batch norm always updates its statistics in place",
    "model.faster_rcnn.use_matmul_crop_and_resize": "a speed choice for TPUs (crop by matrix product); "
    "Model Garden's RoI align gives the same crops",
    "model.faster_rcnn.use_matmul_gather_in_matcher": "a speed choice for TPUs (gather by matrix product); "
    "the match is the same",
    "model.faster_rcnn.use_static_balanced_label_sampler": "a TPU-friendly form of the same sampling; "
    "Model Garden's samplers are static-shaped already",
    "model.faster_rcnn.use_static_shapes": "TPU padding; odlite's inputs, proposals and detections always "
    "have static shapes",
    "model.faster_rcnn.use_static_shapes_for_eval": "TPU padding; odlite's inputs, proposals and detections "
    "always have static shapes",
    "model.faster_rcnn.second_stage_box_predictor.mask_rcnn_box_predictor.dropout_keep_probability": "used "
    "only with use_dropout, which odlite refuses",
    "train_config.sync_replicas": "TF1's SyncReplicasOptimizer; tf.distribute replicas are always synchronous",
    "train_config.replicas_to_aggregate": "TF1's SyncReplicasOptimizer; tf.distribute averages every replica",
    "train_config.unpad_groundtruth_tensors": "TF1 input padding; odlite pads and masks ground truth itself",
    "eval_input_reader.shuffle": "evaluation reads every record once, in file order; the order does not "
    "change COCO metrics",
    "eval_input_reader.num_epochs": "evaluation reads every record once",
    "eval_input_reader.num_readers": "evaluation reads files in order; parallel reading would change its speed only",
    "eval_config.include_metrics_per_category": "odlite always reports per-class AP (metrics.json, report.md)",
}

# Messages made of one oneof: when present, one (supported) member must be set.
CHOICES = {
    "DetectionModel",
    "BoxCoder",
    "Matcher",
    "RegionSimilarityCalculator",
    "AnchorGenerator",
    "ImageResizer",
    "BoxPredictor",
    "Regularizer",
    "Initializer",
    "LocalizationLoss",
    "ClassificationLoss",
    "Optimizer",
    "LearningRate",
    "PreprocessingStep",
    "InputReader",
}

# Why a field is not supported: "Message.field" first, then "Message", then DEFAULT_REASON.
REASONS: dict[str, str] = {
    "TrainEvalPipelineConfig.graph_rewriter": "odlite quantizes at export, not with graph rewriting",
    "DetectionModel": "only 'ssd' (SSD MobileNetV2 FPNLite) and 'faster_rcnn' (ResNet-FPN)",
    "FasterRcnn": "odlite's Faster R-CNN has no equivalent",
    "FasterRcnn.second_stage_classification_loss": "Model Garden's Faster R-CNN trains with softmax "
    "cross-entropy, the OD API's default",
    "FasterRcnnFeatureExtractor": "odlite's ResNet-FPN feature extractor has no equivalent",
    "KeepAspectRatioResizer": "odlite resizes RGB images bilinearly",
    "MaskRCNNBoxPredictor": "odlite's Faster R-CNN predicts boxes, not masks or keypoints",
    "Ssd": "odlite's SSD has no equivalent",
    "SsdFeatureExtractor": "odlite's MobileNetV2 FPNLite backbone has no equivalent",
    "SsdFeatureExtractor.bifpn": "only 'fpn' (FPNLite)",
    "BoxCoder": "only 'faster_rcnn_box_coder'",
    "Matcher": "only 'argmax_matcher'",
    "RegionSimilarityCalculator": "only 'iou_similarity'",
    "AnchorGenerator": "only 'multiscale_anchor_generator' (anchors on each FPN level)",
    "ImageResizer": "only 'fixed_shape_resizer' and 'keep_aspect_ratio_resizer'",
    "FixedShapeResizer": "odlite resizes RGB images bilinearly",
    "BoxPredictor": "only 'weight_shared_convolutional_box_predictor' (SSD) and 'mask_rcnn_box_predictor' "
    "(Faster R-CNN)",
    "WeightSharedConvolutionalBoxPredictor": "odlite's shared box predictor has no equivalent",
    "Hyperparams": "odlite's conv layers have no equivalent",
    "Hyperparams.group_norm": "only 'batch_norm'",
    "Hyperparams.sync_batch_norm": "only 'batch_norm'",
    "Regularizer": "only 'l2_regularizer'",
    "Initializer": "only 'random_normal_initializer', 'truncated_normal_initializer' and "
    "'variance_scaling_initializer'",
    "Loss": "odlite's loss has no equivalent",
    "ClassificationLoss": "only 'weighted_sigmoid_focal'",
    "LocalizationLoss": "only 'weighted_smooth_l1'",
    "SigmoidFocalClassificationLoss.anchorwise_output": "deprecated in the OD API",
    "WeightedSmoothL1LocalizationLoss.anchorwise_output": "deprecated in the OD API",
    "PostProcessing": "odlite's post-processing has no equivalent",
    "BatchNonMaxSuppression": "odlite's non-max suppression has no equivalent",
    "TrainConfig": "odlite's training loop has no equivalent",
    "Optimizer": "only 'momentum_optimizer'",
    "Optimizer.moving_average_decay": "odlite keeps no moving average of the weights",
    "LearningRate": "only 'cosine_decay_learning_rate' and 'constant_learning_rate'",
    **AUGMENTATION_REASONS,
    "InputReader": "odlite's input pipeline has no equivalent",
    "InputReader.external_input_reader": "only 'tf_record_input_reader'",
    "EvalConfig": "odlite's evaluation has no equivalent",
}
DEFAULT_REASON = "odlite has no equivalent"


def reason_not_supported(message: str, name: str) -> str:
    return REASONS.get(f"{message}.{name}") or REASONS.get(message) or DEFAULT_REASON
