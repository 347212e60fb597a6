"""Compiled train and eval passes: what :class:`~kerastune_kit.training.TrainLoop` runs.

Owns: :class:`TrainSteps` (the model, loss, metrics, optimizer, loss scaling, the strategy, and
the ``tf.function`` bodies: a whole epoch (or a chunk of steps) over in-memory tensors with
batches gathered in-graph, the same over a ``tf.data`` iterator, distributed steps with
``strategy.run``, and eval passes). Does not own: epochs, callbacks or logs (``training``),
optimizer math (``updates``) or gradient-health accumulators (``diagnostics``).

Every train pass returns ``(bad_step, metric values, gradient health)`` as tensors, so an
epoch costs one host round trip. A non-finite loss, or one above the explosion rule's ceiling
(:class:`LossCeiling`), skips the step's update and ends the pass with ``bad_step`` set.

A search builds a new model for every trial, and tracing the passes of a small model costs
more than training it for an epoch. For a search trial's model (one that
``KitHyperModel.build`` marked with :data:`SEARCH_TRIAL_ATTRIBUTE`), or with ``reuse_traces``,
a pass is traced once per *trace key* (everything its graph depends on besides the values of
variables: model, loss, metric and optimizer configurations, options) and input shapes, and
later trials with the same key call that graph with their own variables bound to its inputs
(:class:`_Reusable`). On a CPU a trial's passes also run without Grappler (:func:`_call_options`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._backend import keras as _keras
from kerastune_kit._backend import plain_tf as _plain_tf
from kerastune_kit.diagnostics import GradientHealth
from kerastune_kit.updates import fused_update

keras = _keras()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (after the backend check)

try:  # TensorFlow internals: per-call runtime options, calling a traced graph directly
    from tensorflow.core.function.polymorphism import function_type as _function_type
    from tensorflow.python.eager import context as _tf_context
    from tensorflow.python.eager.polymorphic_function import atomic_function as _atomic

    _NO_PARAMETERS = _function_type.FunctionType([])
except (ImportError, AttributeError, TypeError):  # pragma: no cover - another TensorFlow
    _tf_context = _atomic = None  # plain tf.function calls, no reuse


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
        trace_counts: How many times the train and eval passes were traced (0 for a pass that
            reused an earlier model's trace).
        loss_scaling: Whether the optimizer is a ``LossScaleOptimizer`` (the loss is scaled).
        health: The :class:`GradientHealth` accumulators (None without diagnostics).
        trace_key: What the passes' graphs depend on (:func:`trace_key`) when traces are
            reused, else None.
        grappler: Whether the runtime optimizes the passes with Grappler (see ``grappler``
            in :class:`~kerastune_kit.training.TrainLoop`).
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
        reuse_traces: bool | None = None,
        grappler: bool | None = None,
        explosion_factor: float | None = None,
    ) -> None:
        self.explosion_factor = check_explosion_factor(explosion_factor)
        self.explosion_reference: float | None = None
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
            self.ceiling = LossCeiling()
        self._update = fused_update(optimizer, self._variables) if fused_updates else None
        self.trace_counts = {"train": 0, "eval": 0}
        trial = bool(getattr(model, SEARCH_TRIAL_ATTRIBUTE, False))
        if reuse_traces is None:
            reuse_traces = trial
        if grappler is None:
            grappler = not trial
        self.trace_key = (trace_key(self) if reuse_traces and not run_eagerly else None)
        self._state_variables: list[Any] | None = None
        self._bound: dict[tuple, tuple[_Reusable, list[Any] | None]] = {}
        self.grappler = True
        if run_eagerly:
            self._train_fn = self._train_arrays
            self._eval_fn = self._eval_arrays
            self._train_batches_fn = self._train_batches
            self._eval_batches_fn = self._eval_batches
            self._order_fn = _shuffled_order
            return
        options = None if grappler or self.distributed else _call_options()
        self.grappler = options is None
        self._train_fn = self._runner("_train_arrays", options, reusable=True)
        self._eval_fn = self._runner("_eval_arrays", options, reusable=True)
        self._train_batches_fn = self._runner("_train_batches", options)
        self._eval_batches_fn = self._runner("_eval_batches", options)
        self._order_fn = _with_options(options, _compiled_order)

    def _compiled(self, name: str) -> Any:
        """``tf.function`` of a loop body, AutoGraph-converted once per process, not per trial.

        AutoGraph's cache misses on bound methods of new objects: converting the loops anew
        for every trial cost about a quarter of a small trial's start-up.
        """
        def body(*args: Any) -> Any:
            return _converted_loop(name)(self, *args)

        body.__name__ = body.__qualname__ = f"TrainSteps.{name}"
        return tf.function(body, autograph=False, reduce_retracing=True)

    def _runner(self, name: str, options: Any, reusable: bool = False) -> Callable[..., Any]:
        """How the loop calls the pass ``name``: compiled, with ``options``, reused if it can."""
        compiled = self._compiled(name)
        function = _with_options(options, compiled)
        if not reusable or self.trace_key is None:
            return function

        def run(*args: Any) -> Any:
            return self._reusing(name, compiled, function, options, args)

        return run

    def _reusing(self, name: str, compiled: Any, function: Callable[..., Any], options: Any,
                 args: tuple[Any, ...]) -> Any:
        """Run a pass through the graph traced for an earlier model with this trace key and
        these input shapes, with this model's variables bound to its inputs; trace it (and
        keep it for later models) when there is none."""
        if tf.config.functions_run_eagerly() or not all(isinstance(a, tf.Tensor) for a in args):
            return function(*args)
        key = (self.trace_key, name,
               tuple((a.dtype, tuple(a.shape.as_list())) for a in args))
        with _REUSED_LOCK:
            found = _REUSED.get(key, _UNKNOWN)
            if found is not _UNKNOWN:
                _REUSED.move_to_end(key)
        if found is not None and found is not _UNKNOWN:
            bound = self._bound.get(key)
            if bound is None or bound[0] is not found:
                bound = self._bound[key] = (found, found.bind(self._state()))
            captures = bound[1]
            if captures is not None:
                return _with_options(options, found.function.call_preflattened)(
                    [*args, *captures])
        result = function(*args)
        if found is _UNKNOWN:
            try:
                reusable = _Reusable.of(compiled.get_concrete_function(*args), self._state())
            except Exception:  # noqa: BLE001 - keeping a trace is an optimization only
                logging.getLogger(__name__).debug("not reusing %s", name, exc_info=True)
                reusable = None
            with _REUSED_LOCK:
                _REUSED[key] = reusable
                while len(_REUSED) > REUSED_TRACES:
                    _REUSED.popitem(last=False)
        return result

    def _state(self) -> list[Any]:
        """Every variable the passes read or write, in an order fixed by the trace key."""
        if self._state_variables is None:
            state = [*self.model.variables, *self.optimizer.variables]
            for metric in [self.train_loss, *self.train_metrics, self.val_loss,
                           *self.val_metrics]:
                state.extend(metric.variables)
            if self.health is not None:
                state.extend(self.health.state)
            state.extend(self.ceiling.variables)
            self._state_variables = state
        return self._state_variables

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
    def _accepts(self, loss: Any) -> Any:
        """Whether a step with this (mean batch) loss is applied: a finite loss not above the
        explosion rule's ceiling."""
        return tf.logical_and(tf.math.is_finite(loss), loss <= self.ceiling.ceiling)

    def _rejected(self, loss: Any) -> Any:
        """The branch of a step that is not applied: keep its loss for the loop's record."""
        self.ceiling.rejected.assign(loss)
        return tf.constant(False)

    @_plain_tf
    def _train_step(self, x: Any, y: Any, step: Any, w: Any = None) -> Any:
        """One step; returns whether it was applied (:meth:`_accepts`; nothing is otherwise)."""
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

        return tf.cond(self._accepts(loss), apply, lambda: self._rejected(loss))

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
        return loss * share, gradients, squared  # (summed over replicas: the global mean)

    def _replica_apply(self, gradients: Sequence[Any]) -> None:
        self.optimizer.apply_gradients(zip(gradients, self._variables, strict=True))

    @_plain_tf
    def _distributed_train_step(self, x: Any, y: Any, step: Any, w: Any = None) -> Any:
        strategy = self.strategy
        shares, gradients, squared = strategy.run(self._replica_gradients, args=(x, y, w))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, shares, axis=None)
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

        return tf.cond(self._accepts(loss), apply, lambda: self._rejected(loss))

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


