"""What a ``pipeline.config`` may say: the OD API's schema, and the part of it odlite honours.

``DECLARATIONS`` is the Object Detection API's ``TrainEvalPipelineConfig`` for SSD and
Faster R-CNN, taken
from tensorflow/models ``research/object_detection/protos/*.proto`` (names, types,
defaults, enums, oneofs; comments and field numbers left out, as the text format names
fields). Message types odlite never descends into are left undeclared: a field of such
a type is known by name only, which is enough to say "not supported" rather than
"unknown field". ``SUPPORTED`` is the table of what odlite honours, with the value
restrictions; every other declared field is rejected with the reason from ``REASONS``.
A message type shared by both meta-architectures has one rule per field here; where the
two differ (SSD's resizer, Faster R-CNN's score converter), pipeline_config's cross-checks
say which value each one takes.
To support a field, add it to ``SUPPORTED`` (and its message to ``DECLARATIONS``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

DECLARATIONS = """
message TrainEvalPipelineConfig {
  optional DetectionModel model;
  optional TrainConfig train_config;
  optional InputReader train_input_reader;
  optional EvalConfig eval_config;
  optional InputReader eval_input_reader;
  optional GraphRewriter graph_rewriter;
}

message DetectionModel {
  oneof model {
    FasterRcnn faster_rcnn;
    Ssd ssd;
    ExperimentalModel experimental_model;
    CenterNet center_net;
  }
}

message FasterRcnn {
  optional int32 number_of_stages [default = 2];
  optional int32 num_classes;
  optional ImageResizer image_resizer;
  optional FasterRcnnFeatureExtractor feature_extractor;
  optional AnchorGenerator first_stage_anchor_generator;
  optional int32 first_stage_atrous_rate [default = 1];
  optional Hyperparams first_stage_box_predictor_conv_hyperparams;
  optional int32 first_stage_box_predictor_kernel_size [default = 3];
  optional int32 first_stage_box_predictor_depth [default = 512];
  optional int32 first_stage_minibatch_size [default = 256];
  optional float first_stage_positive_balance_fraction [default = 0.5];
  optional float first_stage_nms_score_threshold [default = 0.0];
  optional float first_stage_nms_iou_threshold [default = 0.7];
  optional int32 first_stage_max_proposals [default = 300];
  optional float first_stage_localization_loss_weight [default = 1.0];
  optional float first_stage_objectness_loss_weight [default = 1.0];
  optional int32 initial_crop_size;
  optional int32 maxpool_kernel_size;
  optional int32 maxpool_stride;
  optional BoxPredictor second_stage_box_predictor;
  optional int32 second_stage_batch_size [default = 64];
  optional float second_stage_balance_fraction [default = 0.25];
  optional PostProcessing second_stage_post_processing;
  optional float second_stage_localization_loss_weight [default = 1.0];
  optional float second_stage_classification_loss_weight [default = 1.0];
  optional float second_stage_mask_prediction_loss_weight [default = 1.0];
  optional HardExampleMiner hard_example_miner;
  optional ClassificationLoss second_stage_classification_loss;
  optional bool inplace_batchnorm_update [default = false];
  optional bool use_matmul_crop_and_resize [default = false];
  optional bool clip_anchors_to_image [default = false];
  optional bool use_matmul_gather_in_matcher [default = false];
  optional bool use_static_balanced_label_sampler [default = false];
  optional bool use_static_shapes [default = false];
  optional bool resize_masks [default = true];
  optional bool use_static_shapes_for_eval [default = false];
  optional bool use_partitioned_nms_in_first_stage [default = false];
  optional bool return_raw_detections_during_predict [default = false];
  optional bool output_final_box_features [default = false];
  optional bool output_final_box_rpn_features [default = false];
  optional Context context_config;
}

message FasterRcnnFeatureExtractor {
  optional string type;
  optional int32 first_stage_features_stride [default = 16];
  optional bool batch_norm_trainable [default = false];
  optional Hyperparams conv_hyperparams;
  optional bool override_base_feature_extractor_hyperparams [default = false];
  optional int32 pad_to_multiple [default = 32];
  optional FeaturePyramidNetworks fpn;
}

