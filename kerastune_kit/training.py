"""The training engine: a GradientTape loop compiled with ``tf.function``.

Owns: :class:`TrainLoop` (epochs, Keras callbacks driven as ``model.fit`` drives them, data
preparation for the in-memory, ``tf.data`` and ``tf.distribute`` paths, divergence records,
per-epoch gradient health in the history). Does not own: oracles, trials or search spaces; the
compiled passes (:mod:`~kerastune_kit.steps`), optimizer math (:mod:`~kerastune_kit.updates`)
or the gradient-health accumulators (:mod:`~kerastune_kit.diagnostics`).

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
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kerastune_kit._backend import keras as _keras
from kerastune_kit.steps import MANY, TrainSteps

keras = _keras()
import tensorflow as tf  # noqa: E402  (after the backend check)

_BATCH_HOOKS = (
    "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
)

Diagnostics = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where training diverged: a non-finite loss, or (``factor`` set) a loss the explosion
    rule stopped (see ``explosion_factor`` in :class:`TrainLoop`).

    Attributes:
        epoch: Index of the epoch, from 0 (:meth:`reason` shows its number from 1, as
            Keras prints epochs).
        step: Index of the step within the epoch, from 0 (the epoch's last for ``model.fit``).
        learning_rate: The optimizer's learning rate then.
        loss: The loss that exceeded the ceiling (None for a non-finite loss).
        reference: The loss the rule compared with.
        factor: The rule's ``explosion_factor`` (None for a non-finite loss).
    """

    epoch: int
    step: int
    learning_rate: float
    loss: float | None = None
    reference: float | None = None
    factor: float | None = None

    @property
    def exploded(self) -> bool:
        """Whether the explosion rule (not a non-finite loss) stopped training."""
        return self.factor is not None

    def reason(self) -> str:
        """One line for leaderboards and logs."""
        if self.exploded:
            return (
                f"diverged: loss {self.loss:.3g} exceeded {self.factor:g} x its starting "
                f"loss {self.reference:.3g} (explosion_factor={self.factor:g}) at "
                f"epoch {self.epoch + 1} step {self.step} "
                f"(learning_rate={self.learning_rate:.3g}); "
                "the learning rate is probably too high"
            )
        return (
            f"diverged: non-finite loss at epoch {self.epoch + 1} step {self.step} "
            f"(learning_rate={self.learning_rate:.3g}); a NaN loss usually means the "
            "learning rate is too high"
        )


class TrainingHistory(keras.callbacks.History):
    """``keras.callbacks.History`` plus what the loop observed.

    Attributes:
        divergence: Set when a non-finite loss, or the explosion rule, stopped training.
        explosion_reference: The loss the explosion rule compared with after the first
            epoch (the reference passed to ``fit``, else the starting loss: the larger of the
            untrained validation loss and the first epoch's mean training loss); None when the
            rule is off or had no reference yet.
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
        self.explosion_reference: float | None = None
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


@dataclasses.dataclass
class _Arrays:
    """In-memory training data: whole epochs run in-graph."""

    x: Any
    y: Any
    n: int
    batch_size: int
    w: Any = None  # per-sample weights, or None
    max_steps: int | None = None  # steps_per_epoch
    position: int = 0  # the step of the current pass the next epoch starts at
    order: Any = None  # the current pass's order of the samples

    @property
    def pass_steps(self) -> int:
        """Steps in one pass over the data."""
        return math.ceil(self.n / self.batch_size)

    @property
    def steps(self) -> int:
        """Steps per epoch, as the callbacks' ``params`` report them."""
        return self.pass_steps if self.max_steps is None else self.max_steps


@dataclasses.dataclass
class _Batches:
    """Batches from a ``tf.data.Dataset`` (distributed or not); ``steps`` None when unknown."""

    make: Callable[[int], Any]  # epoch -> an iterable of batches
    steps: int | None
    #: With ``steps_per_epoch``, one iterator runs on across epochs, as in ``model.fit``.
    continuing: bool = False
    cardinality: int | None = None  # batches in the dataset, when known
    iterator: Any = None
    seen: int = 0  # batches the current iterator has given

    def epoch_iterator(self, epoch: int) -> Any:
        if not self.continuing:
            return iter(self.make(epoch))
        if self.iterator is None:
            self.iterator, self.seen = iter(self.make(epoch)), 0
        return self.iterator

    def finish_epoch(self, steps: int) -> None:
        """After an epoch of ``steps`` steps: start over once the data is used up."""
        self.seen += steps
        ran_out = self.steps is not None and steps < self.steps
        if ran_out or (self.cardinality is not None and self.seen >= self.cardinality):
            self.iterator = None