# ---------------------------------------------------------------------- the explosion rule

def check_explosion_factor(factor: Any) -> float:
    """``explosion_factor`` as a float: 0.0 for off (None, 0, ``"off"``), else a number > 1.

    Raises:
        ValueError: Anything else, in one line.
    """
    if factor is None or (isinstance(factor, str) and factor.strip().lower() == "off"):
        return 0.0
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) \
            or not math.isfinite(factor) or (factor != 0 and factor <= 1):
        raise ValueError(f"explosion_factor: expected a number above 1, or 0/None/'off' for no "
                         f"rule, received {factor!r}; use for example 3")
    return float(factor)


class LossCeiling:
    """The explosion rule's state, in variables the compiled train passes read and write.

    Variables (so a pass traced for one model serves another with its own rule: they are part
    of :meth:`TrainSteps._state`), float32 scalars:

    - ``ceiling``: a step whose loss is above it is not applied and ends the pass, as a
      non-finite loss does (+inf: no ceiling, as while the rule waits for its reference);
    - ``rejected``: the loss of the last step not applied (non-finite, or above the ceiling).

    The rule ("tip for detecting explosions in the solver: if the cost is ever > 3 * original
    cost, break out early": Stanford's CS231n lecture slides on hyperparameter optimization) is
    armed by :meth:`~kerastune_kit.training.TrainLoop.fit`.
    """

    def __init__(self) -> None:
        def scalar(value: float, name: str) -> Any:
            return tf.Variable(value, trainable=False, dtype=tf.float32, name=name)

        self.ceiling = scalar(math.inf, "loss_ceiling")
        self.rejected = scalar(math.nan, "rejected_loss")

    @property
    def variables(self) -> list[Any]:
        return [self.ceiling, self.rejected]

    def arm(self, factor: float, reference: float | None) -> None:
        """Set the ceiling to ``factor`` x ``reference``; none when either is 0 or None."""
        self.ceiling.assign(factor * reference if factor and reference else math.inf)

    def values(self) -> tuple[float, float]:
        """``(ceiling, rejected loss)`` as Python floats."""
        return float(self.ceiling.numpy()), float(self.rejected.numpy())