message Ssd {
  optional int32 num_classes;
  optional ImageResizer image_resizer;
  optional SsdFeatureExtractor feature_extractor;
  optional BoxCoder box_coder;
  optional Matcher matcher;
  optional RegionSimilarityCalculator similarity_calculator;
  optional bool encode_background_as_zeros [default = false];
  optional float negative_class_weight [default = 1.0];
  optional BoxPredictor box_predictor;
  optional AnchorGenerator anchor_generator;
  optional PostProcessing post_processing;
  optional bool normalize_loss_by_num_matches [default = true];
  optional bool normalize_loc_loss_by_codesize [default = false];
  optional Loss loss;
  optional bool freeze_batchnorm [default = false];
  optional bool inplace_batchnorm_update [default = false];
  optional bool add_background_class [default = true];
  optional bool explicit_background_class [default = false];
  optional bool use_confidences_as_targets [default = false];
  optional float implicit_example_weight [default = 1.0];
  optional bool return_raw_detections_during_predict [default = false];
  optional MaskHead mask_head_config;
}

message SsdFeatureExtractor {
  optional string type;
  optional float depth_multiplier [default = 1.0];
  optional int32 min_depth [default = 16];
  optional Hyperparams conv_hyperparams;
  optional bool override_base_feature_extractor_hyperparams [default = false];
  optional int32 pad_to_multiple [default = 1];
  optional bool use_explicit_padding [default = false];
  optional bool use_depthwise [default = false];
  oneof feature_pyramid_oneof {
    FeaturePyramidNetworks fpn;
    BidirectionalFeaturePyramidNetworks bifpn;
  }
  optional bool replace_preprocessor_with_placeholder [default = false];
  optional int32 num_layers [default = 6];
}

message FeaturePyramidNetworks {
  optional int32 min_level [default = 3];
  optional int32 max_level [default = 7];
  optional int32 additional_layer_depth [default = 256];
}

message BoxCoder {
  oneof box_coder_oneof {
    FasterRcnnBoxCoder faster_rcnn_box_coder;
    MeanStddevBoxCoder mean_stddev_box_coder;
    SquareBoxCoder square_box_coder;
    KeypointBoxCoder keypoint_box_coder;
  }
}

message FasterRcnnBoxCoder {
  optional float y_scale [default = 10.0];
  optional float x_scale [default = 10.0];
  optional float height_scale [default = 5.0];
  optional float width_scale [default = 5.0];
}

message Matcher {
  oneof matcher_oneof {
    ArgMaxMatcher argmax_matcher;
    BipartiteMatcher bipartite_matcher;
  }
}

message ArgMaxMatcher {
  optional float matched_threshold [default = 0.5];
  optional float unmatched_threshold [default = 0.5];
  optional bool ignore_thresholds [default = false];
  optional bool negatives_lower_than_unmatched [default = true];
  optional bool force_match_for_each_row [default = false];
  optional bool use_matmul_gather [default = false];
}

message RegionSimilarityCalculator {
  oneof region_similarity {
    NegSqDistSimilarity neg_sq_dist_similarity;
    IouSimilarity iou_similarity;
    IoaSimilarity ioa_similarity;
    ThresholdedIouSimilarity thresholded_iou_similarity;
  }
}

message IouSimilarity {
}

message AnchorGenerator {
  oneof anchor_generator_oneof {
    GridAnchorGenerator grid_anchor_generator;
    SsdAnchorGenerator ssd_anchor_generator;
    MultiscaleAnchorGenerator multiscale_anchor_generator;
    FlexibleGridAnchorGenerator flexible_grid_anchor_generator;
  }
}

message MultiscaleAnchorGenerator {
  optional int32 min_level [default = 3];
  optional int32 max_level [default = 7];
  optional float anchor_scale [default = 4.0];
  repeated float aspect_ratios;
  optional int32 scales_per_octave [default = 2];
  optional bool normalize_coordinates [default = true];
}

enum ResizeType {
  BILINEAR;
  NEAREST_NEIGHBOR;
  BICUBIC;
  AREA;
}

message ImageResizer {
  oneof image_resizer_oneof {
    KeepAspectRatioResizer keep_aspect_ratio_resizer;
    FixedShapeResizer fixed_shape_resizer;
    IdentityResizer identity_resizer;
    ConditionalShapeResizer conditional_shape_resizer;
    PureImageResizer pure_image_resizer;
  }
}

