"""The training engine: a GradientTape loop compiled with ``tf.function``.

Owns: :class:`TrainLoop` (compiled train and eval passes, epochs, Keras callbacks driven as
``model.fit`` drives them, divergence detection, gradient health per epoch, loss scaling,
``tf.distribute``). Does not own: oracles, trials or search spaces; optimizer math
(:mod:`~kerastune_kit.updates`) or the gradient-health accumulators
(:mod:`~kerastune_kit.diagnostics`).

Speed comes from running a whole epoch inside one compiled call: for in-memory arrays the
shuffled order is drawn per epoch and batches are gathered in-graph, so Python runs once per
epoch instead of once per step, and each epoch costs one host round trip (metrics, gradient
health and the divergence flag come back together). A ``tf.data.Dataset`` is consumed by an
iterator inside the same kind of compiled loop. When a callback implements batch hooks, the
same compiled function runs one step per call so the hooks see every batch. Under a
``tf.distribute`` strategy, arrays go through a distributed ``tf.data`` pipeline and each step
runs with ``strategy.run``.

Example:
    >>> loop = TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    >>> history = loop.fit(x, y, batch_size=64, epochs=3, validation_data=(x_val, y_val))
    >>> history.diagnostics[2]["gradients/global_norm_mean"]
    0.41
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kerastune_kit._backend import keras as _keras
from kerastune_kit.diagnostics import GradientHealth
from kerastune_kit.updates import fused_update

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
_MANY = 2**62  # "until the dataset ends"
_AVERAGING_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")

Diagnostics = dict[str, Any]


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
        diagnostics: Gradient health per epoch index (see :mod:`kerastune_kit.diagnostics`);
            empty when the loop was built with ``diagnostics=False``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.divergence: Divergence | None = None
        self.initial_logs: dict[str, float] | None = None
        self.initial_iterations: int = 0
        self.initial_epoch: int = 0
        self.diagnostics: dict[int, Diagnostics] = {}


def _implements_batch_hooks(callback: Any) -> bool:
    base = keras.callbacks.Callback
    return any(
        getattr(type(callback), hook, None) is not getattr(base, hook) for hook in _BATCH_HOOKS
    )


def needs_batch_hooks(callback: Any) -> bool:
    """Whether ``callback`` must see every batch (then the loop runs one step per call).

    False for callbacks without batch hooks, for callbacks marked with
    ``_kerastune_kit_no_batch_hooks = True``, and for Keras's own callbacks whose batch hooks
    do nothing in their configuration: ``ModelCheckpoint(save_freq="epoch")``,
    ``TensorBoard(update_freq="epoch")`` without profiling, and ``TerminateOnNaN`` (the loop
    detects a non-finite loss in-graph and reports that batch to the callbacks itself).
    """
    if getattr(callback, "_kerastune_kit_no_batch_hooks", False):
        return False
    if not _implements_batch_hooks(callback):
        return False
    cbs = keras.callbacks
    if type(callback) is cbs.ModelCheckpoint:
        return callback.save_freq != "epoch"
    if type(callback) is cbs.TensorBoard:
        return callback.update_freq != "epoch" or getattr(callback, "_should_trace", True)
    return type(callback) is not cbs.TerminateOnNaN


def _as_loss(loss: Any) -> Any:
    """A ``keras.losses.Loss`` (functions such as ``"mse"`` return per-sample values)."""
    loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss
    if not callable(loss):
        raise ValueError(f"loss: expected a Keras loss, its name or a function, received "
                         f"{loss!r}; pass e.g. keras.losses.MeanSquaredError()")
    return _FunctionLoss(loss)


class _FunctionLoss(keras.losses.Loss):
    """A per-sample loss function (``keras.losses.mean_squared_error``) averaged per batch."""

    def __init__(self, fn: Callable[[Any, Any], Any]) -> None:
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.fn(y_true, y_pred)


def _clone_metric(metric: Any) -> Any:
    return type(metric).from_config(metric.get_config())


def _computes_in_float16(model: Any) -> bool:
    policy = getattr(model, "dtype_policy", None)
    if getattr(policy, "compute_dtype", None) == "float16":
        return True
    return any(getattr(layer, "compute_dtype", None) == "float16"
               for layer in getattr(model, "layers", []))


@dataclasses.dataclass
class _Arrays:
    """In-memory training data: whole epochs run in-graph."""

    x: Any
    y: Any
    n: int
    batch_size: int

    @property
    def steps(self) -> int:
        return math.ceil(self.n / self.batch_size)


@dataclasses.dataclass
class _Batches:
    """Batches from a ``tf.data.Dataset`` (distributed or not); ``steps`` None when unknown."""

    make: Callable[[int], Any]  # epoch -> an iterable of batches
    steps: int | None


class TrainLoop:
    """Train a Keras model with a GradientTape loop under ``tf.function``.

    Construct it inside ``strategy.scope()`` to train under a ``tf.distribute`` strategy (the
    model must be built there too): each step runs with ``strategy.run``, losses are scaled by
    the global batch size and metrics are reduced across replicas.

    Args:
        model: A built Keras model.
        loss: A Keras loss object (or name) computing the mean loss of a batch.
        metrics: Keras metric objects; each is cloned for training and validation.
        optimizer: Defaults to ``model.optimizer``; set as ``model.optimizer`` otherwise, so
            callbacks that change the learning rate reach it. Clipping comes from its
            ``clipnorm`` or ``global_clipnorm``.
        run_eagerly: Run the steps eagerly (for debugging) instead of compiled.
        diagnostics: Measure gradient health per epoch (``history.diagnostics``).
        weight_histograms: Add each trainable variable's values to the per-epoch diagnostics.
        loss_scale: Wrap the optimizer in ``keras.optimizers.LossScaleOptimizer`` and scale the
            loss (mixed precision). None: when the model computes in float16 (a model built
            under the ``mixed_float16`` policy).
        fused_updates: Use TensorFlow's fused optimizer kernels where they reproduce the Keras
            optimizer exactly (see :mod:`kerastune_kit.updates`); False always uses
            ``optimizer.apply_gradients``.

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
        diagnostics: bool = True,
        weight_histograms: bool = False,
        loss_scale: bool | None = None,
        fused_updates: bool = True,
    ) -> None:
        self.model = model
        self.strategy = tf.distribute.get_strategy()
        self.distributed = tf.distribute.has_strategy()
        optimizer = optimizer if optimizer is not None else model.optimizer
        if optimizer is None:
            raise ValueError(
                "optimizer: expected an optimizer or a compiled model, received None; "
                "compile the model or pass optimizer="
            )
        if loss_scale is None:
            loss_scale = _computes_in_float16(model)
        scaling_class = keras.optimizers.LossScaleOptimizer
        if loss_scale and not isinstance(optimizer, scaling_class):
            optimizer = scaling_class(optimizer)
        self.optimizer = optimizer
        self.loss_scaling = isinstance(optimizer, scaling_class)
        if getattr(model, "optimizer", None) is not optimizer:
            model.optimizer = optimizer  # what callbacks (ReduceLROnPlateau, ...) change
        self.loss_fn = _as_loss(loss)
        self._variables = list(model.trainable_variables)
        with self.strategy.scope():
            if not optimizer.built:
                optimizer.build(self._variables)
            self.train_loss = keras.metrics.Mean(name="loss")
            self.val_loss = keras.metrics.Mean(name="loss")
            self.train_metrics = [_clone_metric(m) for m in metrics]
            self.val_metrics = [_clone_metric(m) for m in metrics]
            self.health = (GradientHealth(self._variables, optimizer,
                                          weight_histograms=weight_histograms)
                           if diagnostics else None)
        self._update = fused_update(optimizer, self._variables) if fused_updates else None
        self.trace_counts = {"train": 0, "eval": 0}
        compile_ = (lambda f: f) if run_eagerly else (
            lambda f: tf.function(f, reduce_retracing=True))
        self._train_fn = compile_(self._train_arrays)
        self._eval_fn = compile_(self._eval_arrays)
        self._train_batches_fn = compile_(self._train_batches)
        self._eval_batches_fn = compile_(self._eval_batches)
        self._order_fn = _shuffled_order if run_eagerly else _compiled_order

    # -------------------------------------------------------------- compiled bodies
    def _loss(self, x: Any, y: Any, training: bool) -> tuple[Any, Any, Any]:
        """(mean data loss of the batch, regularization loss, predictions)."""
        predictions = self.model(x, training=training)
        data_loss = tf.cast(self.loss_fn(y, predictions), tf.float32)
        if self.distributed and not tf.distribute.in_cross_replica_context():
            # Keras's averaging losses divide by the replica count under a strategy (its
            # trainer multiplies it back); undo it to get this replica's mean.
            if getattr(self.loss_fn, "reduction", None) in _AVERAGING_REDUCTIONS:
                data_loss = data_loss * self.strategy.num_replicas_in_sync
        regularization = tf.constant(0.0)
        if self.model.losses:
            regularization = tf.add_n([tf.cast(l, tf.float32) for l in self.model.losses])
        return data_loss, regularization, predictions

    def _gradients(self, x: Any, y: Any, share: Any = None, replicas: int = 1
                   ) -> tuple[Any, Any, Any]:
        """(batch loss, predictions, gradients); ``share`` weights the data loss by replica."""
        with tf.GradientTape() as tape:
            data_loss, regularization, predictions = self._loss(x, y, training=True)
            objective = data_loss + regularization
            if share is not None:
                objective = data_loss * share + regularization / replicas
            if self.loss_scaling:
                objective = self.optimizer.scale_loss(objective)
        gradients = tape.gradient(objective, self._variables)
        return data_loss + regularization, predictions, gradients

    def _squared_norms(self, gradients: Sequence[Any]) -> list[Any]:
        squared = [tf.constant(0.0) if g is None else tf.reduce_sum(tf.square(
            tf.cast(tf.convert_to_tensor(g), tf.float32))) for g in gradients]
        if self.loss_scaling:
            scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
            squared = [s / tf.square(scale) for s in squared]
        return squared

    def _apply(self, gradients: Sequence[Any], squared: list[Any] | None) -> None:
        if self._update is not None:
            self._update(gradients, squared)
        else:
            self.optimizer.apply_gradients(zip(gradients, self._variables, strict=True))

    def _update_metrics(self, metrics: Sequence[Any], loss_tracker: Any, loss: Any, y: Any,
                        predictions: Any) -> None:
        count = tf.cast(tf.shape(predictions)[0], tf.float32)
        loss_tracker.update_state(loss, sample_weight=count)
        for metric in metrics:
            metric.update_state(y, predictions)

    def _train_step(self, x: Any, y: Any, step: Any) -> Any:
        """One step; returns whether the loss was finite (nothing is applied otherwise)."""
        loss, predictions, gradients = self._gradients(x, y)
        health = self.health

        def apply(measure: bool) -> Any:
            squared = (self._squared_norms(gradients)
                       if health is not None or self._update is not None else None)
            before = health.snapshot() if measure else None
            self._apply(gradients, squared)
            if health is not None:
                health.observe(squared, health.update_ratios(before) if measure else None)
            self._update_metrics(self.train_metrics, self.train_loss, loss, y, predictions)
            return tf.constant(True)

        return _guarded(loss, health, step, apply)

    def _replica_gradients(self, x: Any, y: Any) -> tuple[Any, Any, Any]:
        context = tf.distribute.get_replica_context()
        count = tf.cast(tf.shape(y)[0], tf.float32)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        share = tf.math.divide_no_nan(count, total)
        loss, predictions, gradients = self._gradients(
            x, y, share=share, replicas=self.strategy.num_replicas_in_sync)
        self._update_metrics(self.train_metrics, self.train_loss, loss, y, predictions)
        squared = []
        if self.health is not None:  # the norm of the summed gradient, as the update sees it
            squared = self._squared_norms(
                context.all_reduce(tf.distribute.ReduceOp.SUM, gradients))
        return loss * count, gradients, squared

    def _replica_apply(self, gradients: Sequence[Any]) -> None:
        self.optimizer.apply_gradients(zip(gradients, self._variables, strict=True))

    def _distributed_train_step(self, x: Any, y: Any, step: Any) -> Any:
        strategy = self.strategy
        weighted, gradients, squared = strategy.run(self._replica_gradients, args=(x, y))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, weighted, axis=None)
        health = self.health

        def apply(measure: bool) -> Any:
            before = health.snapshot() if measure else None
            strategy.run(self._replica_apply, args=(gradients,))
            if health is not None:
                norms = [strategy.reduce(tf.distribute.ReduceOp.MEAN, s, axis=None)
                         for s in squared]
                health.observe(norms, health.update_ratios(before) if measure else None)
            return tf.constant(True)

        return _guarded(loss, health, step, apply)

    def _reset_train(self) -> None:
        for metric in [self.train_loss, *self.train_metrics]:
            metric.reset_state()
        if self.health is not None:
            self.health.reset()

    def _train_results(self, bad_step: Any) -> tuple[Any, list[Any], dict[str, Any]]:
        results = [m.result() for m in [self.train_loss, *self.train_metrics]]
        health = self.health.results() if self.health is not None else {}
        return bad_step, results, health

    def _train_arrays(self, x: Any, y: Any, order: Any, start: Any, stop: Any,
                      batch_size: Any) -> Any:
        self.trace_counts["train"] += 1
        if start == 0:
            self._reset_train()
        n = tf.shape(order, out_type=tf.int64)[0]
        bad_step = tf.constant(-1, dtype=tf.int64)
        for step in tf.range(start, stop):
            low = step * batch_size
            index = order[low:tf.minimum(low + batch_size, n)]
            if not self._train_step(tf.gather(x, index), tf.gather(y, index), step):
                bad_step = step
                break
        return self._train_results(bad_step)

    def _train_batches(self, iterator: Any, max_steps: Any, reset: Any, offset: Any) -> Any:
        self.trace_counts["train"] += 1
        if reset:
            self._reset_train()
        bad_step = tf.constant(-1, dtype=tf.int64)
        done = tf.constant(0, dtype=tf.int64)
        for step in tf.range(max_steps):
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            x, y = batch.get_value()
            if self.distributed:
                finite = self._distributed_train_step(x, y, step + offset)
            else:
                finite = self._train_step(x, y, step + offset)
            if not finite:
                bad_step = step
                break
            done += 1
        return done, self._train_results(bad_step)

    def _eval_step(self, x: Any, y: Any) -> None:
        data_loss, regularization, predictions = self._loss(x, y, training=False)
        self._update_metrics(self.val_metrics, self.val_loss, data_loss + regularization, y,
                             predictions)

    def _reset_eval(self) -> None:
        for metric in [self.val_loss, *self.val_metrics]:
            metric.reset_state()

    def _eval_arrays(self, x: Any, y: Any, batch_size: Any) -> list[Any]:
        self.trace_counts["eval"] += 1
        self._reset_eval()
        n = tf.shape(x, out_type=tf.int64)[0]
        for step in tf.range((n + batch_size - 1) // batch_size):
            low = step * batch_size
            high = tf.minimum(low + batch_size, n)
            self._eval_step(x[low:high], y[low:high])
        return [m.result() for m in [self.val_loss, *self.val_metrics]]

    def _eval_batches(self, iterator: Any) -> list[Any]:
        self.trace_counts["eval"] += 1
        self._reset_eval()
        for _ in tf.range(tf.constant(_MANY, tf.int64)):
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            x, y = batch.get_value()
            if self.distributed:
                self.strategy.run(self._eval_step, args=(x, y))
            else:
                self._eval_step(x, y)
        return [m.result() for m in [self.val_loss, *self.val_metrics]]

    # -------------------------------------------------------------- data
    def _training_data(self, x: Any, y: Any, batch_size: int, shuffle: bool, seed: int
                       ) -> _Arrays | _Batches:
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError("y: a tf.data.Dataset x yields (inputs, targets); received a "
                                 "separate y too; pass y=None")
            _check_pairs(x, "x")
            return _Batches(lambda epoch: self._distribute(x), _cardinality(x))
        if y is None:
            raise ValueError("y: expected training targets with array x, received None; "
                             "pass y or a tf.data.Dataset of (inputs, targets)")
        x_tensor = tf.convert_to_tensor(np.asarray(x))
        y_tensor = tf.convert_to_tensor(np.asarray(y))
        n = int(x_tensor.shape[0])
        if n == 0:
            raise ValueError("x: expected at least one training sample, received 0")
        batch = max(1, min(int(batch_size), n))
        if not self.distributed:
            return _Arrays(x_tensor, y_tensor, n, batch)

        def make(epoch: int) -> Any:
            dataset = tf.data.Dataset.from_tensor_slices((x_tensor, y_tensor))
            if shuffle:
                dataset = dataset.shuffle(n, seed=_epoch_seed(seed, epoch))
            return self._distribute(dataset.batch(batch))

        return _Batches(make, math.ceil(n / batch))

    def _distribute(self, dataset: Any) -> Any:
        if not self.distributed:
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def _validation_data(self, validation_data: Any, batch_size: int) -> Any:
        if validation_data is None or isinstance(validation_data, tf.data.Dataset):
            if validation_data is not None:
                _check_pairs(validation_data, "validation_data")
            return validation_data
        if len(validation_data) != 2:
            raise ValueError(
                f"validation_data: expected (x_val, y_val) or a tf.data.Dataset, received a "
                f"{len(validation_data)}-tuple; sample weights are not supported"
            )
        x_val = tf.convert_to_tensor(np.asarray(validation_data[0]))
        y_val = tf.convert_to_tensor(np.asarray(validation_data[1]))
        if self.distributed:
            return tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch_size)
        return x_val, y_val

    # -------------------------------------------------------------- public API
    def evaluate(self, x: Any, y: Any = None, *, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and metrics over ``(x, y)`` (or a Dataset ``x``) in inference mode."""
        data = x if isinstance(x, tf.data.Dataset) else (x, y)
        return self._evaluate(self._validation_data(data, batch_size), batch_size)

    def _evaluate(self, data: Any, batch_size: int) -> dict[str, float]:
        if isinstance(data, tf.data.Dataset):
            values = self._eval_batches_fn(iter(self._distribute(data)))
        else:
            values = self._eval_fn(data[0], data[1], tf.constant(batch_size, tf.int64))
        names = [m.name for m in [self.val_loss, *self.val_metrics]]
        return {name: _to_float(v) for name, v in zip(names, values, strict=True)}

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        batch_size: int = 32,
        epochs: int = 1,
        initial_epoch: int = 0,
        validation_data: Any = None,
        callbacks: Sequence[Any] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        evaluate_first: bool = False,
        verbose: int = 0,
        on_diagnostics: Callable[[int, Diagnostics], None] | None = None,
    ) -> TrainingHistory:
        """Train from ``initial_epoch`` up to ``epochs`` (exclusive), as ``model.fit`` does.

        Callbacks receive ``on_train_begin``, ``on_epoch_begin``, ``on_test_begin``/``end``
        around validation, ``on_epoch_end`` (logs carry ``loss``, each metric, ``val_*`` and
        ``learning_rate``) and ``on_train_end``; batch hooks run only when some callback needs
        them (:func:`needs_batch_hooks`). ``model.stop_training`` is honoured. A non-finite
        loss stops training at once: the step is not applied, the callbacks see that batch end
        with a NaN loss (so ``TerminateOnNaN`` reacts as in ``model.fit``) and an epoch whose
        logs are NaN, and ``history.divergence`` records where.

        Args:
            x: Training inputs (array-like, fits in memory), or a ``tf.data.Dataset`` of
                batched ``(inputs, targets)`` (then ``y`` is None and ``batch_size``,
                ``shuffle`` and ``seed`` are the dataset's business).
            y: Training targets.
            batch_size: Samples per gradient step (global, across replicas).
            epochs: Index of the epoch to stop before (cumulative, like ``model.fit``).
            initial_epoch: Index of the first epoch to run.
            validation_data: ``(x_val, y_val)`` or a batched ``tf.data.Dataset``, evaluated
                after every epoch.
            callbacks: Keras callbacks.
            shuffle: Draw a new order of the samples every epoch.
            seed: Seeds the per-epoch orders (epoch ``e`` always gets the same order, so a
                resumed run continues as an uninterrupted one would).
            evaluate_first: Measure validation metrics before training (``history.initial_logs``).
            verbose: Passed to the callbacks' params (a ``ProgbarLogger`` you add reads it);
                the loop itself draws nothing.
            on_diagnostics: Called with ``(epoch, diagnostics)`` after each epoch's training,
                before ``on_epoch_end``; also stored in ``history.diagnostics``.

        Returns:
            The :class:`TrainingHistory`.
        """
        model = self.model
        data = self._training_data(x, y, batch_size, shuffle, seed)
        eval_batch = max(getattr(data, "batch_size", 0), 256)
        val = self._validation_data(validation_data, eval_batch)
        history = TrainingHistory()
        history.initial_epoch = initial_epoch
        callback_list = keras.callbacks.CallbackList(
            [*(callbacks or []), history], model=model,
            epochs=epochs, steps=data.steps, verbose=verbose,
        )
        batch_hooks = any(needs_batch_hooks(c) for c in callbacks or [])
        if evaluate_first and val is not None:
            history.initial_logs = self._evaluate(val, eval_batch)
        history.initial_iterations = int(self.optimizer.iterations.numpy())
        model.stop_training = False
        callback_list.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            if isinstance(data, _Arrays):
                bad_step, values, health = self._array_epoch(data, epoch, shuffle, seed,
                                                             batch_hooks, callback_list)
            else:
                bad_step, values, health = self._batches_epoch(data, epoch, batch_hooks,
                                                               callback_list)
            logs = self._logs(values)
            if self.health is not None:
                diagnostics = self.health.to_python(health)
                history.diagnostics[epoch] = diagnostics
                if on_diagnostics is not None:
                    on_diagnostics(epoch, diagnostics)
            if bad_step >= 0:
                logs["loss"] = math.nan
                callback_list.on_train_batch_end(bad_step, dict(logs))
                if val is not None:
                    logs.update({f"val_{m.name}": math.nan
                                 for m in [self.val_loss, *self.val_metrics]})
                history.divergence = Divergence(epoch, bad_step, self.learning_rate())
                model.stop_training = True
            elif val is not None:
                callback_list.on_test_begin()
                val_logs = self._evaluate(val, eval_batch)
                callback_list.on_test_end(val_logs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            logs["learning_rate"] = self.learning_rate()
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callback_list.on_train_end(logs)
        return history

    def _array_epoch(self, data: _Arrays, epoch: int, shuffle: bool, seed: int,
                     batch_hooks: bool, callback_list: Any) -> tuple[int, Any, Any]:
        n = tf.constant(data.n, tf.int64)
        order = (self._order_fn(n, tf.constant([seed, epoch], tf.int64)) if shuffle
                 else tf.range(n))
        batch = tf.constant(data.batch_size, tf.int64)

        def run(start: int, stop: int) -> tuple[int, Any, Any]:
            bad_step, values, health = self._train_fn(
                data.x, data.y, order, tf.constant(start, tf.int64),
                tf.constant(stop, tf.int64), batch)
            return int(bad_step), values, health

        if not batch_hooks:
            return run(0, data.steps)
        for step in range(data.steps):
            callback_list.on_train_batch_begin(step)
            bad_step, values, health = run(step, step + 1)
            if bad_step >= 0:
                break
            callback_list.on_train_batch_end(step, self._logs(values))
            if self.model.stop_training:
                break
        return bad_step, values, health

    def _batches_epoch(self, data: _Batches, epoch: int, batch_hooks: bool,
                       callback_list: Any) -> tuple[int, Any, Any]:
        iterator = iter(data.make(epoch))

        def run(max_steps: int, reset: bool, offset: int = 0) -> tuple[int, int, Any, Any]:
            done, (bad_step, values, health) = self._train_batches_fn(
                iterator, tf.constant(max_steps, tf.int64), tf.constant(reset),
                tf.constant(offset, tf.int64))
            return int(done), int(bad_step), values, health

        if not batch_hooks:
            _, bad_step, values, health = run(data.steps or _MANY, True)
            return bad_step, values, health
        _, _, values, health = run(0, True)  # reset, and results even for an empty dataset
        step = 0
        while data.steps is None or step < data.steps:
            callback_list.on_train_batch_begin(step)
            done, bad_step, values, health = run(1, False, step)
            if bad_step >= 0:
                return step, values, health
            if done == 0:
                break
            callback_list.on_train_batch_end(step, self._logs(values))
            if self.model.stop_training:
                break
            step += 1
        return -1, values, health

    def _logs(self, values: Sequence[Any]) -> dict[str, float]:
        names = [m.name for m in [self.train_loss, *self.train_metrics]]
        return {name: _to_float(v) for name, v in zip(names, values, strict=True)}

    def learning_rate(self) -> float:
        """The optimizer's current learning rate."""
        return _to_float(self.optimizer.learning_rate)


def _guarded(loss: Any, health: GradientHealth | None, step: Any,
             apply: Callable[[bool], Any]) -> Any:
    """Run ``apply`` only for a finite loss; ``apply(True)`` on steps that measure ratios."""
    finite = tf.math.is_finite(loss)
    if health is None:
        return tf.cond(finite, lambda: apply(False), lambda: tf.constant(False))
    branch = tf.where(finite, tf.where(health.sampled(step), 2, 1), 0)
    return tf.switch_case(branch, [lambda: tf.constant(False), lambda: apply(False),
                                   lambda: apply(True)])


def _shuffled_order(n: Any, seed: Any) -> Any:
    noise = tf.random.stateless_uniform(tf.reshape(n, [1]), seed=seed)
    return tf.cast(tf.argsort(noise), tf.int64)


_compiled_order = tf.function(_shuffled_order)  # one trace per process, shared by all loops


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)


def _check_pairs(dataset: Any, field: str) -> None:
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(
            f"{field}: expected a tf.data.Dataset of (inputs, targets) batches, received "
            f"elements {spec}; map it to 2-tuples (sample weights are not supported)"
        )


def _cardinality(dataset: Any) -> int | None:
    steps = int(dataset.cardinality())
    return steps if steps >= 0 else None


def _to_float(value: Any) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))
