"""Training's scalars: the losses, the learning rate and images per second, for TensorBoard and the bar.

The losses are read from the device only here, at summary steps: each read waits for the device.
"""

from __future__ import annotations

import math
import time

import tensorflow as tf

from pipelines.errors import OdliteError


class LossSummaries:
    """The last loop call's losses, written as scalars when ``write`` is called; images/s over the
    steps since the last write, less the time ``pause`` reports (evaluations)."""

    def __init__(self, batch_size: int, optimizer, bar):
        self.batch_size, self.optimizer, self.bar = batch_size, optimizer, bar
        self.losses: dict = {}  # the last written, as floats
        self.rate = 0.0
        self.written_at: int | None = None
        self._pending = None  # the last loop call's losses, still tensors
        self._window_start, self._window_steps = time.perf_counter(), 0

    def ran(self, count: int, losses: dict) -> None:
        self._window_steps += count
        if count:
            self._pending = losses

    def pause(self, seconds: float) -> None:
        self._window_start += seconds

    @property
    def has_losses(self) -> bool:
        return self._pending is not None

    def write(self, step: int) -> None:
        losses = {k: float(v) for k, v in self._pending.items()}
        self.losses = losses
        if not all(math.isfinite(v) for v in losses.values()):
            raise OdliteError(f"the loss became {losses['total_loss']} by step {step}; lower the learning rate")
        self.rate = self._window_steps * self.batch_size / max(time.perf_counter() - self._window_start, 1e-9)
        # The schedule's value at this step; under a strategy the optimizer's variables are mirrored.
        learning_rate = float(self.optimizer.learning_rate.numpy())
        for name, value in losses.items():
            tf.summary.scalar(f"loss/{name}", value, step=step)
        tf.summary.scalar("learning_rate", learning_rate, step=step)
        tf.summary.scalar("images_per_second", self.rate, step=step)
        shown = {"loss": f"{losses['total_loss']:.3f}", "lr": f"{learning_rate:.4f}", "img_s": f"{self.rate:.1f}"}
        self.bar.set_postfix(shown, refresh=False)
        self._window_start, self._window_steps, self.written_at = time.perf_counter(), 0, step