message KeepAspectRatioResizer {
  optional int32 min_dimension [default = 600];
  optional int32 max_dimension [default = 1024];
  optional ResizeType resize_method [default = BILINEAR];
  optional bool pad_to_max_dimension [default = false];
  optional bool convert_to_grayscale [default = false];
  repeated float per_channel_pad_value;
}

message FixedShapeResizer {
  optional int32 height [default = 300];
  optional int32 width [default = 300];
  optional ResizeType resize_method [default = BILINEAR];
  optional bool convert_to_grayscale [default = false];
}

message BoxPredictor {
  oneof box_predictor_oneof {
    ConvolutionalBoxPredictor convolutional_box_predictor;
    MaskRCNNBoxPredictor mask_rcnn_box_predictor;
    RfcnBoxPredictor rfcn_box_predictor;
    WeightSharedConvolutionalBoxPredictor weight_shared_convolutional_box_predictor;
  }
}

message MaskRCNNBoxPredictor {
  optional Hyperparams fc_hyperparams;
  optional bool use_dropout [default = false];
  optional float dropout_keep_probability [default = 0.5];
  optional int32 box_code_size [default = 4];
  optional Hyperparams conv_hyperparams;
  optional bool predict_instance_masks [default = false];
  optional int32 mask_prediction_conv_depth [default = 256];
  optional bool predict_keypoints [default = false];
  optional int32 mask_height [default = 15];
  optional int32 mask_width [default = 15];
  optional int32 mask_prediction_num_conv_layers [default = 2];
  optional bool masks_are_class_agnostic [default = false];
  optional bool share_box_across_classes [default = false];
  optional bool convolve_then_upsample_masks [default = false];
}

message WeightSharedConvolutionalBoxPredictor {
  optional Hyperparams conv_hyperparams;
  optional int32 num_layers_before_predictor [default = 0];
  optional int32 depth [default = 0];
  optional int32 kernel_size [default = 3];
  optional int32 box_code_size [default = 4];
  optional float class_prediction_bias_init [default = 0.0];
  optional bool use_dropout [default = false];
  optional float dropout_keep_probability [default = 0.8];
  optional bool share_prediction_tower [default = false];
  optional bool use_depthwise [default = false];
  optional MaskHead mask_head;
  enum ScoreConverter {
    IDENTITY;
    SIGMOID;
  }
  optional ScoreConverter score_converter [default = IDENTITY];
  optional BoxEncodingsClipRange box_encodings_clip_range;
  optional bool apply_conv_hyperparams_to_heads [default = false];
  optional bool apply_conv_hyperparams_pointwise [default = false];
}

message Hyperparams {
  enum Op {
    CONV;
    FC;
  }
  optional Op op [default = CONV];
  optional Regularizer regularizer;
  optional Initializer initializer;
  enum Activation {
    NONE;
    RELU;
    RELU_6;
    SWISH;
  }
  optional Activation activation [default = RELU];
  oneof normalizer_oneof {
    BatchNorm batch_norm;
    GroupNorm group_norm;
    BatchNorm sync_batch_norm;
  }
  optional bool regularize_depthwise [default = false];
  optional bool force_use_bias [default = false];
}

message Regularizer {
  oneof regularizer_oneof {
    L1Regularizer l1_regularizer;
    L2Regularizer l2_regularizer;
  }
}

message L2Regularizer {
  optional float weight [default = 1.0];
}

message Initializer {
  oneof initializer_oneof {
    TruncatedNormalInitializer truncated_normal_initializer;
    VarianceScalingInitializer variance_scaling_initializer;
    RandomNormalInitializer random_normal_initializer;
    KerasInitializerByName keras_initializer_by_name;
  }
}

message TruncatedNormalInitializer {
  optional float mean [default = 0.0];
  optional float stddev [default = 1.0];
}

message VarianceScalingInitializer {
  optional float factor [default = 2.0];
  optional bool uniform [default = false];
  enum Mode {
    FAN_IN;
    FAN_OUT;
    FAN_AVG;
  }
  optional Mode mode [default = FAN_IN];
}

message RandomNormalInitializer {
  optional float mean [default = 0.0];
  optional float stddev [default = 1.0];
}

message BatchNorm {
  optional float decay [default = 0.999];
  optional bool center [default = true];
  optional bool scale [default = false];
  optional float epsilon [default = 0.001];
  optional bool train [default = true];
}