# ---------------------------------------------------------------------- reused traces

#: Set to True on a model (``KitHyperModel.build`` does) to mark it as a search trial's: its
#: :class:`TrainSteps` reuse the traces of earlier models with the same trace key and, on a
#: CPU, run without Grappler (the defaults of ``reuse_traces`` and ``grappler``).
SEARCH_TRIAL_ATTRIBUTE = "_kerastune_kit_search_trial"
#: Traced passes kept for reuse (least recently used dropped first): two per architecture.
REUSED_TRACES = 32
_UNKNOWN = object()
_REUSED: collections.OrderedDict[tuple, _Reusable | None] = collections.OrderedDict()
_REUSED_LOCK = threading.Lock()


def clear_reused_traces() -> None:
    """Forget every kept trace (the next model of each architecture traces again)."""
    with _REUSED_LOCK:
        _REUSED.clear()


def _variable_handle(variable: Any) -> Any:
    handle = getattr(variable, "handle", None)
    return handle if handle is not None else variable.value.handle


@dataclasses.dataclass
class _Reusable:
    """A traced pass without its Python graph, and where each of its captures comes from.

    A traced ``tf.function`` takes the variables it reads as captured inputs (their resource
    handles), fed on every call; nothing else about them is in the graph. Feeding another
    model's variables in the same positions runs the same computation on that model, provided
    the graph was traced from equal Python values (the trace key) and every capture is one of
    the variables of :meth:`TrainSteps._state`: a pass capturing anything else (an eager
    tensor, another object's variable) is never reused.
    """

    function: Any  # the runtime function, called with (inputs..., captures...)
    positions: list[int]  # per capture: its variable's index in TrainSteps._state()
    specs: list[tuple[tuple[int, ...], Any]]  # shape and dtype of every state variable

    @classmethod
    def of(cls, concrete: Any, state: Sequence[Any]) -> _Reusable | None:
        if _atomic is None:
            return None
        try:
            index: dict[int, int] = {}
            for i, variable in enumerate(state):
                index.setdefault(id(_variable_handle(variable)), i)
            positions = [index.get(id(t)) for t in concrete.captured_inputs]
            if any(p is None for p in positions):
                return None
            function = _detached(concrete._inference_function)
        except AttributeError:  # pragma: no cover - another TensorFlow version's internals
            return None
        return cls(function, positions, [_spec(v) for v in state])  # type: ignore[arg-type]

    def bind(self, state: Sequence[Any]) -> list[Any] | None:
        """The captured inputs for ``state``'s variables (None when they do not match)."""
        if len(state) != len(self.specs) or any(
                _spec(v) != spec for v, spec in zip(state, self.specs, strict=True)):
            return None
        handles = [_variable_handle(v) for v in state]
        return [handles[p] for p in self.positions]


