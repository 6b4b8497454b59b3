"""The training stage: pipeline.config + TFRecords -> checkpoints in a model directory.

A tf.function loop around the meta-architecture's network and losses (models/meta_architecture.py),
rather than Orbit, so that it can show a progress bar, write the scalars
users look for, save on Ctrl-C, resume from the latest checkpoint by itself, and keep
the best one as it evaluates (training/best_checkpoint.py). Like Orbit's, it runs N steps
per call and reads the losses only at summary steps, so an accelerator is not left idle
between steps; the input (data/train_input.py) prefetches. Where it runs, one device to
several machines, is training/distribute.py's choice.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
import tf_keras

from pipelines import defaults
from pipelines.artifacts import CONFIG_NAME, checkpoints, config_inputs
from pipelines.atomic import refuse_overlap, write_text_atomically
from pipelines.config.experiment import LearningRate, TrainSpec, load_train_spec
from pipelines.config.label_map import read_label_map
from pipelines.config.pipeline_config import check_paths_resolved
from pipelines.console import progress_bar
from pipelines.data.train_input import train_dataset
from pipelines.errors import OdliteError
from pipelines.models.meta_architecture import MetaArchitecture, meta_architecture
from pipelines.models.warm_start import warm_start
from pipelines.training.best_checkpoint import BestKeeper, check_metric
from pipelines.training.distribute import (
    agreed_code,
    drop_scratch,
    gpu_available,
    pick_strategy,
    read_cluster,
    save_folder,
)
from pipelines.training.finite_weights import check_before_saving, check_restored
from pipelines.training.steps import TrainSteps
from pipelines.training.summaries import LossSummaries


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


@dataclass
class TrainResult:
    model_dir: Path
    step: int
    checkpoint: str | None
    interrupted: bool
    images_per_second: float
    losses: dict
    stopped_early: bool = False
    best_step: int | None = None  # the checkpoint kept in MODEL_DIR/best (with --eval-every)
    best_value: float | None = None


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


# Steps per tf.function call on a GPU, where going back to Python after each step would idle it.
# On the CPU a step takes a second or more, so one step per call costs nothing and the bar moves each step.
GPU_STEPS_PER_LOOP = 50
SUMMARY_EVERY = 10
# What the workers agree on at the end of each loop call (the highest any of them says wins).
GO_ON, EARLY_STOP, INTERRUPTED = 0, 1, 2


def _positive(**values) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise OdliteError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def _next_stop(step: int, total_steps: int, steps_per_loop: int, *intervals: int) -> int:
    """The step the next loop call runs to: at most steps_per_loop on, never past a summary,
    checkpoint or evaluation step, so those happen exactly where they would one step at a time."""
    stops = [total_steps, step + steps_per_loop] + [(step // every + 1) * every for every in intervals if every]
    return min(stops)


@dataclass
class _Schedule:
    """Where the loop stops: at the last step, and at each summary, checkpoint and evaluation step."""

    total_steps: int
    steps_per_loop: int
    summary_every: int
    checkpoint_every: int
    eval_every: int

    @classmethod
    def checked(cls, total_steps, steps_per_loop, summary_every, checkpoint_every, eval_every, early_stop_patience):
        """From train()'s arguments: none below 1; steps per call and summaries as the device suits."""
        _positive(checkpoint_every=checkpoint_every, steps_per_loop=steps_per_loop, summary_every=summary_every)
        _positive(eval_every=eval_every or None, early_stop_patience=early_stop_patience or None)
        steps_per_loop = steps_per_loop or (GPU_STEPS_PER_LOOP if gpu_available() else 1)
        summary_every = summary_every or max(SUMMARY_EVERY, steps_per_loop)
        return cls(total_steps, steps_per_loop, summary_every, checkpoint_every, eval_every)

    def next_stop(self, step: int) -> int:
        intervals = (self.summary_every, self.checkpoint_every, self.eval_every)
        return _next_stop(step, self.total_steps, self.steps_per_loop, *intervals)

    def summarises(self, step: int) -> bool:
        return step % self.summary_every == 0

    def saves(self, step: int) -> bool:
        return step % self.checkpoint_every == 0

    def evaluates(self, step: int) -> bool:
        return bool(self.eval_every) and step % self.eval_every == 0