message Loss {
  optional LocalizationLoss localization_loss;
  optional ClassificationLoss classification_loss;
  optional HardExampleMiner hard_example_miner;
  optional float classification_weight [default = 1.0];
  optional float localization_weight [default = 1.0];
  optional RandomExampleSampler random_example_sampler;
  optional EqualizationLoss equalization_loss;
  enum ExpectedLossWeights {
    NONE;
    EXPECTED_SAMPLING;
    REWEIGHTING_UNMATCHED_ANCHORS;
  }
  optional ExpectedLossWeights expected_loss_weights [default = NONE];
  optional float min_num_negative_samples [default = 0];
  optional float desired_negative_sampling_ratio [default = 3];
}

message LocalizationLoss {
  oneof localization_loss {
    WeightedL2LocalizationLoss weighted_l2;
    WeightedSmoothL1LocalizationLoss weighted_smooth_l1;
    WeightedIOULocalizationLoss weighted_iou;
    L1LocalizationLoss l1_localization_loss;
    WeightedGIOULocalizationLoss weighted_giou;
  }
}

message WeightedSmoothL1LocalizationLoss {
  optional bool anchorwise_output [default = false];
  optional float delta [default = 1.0];
}

message ClassificationLoss {
  oneof classification_loss {
    WeightedSigmoidClassificationLoss weighted_sigmoid;
    WeightedSoftmaxClassificationLoss weighted_softmax;
    WeightedSoftmaxClassificationAgainstLogitsLoss weighted_logits_softmax;
    BootstrappedSigmoidClassificationLoss bootstrapped_sigmoid;
    SigmoidFocalClassificationLoss weighted_sigmoid_focal;
    PenaltyReducedLogisticFocalLoss penalty_reduced_logistic_focal_loss;
    WeightedDiceClassificationLoss weighted_dice_classification_loss;
  }
}

message SigmoidFocalClassificationLoss {
  optional bool anchorwise_output [default = false];
  optional float gamma [default = 2.0];
  optional float alpha;
}

message PostProcessing {
  optional BatchNonMaxSuppression batch_non_max_suppression;
  enum ScoreConverter {
    IDENTITY;
    SIGMOID;
    SOFTMAX;
  }
  optional ScoreConverter score_converter [default = IDENTITY];
  optional float logit_scale [default = 1.0];
  optional CalibrationConfig calibration_config;
}

message BatchNonMaxSuppression {
  optional float score_threshold [default = 0.0];
  optional float iou_threshold [default = 0.6];
  optional int32 max_detections_per_class [default = 100];
  optional int32 max_total_detections [default = 100];
  optional float soft_nms_sigma [default = 0.0];
  optional bool use_static_shapes [default = false];
  optional bool use_class_agnostic_nms [default = false];
  optional int32 max_classes_per_detection [default = 1];
  optional bool use_partitioned_nms [default = false];
  optional bool use_combined_nms [default = false];
  optional bool change_coordinate_frame [default = true];
}

enum CheckpointVersion {
  UNKNOWN;
  V1;
  V2;
}

message TrainConfig {
  optional uint32 batch_size [default = 32];
  repeated PreprocessingStep data_augmentation_options;
  optional bool sync_replicas [default = false];
  optional float keep_checkpoint_every_n_hours [default = 10000.0];
  optional Optimizer optimizer;
  optional float gradient_clipping_by_norm [default = 0.0];
  optional string fine_tune_checkpoint [default = ""];
  optional string fine_tune_checkpoint_type [default = ""];
  optional CheckpointVersion fine_tune_checkpoint_version [default = V1];
  optional bool from_detection_checkpoint [default = false];
  optional bool load_all_detection_checkpoint_vars [default = false];
  optional bool run_fine_tune_checkpoint_dummy_computation [default = false];
  optional uint32 num_steps [default = 0];
  optional float startup_delay_steps [default = 15];
  optional float bias_grad_multiplier [default = 0];
  repeated string update_trainable_variables;
  repeated string freeze_variables;
  optional int32 replicas_to_aggregate [default = 1];
  optional int32 batch_queue_capacity [default = 150];
  optional int32 num_batch_queue_threads [default = 8];
  optional int32 prefetch_queue_capacity [default = 5];
  optional bool merge_multiple_label_boxes [default = false];
  optional bool use_multiclass_scores [default = false];
  optional bool add_regularization_loss [default = true];
  optional int32 max_number_of_boxes [default = 100];
  optional bool unpad_groundtruth_tensors [default = true];
  optional bool retain_original_images [default = false];
  optional bool use_bfloat16 [default = false];
  optional bool summarize_gradients [default = false];
}