class TrainLoop(TrainSteps):
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
        reuse_traces: Run the in-memory train and eval passes through graphs traced for an
            earlier model with the same architecture, loss, metrics, optimizer settings and
            options (:func:`kerastune_kit.steps.trace_key`), with this model's variables bound
            to them: a search's later trials of an architecture skip tracing. None: for a
            search trial's model (``KitHyperModel.build`` marks its models).
        grappler: Let TensorFlow's Grappler optimize the passes when the runtime instantiates
            them (every trial: KerasTuner's ``clear_session`` drops instantiated functions).
            None: on, except for a search trial's model on a CPU, whose short runs gain less
            than it costs (see :func:`kerastune_kit.steps._call_options`).
        explosion_factor: The explosion rule ("if the cost is ever more than 3x the
            original cost, break out early"): a step whose (mean batch) loss is above this
            many times the starting loss is not applied and stops training,
            recorded in ``history.divergence`` as a non-finite loss is. Checked inside the
            compiled epoch, at every step after the first epoch. The first epoch itself is
            checked for non-finite losses only: an adaptive optimizer's early spike often
            recovers (an RMSprop trial at learning rate 0.05 on iris averaged 6.7x its first
            batch's loss over its first epoch, and ended it tied for the best validation
            accuracy of its search). The starting loss is the larger of the loss before
            training (the untrained model's validation loss, when ``fit`` measures it with
            ``evaluate_first``) and the first epoch's mean training loss: a long first epoch
            (a search's ``min_steps_per_epoch``) already learns, and a single small batch
            3x its mean is noise, not divergence (an iris trial's batch reached 1.96 against a
            first-epoch mean of 0.48, below 3x its untrained loss of 1.10). The reference is
            the loop's: a later :meth:`fit`
            continuing the training keeps it, and a promoted trial passes its parent's
            starting loss to :meth:`fit` (``explosion_reference``). A first epoch whose
            mean loss is not positive turns the rule off. None or 0 (the default, as
            ``model.fit``): off; a kerastune_kit search uses ``SearchConfig.explosion_factor``
            (3).

    Attributes:
        trace_counts: How many times the train and eval passes were traced (0 for a pass
            that reused an earlier model's trace).
        explosion_reference: The explosion rule's reference (the starting loss, or the one
            given to :meth:`fit`); None until known.
    """

    # -------------------------------------------------------------- data
    def _training_data(self, x: Any, y: Any, batch_size: int, shuffle: bool, seed: int,
                       sample_weight: Any = None, steps_per_epoch: int | None = None
                       ) -> _Arrays | _Batches:
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError("y: a tf.data.Dataset x yields (inputs, targets); received a "
                                 "separate y too; pass y=None")
            if sample_weight is not None:
                raise ValueError("sample_weight: a tf.data.Dataset x yields (inputs, targets, "
                                 "sample_weight); received a separate sample_weight too")
            _check_pairs(x, "x")
            cardinality = _cardinality(x)
            return _Batches(lambda epoch: self._distribute(x), steps_per_epoch or cardinality,
                            continuing=steps_per_epoch is not None, cardinality=cardinality)
        if y is None:
            raise ValueError("y: expected training targets with array x, received None; "
                             "pass y or a tf.data.Dataset of (inputs, targets)")
        x_tensor = tf.convert_to_tensor(np.asarray(x))
        y_tensor = tf.convert_to_tensor(np.asarray(y))
        n = int(x_tensor.shape[0])
        if n == 0:
            raise ValueError("x: expected at least one training sample, received 0")
        w_tensor = None if sample_weight is None else _weights_tensor(sample_weight, n,
                                                                        "sample_weight")
        batch = max(1, min(int(batch_size), n))
        if not self.distributed:
            return _Arrays(x_tensor, y_tensor, n, batch, w_tensor, steps_per_epoch)

        def make(epoch: int) -> Any:
            tensors = (x_tensor, y_tensor) if w_tensor is None else (x_tensor, y_tensor, w_tensor)
            dataset = tf.data.Dataset.from_tensor_slices(tensors)
            if shuffle:
                dataset = dataset.shuffle(n, seed=_epoch_seed(seed, epoch))
            dataset = dataset.batch(batch)
            if steps_per_epoch is not None:
                dataset = dataset.take(steps_per_epoch)
            return self._distribute(dataset)

        steps = math.ceil(n / batch)
        return _Batches(make, steps if steps_per_epoch is None else min(steps, steps_per_epoch))

    def _validation_data(self, validation_data: Any, batch_size: int,
                         steps: int | None = None) -> Any:
        if validation_data is None or isinstance(validation_data, tf.data.Dataset):
            if validation_data is not None:
                _check_pairs(validation_data, "validation_data")
                if steps is not None:
                    validation_data = validation_data.take(steps)
            return validation_data
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            received = (f"a {len(validation_data)}-tuple"
                        if isinstance(validation_data, (tuple, list))
                        else type(validation_data).__name__)
            raise ValueError(
                f"validation_data: expected (x_val, y_val), (x_val, y_val, sample_weight) or a "
                f"tf.data.Dataset, received {received}"
            )
        tensors = [tf.convert_to_tensor(np.asarray(validation_data[0])),
                   tf.convert_to_tensor(np.asarray(validation_data[1]))]
        n = int(tensors[0].shape[0])
        if len(validation_data) == 3 and validation_data[2] is not None:
            tensors.append(_weights_tensor(validation_data[2], n, "validation_data sample_weight"))
        if steps is not None:
            tensors = [t[: steps * batch_size] for t in tensors]
        if self.distributed:
            return tf.data.Dataset.from_tensor_slices(tuple(tensors)).batch(batch_size)
        return tuple(tensors)

    # -------------------------------------------------------------- public API
    def evaluate(self, x: Any, y: Any = None, *, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and metrics over ``(x, y)`` (or a Dataset ``x``) in inference mode."""
        data = x if isinstance(x, tf.data.Dataset) else (x, y)
        return self._evaluate(self._validation_data(data, batch_size), batch_size)

    def _evaluate(self, data: Any, batch_size: int) -> dict[str, float]:
        if isinstance(data, tf.data.Dataset):
            values = self._eval_batches_fn(iter(self._distribute(data)))
        elif len(data) == 3:
            values = self._eval_fn(data[0], data[1], tf.constant(batch_size, tf.int64), data[2])
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
        validation_split: float = 0.0,
        callbacks: Sequence[Any] | None = None,
        shuffle: bool = True,
        class_weight: dict[int, float] | None = None,
        sample_weight: Any = None,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
        seed: int = 0,
        evaluate_first: bool = False,
        verbose: int = 0,
        on_diagnostics: Callable[[int, Diagnostics], None] | None = None,
        explosion_reference: float | None = None,
    ) -> TrainingHistory:
        """Train from ``initial_epoch`` up to ``epochs`` (exclusive), as ``model.fit`` does.

        Callbacks receive ``on_train_begin``, ``on_epoch_begin``, ``on_test_begin``/``end``
        around validation, ``on_epoch_end`` (logs carry ``loss``, each metric, ``val_*`` and
        ``learning_rate``) and ``on_train_end``; batch hooks run only when some callback needs
        them (:func:`needs_batch_hooks`). ``model.stop_training`` is honoured. A non-finite
        loss stops training at once: the step is not applied, the callbacks see that batch end
        with a NaN loss (so ``TerminateOnNaN`` reacts as in ``model.fit``) and an epoch whose
        logs are NaN, and ``history.divergence`` records where. A loss the explosion rule
        stops (``explosion_factor``) does the same, with that loss in the logs instead of NaN.

        Args:
            x: Training inputs (array-like, fits in memory), or a ``tf.data.Dataset`` of
                batched ``(inputs, targets)`` (then ``y`` is None and ``batch_size``,
                ``shuffle`` and ``seed`` are the dataset's business).
            y: Training targets.
            batch_size: Samples per gradient step (global, across replicas).
            epochs: Index of the epoch to stop before (cumulative, like ``model.fit``).
            initial_epoch: Index of the first epoch to run.
            validation_data: ``(x_val, y_val)``, ``(x_val, y_val, val_sample_weight)`` or a
                batched ``tf.data.Dataset``, evaluated after every epoch.
            validation_split: Fraction ``0 <= v < 1`` of the arrays (their *last* samples,
                before shuffling, as ``model.fit`` takes them) held out for validation when
                ``validation_data`` is None. Not available for a ``tf.data.Dataset`` x.
            callbacks: Keras callbacks.
            shuffle: Draw a new order of the samples every epoch.
            class_weight: ``{class index: weight}``; each sample's loss is weighted by its
                class's weight (1.0 for classes not listed). Targets may be
                class indices or one-hot rows. Not together with ``sample_weight``.
            sample_weight: Per-sample weights, shape ``(n,)``, for the loss (as in
                ``model.fit``: the sum of weighted losses over the batch size; the metrics stay
                unweighted, as ``compile(metrics=...)`` ones do). A ``tf.data.Dataset``
                carries them as a third element instead.
            steps_per_epoch: Steps per epoch. As in ``model.fit``, an epoch continues where
                the last one stopped, and one that reaches the end of the data (of a pass over
                the arrays, or of a finite dataset) ends there; the next epoch starts a new
                pass (a new order).
            validation_steps: Evaluate only the first this many validation batches.
            validation_batch_size: Batch size of the validation pass (default: the larger
                of ``batch_size`` and 256; the results do not depend on it).
            validation_freq: Validate after every ``validation_freq``-th epoch (1-based, as
                ``model.fit``: 2 validates after epochs 2, 4, ...).
            seed: Seeds the per-epoch orders (epoch ``e`` always gets the same order, so a
                resumed run continues as an uninterrupted one would).
            evaluate_first: Measure validation metrics before training (``history.initial_logs``).
            verbose: Passed to the callbacks' params (a ``ProgbarLogger`` you add reads it);
                the loop itself draws nothing.
            on_diagnostics: Called with ``(epoch, diagnostics)`` after each epoch's training,
                before ``on_epoch_end``; also stored in ``history.diagnostics``.
            explosion_reference: The loss the explosion rule compares with from the first
                step (a promoted Hyperband trial: its parent's starting loss); None: the
                one this loop already has (``explosion_reference``), else the first epoch
                trained here sets it. Ignored when the rule is off.

        Returns:
            The :class:`TrainingHistory`.
        """
        model = self.model
        _check_fit_arguments(validation_split=validation_split, steps_per_epoch=steps_per_epoch,
                             validation_steps=validation_steps, validation_freq=validation_freq,
                             validation_batch_size=validation_batch_size,
                             class_weight=class_weight, sample_weight=sample_weight)
        if validation_split and validation_data is None:
            x, y, sample_weight, validation_data = _split_tail(x, y, sample_weight,
                                                               validation_split)
        if class_weight is not None:
            if isinstance(x, tf.data.Dataset):
                x = x.map(_class_weight_map(class_weight))
            else:
                sample_weight = class_weights_to_sample_weights(y, class_weight)
        data = self._training_data(x, y, batch_size, shuffle, seed, sample_weight,
                                   steps_per_epoch)
        eval_batch = validation_batch_size or max(getattr(data, "batch_size", 0), 256)
        val = self._validation_data(validation_data, eval_batch, validation_steps)
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
        if self.health is not None:
            self.health.set_epoch_steps(data.steps)
        factor = self.explosion_factor
        if explosion_reference is not None:
            self.explosion_reference = _positive(explosion_reference)
        reference = self.explosion_reference if factor else None
        self.ceiling.arm(factor, reference)
        history.explosion_reference = reference
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
                history.divergence = self._divergence(epoch, bad_step, history)
                logs["loss"] = history.divergence.loss if history.divergence.exploded \
                    else math.nan
                callback_list.on_train_batch_end(bad_step, dict(logs))
                if val is not None:
                    logs.update({f"val_{m.name}": math.nan
                                 for m in [self.val_loss, *self.val_metrics]})
                model.stop_training = True
            elif val is not None and (epoch + 1) % validation_freq == 0:
                callback_list.on_test_begin()
                val_logs = self._evaluate(val, eval_batch)
                callback_list.on_test_end(val_logs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if factor and history.explosion_reference is None and bad_step < 0 \
                    and epoch == initial_epoch:  # the starting loss is the reference
                first = _positive(logs.get("loss"))
                untrained = _positive((history.initial_logs or {}).get("loss"))
                self.explosion_reference = (max(first, untrained)
                                            if first is not None and untrained is not None
                                            else first)
                history.explosion_reference = self.explosion_reference
                self.ceiling.arm(factor, self.explosion_reference or 0.0)
            logs["learning_rate"] = self.learning_rate()
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callback_list.on_train_end(logs)
        return history

    def _divergence(self, epoch: int, bad_step: int, history: TrainingHistory) -> Divergence:
        """The record of the step the compiled pass did not apply."""
        ceiling, loss = self.ceiling.values()
        rate = self.learning_rate()
        reference = history.explosion_reference
        if not (math.isfinite(loss) and math.isfinite(ceiling) and self.explosion_factor
                and reference is not None):
            return Divergence(epoch, bad_step, rate)
        return Divergence(epoch, bad_step, rate, loss=loss, reference=reference,
                          factor=self.explosion_factor)

    def _array_epoch(self, data: _Arrays, epoch: int, shuffle: bool, seed: int,
                     batch_hooks: bool, callback_list: Any) -> tuple[int, Any, Any]:
        # With steps_per_epoch an epoch continues the pass (and its order) where the last one
        # stopped, and a new pass starts once the data is used up, as model.fit does.
        first = data.position
        if first == 0 or data.order is None:
            n = tf.constant(data.n, tf.int64)
            order = (self._order_fn(n, tf.constant([seed, epoch], tf.int64)) if shuffle
                     else tf.range(n))
            if data.n % data.batch_size == 0:  # whole batches: one row of the order per step
                order = tf.reshape(order, [data.n // data.batch_size, data.batch_size])
            data.order = order
        order = data.order
        last = min(first + data.steps, data.pass_steps)
        data.position = 0 if last >= data.pass_steps else last
        batch = tf.constant(data.batch_size, tf.int64)
        weights = () if data.w is None else (data.w,)
        if first > 0:
            self._reset_train()  # the compiled pass resets only when it starts at step 0

        def run(start: int, stop: int) -> tuple[int, Any, Any]:
            bad_step, values, health = self._train_fn(
                data.x, data.y, order, tf.constant(first + start, tf.int64),
                tf.constant(first + stop, tf.int64), batch, *weights)
            bad_step = int(bad_step)
            return (bad_step - first if bad_step >= 0 else bad_step), values, health

        if not batch_hooks:
            return run(0, last - first)
        for step in range(last - first):
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
        iterator = data.epoch_iterator(epoch)
        if data.continuing:  # steps_per_epoch: read on where the last epoch stopped
            bad_step, values, health, steps = self._batches_steps(iterator, data, batch_hooks,
                                                                  callback_list)
            data.finish_epoch(steps)
            return bad_step, values, health
        bad_step, values, health, _ = self._batches_steps(iterator, data, batch_hooks,
                                                          callback_list)
        return bad_step, values, health

    def _batches_steps(self, iterator: Any, data: _Batches, batch_hooks: bool,
                       callback_list: Any) -> tuple[int, Any, Any, int]:

        def run(max_steps: int, reset: bool, offset: int = 0) -> tuple[int, int, Any, Any]:
            done, (bad_step, values, health) = self._train_batches_fn(
                iterator, tf.constant(max_steps, tf.int64), tf.constant(reset),
                tf.constant(offset, tf.int64))
            return int(done), int(bad_step), values, health

        if not batch_hooks:
            done, bad_step, values, health = run(data.steps or MANY, True)
            return bad_step, values, health, done
        _, _, values, health = run(0, True)  # reset, and results even for an empty dataset
        step = 0
        while data.steps is None or step < data.steps:
            callback_list.on_train_batch_begin(step)
            done, bad_step, values, health = run(1, False, step)
            if bad_step >= 0:
                return step, values, health, step + 1
            if done == 0:
                break
            callback_list.on_train_batch_end(step, self._logs(values))
            step += 1
            if self.model.stop_training:
                break
        return -1, values, health, step

    def _logs(self, values: Sequence[Any]) -> dict[str, float]:
        names = [m.name for m in [self.train_loss, *self.train_metrics]]
        return {name: _to_float(v) for name, v in zip(names, values, strict=True)}

    def learning_rate(self) -> float:
        """The optimizer's current learning rate."""
        return _to_float(self.optimizer.learning_rate)


def _positive(value: Any) -> float | None:
    """``value`` as a float when it is a finite number above 0, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)


def _check_pairs(dataset: Any, field: str) -> None:
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) in (2, 3)):
        raise ValueError(
            f"{field}: expected a tf.data.Dataset of (inputs, targets) or (inputs, targets, "
            f"sample_weight) batches, received elements {spec}; map it to such tuples"
        )


def _check_fit_arguments(*, validation_split: Any = 0.0, steps_per_epoch: Any = None,
                         validation_steps: Any = None, validation_freq: Any = 1,
                         validation_batch_size: Any = None, class_weight: Any = None,
                         sample_weight: Any = None) -> None:
    """One-line ``ValueError`` for a ``fit`` argument ``model.fit`` would refuse too."""
    if not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
        raise ValueError(f"validation_split: expected a fraction 0 <= v < 1, received "
                         f"{validation_split!r}")
    for name, value in (("steps_per_epoch", steps_per_epoch),
                        ("validation_steps", validation_steps),
                        ("validation_batch_size", validation_batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name}: expected a positive integer or None, received {value!r}")
    if isinstance(validation_freq, bool) or not isinstance(validation_freq, int) \
            or validation_freq < 1:
        raise ValueError(f"validation_freq: expected a positive integer (validate every that "
                         f"many epochs), received {validation_freq!r}")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise ValueError(f"class_weight: expected a dict {{class index: weight}}, received "
                             f"{type(class_weight).__name__}")
        if sample_weight is not None:
            raise ValueError("class_weight: pass class_weight or sample_weight, not both (as "
                             "in model.fit); fold the class weights into sample_weight")


def _weights_tensor(weights: Any, n: int, field: str) -> Any:
    array = np.asarray(weights, dtype="float32")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    if array.shape != (n,):
        raise ValueError(f"{field}: expected one weight per sample, shape ({n},), received "
                         f"shape {array.shape}")
    return tf.convert_to_tensor(array)


def _split_tail(x: Any, y: Any, sample_weight: Any, fraction: float
                ) -> tuple[Any, Any, Any, tuple[Any, ...]]:
    """``model.fit``'s ``validation_split``: the last ``fraction`` of the samples validate."""
    if isinstance(x, tf.data.Dataset):
        raise ValueError("validation_split: not available for a tf.data.Dataset x (as in "
                         "model.fit); pass validation_data")
    x, y = np.asarray(x), np.asarray(y)
    split_at = int(math.floor(len(x) * (1.0 - fraction)))
    if split_at in (0, len(x)):
        raise ValueError(f"validation_split: {fraction} of {len(x)} samples leaves an empty "
                         f"training or validation set; use more data or another fraction")
    if sample_weight is None:
        return x[:split_at], y[:split_at], None, (x[split_at:], y[split_at:])
    w = np.asarray(sample_weight)
    return (x[:split_at], y[:split_at], w[:split_at],
            (x[split_at:], y[split_at:], w[split_at:]))


def class_weights_to_sample_weights(y: Any, class_weight: dict[int, float]) -> np.ndarray:
    """Per-sample weights from ``{class index: weight}``, as ``model.fit`` derives them.

    Args:
        y: Class indices, shape ``(n,)`` or ``(n, 1)`` (rounded, so 0./1. binary targets
            work), or one-hot rows ``(n, K)``.
        class_weight: Weight of each class; unlisted classes weigh 1.0.

    Returns:
        float32 array of shape ``(n,)``.
    """
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y.reshape(-1)
    labels = np.round(y).astype("int64")
    table = {int(k): float(v) for k, v in class_weight.items()}
    return np.array([table.get(int(label), 1.0) for label in labels], dtype="float32")


def _class_weight_map(class_weight: dict[int, float]) -> Callable[..., Any]:
    """A ``Dataset.map`` function adding per-sample class weights to ``(x, y)`` batches."""
    size = max(int(k) for k in class_weight) + 1 if class_weight else 1
    values = np.ones(size, dtype="float32")
    for k, v in class_weight.items():
        values[int(k)] = float(v)
    table = tf.constant(values)

    def add(*batch: Any) -> tuple[Any, Any, Any]:
        if len(batch) > 2:
            raise ValueError("class_weight: the dataset already yields sample weights; pass "
                             "class_weight or sample weights, not both")
        x, y = batch
        labels = y
        if y.shape.rank is not None and y.shape.rank > 1:
            labels = (tf.argmax(y, axis=-1) if y.shape[-1] != 1 else tf.reshape(y, [-1]))
        labels = tf.cast(tf.round(tf.cast(labels, tf.float32)), tf.int32)
        inside = tf.logical_and(labels >= 0, labels < size)
        weights = tf.where(inside, tf.gather(table, tf.clip_by_value(labels, 0, size - 1)),
                           tf.ones_like(labels, tf.float32))
        return x, y, weights

    return add


def _cardinality(dataset: Any) -> int | None:
    steps = int(dataset.cardinality())
    return steps if steps >= 0 else None


def _to_float(value: Any) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))