class _Checkpoints:
    """The run's checkpoints: the latest resumed from, new ones saved only when their weights are finite."""

    def __init__(self, checkpoint: tf.train.Checkpoint, model_dir: Path, cluster, keep: int):
        self.checkpoint, self.model_dir, self.cluster = checkpoint, model_dir, cluster
        # Every worker restores the chief's latest checkpoint (the model directory is on shared storage).
        self.on_disk = checkpoints(model_dir)
        self.folder = save_folder(model_dir, cluster)
        drop_scratch(self.folder, cluster)  # a killed run's leftovers
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.folder), max_to_keep=keep)
        self.saved_at: int | None = None

    def resume(self) -> str:
        latest, previous = self.on_disk[-1], self.on_disk[-2] if len(self.on_disk) > 1 else None
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        check_restored(self.checkpoint, latest, previous)
        self.saved_at = int(self.checkpoint.optimizer.iterations.numpy())
        return f"resuming from {latest} (step {self.saved_at})"

    def save(self, step: int) -> str:
        check_before_saving(self.checkpoint, step, self.model_dir)
        saved = self.manager.save(checkpoint_number=step)  # every worker saves: the variables are read collectively
        drop_scratch(self.folder, self.cluster)
        self.saved_at = step
        return str(self.model_dir / Path(saved).name)

    def of_step(self, step: int) -> str:
        """The checkpoint of ``step``, saved now unless it already is."""
        return str(self.model_dir / f"ckpt-{step}") if self.saved_at == step else self.save(step)


class _Evaluations:
    """--eval-every: checkpoints scored as odlite eval scores them, the best kept, patience counted."""

    def __init__(self, spec: TrainSpec, model_dir: Path, eval_every: int, best_metric: str, patience: int):
        self.spec, self.model_dir, self.patience = spec, model_dir, patience
        self.keeper = None
        if eval_every:
            labels = list(read_label_map(spec.label_map_path).values())
            self.keeper = BestKeeper(model_dir, check_metric(best_metric, labels))
        elif patience:
            raise OdliteError("--early-stop-patience counts evaluations: give --eval-every N too")
        self.evaluated_at: int | None = None

    @functools.cached_property
    def _detector(self):
        """Built at the first evaluation, in float32 outside the strategy, as odlite eval's."""
        from pipelines.detectors import CheckpointDetector

        return CheckpointDetector(self.spec)

    @property
    def patience_ran_out(self) -> bool:
        """True after ``patience`` evaluations without improvement (also those of a resumed run)."""
        return bool(self.patience) and self.keeper.since_improved >= self.patience

    def evaluate(self, path: str, step: int, bar) -> None:
        """Scores ``path`` as odlite eval does (report, TensorBoard) and offers it to the best checkpoint."""
        from pipelines.evaluate import evaluate, summary_line

        keeper = self.keeper
        metrics = evaluate(None, self.model_dir, checkpoint=path, progress=False, detector=self._detector)
        improved = keeper.offer(path, metrics)
        note = "best so far" if improved else f"best: step {keeper.best_step}, {keeper.metric} {keeper.best:.3f}"
        bar.write(f"eval {summary_line(metrics)} ({note})")
        self.evaluated_at = step