message Optimizer {
  oneof optimizer {
    RMSPropOptimizer rms_prop_optimizer;
    MomentumOptimizer momentum_optimizer;
    AdamOptimizer adam_optimizer;
  }
  optional bool use_moving_average [default = true];
  optional float moving_average_decay [default = 0.9999];
}

message MomentumOptimizer {
  optional LearningRate learning_rate;
  optional float momentum_optimizer_value [default = 0.9];
}

message LearningRate {
  oneof learning_rate {
    ConstantLearningRate constant_learning_rate;
    ExponentialDecayLearningRate exponential_decay_learning_rate;
    ManualStepLearningRate manual_step_learning_rate;
    CosineDecayLearningRate cosine_decay_learning_rate;
  }
}

message ConstantLearningRate {
  optional float learning_rate [default = 0.002];
}

message CosineDecayLearningRate {
  optional float learning_rate_base [default = 0.002];
  optional uint32 total_steps [default = 4000000];
  optional float warmup_learning_rate [default = 0.0002];
  optional uint32 warmup_steps [default = 10000];
  optional uint32 hold_base_rate_steps [default = 0];
}

message PreprocessingStep {
  oneof preprocessing_step {
    NormalizeImage normalize_image;
    RandomHorizontalFlip random_horizontal_flip;
    RandomPixelValueScale random_pixel_value_scale;
    RandomImageScale random_image_scale;
    RandomRGBtoGray random_rgb_to_gray;
    RandomAdjustBrightness random_adjust_brightness;
    RandomAdjustContrast random_adjust_contrast;
    RandomAdjustHue random_adjust_hue;
    RandomAdjustSaturation random_adjust_saturation;
    RandomDistortColor random_distort_color;
    RandomJitterBoxes random_jitter_boxes;
    RandomCropImage random_crop_image;
    RandomPadImage random_pad_image;
    RandomCropPadImage random_crop_pad_image;
    RandomCropToAspectRatio random_crop_to_aspect_ratio;
    RandomBlackPatches random_black_patches;
    RandomResizeMethod random_resize_method;
    ScaleBoxesToPixelCoordinates scale_boxes_to_pixel_coordinates;
    ResizeImage resize_image;
    SubtractChannelMean subtract_channel_mean;
    SSDRandomCrop ssd_random_crop;
    SSDRandomCropPad ssd_random_crop_pad;
    SSDRandomCropFixedAspectRatio ssd_random_crop_fixed_aspect_ratio;
    SSDRandomCropPadFixedAspectRatio ssd_random_crop_pad_fixed_aspect_ratio;
    RandomVerticalFlip random_vertical_flip;
    RandomRotation90 random_rotation90;
    RGBtoGray rgb_to_gray;
    ConvertClassLogitsToSoftmax convert_class_logits_to_softmax;
    RandomAbsolutePadImage random_absolute_pad_image;
    RandomSelfConcatImage random_self_concat_image;
    AutoAugmentImage autoaugment_image;
    DropLabelProbabilistically drop_label_probabilistically;
    RemapLabels remap_labels;
    RandomJpegQuality random_jpeg_quality;
    RandomDownscaleToTargetPixels random_downscale_to_target_pixels;
    RandomPatchGaussian random_patch_gaussian;
    RandomSquareCropByScale random_square_crop_by_scale;
    RandomScaleCropAndPadToSquare random_scale_crop_and_pad_to_square;
    AdjustGamma adjust_gamma;
  }
}

message RandomHorizontalFlip {
  repeated int32 keypoint_flip_permutation;
  optional float probability [default = 0.5];
}

message RandomAdjustBrightness {
  optional float max_delta [default = 0.2];
}

message RandomAdjustContrast {
  optional float min_delta [default = 0.8];
  optional float max_delta [default = 1.25];
}

message RandomAdjustHue {
  optional float max_delta [default = 0.02];
}

