"""Translate a checked ``pipeline.config`` into what training and evaluation run.

The config checks (schema.py, support.py, checks.py) have already rejected what odlite cannot honour;
the meta-architecture (models/meta_architecture.py) reads its network's spec (model_specs.py), and this
module the rest: the training loop, its input, evaluation and warm start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from pipelines.config.pipeline_config import PipelineConfig, View, load_pipeline_config
from pipelines.models.faster_rcnn import FasterRcnnSpec
from pipelines.models.meta_architecture import meta_architecture
from pipelines.models.ssd import ModelSpec


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
    model: ModelSpec | FasterRcnnSpec
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
    normalize_by_matches: bool = True  # normalize_loss_by_num_matches
    matched_threshold: float = 0.5
    unmatched_threshold: float = 0.5
    max_boxes: int = 100
    augmentations: list[tuple[str, dict]] = field(default_factory=list)
    train_paths: list[str] = field(default_factory=list)
    shuffle: bool = True  # train_input_reader.shuffle
    num_epochs: int = 0  # train_input_reader.num_epochs; 0: endless
    num_readers: int = 64  # train_input_reader.num_readers: files read in parallel
    eval_paths: list[str] = field(default_factory=list)
    label_map_path: str = ""
    fine_tune_checkpoint: str = ""
    fine_tune_checkpoint_type: str = "classification"
    eval_examples: int = 0
    max_evals: int = 0  # eval_config.max_evals: evaluations of eval --watch; 0: no limit
    use_bfloat16: bool = False  # train_config.use_bfloat16: Keras' mixed_bfloat16 policy


def _learning_rate(rate: View) -> LearningRate:
    if rate.which() == "constant_learning_rate":
        return LearningRate("constant", float(rate.constant_learning_rate.learning_rate))
    cosine = rate.cosine_decay_learning_rate
    return LearningRate(
        "cosine",
        float(cosine.learning_rate_base),
        int(cosine.total_steps),
        float(cosine.warmup_learning_rate),
        int(cosine.warmup_steps),
        int(cosine.hold_base_rate_steps),
    )


def train_spec(config: PipelineConfig) -> TrainSpec:
    """The run the config describes; Faster R-CNN's losses live in its FasterRcnnSpec."""
    view = config.view()
    train, reader = view.train_config, view.train_input_reader
    evaluation, eval_reader = view.eval_config, view.eval_input_reader
    momentum = train.optimizer.momentum_optimizer
    architecture = meta_architecture(config.which("model"))
    return TrainSpec(
        model=architecture.read_spec(config),
        config=config,
        batch_size=int(train.batch_size),
        num_steps=int(train.num_steps),
        learning_rate=_learning_rate(momentum.learning_rate),
        momentum=float(momentum.momentum_optimizer_value),
        **architecture.training_settings(config),
        max_boxes=int(train.max_number_of_boxes),
        augmentations=config.augmentations(),
        train_paths=list(reader.tf_record_input_reader.input_path),
        shuffle=bool(reader.shuffle),
        num_epochs=int(reader.num_epochs),
        num_readers=int(reader.num_readers),
        eval_paths=list(eval_reader.tf_record_input_reader.input_path),
        label_map_path=str(reader.label_map_path or eval_reader.label_map_path),
        fine_tune_checkpoint=str(train.fine_tune_checkpoint),
        fine_tune_checkpoint_type=str(train.fine_tune_checkpoint_type or "classification"),
        eval_examples=int(evaluation.num_examples),
        max_evals=int(evaluation.max_evals),
        use_bfloat16=bool(train.use_bfloat16),
    )


def build_network(spec: ModelSpec | FasterRcnnSpec):
    """The network a spec describes, built and initialised."""
    return meta_architecture(spec.kind).build(spec)


def restored_network(spec: ModelSpec | FasterRcnnSpec, checkpoint: str):
    """The network with the weights of an odlite checkpoint (training's Checkpoint(model=...))."""
    return read_weights(build_network(spec), checkpoint)


def read_weights(model, checkpoint: str):
    """``model`` with the weights of an odlite checkpoint; the optimizer's slots are left behind."""
    tf.train.Checkpoint(model=model).read(checkpoint).expect_partial().assert_existing_objects_matched()
    return model


def load_train_spec(path: str | Path) -> TrainSpec:
    return train_spec(load_pipeline_config(path))
