"""The training stage: pipeline.config + TFRecords -> checkpoints in a model directory.

A plain tf.function loop around odlite's network (the OD API's, model.py) and Model
Garden's anchor labeler and focal loss, rather than Orbit, so that it can show a
progress bar, write the scalars users look for, save on Ctrl-C and resume from the
latest checkpoint by itself. The SSD's loss is the
OD API's: focal classification loss and smooth-L1 box loss on faster-rcnn encoded
boxes, normalised by the number of matched anchors, with the config's
classification and localization weights (Model Garden has no such weights).
Faster R-CNN's targets and losses are Model Garden's (faster_rcnn.py); the loop is the same.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
from official.vision.dataloaders import tf_example_decoder
from official.vision.losses import focal_loss, loss_utils
from official.vision.ops import anchor

from pipelines.artifacts import CONFIG_NAME, checkpoint_step
from pipelines.atomic import write_text_atomically
from pipelines.augment import augmenter
from pipelines.console import progress_bar
from pipelines.errors import OdliteError
from pipelines.experiment import LearningRate, TrainSpec, build_network, load_train_spec
from pipelines.faster_rcnn import rpn_labeller, training_losses
from pipelines.model import normalize_pixels
from pipelines.pipeline_config import check_paths_resolved
from pipelines.resize import resize_to_input
from pipelines.warm_start import warm_start


class CosineDecayWithWarmup(tf_keras.optimizers.schedules.LearningRateSchedule):
    """The OD API's cosine_decay_with_warmup: linear warmup, optional hold, cosine to zero at total_steps."""

    def __init__(self, spec: LearningRate):
        self.spec = spec

    def __call__(self, step):
        s = self.spec
        step = tf.cast(step, tf.float32)
        if s.kind == "constant":
            return tf.constant(s.base, tf.float32)
        decay_steps = max(1.0, float(s.total_steps - s.warmup_steps - s.hold_base_rate_steps))
        progress = (step - s.warmup_steps - s.hold_base_rate_steps) / decay_steps
        rate = 0.5 * s.base * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        if s.hold_base_rate_steps > 0:
            rate = tf.where(step < s.warmup_steps + s.hold_base_rate_steps, s.base, rate)
        if s.warmup_steps > 0:
            slope = (s.base - s.warmup_learning_rate) / s.warmup_steps
            rate = tf.where(step < s.warmup_steps, s.warmup_learning_rate + slope * step, rate)
        return tf.where(step >= s.total_steps, 0.0, rate)

    def get_config(self):
        return dict(self.spec.__dict__)


def make_optimizer(spec: TrainSpec) -> tf_keras.optimizers.Optimizer:
    """The config's momentum_optimizer: SGD with momentum on the OD API's learning-rate schedule."""
    return tf_keras.optimizers.SGD(CosineDecayWithWarmup(spec.learning_rate), momentum=spec.momentum)


def glob_inputs(patterns: list[str], what: str) -> list[str]:
    files = sorted({f for pattern in patterns for f in tf.io.gfile.glob(pattern)})
    if not files:
        shown = ", ".join(repr(p) for p in patterns)
        raise OdliteError(f"{what} input_path {shown} matches no files (convert the data first: odlite convert)")
    return files


def anchor_labeller(spec: TrainSpec):
    """(decoded, augmented example) -> (uint8 image at the input size, anchor targets).

    Model Garden's AnchorLabeler on the OD API's anchors, as its RetinaNet parser uses it, without the
    parser's normalisation of the full-size photo: that was a third of the input pipeline's
    cost; the training step normalises the small uint8 batch instead (on a GPU, for free).
    """
    m = spec.model
    size = m.input_size
    anchors = m.anchors()  # the OD API's, built once
    labeller = anchor.AnchorLabeler(spec.matched_threshold, spec.unmatched_threshold, list(m.box_coder_weights))

    def label(data: dict):
        # Crowd regions are not trained on (Model Garden's skip_crowd_during_training); boxes that
        # augmentation left empty go; beyond max_number_of_boxes they are dropped, as in the OD API.
        # fixed_shape_resizer stretches, so pixels are size * normalised.
        boxes = data["groundtruth_boxes"] * float(size)
        keep = ~data["groundtruth_is_crowd"] & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(boxes, keep)[: spec.max_boxes]
        classes = tf.expand_dims(tf.boolean_mask(data["groundtruth_classes"], keep)[: spec.max_boxes], 1)
        cls_targets, box_targets, _, cls_weights, box_weights = labeller.label_anchors(anchors, boxes, classes)
        targets = {
            "cls_targets": cls_targets,
            "box_targets": box_targets,
            "cls_weights": cls_weights,
            "box_weights": box_weights,
        }
        return resize_to_input(data["image"], size), targets

    return label