message RandomAdjustSaturation {
  optional float min_delta [default = 0.8];
  optional float max_delta [default = 1.25];
}

message RandomCropImage {
  optional float min_object_covered [default = 1.0];
  optional float min_aspect_ratio [default = 0.75];
  optional float max_aspect_ratio [default = 1.33];
  optional float min_area [default = 0.1];
  optional float max_area [default = 1.0];
  optional float overlap_thresh [default = 0.3];
  optional bool clip_boxes [default = true];
  optional float random_coef [default = 0.0];
}

message SSDRandomCrop {
  repeated SSDRandomCropOperation operations;
}

message SSDRandomCropOperation {
  optional float min_object_covered;
  optional float min_aspect_ratio;
  optional float max_aspect_ratio;
  optional float min_area;
  optional float max_area;
  optional float overlap_thresh;
  optional bool clip_boxes [default = true];
  optional float random_coef;
}

enum InstanceMaskType {
  DEFAULT;
  NUMERICAL_MASKS;
  PNG_MASKS;
}

message InputReader {
  optional string name [default = ""];
  optional string label_map_path [default = ""];
  optional bool shuffle [default = true];
  optional uint32 shuffle_buffer_size [default = 2048];
  optional uint32 filenames_shuffle_buffer_size [default = 100];
  optional uint32 num_epochs [default = 0];
  optional uint32 sample_1_of_n_examples [default = 1];
  optional uint32 num_readers [default = 64];
  optional uint32 num_parallel_batches [default = 8];
  optional int32 num_prefetch_batches [default = 2];
  optional uint32 queue_capacity [default = 2000];
  optional uint32 min_after_dequeue [default = 1000];
  optional uint32 read_block_length [default = 32];
  optional uint32 prefetch_size [default = 512];
  optional uint32 num_parallel_map_calls [default = 64];
  optional int32 num_additional_channels [default = 0];
  optional uint32 num_keypoints [default = 0];
  repeated float keypoint_type_weight;
  optional int32 max_number_of_boxes [default = 100];
  optional bool load_multiclass_scores [default = false];
  optional bool load_instance_masks [default = false];
  optional InstanceMaskType mask_type [default = NUMERICAL_MASKS];
  optional bool load_dense_pose [default = false];
  optional bool load_track_id [default = false];
  optional bool load_context_features [default = false];
  optional bool load_keypoint_depth_features [default = false];
  optional bool use_display_name [default = false];
  optional bool include_source_id [default = false];
  optional bool expand_labels_hierarchy [default = false];
  oneof input_reader {
    TFRecordInputReader tf_record_input_reader;
    ExternalInputReader external_input_reader;
  }
}

message TFRecordInputReader {
  repeated string input_path;
}

message EvalConfig {
  optional uint32 batch_size [default = 1];
  optional uint32 num_visualizations [default = 10];
  optional uint32 num_examples [default = 5000];
  optional uint32 eval_interval_secs [default = 300];
  optional uint32 max_evals [default = 0];
  optional bool save_graph [default = false];
  optional string visualization_export_dir [default = ""];
  optional string eval_master [default = ""];
  repeated string metrics_set;
  repeated ParameterizedMetric parameterized_metric;
  optional string export_path [default = ""];
  optional bool ignore_groundtruth [default = false];
  optional bool use_moving_averages [default = false];
  optional bool eval_instance_masks [default = false];
  optional float min_score_threshold [default = 0.5];
  optional int32 max_num_boxes_to_visualize [default = 20];
  optional bool skip_scores [default = false];
  optional bool skip_labels [default = false];
  optional bool visualize_groundtruth_boxes [default = false];
  optional string groundtruth_box_visualization_color [default = "black"];
  optional bool keep_image_id_for_visualization_export [default = false];
  optional bool retain_original_images [default = true];
  optional bool include_metrics_per_category [default = false];
  optional bool all_metrics_per_category [default = false];
  optional float recall_lower_bound [default = 0.0];
  optional float recall_upper_bound [default = 1.0];
  optional bool retain_original_image_additional_channels [default = false];
  optional bool force_no_resize [default = false];
  optional bool use_dummy_loss_in_eval [default = false];
  repeated KeypointEdge keypoint_edge;
  optional bool skip_predictions_for_unlabeled_class [default = false];
}
"""


# --- what odlite honours ---------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How odlite takes one field: ``check`` returns a reason when a value can't be honoured.

    The check sees the value in effect, the .proto default included, unless ``set_only``.
    ``required``: the field must be present (odlite cannot build the model without it).
    """

    check: Callable[[object], str | None] | None = None
    required: bool = False
    set_only: bool = False


