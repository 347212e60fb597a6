"""Compiled train and eval passes: what :class:`~kerastune_kit.training.TrainLoop` runs.

Owns: :class:`TrainSteps` (the model, loss, metrics, optimizer, loss scaling, the strategy, and
the ``tf.function`` bodies: a whole epoch (or a chunk of steps) over in-memory tensors with
batches gathered in-graph, the same over a ``tf.data`` iterator, distributed steps with
``strategy.run``, and eval passes). Does not own: epochs, callbacks or logs (``training``),
optimizer math (``updates``) or gradient-health accumulators (``diagnostics``).

Every train pass returns ``(bad_step, metric values, gradient health)`` as tensors, so an
epoch costs one host round trip. A non-finite loss skips the step's update and ends the pass
with ``bad_step`` set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._backend import keras as _keras
from kerastune_kit._backend import plain_tf as _plain_tf
from kerastune_kit.diagnostics import GradientHealth
from kerastune_kit.updates import fused_update

keras = _keras()
import tensorflow as tf  # noqa: E402  (after the backend check)


class _OncePerTrialRetracing(logging.Filter):
    """Hide TensorFlow's retracing warning for our loops: each trial's new model traces once."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (("TrainLoop" in message or "TrainSteps" in message) and "retracing" in message)


tf.get_logger().addFilter(_OncePerTrialRetracing())

MANY = 2**62  # "until the dataset ends"
_AVERAGING_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


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