def train_dataset(spec: TrainSpec, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Augmented, anchor-labelled batches of uint8 images: shuffled unless the train_input_reader says
    ``shuffle: false``, endless unless it sets ``num_epochs``."""
    files = glob_inputs(spec.train_paths, "train_input_reader")
    decoder = tf_example_decoder.TfExampleDecoder(regenerate_source_id=True)
    two_stage = spec.model.kind == "faster_rcnn"
    label = rpn_labeller(spec.model, spec.max_boxes) if two_stage else anchor_labeller(spec)
    augment = augmenter(spec.augmentations)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if spec.shuffle:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.repeat(spec.num_epochs or None)
    # num_readers files are read at once; unshuffled, one after another, so that the order is the files'.
    cycle = min(len(files), spec.num_readers) if spec.shuffle else 1
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=cycle, num_parallel_calls=tf.data.AUTOTUNE)
    if spec.shuffle:
        dataset = dataset.shuffle(512, seed=seed)
    # Each example's augmentation seed: (run seed, its position in the stream), so a seeded run repeats.
    base = seed if seed is not None else int(np.random.default_rng().integers(2**31))
    dataset = dataset.enumerate()
    dataset = dataset.map(
        lambda index, raw: label(augment(decoder.decode(raw), tf.stack([tf.constant(base, tf.int64), index]))),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = seed is not None or not spec.shuffle
    return dataset.with_options(options)


def detection_losses(spec: TrainSpec, outputs: dict, labels: dict, regularization) -> dict:
    """Per-replica losses: focal + smooth-L1, each divided by the number of matched anchors (at least 1)
    when normalize_loss_by_num_matches, as the OD API's SSD does; otherwise summed over the batch."""
    num_classes = spec.model.num_classes + 1
    num_positives = tf.maximum(tf.reduce_sum(labels["box_weights"]), 1.0) if spec.normalize_by_matches else 1.0
    cls_true = tf.one_hot(loss_utils.multi_level_flatten(labels["cls_targets"], last_dim=None), num_classes)
    # encode_background_as_zeros: the background column's target is 0 for every anchor, as in the OD API.
    cls_true *= tf.one_hot(0, num_classes, on_value=0.0, off_value=1.0)
    cls_pred = loss_utils.multi_level_flatten(outputs["cls_outputs"], last_dim=num_classes)
    focal = focal_loss.FocalLoss(
        alpha=spec.focal_alpha, gamma=spec.focal_gamma, reduction=tf_keras.losses.Reduction.SUM
    )
    cls_loss = focal(cls_true, tf.cast(cls_pred, tf.float32), sample_weight=labels["cls_weights"] / num_positives)
    box_true = loss_utils.multi_level_flatten(labels["box_targets"], last_dim=4)
    box_pred = loss_utils.multi_level_flatten(outputs["box_outputs"], last_dim=4)
    # Keras' Huber averages over the 4 box codes: the OD API's normalize_loc_loss_by_codesize.
    huber = tf_keras.losses.Huber(spec.huber_delta, reduction=tf_keras.losses.Reduction.SUM)
    box_loss = huber(box_true, tf.cast(box_pred, tf.float32), sample_weight=labels["box_weights"] / num_positives)
    if not spec.loss_per_code:
        box_loss *= 4.0
    cls_loss, box_loss = spec.classification_weight * cls_loss, spec.localization_weight * box_loss
    reg_loss = tf.add_n(regularization) if regularization else tf.constant(0.0)
    return {
        "total_loss": cls_loss + box_loss + reg_loss,
        "classification_loss": cls_loss,
        "localization_loss": box_loss,
        "regularization_loss": reg_loss,
    }


def step_losses(spec: TrainSpec, model):
    """(images, targets) -> the training losses of one batch, for either meta-architecture."""
    if spec.model.kind == "faster_rcnn":
        losses = training_losses(spec.model)
        return lambda images, labels: losses(model, images, labels)

    def ssd_losses(images, labels):
        outputs = model(normalize_pixels(images), training=True)
        return detection_losses(spec, outputs, labels, model.losses)

    return ssd_losses


def dtype_policy_name(spec: TrainSpec, mixed_precision: bool) -> str | None:
    """Keras' policy for the run: float16 on a GPU when asked, bfloat16 when the config says use_bfloat16."""
    if mixed_precision and spec.use_bfloat16:
        raise OdliteError("--mixed-precision (float16) and use_bfloat16 in the config: choose one")
    if mixed_precision:
        return "mixed_float16"
    return "mixed_bfloat16" if spec.use_bfloat16 else None


@contextlib.contextmanager
def dtype_policy(name: str | None):
    """Keras' global dtype policy set to ``name`` for the block, then put back (nothing when None)."""
    previous = tf_keras.mixed_precision.global_policy()
    if name:
        tf_keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def gpu_available() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def pick_strategy(cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """All GPUs mirrored, one GPU, or the CPU; ``cpu_replicas`` splits the CPU to exercise mirroring."""
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_replicas)])
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if gpus:
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.get_strategy()


@dataclass
class TrainResult:
    model_dir: Path
    step: int
    checkpoint: str | None
    interrupted: bool
    images_per_second: float
    losses: dict


