"""Translate a checked ``pipeline.config`` into what training and evaluation run.

The schema (pipeline_schema.py) has already rejected everything odlite cannot honour;
this module maps the rest onto odlite's network (model.py) and training loop.
Notes on the mapping:

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

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.model import ConvParams, ModelSpec
from pipelines.pipeline_config import PipelineConfig, load_pipeline_config

PREDICTOR = "model.ssd.box_predictor.weight_shared_convolutional_box_predictor"
EXTRACTOR = "model.ssd.feature_extractor"
_ACTIVATIONS = {"RELU_6": "relu6", "RELU": "relu", "NONE": "linear"}


@dataclass
class LearningRate:
    kind: str  # "cosine" or "constant"
    base: float
    total_steps: int = 0
    warmup_learning_rate: float = 0.0
    warmup_steps: int = 0
    hold_base_rate_steps: int = 0


@dataclass
class TrainSpec:
    model: ModelSpec
    config: PipelineConfig
    batch_size: int
    num_steps: int
    learning_rate: LearningRate
    momentum: float
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    huber_delta: float = 1.0
    loss_per_code: bool = True  # normalize_loc_loss_by_codesize
    matched_threshold: float = 0.5
    unmatched_threshold: float = 0.5
    max_boxes: int = 100
    augmentations: list[tuple[str, dict]] = field(default_factory=list)
    train_paths: list[str] = field(default_factory=list)
    eval_paths: list[str] = field(default_factory=list)
    label_map_path: str = ""
    fine_tune_checkpoint: str = ""
    fine_tune_checkpoint_type: str = "classification"
    eval_examples: int = 0


def _initializer(config: PipelineConfig, prefix: str) -> tuple[str, dict]:
    kind = config.which(f"{prefix}.conv_hyperparams.initializer")
    return kind.removesuffix("_initializer"), config.get(f"{prefix}.conv_hyperparams.initializer.{kind}")


def _conv_params(config: PipelineConfig, prefix: str) -> ConvParams:
    hyper = f"{prefix}.conv_hyperparams"
    norm = config.get(f"{hyper}.batch_norm")
    return ConvParams(
        initializer=_initializer(config, prefix),
        l2_weight=float(config.get(f"{hyper}.regularizer.l2_regularizer.weight")),
        activation=_ACTIVATIONS[config.get(f"{hyper}.activation")],
        batch_norm_decay=float(norm["decay"]),
        batch_norm_epsilon=float(norm["epsilon"]),
        batch_norm_scale=bool(norm["scale"]),
        batch_norm_center=bool(norm["center"]),
    )


def model_spec(config: PipelineConfig) -> ModelSpec:
    ssd = "model.ssd"
    anchors = config.get(f"{ssd}.anchor_generator.multiscale_anchor_generator")
    resizer = config.get(f"{ssd}.image_resizer.fixed_shape_resizer")
    coder = config.get(f"{ssd}.box_coder.faster_rcnn_box_coder")
    nms = config.get(f"{ssd}.post_processing.batch_non_max_suppression")
    return ModelSpec(
        num_classes=int(config.get(f"{ssd}.num_classes")),
        input_size=int(resizer["height"]),
        min_level=int(config.get(f"{EXTRACTOR}.fpn.min_level")),
        max_level=int(config.get(f"{EXTRACTOR}.fpn.max_level")),
        depth_multiplier=float(config.get(f"{EXTRACTOR}.depth_multiplier")),
        min_depth=int(config.get(f"{EXTRACTOR}.min_depth")),
        fpn_depth=int(config.get(f"{EXTRACTOR}.fpn.additional_layer_depth")),
        fpn_separable=bool(config.get(f"{EXTRACTOR}.use_depthwise")),
        extractor=_conv_params(config, EXTRACTOR),
        override_backbone_hyperparams=bool(config.get(f"{EXTRACTOR}.override_base_feature_extractor_hyperparams")),
        head_depth=int(config.get(f"{PREDICTOR}.depth")),
        head_layers=int(config.get(f"{PREDICTOR}.num_layers_before_predictor")),
        head_separable=bool(config.get(f"{PREDICTOR}.use_depthwise")),
        share_prediction_tower=bool(config.get(f"{PREDICTOR}.share_prediction_tower")),
        class_prior_bias=float(config.get(f"{PREDICTOR}.class_prediction_bias_init")),
        initialize_pointwise=bool(config.get(f"{PREDICTOR}.apply_conv_hyperparams_pointwise")),
        initialize_predictors=bool(config.get(f"{PREDICTOR}.apply_conv_hyperparams_to_heads")),
        predictor=_conv_params(config, PREDICTOR),
        anchor_scale=float(anchors["anchor_scale"]),
        aspect_ratios=[float(a) for a in anchors["aspect_ratios"]],
        scales_per_octave=int(anchors["scales_per_octave"]),
        box_coder_weights=[float(coder[k]) for k in ("y_scale", "x_scale", "height_scale", "width_scale")],
        score_threshold=float(nms["score_threshold"]),
        iou_threshold=float(nms["iou_threshold"]),
        max_detections=int(nms["max_total_detections"]),
        class_agnostic_nms=bool(nms["use_class_agnostic_nms"]),
        freeze_batchnorm=bool(config.get(f"{ssd}.freeze_batchnorm")),
    )


def _learning_rate(config: PipelineConfig) -> LearningRate:
    path = "train_config.optimizer.momentum_optimizer.learning_rate"
    kind = config.which(path)
    params = config.get(f"{path}.{kind}")
    if kind == "constant_learning_rate":
        return LearningRate("constant", float(params["learning_rate"]))
    return LearningRate(
        "cosine",
        float(params["learning_rate_base"]),
        int(params["total_steps"]),
        float(params["warmup_learning_rate"]),
        int(params["warmup_steps"]),
        int(params["hold_base_rate_steps"]),
    )


def train_spec(config: PipelineConfig) -> TrainSpec:
    loss = config.get("model.ssd.loss")
    matcher = config.get("model.ssd.matcher.argmax_matcher")
    return TrainSpec(
        model=model_spec(config),
        config=config,
        batch_size=int(config.get("train_config.batch_size")),
        num_steps=int(config.get("train_config.num_steps")),
        learning_rate=_learning_rate(config),
        momentum=float(config.get("train_config.optimizer.momentum_optimizer.momentum_optimizer_value")),
        classification_weight=float(loss["classification_weight"]),
        localization_weight=float(loss["localization_weight"]),
        focal_alpha=float(loss["classification_loss"]["weighted_sigmoid_focal"]["alpha"]),
        focal_gamma=float(loss["classification_loss"]["weighted_sigmoid_focal"]["gamma"]),
        huber_delta=float(loss["localization_loss"]["weighted_smooth_l1"]["delta"]),
        loss_per_code=bool(config.get("model.ssd.normalize_loc_loss_by_codesize")),
        matched_threshold=float(matcher["matched_threshold"]),
        unmatched_threshold=float(matcher["unmatched_threshold"]),
        max_boxes=int(config.get("train_config.max_number_of_boxes")),
        augmentations=config.augmentations(),
        train_paths=list(config.get("train_input_reader.tf_record_input_reader.input_path")),
        eval_paths=list(config.get("eval_input_reader.tf_record_input_reader.input_path")),
        label_map_path=str(config.get("train_input_reader.label_map_path")),
        fine_tune_checkpoint=str(config.get("train_config.fine_tune_checkpoint")),
        fine_tune_checkpoint_type=str(config.get("train_config.fine_tune_checkpoint_type") or "classification"),
        eval_examples=int(config.get("eval_config.num_examples")),
    )


def load_train_spec(path: str | Path) -> TrainSpec:
    return train_spec(load_pipeline_config(path))