def _spec(variable: Any) -> tuple[tuple[int, ...], Any]:
    return tuple(variable.shape), tf.as_dtype(variable.dtype)


def _detached(function: Any) -> Any:
    """A handle on a traced function that keeps it (and the functions it calls) in the
    runtime without its Python graph and the call signatures of the functions it calls:
    those hold ~10,000 Python objects per pass, which every ``gc.collect()`` (KerasTuner
    calls two per trial) would walk."""
    context = function._bound_context
    children: dict[bytes, Any] = {}
    stack = list(function.children)
    while stack:  # all the functions it calls, directly or not, each held once by name
        child = stack.pop()
        if child.name not in children:
            children[child.name] = _atomic.AtomicFunction(
                child.name, context, _NO_PARAMETERS, cached_graph=None)
            stack.extend(child.children)
    return _atomic.AtomicFunction(function.name, context, function.function_type,
                                  list(children.values()), function.call_options,
                                  cached_graph=None)


def trace_key(steps: TrainSteps) -> str | None:
    """What the graphs of ``steps``' passes depend on besides the values of its variables.

    Two :class:`TrainSteps` with the same key trace the same graphs for the same input shapes:
    the key holds the configurations of the model (every layer, with its name, dtype policy,
    rates, regularizers and constraints), loss, metrics and optimizer (less a learning rate
    kept in a variable), which variables take weight decay, Keras's global settings, and the
    options. None (no reuse) when a part could hold what a configuration does not show: a
    layer, model, loss or metric class defined outside Keras (unless it declares
    ``_kerastune_kit_config_is_complete = True``), a learning rate that is neither
    a variable nor a Keras schedule, a strategy, loss scaling, or a configuration that is not
    plain data.
    """
    model, optimizer = steps.model, steps.optimizer
    if steps.distributed or steps.loss_scaling:
        return None
    parts: list[Any] = [_class_name(steps)]
    try:
        objects = [model, *_all_layers(model), steps.loss_fn, *steps.train_metrics]
        if not all(_from_keras(obj) for obj in objects) or not _from_keras(optimizer):
            return None
        learning_rate = getattr(optimizer, "_learning_rate", None)
        optimizer_config = dict(optimizer.get_config())
        if isinstance(learning_rate, keras.Variable):
            optimizer_config.pop("learning_rate", None)
        elif not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) \
                or not _from_keras(learning_rate):
            return None
        decayed = ([bool(optimizer._use_weight_decay(v)) for v in steps._variables]
                   if getattr(optimizer, "weight_decay", None) else [])
        parts += [
            _class_name(model), model.get_config(),
            [(_class_name(v), v.path, bool(v.trainable), str(v.dtype),
              bool(getattr(v, "overwrite_with_gradient", False))) for v in model.variables],
            _class_name(optimizer), optimizer_config, decayed,
            _class_name(steps.loss_fn), steps.loss_fn.get_config(),
            [(_class_name(m), m.get_config()) for m in steps.train_metrics],
            [keras.config.floatx(), keras.config.epsilon(), keras.config.dtype_policy().name,
             keras.config.image_data_format()],
            {"diagnostics": steps.health is not None, "fused": steps._update is not None,
             "weight_histograms": getattr(steps.health, "weight_histograms", None)},
        ]
        return json.dumps(parts, sort_keys=True, default=_plain_json)
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        return None


