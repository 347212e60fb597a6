"""The training engine: a GradientTape loop compiled with ``tf.function``.

Owns: :class:`TrainLoop` (compiled train and eval passes over in-memory tensors, epochs,
Keras callbacks driven as ``model.fit`` drives them, divergence detection). Does not own:
oracles, trials or search spaces.

Speed comes from running a whole epoch inside one compiled call: the shuffled order is drawn per
epoch, and batches are gathered in-graph, so Python runs once per epoch instead of once per step.
When a callback implements batch hooks, the same compiled function runs one step per call so
the hooks see every batch.

Example:
    >>> loop = TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    >>> history = loop.fit(x, y, batch_size=64, epochs=3, validation_data=(x_val, y_val))
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastune_kit._backend import keras as _keras

keras = _keras()
import tensorflow as tf  # noqa: E402  (after the backend check)


class _OncePerTrialRetracing(logging.Filter):
    """Hide TensorFlow's retracing warning for our loops: each trial's new model traces once."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("TrainLoop" in message and "retracing" in message)


tf.get_logger().addFilter(_OncePerTrialRetracing())

_BATCH_HOOKS = (
    "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
)


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where a non-finite loss appeared."""

    epoch: int
    step: int
    learning_rate: float

    def reason(self) -> str:
        """One line for leaderboards and logs."""
        return (
            f"diverged: non-finite loss at epoch {self.epoch} step {self.step} "
            f"(learning_rate={self.learning_rate:.3g}); a NaN loss usually means the "
            "learning rate is too high"
        )


class TrainingHistory(keras.callbacks.History):
    """``keras.callbacks.History`` plus what the loop observed.

    Attributes:
        divergence: Set when a non-finite loss stopped training.
        initial_logs: Validation metrics measured before the first epoch, when asked for
            (a promoted Hyperband trial uses them to prove it started from its parent).
        initial_epoch: The first epoch index trained.
        initial_iterations: The optimizer's step count when training started (non-zero when
            its state was restored from a checkpoint).
    """

    def __init__(self) -> None:
        super().__init__()
        self.divergence: Divergence | None = None
        self.initial_logs: dict[str, float] | None = None
        self.initial_iterations: int = 0
        self.initial_epoch: int = 0


def _implements_batch_hooks(callback: Any) -> bool:
    base = keras.callbacks.Callback
    if getattr(callback, "_kerastune_kit_no_batch_hooks", False):
        return False
    return any(
        getattr(type(callback), hook, None) is not getattr(base, hook) for hook in _BATCH_HOOKS
    )


def _clone_metric(metric: Any) -> Any:
    return type(metric).from_config(metric.get_config())


class TrainLoop:
    """Train a Keras model with a GradientTape loop under ``tf.function``.

    Args:
        model: A built Keras model.
        loss: A Keras loss object (or name) computing the mean loss of a batch.
        metrics: Keras metric objects; each is cloned for training and validation.
        optimizer: Defaults to ``model.optimizer``. Clipping comes from its ``clipnorm``.
        run_eagerly: Run the steps eagerly (for debugging) instead of compiled.

    Attributes:
        trace_counts: How many times the train and eval passes were traced.
    """

    def __init__(
        self,
        model: Any,
        *,
        loss: Any,
        metrics: Sequence[Any] = (),
        optimizer: Any | None = None,
        run_eagerly: bool = False,
    ) -> None:
        self.model = model
        self.optimizer = optimizer if optimizer is not None else model.optimizer
        if self.optimizer is None:
            raise ValueError(
                "optimizer: expected an optimizer or a compiled model, received None; "
                "compile the model or pass optimizer="
            )
        self.loss_fn = keras.losses.get(loss)
        self.train_loss = keras.metrics.Mean(name="loss")
        self.val_loss = keras.metrics.Mean(name="loss")
        self.train_metrics = [_clone_metric(m) for m in metrics]
        self.val_metrics = [_clone_metric(m) for m in metrics]
        self.trace_counts = {"train": 0, "eval": 0}
        if not self.optimizer.built:
            self.optimizer.build(model.trainable_variables)
        if run_eagerly:
            self._train_fn = self._train_steps
            self._eval_fn = self._eval_steps
        else:
            self._train_fn = tf.function(self._train_steps, reduce_retracing=True)
            self._eval_fn = tf.function(self._eval_steps, reduce_retracing=True)

    # -------------------------------------------------------------- compiled bodies
    def _forward_loss(self, x: Any, y: Any, training: bool) -> tuple[Any, Any]:
        predictions = self.model(x, training=training)
        loss = self.loss_fn(y, predictions)
        if self.model.losses:
            loss = loss + tf.add_n([tf.cast(l, loss.dtype) for l in self.model.losses])
        return loss, predictions

    def _train_steps(self, x: Any, y: Any, order: Any, start: Any, stop: Any,
                     batch_size: Any) -> Any:
        self.trace_counts["train"] += 1
        n = tf.shape(order, out_type=tf.int64)[0]
        variables = self.model.trainable_variables
        bad_step = tf.constant(-1, dtype=tf.int64)
        for step in tf.range(start, stop):
            low = step * batch_size
            index = order[low:tf.minimum(low + batch_size, n)]
            x_batch = tf.gather(x, index)
            y_batch = tf.gather(y, index)
            with tf.GradientTape() as tape:
                loss, predictions = self._forward_loss(x_batch, y_batch, training=True)
            if not tf.math.is_finite(loss):
                bad_step = step
                break
            gradients = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            count = tf.cast(tf.shape(index)[0], tf.float32)
            self.train_loss.update_state(loss, sample_weight=count)
            for metric in self.train_metrics:
                metric.update_state(y_batch, predictions)
        return bad_step

    def _eval_steps(self, x: Any, y: Any, batch_size: Any) -> Any:
        self.trace_counts["eval"] += 1
        n = tf.shape(x, out_type=tf.int64)[0]
        steps = (n + batch_size - 1) // batch_size
        for step in tf.range(steps):
            low = step * batch_size
            high = tf.minimum(low + batch_size, n)
            x_batch, y_batch = x[low:high], y[low:high]
            loss, predictions = self._forward_loss(x_batch, y_batch, training=False)
            self.val_loss.update_state(loss, sample_weight=tf.cast(high - low, tf.float32))
            for metric in self.val_metrics:
                metric.update_state(y_batch, predictions)
        return steps

    # -------------------------------------------------------------- public API
    def evaluate(self, x: Any, y: Any, *, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and metrics over ``(x, y)`` in inference mode, keyed as ``model.evaluate``."""
        for metric in [self.val_loss, *self.val_metrics]:
            metric.reset_state()
        self._eval_fn(tf.convert_to_tensor(x), tf.convert_to_tensor(y),
                      tf.constant(batch_size, tf.int64))
        return {m.name: _to_float(m.result()) for m in [self.val_loss, *self.val_metrics]}

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        batch_size: int = 32,
        epochs: int = 1,
        initial_epoch: int = 0,
        validation_data: tuple[Any, Any] | None = None,
        callbacks: Sequence[Any] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        evaluate_first: bool = False,
        verbose: int = 0,
    ) -> TrainingHistory:
        """Train from ``initial_epoch`` up to ``epochs`` (exclusive), as ``model.fit`` does.

        Callbacks receive ``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end`` (logs carry
        ``loss``, each metric, ``val_*`` and ``learning_rate``) and ``on_train_end``; batch hooks
        run only when some callback implements them. ``model.stop_training`` is honoured. A
        non-finite loss stops training at once and is recorded in ``history.divergence``.

        Args:
            x: Training inputs (array-like, fits in memory).
            y: Training targets.
            batch_size: Samples per gradient step.
            epochs: Index of the epoch to stop before (cumulative, like ``model.fit``).
            initial_epoch: Index of the first epoch to run.
            validation_data: ``(x_val, y_val)`` evaluated after every epoch.
            callbacks: Keras callbacks.
            shuffle: Draw a new order of the samples every epoch.
            seed: Seeds the per-epoch orders.
            evaluate_first: Measure validation metrics before training (``history.initial_logs``).
            verbose: Accepted for ``model.fit`` compatibility; progress bars are not drawn.

        Returns:
            The :class:`TrainingHistory`.
        """
        del verbose
        model = self.model
        x_tensor = tf.convert_to_tensor(np.asarray(x))
        y_tensor = tf.convert_to_tensor(np.asarray(y))
        n = int(x_tensor.shape[0])
        if n == 0:
            raise ValueError("x: expected at least one training sample, received 0")
        batch = max(1, min(int(batch_size), n))
        steps = math.ceil(n / batch)
        history = TrainingHistory()
        history.initial_epoch = initial_epoch
        callback_list = keras.callbacks.CallbackList(
            [*(callbacks or []), history], model=model,
            epochs=epochs, steps=steps, verbose=0,
        )
        batch_hooks = any(_implements_batch_hooks(c) for c in callbacks or [])
        val = None
        if validation_data is not None:
            val = (np.asarray(validation_data[0]), np.asarray(validation_data[1]))
        if evaluate_first and val is not None:
            history.initial_logs = self.evaluate(*val, batch_size=max(batch, 256))

        history.initial_iterations = int(self.optimizer.iterations.numpy())
        batch_tensor = tf.constant(batch, tf.int64)
        model.stop_training = False
        callback_list.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            for metric in [self.train_loss, *self.train_metrics]:
                metric.reset_state()
            callback_list.on_epoch_begin(epoch)
            order = _epoch_order(n, seed, epoch, shuffle)
            bad_step = -1
            if batch_hooks:
                for step in range(steps):
                    callback_list.on_train_batch_begin(step)
                    bad_step = int(self._train_fn(
                        x_tensor, y_tensor, order, tf.constant(step, tf.int64),
                        tf.constant(step + 1, tf.int64), batch_tensor))
                    if bad_step >= 0:
                        break
                    callback_list.on_train_batch_end(step, self._train_logs())
                    if model.stop_training:
                        break
            else:
                bad_step = int(self._train_fn(
                    x_tensor, y_tensor, order, tf.constant(0, tf.int64),
                    tf.constant(steps, tf.int64), batch_tensor))
            logs = self._train_logs()
            if bad_step >= 0:
                logs["loss"] = float("nan")
                if val is not None:  # keep every history series one value per epoch
                    logs.update({f"val_{m.name}": float("nan")
                                 for m in [self.val_loss, *self.val_metrics]})
                history.divergence = Divergence(epoch, bad_step, self.learning_rate())
                model.stop_training = True
            elif val is not None:
                val_logs = self.evaluate(*val, batch_size=max(batch, 256))
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            logs["learning_rate"] = self.learning_rate()
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callback_list.on_train_end(logs)
        return history

    def learning_rate(self) -> float:
        """The optimizer's current learning rate."""
        return _to_float(self.optimizer.learning_rate)

    def _train_logs(self) -> dict[str, float]:
        return {m.name: _to_float(m.result()) for m in [self.train_loss, *self.train_metrics]}


def _epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> Any:
    if not shuffle:
        return tf.range(n, dtype=tf.int64)
    noise = tf.random.stateless_uniform([n], seed=[seed, epoch])
    return tf.cast(tf.argsort(noise), tf.int64)


def _to_float(value: Any) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))