class TrainSteps:
    """The compiled passes of one model; see :class:`~kerastune_kit.training.TrainLoop`.

    Attributes:
        trace_counts: How many times the train and eval passes were traced.
        loss_scaling: Whether the optimizer is a ``LossScaleOptimizer`` (the loss is scaled).
        health: The :class:`GradientHealth` accumulators (None without diagnostics).
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
        optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
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
        compile_ = (lambda name: getattr(self, name)) if run_eagerly else self._compiled
        self._train_fn = compile_("_train_arrays")
        self._eval_fn = compile_("_eval_arrays")
        self._train_batches_fn = compile_("_train_batches")
        self._eval_batches_fn = compile_("_eval_batches")
        self._order_fn = _shuffled_order if run_eagerly else _compiled_order

    def _compiled(self, name: str) -> Any:
        """``tf.function`` of a loop body, AutoGraph-converted once per process, not per trial.

        AutoGraph's cache misses on bound methods of new objects: converting the loops anew
        for every trial cost about a quarter of a small trial's start-up.
        """
        def body(*args: Any) -> Any:
            return _converted_loop(name)(self, *args)

        body.__name__ = body.__qualname__ = f"TrainSteps.{name}"
        return tf.function(body, autograph=False, reduce_retracing=True)

    # -------------------------------------------------------------- compiled bodies
    def _loss(self, x: Any, y: Any, training: bool, w: Any = None) -> tuple[Any, Any, Any]:
        """(mean data loss of the batch, regularization loss, predictions).

        ``w`` holds per-sample weights; the loss reduces them as Keras's does in ``model.fit``
        (``sum_over_batch_size``: the sum of weighted losses over the batch size).
        """
        predictions = self.model(x, training=training)
        if w is None:
            data_loss = self.loss_fn(y, predictions)
        else:
            data_loss = self.loss_fn(y, predictions, sample_weight=w)
        data_loss = tf.cast(data_loss, tf.float32)
        if self.distributed and not tf.distribute.in_cross_replica_context():
            # Keras's averaging losses divide by the replica count under a strategy (its
            # trainer multiplies it back); undo it to get this replica's mean.
            if getattr(self.loss_fn, "reduction", None) in _AVERAGING_REDUCTIONS:
                data_loss = data_loss * self.strategy.num_replicas_in_sync
        regularization = tf.constant(0.0)
        if self.model.losses:
            regularization = tf.add_n([tf.cast(l, tf.float32) for l in self.model.losses])
        return data_loss, regularization, predictions

    def _gradients(self, x: Any, y: Any, share: Any = None, replicas: int = 1, w: Any = None
                   ) -> tuple[Any, Any, Any]:
        """(batch loss, predictions, gradients); ``share`` weights the data loss by replica."""
        with tf.GradientTape() as tape:
            data_loss, regularization, predictions = self._loss(x, y, training=True, w=w)
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
        # Sample weights reach the loss only: ``model.fit`` weighs ``compile(metrics=...)``
        # by none (only ``weighted_metrics``).
        count = tf.cast(tf.shape(predictions)[0], tf.float32)
        loss_tracker.update_state(loss, sample_weight=count)
        for metric in metrics:
            metric.update_state(y, predictions)

    @_plain_tf
    def _train_step(self, x: Any, y: Any, step: Any, w: Any = None) -> Any:
        """One step; returns whether the loss was finite (nothing is applied otherwise)."""
        loss, predictions, gradients = self._gradients(x, y, w=w)
        health = self.health

        def apply() -> Any:
            squared = (self._squared_norms(gradients)
                       if health is not None or self._update is not None else None)
            if health is None:
                self._apply(gradients, squared)
            else:
                sampled = health.sampled(step)
                before = health.snapshot(sampled)
                self._apply(gradients, squared)
                health.observe(squared, health.update_ratios(sampled, before), sampled)
            self._update_metrics(self.train_metrics, self.train_loss, loss, y, predictions)
            return tf.constant(True)

        return tf.cond(tf.math.is_finite(loss), apply, lambda: tf.constant(False))

    def _replica_gradients(self, x: Any, y: Any, w: Any = None) -> tuple[Any, Any, Any]:
        context = tf.distribute.get_replica_context()
        count = tf.cast(tf.shape(y)[0], tf.float32)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        share = tf.math.divide_no_nan(count, total)
        loss, predictions, gradients = self._gradients(
            x, y, share=share, replicas=self.strategy.num_replicas_in_sync, w=w)
        self._update_metrics(self.train_metrics, self.train_loss, loss, y, predictions)
        squared = []
        if self.health is not None:  # the norm of the summed gradient, as the update sees it
            squared = self._squared_norms(
                context.all_reduce(tf.distribute.ReduceOp.SUM, gradients))
        return loss * count, gradients, squared

    def _replica_apply(self, gradients: Sequence[Any]) -> None:
        self.optimizer.apply_gradients(zip(gradients, self._variables, strict=True))

    @_plain_tf
    def _distributed_train_step(self, x: Any, y: Any, step: Any, w: Any = None) -> Any:
        strategy = self.strategy
        weighted, gradients, squared = strategy.run(self._replica_gradients, args=(x, y, w))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, weighted, axis=None)
        health = self.health

        def apply() -> Any:
            if health is None:
                strategy.run(self._replica_apply, args=(gradients,))
                return tf.constant(True)
            sampled = health.sampled(step)
            before = health.snapshot(sampled)
            strategy.run(self._replica_apply, args=(gradients,))
            norms = [strategy.reduce(tf.distribute.ReduceOp.MEAN, s, axis=None) for s in squared]
            health.observe(norms, health.update_ratios(sampled, before), sampled)
            return tf.constant(True)

        return tf.cond(tf.math.is_finite(loss), apply, lambda: tf.constant(False))

    @_plain_tf
    def _reset_train(self) -> None:
        for metric in [self.train_loss, *self.train_metrics]:
            metric.reset_state()
        if self.health is not None:
            self.health.reset()

    @_plain_tf
    def _train_results(self, bad_step: Any) -> tuple[Any, list[Any], dict[str, Any]]:
        results = [m.result() for m in [self.train_loss, *self.train_metrics]]
        health = self.health.results() if self.health is not None else {}
        return bad_step, results, health

    def _train_arrays(self, x: Any, y: Any, order: Any, start: Any, stop: Any,
                      batch_size: Any, w: Any = None) -> Any:
        self.trace_counts["train"] += 1
        if start == 0:
            self._reset_train()
        whole_batches = order.shape.rank == 2
        n = None if whole_batches else tf.shape(order, out_type=tf.int64)[0]
        bad_step = tf.constant(-1, dtype=tf.int64)
        for step in tf.range(start, stop):
            if whole_batches:
                # Rows of whole batches: the batch has a static shape, so Grappler folds the
                # shape arithmetic of the forward and backward passes (~10% of a small step).
                index = order[step]
            else:
                low = step * batch_size
                index = order[low:tf.minimum(low + batch_size, n)]
            batch_w = None if w is None else tf.gather(w, index)
            if not self._train_step(tf.gather(x, index), tf.gather(y, index), step, batch_w):
                bad_step = step
                break
        return self._train_results(bad_step)

    def _train_batches(self, iterator: Any, max_steps: Any, reset: Any, offset: Any) -> Any:
        self.trace_counts["train"] += 1
        if reset:
            self._reset_train()
        bad_step = tf.constant(-1, dtype=tf.int64)
        step = tf.constant(0, dtype=tf.int64)  # a while loop: tf.range(MANY) would not run eagerly
        while step < max_steps:
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            x, y, w = _unpack(batch.get_value())
            if self.distributed:
                finite = self._distributed_train_step(x, y, step + offset, w)
            else:
                finite = self._train_step(x, y, step + offset, w)
            if not finite:
                bad_step = step
                break
            step += 1
        return step, self._train_results(bad_step)

    @_plain_tf
    def _eval_step(self, x: Any, y: Any, w: Any = None) -> None:
        data_loss, regularization, predictions = self._loss(x, y, training=False, w=w)
        self._update_metrics(self.val_metrics, self.val_loss, data_loss + regularization, y,
                             predictions)

    @_plain_tf
    def _reset_eval(self) -> None:
        for metric in [self.val_loss, *self.val_metrics]:
            metric.reset_state()

    def _eval_arrays(self, x: Any, y: Any, batch_size: Any, w: Any = None) -> list[Any]:
        self.trace_counts["eval"] += 1
        self._reset_eval()
        n = tf.shape(x, out_type=tf.int64)[0]
        for step in tf.range((n + batch_size - 1) // batch_size):
            low = step * batch_size
            high = tf.minimum(low + batch_size, n)
            self._eval_step(x[low:high], y[low:high], None if w is None else w[low:high])
        return [m.result() for m in [self.val_loss, *self.val_metrics]]

    def _eval_batches(self, iterator: Any) -> list[Any]:
        self.trace_counts["eval"] += 1
        self._reset_eval()
        step = tf.constant(0, dtype=tf.int64)
        while step < MANY:
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            x, y, w = _unpack(batch.get_value())
            if self.distributed:
                self.strategy.run(self._eval_step, args=(x, y, w))
            else:
                self._eval_step(x, y, w)
            step += 1
        return [m.result() for m in [self.val_loss, *self.val_metrics]]

    def _distribute(self, dataset: Any) -> Any:
        if not self.distributed:
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))


_CONVERTED: dict[str, Any] = {}


def _converted_loop(name: str) -> Any:
    """The AutoGraph conversion of ``TrainSteps.<name>`` (a plain function taking ``self``)."""
    if name not in _CONVERTED:
        _CONVERTED[name] = tf.autograph.to_graph(getattr(TrainSteps, name))
    return _CONVERTED[name]


def _unpack(batch: Any) -> tuple[Any, Any, Any]:
    """``(x, y)`` or ``(x, y, sample_weight)``, as ``model.fit`` reads a dataset's elements."""
    return batch[0], batch[1], batch[2] if len(batch) > 2 else None


def _shuffled_order(n: Any, seed: Any) -> Any:
    noise = tf.random.stateless_uniform(tf.reshape(n, [1]), seed=seed)
    return tf.cast(tf.argsort(noise), tf.int64)


_compiled_order = tf.function(_shuffled_order)  # one trace per process, shared by all loops
