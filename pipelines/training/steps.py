"""The compiled training steps: up to N optimizer steps per tf.function call, the losses kept on the device.

One call per N steps, rather than per step, so that a GPU is not left idle while Python runs
between steps; the losses of the last step come back as tensors, read only when summarised.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras


class TrainSteps:
    """``steps(iterator, count)`` -> (steps run, the last step's losses); fewer than ``count`` when the
    data ends. ``losses(images, targets)`` is the meta-architecture's per-replica loss of one batch."""

    def __init__(self, strategy: tf.distribute.Strategy, model, optimizer, losses, loss_names: tuple[str, ...]):
        self.strategy, self.model, self.optimizer = strategy, model, optimizer
        self.losses, self.loss_names = losses, loss_names
        self._steps = tf.function(self._run)

    def __call__(self, iterator, count: int):
        return self._steps(iterator, tf.constant(count))

    @tf.autograph.experimental.do_not_convert  # plain Python; conversion only warns about the method
    def _step(self, images, labels):
        scaling = isinstance(self.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            losses = self.losses(images, labels)
            scaled = losses["total_loss"] / self.strategy.num_replicas_in_sync
            if scaling:
                scaled = self.optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, variables)
        if scaling:
            grads = self.optimizer.get_unscaled_gradients(grads)
        # The backbone's last 1x1 conv feeds no pyramid level: skip its missing gradients.
        self.optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return {name: losses[name] for name in self.loss_names}

    def _run(self, iterator, count):
        ran = tf.constant(0)
        losses = {name: tf.constant(0.0) for name in self.loss_names}
        for _ in tf.range(count):
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            per_replica = self.strategy.run(self._step, args=batch.get_value())
            mean = tf.distribute.ReduceOp.MEAN
            losses = {k: self.strategy.reduce(mean, v, axis=None) for k, v in per_replica.items()}
            ran += 1
        return ran, losses