OK = Rule()
REQUIRED = Rule(required=True)


def only(*allowed, why: str = "") -> Callable[[object], str | None]:
    shown = ", ".join(_show(a) for a in allowed)
    reason = f"not supported: only {shown}" + (f" ({why})" if why else "")
    return lambda value: None if value in allowed else reason


def between(low: float, high: float | None = None, what: str = "") -> Callable[[object], str | None]:
    def check(value) -> str | None:
        if value < low or (high is not None and value > high):
            span = f"at least {_show(low)}" if high is None else f"between {_show(low)} and {_show(high)}"
            return f"must be {span}{what}, got {_show(value)}"
        return None

    return check


def above(low: float, high: float | None = None) -> Callable[[object], str | None]:
    """``low`` < value <= ``high``: for ranges TensorFlow's ops refuse to start at (a crop of area 0)."""

    def check(value) -> str | None:
        if value <= low or (high is not None and value > high):
            span = f"more than {_show(low)}" + (f" and at most {_show(high)}" if high is not None else "")
            return f"must be {span}, got {_show(value)}"
        return None

    return check


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


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
    shown = ", ".join(_show(t) for t in FASTER_RCNN_TYPES)
    fpn = str(value).replace("_keras", "_fpn_keras")
    if fpn in FASTER_RCNN_TYPES:
        return f"not supported: odlite's Faster R-CNN has an FPN; use {_show(fpn)} (the FPN variant)"
    return f"not supported: only {shown}"


AUGMENTATIONS = (
    "random_horizontal_flip",
    "random_crop_image",
    "ssd_random_crop",
    "random_adjust_brightness",
    "random_adjust_contrast",
    "random_adjust_hue",
    "random_adjust_saturation",
)

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
    "PreprocessingStep": {name: OK for name in AUGMENTATIONS},
    "RandomHorizontalFlip": {"probability": Rule(between(0.0, 1.0))},
    "RandomCropImage": {
        "min_object_covered": Rule(between(0.0, 1.0)),
        "min_aspect_ratio": Rule(above(0.0)),
        "max_aspect_ratio": Rule(above(0.0)),
        "min_area": Rule(above(0.0, 1.0)),
        "max_area": Rule(above(0.0, 1.0)),
        "overlap_thresh": Rule(between(0.0, 1.0)),
        "clip_boxes": OK,
        "random_coef": Rule(between(0.0, 1.0)),
    },
    "SSDRandomCrop": {"operations": OK},
    "SSDRandomCropOperation": {
        "min_object_covered": Rule(between(0.0, 1.0)),
        "min_aspect_ratio": Rule(above(0.0)),
        "max_aspect_ratio": Rule(above(0.0)),
        "min_area": Rule(above(0.0, 1.0)),
        "max_area": Rule(above(0.0, 1.0)),
        "overlap_thresh": Rule(between(0.0, 1.0)),
        "clip_boxes": OK,
        "random_coef": Rule(between(0.0, 1.0)),
    },
    "RandomAdjustBrightness": {"max_delta": Rule(between(0.0, 1.0))},
    "RandomAdjustContrast": {"min_delta": Rule(between(0.0)), "max_delta": Rule(between(0.0))},
    "RandomAdjustHue": {"max_delta": Rule(between(0.0, 0.5))},
    "RandomAdjustSaturation": {"min_delta": Rule(between(0.0)), "max_delta": Rule(between(0.0))},
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
    "PreprocessingStep": "odlite implements random_horizontal_flip, random_crop_image, ssd_random_crop, "
    "random_adjust_brightness/contrast/hue/saturation",
    "RandomHorizontalFlip.keypoint_flip_permutation": "odlite detects boxes, not keypoints",
    "InputReader": "odlite's input pipeline has no equivalent",
    "InputReader.external_input_reader": "only 'tf_record_input_reader'",
    "EvalConfig": "odlite's evaluation has no equivalent",
}
DEFAULT_REASON = "odlite has no equivalent"