class _StopOnSignal:
    """Turns Ctrl-C (and SIGTERM) into a flag the loop checks, so it can save before leaving."""

    def __init__(self):
        self.stop = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stop:  # a second Ctrl-C leaves at once
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(
    config_path: str | Path,
    model_dir: str | Path,
    num_steps: int | None = None,
    checkpoint_every: int = 100,
    keep_checkpoints: int = 5,
    summary_every: int = 10,
    from_scratch: bool = False,
    mixed_precision: bool = False,
    cpu_replicas: int = 0,
    seed: int | None = None,
    progress: bool = True,
    on_step=None,
) -> TrainResult:
    """Train to ``num_steps`` (default: the config's), resuming from the latest checkpoint in ``model_dir``.

    ``on_step(step, losses)`` is called after every step (progress reporting, tests).
    """
    spec = load_train_spec(config_path)
    check_paths_resolved(spec.config)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    total_steps = int(num_steps or spec.num_steps)
    if mixed_precision and not gpu_available():
        raise OdliteError("--mixed-precision needs a GPU (float16 brings nothing on the CPU); leave it out")
    strategy = pick_strategy(cpu_replicas)
    if seed is not None:
        tf_keras.utils.set_random_seed(seed)
    dataset = strategy.experimental_distribute_dataset(train_dataset(spec, spec.batch_size, seed))

    with strategy.scope():
        with dtype_policy(dtype_policy_name(spec, mixed_precision)):
            model = build_network(spec.model)  # layers keep the policy they were built under
        optimizer = make_optimizer(spec)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(model_dir), max_to_keep=keep_checkpoints)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(f"resuming from {manager.latest_checkpoint} (step {int(optimizer.iterations.numpy())})")
    else:
        print(warm_start(model, spec, from_scratch))
    if mixed_precision:
        # Wrapped after restoring, so a run can resume with or without mixed precision: the loss
        # scale is left out of the check and starts again from its default, adapting in a few steps.
        with strategy.scope():
            optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    write_text_atomically(model_dir / CONFIG_NAME, spec.config.to_text())
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    print(
        f"training on {device}; replicas: {strategy.num_replicas_in_sync}; batch {spec.batch_size}; "
        f"compute {model.compute_dtype}, weights {model.variable_dtype}"
    )

    compute_losses = step_losses(spec, model)

    @tf.function
    def train_step(inputs):
        @tf.autograph.experimental.do_not_convert  # plain Python; conversion only warns about the closure
        def step_fn(images, labels):
            with tf.GradientTape() as tape:
                losses = compute_losses(images, labels)
                scaled = losses["total_loss"] / strategy.num_replicas_in_sync
                if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
                    scaled = optimizer.get_scaled_loss(scaled)
            grads = tape.gradient(scaled, model.trainable_variables)
            if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
                grads = optimizer.get_unscaled_gradients(grads)
            # The backbone's last 1x1 conv feeds no pyramid level: skip its missing gradients.
            pairs = [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
            optimizer.apply_gradients(pairs)
            return losses

        per_replica = strategy.run(step_fn, args=inputs)
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    writer = tf.summary.create_file_writer(str(model_dir / "train"))
    step = int(optimizer.iterations.numpy())
    losses: dict = {}
    rate = 0.0
    interrupted = False
    iterator = iter(dataset)
    bar = progress_bar(total=total_steps, initial=step, unit="step", desc="train", disable=not progress)
    window_start, window_steps = time.perf_counter(), 0
    with bar, _StopOnSignal() as stopper, writer.as_default():
        while step < total_steps:
            if stopper.stop:
                interrupted = True
                break
            try:
                batch = next(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                print(f"the training data ran out at step {step}: train_input_reader.num_epochs is {spec.num_epochs}")
                break
            losses = {k: float(v) for k, v in train_step(batch).items()}
            if not all(math.isfinite(v) for v in losses.values()):
                raise OdliteError(f"the loss became {losses['total_loss']} at step {step + 1}; lower the learning rate")
            step += 1
            window_steps += 1
            bar.update(1)
            if window_steps >= summary_every or step == total_steps:
                elapsed = time.perf_counter() - window_start
                rate = window_steps * spec.batch_size / max(elapsed, 1e-9)
                # The schedule's value at this step; under a strategy the optimizer's variables are mirrored.
                learning_rate = float(optimizer.learning_rate.numpy())
                for name, value in losses.items():
                    tf.summary.scalar(f"loss/{name}", value, step=step)
                tf.summary.scalar("learning_rate", learning_rate, step=step)
                tf.summary.scalar("images_per_second", rate, step=step)
                bar.set_postfix(
                    loss=f"{losses['total_loss']:.3f}", lr=f"{learning_rate:.4f}", img_s=f"{rate:.1f}", refresh=False
                )
                window_start, window_steps = time.perf_counter(), 0
            if step % checkpoint_every == 0:
                manager.save(checkpoint_number=step)
            if on_step is not None:
                on_step(step, losses)
    latest = manager.latest_checkpoint
    path = latest if latest and checkpoint_step(latest) == step else manager.save(checkpoint_number=step)
    writer.flush()
    return TrainResult(model_dir, step, path, interrupted, rate, losses)