def _start(
    architecture: MetaArchitecture,
    spec: TrainSpec,
    strategy,
    cluster,
    model_dir: Path,
    keep: int,
    from_scratch: bool,
    mixed_precision: bool,
):
    """The network and its optimizer, resumed from the latest checkpoint or warm-started as the config
    says, and the run's checkpoints."""
    with strategy.scope():
        with dtype_policy(dtype_policy_name(spec, mixed_precision)):
            model = architecture.build(spec.model)  # layers keep the policy they were built under
        optimizer = make_optimizer(spec)
        # Its momentum slots now, not in the step's first trace: a tf.function that creates variables
        # is traced a second time (5 s of each SSD start here, 9 s of a Faster R-CNN one).
        optimizer.build(model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    saved = _Checkpoints(checkpoint, model_dir, cluster, keep)
    print(saved.resume() if saved.on_disk else warm_start(model, spec, from_scratch))
    if mixed_precision:
        # Wrapped after restoring, so a run can resume with or without mixed precision: the loss
        # scale is left out of the check and starts again from its default, adapting in a few steps.
        with strategy.scope():
            optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    if cluster.is_chief:
        write_text_atomically(model_dir / CONFIG_NAME, spec.config.to_text())
    return model, optimizer, saved


def train(
    config_path: str | Path,
    model_dir: str | Path,
    num_steps: int | None = None,
    checkpoint_every: int = defaults.CHECKPOINT_EVERY,
    keep_checkpoints: int = defaults.KEEP_CHECKPOINTS,
    summary_every: int | None = None,
    steps_per_loop: int | None = None,
    eval_every: int = 0,
    best_metric: str = defaults.BEST_METRIC,
    early_stop_patience: int = 0,
    from_scratch: bool = False,
    mixed_precision: bool = False,
    cpu_replicas: int = 0,
    seed: int | None = None,
    progress: bool = True,
    on_step=None,
) -> TrainResult:
    """Train to ``num_steps`` (default: the config's), resuming from the latest checkpoint in ``model_dir``.

    ``steps_per_loop`` steps run in one tf.function call (default: 50 on a GPU, 1 on the CPU); losses
    are read every ``summary_every`` steps (default: 10, or steps_per_loop if larger). With
    ``eval_every`` N, each N-th checkpoint (and the last) is evaluated as ``odlite eval`` would and the
    best by ``best_metric`` kept in ``MODEL_DIR/best``; ``early_stop_patience`` K stops after K
    evaluations without improvement. ``on_step(step, losses)`` is called after each loop call.
    """
    cluster = read_cluster()
    strategy = pick_strategy(cluster, cpu_replicas)  # first: collectives are set up before any op
    spec = load_train_spec(config_path)
    check_paths_resolved(spec.config)
    model_dir = Path(model_dir)
    refuse_overlap(model_dir, config_inputs(spec))  # the pipeline.config may live there: resuming reads it
    if mixed_precision and not gpu_available():
        raise OdliteError("--mixed-precision needs a GPU (float16 brings nothing on the CPU); leave it out")
    schedule = _Schedule.checked(
        int(num_steps or spec.num_steps),
        steps_per_loop,
        summary_every,
        checkpoint_every,
        eval_every,
        early_stop_patience,
    )
    evaluations = _Evaluations(spec, model_dir, eval_every, best_metric, early_stop_patience)
    if seed is not None:
        tf_keras.utils.set_random_seed(seed)
    dataset = strategy.experimental_distribute_dataset(train_dataset(spec, spec.batch_size, seed))

    architecture = meta_architecture(spec.model.kind)
    model, optimizer, saved = _start(
        architecture, spec, strategy, cluster, model_dir, keep_checkpoints, from_scratch, mixed_precision
    )
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    workers = f"workers: {cluster.workers} (this is {cluster.name}); " if cluster.workers > 1 else ""
    print(
        f"training on {device}; {workers}replicas: {strategy.num_replicas_in_sync}; batch {spec.batch_size}; "
        f"{schedule.steps_per_loop} step(s) per call; compute {model.compute_dtype}, weights {model.variable_dtype}"
    )
    train_steps = TrainSteps(strategy, model, optimizer, architecture.losses(spec, model), architecture.loss_names)

    writer = tf.summary.create_file_writer(str(model_dir / "train")) if cluster.is_chief else None
    writer = writer or tf.summary.create_noop_writer()
    agree = agreed_code(strategy, cluster)
    step = start_step = int(optimizer.iterations.numpy())
    interrupted = stopped_early = False
    iterator = iter(dataset)
    bar = progress_bar(
        total=schedule.total_steps,
        initial=step,
        unit="step",
        desc="train",
        disable=not progress or not cluster.is_chief,
    )
    summaries = LossSummaries(spec.batch_size, optimizer, bar)
    with bar, _StopOnSignal() as stopper, writer.as_default():
        while step < schedule.total_steps:
            code = agree(INTERRUPTED if stopper.stop else EARLY_STOP if evaluations.patience_ran_out else GO_ON)
            if code != GO_ON:
                interrupted, stopped_early = code == INTERRUPTED, code == EARLY_STOP
                break
            target = schedule.next_stop(step)
            ran, losses = train_steps(iterator, target - step)
            ran = int(ran)
            ran_out, step = step + ran < target, step + ran
            bar.update(ran)
            summaries.ran(ran, losses)
            if ran and schedule.summarises(step):
                summaries.write(step)
            evaluate_now = schedule.evaluates(step) and step != evaluations.evaluated_at
            if ran and (schedule.saves(step) or evaluate_now):
                path = saved.save(step)
                if evaluate_now and cluster.is_chief:
                    started = time.perf_counter()
                    evaluations.evaluate(path, step, bar)
                    summaries.pause(time.perf_counter() - started)  # images/s counts training time only
            if on_step is not None:
                on_step(step, summaries.losses)
            if ran_out:
                print(f"the training data ran out at step {step}: train_input_reader.num_epochs is {spec.num_epochs}")
                break
        if summaries.has_losses and summaries.written_at != step:
            summaries.write(step)
        path = saved.of_step(step)
        last_unscored = evaluations.keeper and evaluations.evaluated_at != step and step > start_step
        if last_unscored and cluster.is_chief and not interrupted:
            evaluations.evaluate(path, step, bar)  # the last checkpoint is a candidate too
    keeper = evaluations.keeper
    if stopped_early:
        print(f"stopped early at step {step}: {keeper.metric} has not improved in {early_stop_patience} evaluation(s)")
    writer.flush()
    best = (keeper.best_step, keeper.best) if keeper and keeper.best_step is not None else (None, None)
    return TrainResult(model_dir, step, path, interrupted, summaries.rate, summaries.losses, stopped_early, *best)