def reason_not_supported(message: str, name: str) -> str:
    return REASONS.get(f"{message}.{name}") or REASONS.get(message) or DEFAULT_REASON


# --- the declarations, read -------------------------------------------------------------

SCALAR_TYPES = {"int32", "int64", "uint32", "uint64", "float", "double", "bool", "string"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    owner: str
    type: str  # a scalar type, an enum or a message name
    kind: str  # "scalar", "enum" or "message"
    repeated: bool = False
    default: object = None
    oneof: str | None = None


@dataclass
class MessageSpec:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    oneofs: dict[str, list[str]] = field(default_factory=dict)
    declared: bool = True


_DECLARATION = re.compile(
    r"(?P<label>optional|repeated)?\s*(?P<type>[\w.]+)\s+(?P<name>\w+)\s*(?:\[\s*default\s*=\s*(?P<default>[^\]]+)\])?;"
)


def _read_declarations(text: str) -> tuple[dict[str, MessageSpec], dict[str, tuple[str, ...]]]:
    """Messages and enums of ``text``; nested enums are named ``Outer.Inner``."""
    messages: dict[str, MessageSpec] = {}
    enums: dict[str, tuple[str, ...]] = {}
    pending: list[tuple[str, re.Match, str | None]] = []  # owner, declaration, oneof
    scope: list[tuple[str, str]] = []  # (kind, name)
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        head = re.match(r"(message|enum|oneof)\s+(\w+)\s*\{$", line)
        if head:
            kind, name = head.groups()
            if kind == "message":
                messages[name] = MessageSpec(name)
            elif kind == "enum":
                owner = next((n for k, n in reversed(scope) if k == "message"), None)
                name = f"{owner}.{name}" if owner else name
                enums[name] = ()
            scope.append((kind, name))
            continue
        if line == "}":
            scope.pop()
            continue
        kind, name = scope[-1]
        if kind == "enum":
            enums[name] += (line.rstrip(";"),)
            continue
        owner = next(n for k, n in reversed(scope) if k == "message")
        match = _DECLARATION.fullmatch(line)
        if match is None:
            raise ValueError(f"cannot read declaration {line!r}")
        pending.append((owner, match, name if kind == "oneof" else None))
    for owner, match, oneof in pending:
        type_name = match["type"]
        if type_name in SCALAR_TYPES:
            kind = "scalar"
        elif f"{owner}.{type_name}" in enums:
            kind, type_name = "enum", f"{owner}.{type_name}"
        elif type_name in enums:
            kind = "enum"
        else:
            kind = "message"
        default = _default(type_name, kind, match["default"], enums)
        spec = FieldSpec(match["name"], owner, type_name, kind, match["label"] == "repeated", default, oneof)
        messages[owner].fields[spec.name] = spec
        if oneof:
            messages[owner].oneofs.setdefault(oneof, []).append(spec.name)
    return messages, enums


def _default(type_name: str, kind: str, text: str | None, enums: dict[str, tuple[str, ...]]):
    """The .proto default, or the type's zero value as proto2 gives when none is declared."""
    if kind == "message":
        return None
    if kind == "enum":
        return text.strip() if text else enums[type_name][0]
    if type_name == "bool":
        return text.strip() == "true" if text else False
    if type_name == "string":
        return text.strip()[1:-1] if text else ""
    if type_name in ("float", "double"):
        return float(text) if text else 0.0
    return int(text) if text else 0


MESSAGES, ENUMS = _read_declarations(DECLARATIONS)
ROOT = "TrainEvalPipelineConfig"


def message_spec(name: str) -> MessageSpec:
    """The declared message, or an empty undeclared one for types odlite knows by name only."""
    return MESSAGES.get(name) or MessageSpec(name, declared=False)


def _check_tables() -> None:
    for message, rules in SUPPORTED.items():
        if message not in MESSAGES:
            raise AssertionError(f"SUPPORTED names undeclared message {message}")
        for name in rules:
            spec = MESSAGES[message].fields.get(name)
            if spec is None:
                raise AssertionError(f"SUPPORTED names undeclared field {message}.{name}")
            if spec.kind == "message" and spec.type not in SUPPORTED:
                raise AssertionError(f"{message}.{name} is supported but {spec.type} has no SUPPORTED entry")


_check_tables()