def _all_layers(model: Any) -> list[Any]:
    layers, stack = [], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        layers.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return layers


def _from_keras(obj: Any) -> bool:
    """A Keras class, or one that declares its ``get_config()`` shows all its graph depends on
    (class attribute ``_kerastune_kit_config_is_complete = True``)."""
    kind = type(obj)
    return kind.__module__.startswith("keras.") or bool(
        kind.__dict__.get("_kerastune_kit_config_is_complete", False))


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _plain_json(value: Any) -> Any:
    """NumPy values exactly (``tolist`` keeps every digit); anything else is not plain data."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"not plain data: {type(value).__name__}")


# ---------------------------------------------------------------------- runtime options

_OPTIONS: dict[bytes, Any] = {}
_GPU: list[bool] = []
#: Grappler's passes that a trial's passes skip. The meta-optimizer itself stays on (with
#: only its pruning of unused nodes left): turning it off (``disable_meta_optimizer``), or
#: leaving it nothing to do, saves no more time and leaks ~1.5 MiB of runtime memory per
#: trial in TensorFlow 2.21 (``benchmarks/memory.py`` territory).
_GRAPPLER_PASSES = (
    "layout_optimizer", "constant_folding", "shape_optimization", "remapping",
    "common_subgraph_elimination", "arithmetic_optimization", "dependency_optimization",
    "loop_optimization", "function_optimization", "debug_stripper", "pin_to_host_optimization",
    "implementation_selector",
)


def _call_options() -> Any | None:
    """Runtime options for a trial's passes: Grappler's optimizations off, on a CPU.

    The runtime optimizes a function with Grappler when it instantiates it, and KerasTuner's
    ``clear_session`` drops every instantiated function, so each trial paid 0.1-0.25 s for
    its passes (a reused trace too); without Grappler's passes it pays 0.04-0.1 s. On a CPU
    the epochs of a search's small models run about as fast without them (oneDNN's fusions
    and TensorFlow's own constant folding are not Grappler's): within a few percent for
    dense layers, up to ~20% slower with layer normalization and up to ~40% faster with
    group normalization, which a trial of a few epochs does not notice
    (``benchmarks/trial_overhead.py``). None (TensorFlow's own options) with a GPU, whose
    layout and fusion passes are Grappler's, and when the user set Grappler options.
    """
    if _tf_context is None:
        return None
    if not _GPU:
        _GPU.append(bool(tf.config.list_logical_devices("GPU")))
    chosen = {k: v for k, v in tf.config.optimizer.get_experimental_options().items()
              if not (k in ("disable_model_pruning", "disable_meta_optimizer") and v is False)}
    if _GPU[0] or chosen:
        return None
    try:
        current = _tf_context.context().function_call_options
        base = current.config_proto_serialized
        if base not in _OPTIONS:
            config = tf.compat.v1.ConfigProto()
            config.ParseFromString(base)
            rewrite = config.graph_options.rewrite_options
            for name in _GRAPPLER_PASSES:
                setattr(rewrite, name, rewrite.OFF)
            rewrite.memory_optimization = rewrite.NO_MEM_OPT
            rewrite.meta_optimizer_iterations = rewrite.ONE
            _OPTIONS[base] = _tf_context.FunctionCallOptions(
                executor_type=current.executor_type, config_proto=config)
        return _OPTIONS[base]
    except (AttributeError, TypeError):  # pragma: no cover - another TensorFlow's internals
        return None


def _with_options(options: Any, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, called with the runtime ``options`` (this thread only; None: as is)."""
    if options is None:
        return function

    def call(*args: Any) -> Any:
        context = _tf_context.context()
        previous = context.function_call_options
        context.function_call_options = options
        try:
            return function(*args)
        finally:
            context.function_call_options = previous

    call.__wrapped__ = function  # type: ignore[attr-defined]
    return call


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
