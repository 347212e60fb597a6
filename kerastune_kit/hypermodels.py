"""HyperModel factories: ordinary ``keras_tuner.HyperModel`` subclasses over a :class:`SearchSpace`.

Owns: ``build(hp)`` (registering knobs, building and compiling the network with a head that fits
the task) and ``fit(hp, model, ...)`` (reading the batch size from ``hp`` and delegating to
:class:`~kerastune_kit.training.TrainLoop`). Does not own: a training loop or oracle logic.

A KerasTuner user drops a factory into their own tuner:

Example:
    >>> import keras_tuner as kt
    >>> hypermodel = MLPHyperModel(SearchSpace(optimizer="adam"), input_shape=(64,),
    ...                            task="multiclass", n_classes=10)
    >>> tuner = kt.BayesianOptimization(hypermodel, objective="val_accuracy", max_trials=5)
    >>> tuner.search(x, y, validation_data=(x_val, y_val), epochs=5)
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastune_kit._backend import keras as _keras
from kerastune_kit.errors import ConfigError
from kerastune_kit.layers import (
    AUGMENTATION_BLOCK,
    augmentation_block,
    conv_block,
    dense_block,
    resolve_initializer,
)
from kerastune_kit.space import ModelParams, SearchSpace, profile_widths

keras = _keras()
import keras_tuner as kt  # noqa: E402

TASKS = ("binary", "multiclass", "regression")


@dataclasses.dataclass(frozen=True)
class TaskHead:
    """Output layer, loss and metrics of one task."""

    task: str
    units: int
    activation: str | None
    metric_names: tuple[str, ...]
    default_objective: str
    #: Regression only: the training targets' mean and standard deviation. The network
    #: learns standardized targets (its last layer maps them back to the target's units),
    #: and the loss is the mean squared error divided by the targets' variance.
    target_scaling: tuple[float, float] | None = None

    def loss(self) -> Any:
        """A fresh loss object.

        Regression with :attr:`target_scaling` gets the mean squared error divided by the
        targets' variance (the fraction of variance left unexplained: 1.0 predicts the mean),
        which trains exactly as standardized targets would; ``mae`` and ``mse`` stay in the
        target's units.
        """
        if self.task == "binary":
            return keras.losses.BinaryCrossentropy()
        if self.task == "multiclass":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if self.target_scaling is not None:
            return _ScaledLoss(keras.losses.MeanSquaredError(), self.loss_weight())
        return keras.losses.MeanSquaredError()

    def saved_loss(self) -> Any:
        """The loss a compiled model carries (with :meth:`loss_weight` as ``loss_weights``):
        Keras's own classes only, so a saved model loads without kerastune_kit."""
        if self.target_scaling is not None:
            return keras.losses.MeanSquaredError()
        return self.loss()

    def loss_weight(self) -> float:
        """The factor on the task's loss: 1 / variance of the targets with
        :attr:`target_scaling`, else 1."""
        if self.target_scaling is None:
            return 1.0
        return 1.0 / float(self.target_scaling[1]) ** 2

    def metrics(self) -> list[Any]:
        """Fresh metric objects, named as their keys in the logs."""
        if self.task == "binary":
            return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
        if self.task == "multiclass":
            return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        return [keras.metrics.MeanAbsoluteError(name="mae"),
                keras.metrics.MeanSquaredError(name="mse")]

    def prepare_targets(self, y: Any) -> np.ndarray:
        """Targets shaped for the head: class ids for multiclass, a column otherwise."""
        y = np.asarray(y)
        if self.task == "multiclass":
            return y.astype("int32").reshape(-1)
        return y.astype("float32").reshape(-1, 1)


class _ScaledLoss(keras.losses.Loss):
    """``factor`` times a Keras loss (per sample, before the batch reduction)."""

    #: Its config says everything its graph depends on (the training loop may reuse traces).
    _kerastune_kit_config_is_complete = True

    def __init__(self, inner: Any, factor: float) -> None:
        super().__init__(name=inner.name)
        self.inner, self.factor = inner, float(factor)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "inner": keras.losses.serialize(self.inner),
                "factor": self.factor}

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.inner.call(y_true, y_pred) * self.factor


def regression_scaling(y: Any) -> tuple[float, float]:
    """``(mean, std)`` of regression targets, for :attr:`TaskHead.target_scaling` (a
    standard deviation of 0, constant targets, becomes 1)."""
    y = np.asarray(y, dtype="float64").reshape(-1)
    std = float(y.std())
    return float(y.mean()), std if std > 0 and np.isfinite(std) else 1.0


def task_head(task: str, n_classes: int | None = None) -> TaskHead:
    """The head for ``task``: sigmoid unit, softmax logits, or a linear unit.

    Raises:
        ConfigError: Unknown task, or a multiclass task without a class count.
    """
    if task == "binary":
        return TaskHead("binary", 1, "sigmoid", ("loss", "accuracy", "auc"), "val_accuracy")
    if task == "multiclass":
        if not n_classes or n_classes < 2:
            raise ConfigError(
                f"n_classes: a multiclass head needs 2 or more classes, received {n_classes!r}"
            )
        return TaskHead("multiclass", int(n_classes), None, ("loss", "accuracy"), "val_accuracy")
    if task == "regression":
        return TaskHead("regression", 1, None, ("loss", "mae", "mse"), "val_loss")
    raise ConfigError(f"task: expected one of {', '.join(TASKS)}, received {task!r}")


def objective_direction(name: str) -> str:
    """``max`` for accuracy-like metrics, ``min`` for losses and errors: the one rule,
    :func:`kerastune_kit.results.direction_of`, which readers of a run use too."""
    from kerastune_kit.results import direction_of

    return direction_of(name)


def available_objectives(task: str) -> list[str]:
    """Every objective a model for ``task`` reports (train and validation)."""
    names = list(task_head(task, 2 if task == "multiclass" else None).metric_names)
    return [f"val_{n}" for n in names] + names


def without_augmentation(model: Any) -> Any:
    """``model`` without its image-augmentation block (the layer named
    :data:`~kerastune_kit.layers.AUGMENTATION_BLOCK`), sharing every other layer and weight:
    the network as it predicts. ``model`` itself when it has no such block."""
    try:
        block = model.get_layer(AUGMENTATION_BLOCK)
    except ValueError:
        return model

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        return args[0] if layer is block else layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer,
                                    call_function=call)


def make_optimizer(params: ModelParams) -> Any:
    """The Keras optimizer of a trial, clipping by norm when ``clipnorm`` is set.

    ``one_minus_momentum`` (when set) becomes ``beta_1 = 1 - value`` of Adam and AdamW and
    ``momentum = 1 - value`` of SGD and RMSprop; unset, each keeps its own default (SGD:
    Nesterov momentum 0.9, RMSprop: none). ``weight_decay`` (when set) is AdamW's decoupled
    weight decay (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization"); unset,
    Keras's default 0.004.
    """
    kwargs: dict[str, Any] = {"learning_rate": params.learning_rate}
    if params.clipnorm:
        kwargs["clipnorm"] = params.clipnorm
    beta = None if params.one_minus_momentum is None else 1.0 - params.one_minus_momentum
    if beta is not None and params.optimizer in ("adam", "adamw"):
        kwargs["beta_1"] = beta
    if params.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    if params.optimizer == "adamw":
        if params.weight_decay is not None:
            kwargs["weight_decay"] = params.weight_decay
        return keras.optimizers.AdamW(**kwargs)
    if params.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs, **({} if beta is None else {"momentum": beta}))
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=0.9 if beta is None else beta, nesterov=True,
                                    **kwargs)
    raise ConfigError(f"optimizer: unknown optimizer {params.optimizer!r}")


class KitHyperModel(kt.HyperModel):
    """Shared parts of the factories: task heads, compile and the ``fit`` protocol.

    Args:
        space: The search space (defaults plus overrides); a fresh default space when None.
        input_shape: Shape of one sample, without the batch axis.
        task: ``binary``, ``multiclass`` or ``regression``.
        n_classes: Class count for ``multiclass``.
        seed: Seeds weight initialisation, dropout and the per-epoch shuffles.
    """

    family = "base"
    #: How raw features become the network's inputs (a ``data.Preprocessing``; None: as
    #: they are). :meth:`inference_model` puts it in front of a trained network.
    preprocessing: Any = None
    #: The label of each class index (from the data), or None.
    class_names: tuple[str, ...] | None = None
    #: Add each trainable variable's values to the per-epoch diagnostics (TensorBoard
    #: histograms in a search); set it on an instance to turn it on.
    weight_histograms = False
    #: An epoch of :meth:`fit` takes at least this many optimizer steps: array data too
    #: small for that many batches is passed over several times per epoch (see
    #: :func:`passes_per_epoch`). 0 (the default for KerasTuner users): one pass, as
    #: ``model.fit``; a kerastune_kit search sets ``SearchConfig.min_steps_per_epoch``.
    min_steps_per_epoch = 0
    #: The horizon of a trial's learning-rate schedule (``lr_schedule``, ``warmup_epochs``)
    #: in epochs: a kerastune_kit search sets its ``max_epochs``, so that a Hyperband trial
    #: promoted from 3 to 9 epochs continues one schedule. None (KerasTuner users: set it to
    #: your ``max_epochs``): the ``epochs`` of each :meth:`fit` call.
    schedule_epochs: int | None = None
    #: The explosion rule of :meth:`fit` (``explosion_factor`` of :class:`TrainLoop`): 0 (the
    #: default for KerasTuner users) off, as ``model.fit``; our tuners set theirs (3 unless
    #: told otherwise) before each trial, with ``explosion_reference`` (a promoted Hyperband
    #: trial's parent's starting loss; None: the trial's own).
    explosion_factor = 0.0
    explosion_reference: float | None = None

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        input_shape: Sequence[int],
        task: str,
        n_classes: int | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or self.family, tunable=True)
        self.space = space if space is not None else SearchSpace(family=self.family)
        if self.space.family != self.family:
            raise ConfigError(
                f"space: a {self.family} factory needs SearchSpace(family={self.family!r}), "
                f"received a {self.space.family} space"
            )
        self.input_shape = tuple(int(d) for d in input_shape)
        self.head = task_head(task, n_classes)
        self.n_classes = n_classes
        self.seed = seed

    @classmethod
    def for_dataset(cls, dataset: Any, space: SearchSpace | None = None, *, seed: int = 0
                    ) -> KitHyperModel:
        """A factory sized for a :class:`~kerastune_kit.data.Dataset` (its preprocessing, and
        for regression its training targets' scale)."""
        hypermodel = cls(space, input_shape=dataset.input_shape, task=dataset.task,
                         n_classes=dataset.n_classes, seed=seed)
        hypermodel._adopt(dataset)
        return hypermodel

    def _adopt(self, dataset: Any) -> None:
        self.preprocessing = dataset.preprocessing
        self.class_names = dataset.class_names
        if self.head.task == "regression":
            self.head = dataclasses.replace(self.head,
                                            target_scaling=regression_scaling(dataset.y_train))

    def inference_model(self, model: Any) -> Any:
        """The trained ``model`` as users call it: raw inputs in, predictions out.

        The training split's preprocessing comes first (``Normalization`` with the saved
        means and variances, or ``Rescaling`` for pixels), and a multiclass head ends in a
        softmax, so ``predict`` returns class probabilities, shape ``(n, n_classes)``; binary:
        ``(n, 1)`` probabilities; regression: ``(n, 1)`` values. It is compiled with the
        task's loss and metrics, so ``evaluate(raw_x_val, y_val)`` reproduces the search's
        validation scores. A CNN's image-augmentation block (``translation``, ``rotation``,
        ``zoom``, ``horizontal_flip``) is left out: it acts in training only.

        For a structured CSV (``preprocessing.kind == "feature_space"``) the inputs are the raw
        columns, a dict with one named 1-D input per column (float32 for number columns, NaN
        for a missing value; strings for string columns, ``""`` or a spelling such as ``NA``
        or ``?`` for a missing one): the model imputes them by the recorded rule, applies the
        fitted FeatureSpace, then the network. Built from Keras's own layers and ops only, so
        ``keras.saving.load_model`` reads it without kerastune_kit. Keras 3.15's ``predict``
        refuses NumPy string arrays: pass string columns as ``tf.constant`` (or a
        ``tf.data.Dataset``), e.g. ``{k: tf.constant(v) for k, v in dataset.raw_x_val.items()}``.

        Args:
            model: A network built by :meth:`build` (trained).

        Returns:
            A new ``keras.Model`` sharing ``model``'s layers and weights.
        """
        step = self.preprocessing
        if step is not None and step.kind == "feature_space":
            inputs, h = self._raw_column_inputs(step)
        else:
            inputs = keras.Input(shape=self.input_shape, name="raw_inputs")
            h = inputs
        if step is not None and step.kind == "standardize":
            scale = np.asarray(step.scale, dtype="float32")
            h = keras.layers.Normalization(mean=np.asarray(step.mean, dtype="float32"),
                                           variance=scale * scale, name="standardize")(h)
        elif step is not None and step.kind == "rescale":
            h = keras.layers.Rescaling(step.factor, name="rescale")(h)
        outputs = without_augmentation(model)(h)
        loss = self.head.saved_loss()
        if self.head.task == "multiclass":
            outputs = keras.layers.Softmax(name="probabilities")(outputs)
            loss = keras.losses.SparseCategoricalCrossentropy()
        wrapped = keras.Model(inputs, outputs, name=f"{model.name}_with_preprocessing")
        # A fresh optimizer of the trial's kind and settings, for fine-tuning; built now, so
        # that loading the file restores every slot without Keras's "skipping" warning.
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        optimizer.build(wrapped.trainable_variables)
        wrapped.compile(optimizer=optimizer, loss=loss, metrics=self.head.metrics(),
                        loss_weights=self.head.loss_weight())
        return wrapped

    @staticmethod
    def _raw_column_inputs(step: Any) -> tuple[dict[str, Any], Any]:
        """The raw-column inputs of a structured dataset's exported model and its encoded features.

        One 1-D input per column of ``step.columns`` (a ``data.Preprocessing`` of kind
        ``feature_space``), named by its ``input_name``: float32 for numeric and integer-coded
        columns, where NaN becomes the column's fill (the training median; the missing code, then
        int32, for codes); strings for string and text columns, where an empty string or a
        missing-value spelling (:func:`kerastune_kit.data.missing_spellings`, found by a
        ``StringLookup``) becomes ``""``, the missing category (no words, for text). The imputed
        columns go through the fitted FeatureSpace's own layers (its inputs and encoded features
        as a functional model), the same computation as ``step.apply`` on the training data.
        """
        from kerastune_kit.data import missing_spellings

        ops, layers = keras.ops, keras.layers
        space = step.feature_space
        encoder = keras.Model(dict(space.get_inputs()), space.get_encoded_features(),
                              name="feature_space")
        spellings = list(missing_spellings())
        inputs: dict[str, Any] = {}
        imputed: dict[str, Any] = {}
        for index, column in enumerate(step.columns):
            name = column.input_name
            raw = keras.Input(shape=(), dtype=column.input_dtype, name=name)
            h = ops.expand_dims(raw, -1)
            if column.input_dtype == "float32":
                h = ops.where(ops.isnan(h), float(column.fill), h)
                if column.kind == "integer_categorical":
                    h = ops.cast(h, "int32")
            else:
                markers = layers.StringLookup(vocabulary=spellings, num_oov_indices=1,
                                              name=f"missing_spellings_{index}")
                h = ops.where(ops.greater(markers(h), 0), "", h)
            inputs[name], imputed[name] = raw, h
        return inputs, encoder(imputed)

    # -------------------------------------------------------------- build
    def build(self, hp: Any) -> Any:
        """Register the knobs on ``hp``, build and compile the model.

        The weights and dropout masks depend only on ``seed`` and the hyperparameters; the
        global random generators of Python, NumPy and TensorFlow are left untouched.
        """
        params = self.space.resolve(hp)
        # Keras draws the seeds of initializers and dropout layers built without one from
        # Python's ``random``: seeding it for the build alone makes every trial's network
        # reproducible and leaves the caller's random state (Python, NumPy, TensorFlow) as it was.
        state = random.getstate()
        random.seed(self.seed)
        try:
            model = self._build_network(params)
        finally:
            random.setstate(state)
        model.compile(optimizer=make_optimizer(params), loss=self.head.saved_loss(),
                      loss_weights=self.head.loss_weight(), metrics=self.head.metrics())
        # Create the optimizer's slots now, so that a checkpoint loaded into this model
        # (a promoted Hyperband trial) restores its moments and iteration count too.
        model.optimizer.build(model.trainable_variables)
        # A search trial's model: TrainLoop reuses the passes traced for an earlier trial of
        # this architecture and settings, and skips Grappler on a CPU (kerastune_kit.steps).
        from kerastune_kit.steps import SEARCH_TRIAL_ATTRIBUTE

        setattr(model, SEARCH_TRIAL_ATTRIBUTE, True)
        return model

    def _build_network(self, params: ModelParams) -> Any:
        raise NotImplementedError

    def cost(self, values: dict[str, Any]) -> float:
        """Multiply-accumulates of one sample's forward pass through the network a trial with
        hyperparameter ``values`` builds (weights layers only; missing values take the
        knobs' defaults). Training costs about three times as much. Used to keep random
        proposals from spending a time budget on one giant network.
        """
        return 0.0

    def _output(self, features: Any) -> Any:
        out = keras.layers.Dense(self.head.units, activation=self.head.activation,
                                 name="head")(features)
        if self.head.target_scaling is not None:  # standardized -> the target's units
            mean, std = self.head.target_scaling
            out = keras.layers.Rescaling(std, offset=mean, name="target_units")(out)
        return out

    # -------------------------------------------------------------- fit protocol
    def fit(self, hp: Any, model: Any, x: Any = None, y: Any = None, *,
            validation_data: tuple[Any, ...] | None = None, epochs: int = 1,
            initial_epoch: int = 0, callbacks: Sequence[Any] | None = None,
            batch_size: int | None = None, verbose: int = 0, shuffle: bool = True,
            **kwargs: Any) -> Any:
        """Train ``model`` with :class:`TrainLoop`, following KerasTuner's ``fit`` protocol.

        Takes ``model.fit``'s keyword arguments: besides those named, ``validation_split``,
        ``class_weight``, ``sample_weight``, ``steps_per_epoch``, ``validation_steps``,
        ``validation_batch_size`` and ``validation_freq`` (see :meth:`TrainLoop.fit`).
        The batch size is the trial's ``batch_size`` hyperparameter unless passed explicitly.
        Validation metrics are measured once before training (``history.initial_logs``): for a
        promoted Hyperband trial they show it starts from its parent's weights; for a new trial
        they are the untrained model's score.

        Raises:
            UnsupportedFitArgument: A keyword ``model.fit`` does not take (a KerasTuner
                ``FatalError``: the search stops at the first trial instead of retrying).
            DivergedTrialError: The loss diverged before any finite epoch (a
                ``keras_tuner.errors.FailedTrialError``, so plain KerasTuner records it as failed).
        """
        import tensorflow as tf

        from kerastune_kit.training import TrainLoop

        unknown = sorted(set(kwargs) - set(FIT_KEYWORDS))
        if unknown:
            raise UnsupportedFitArgument(
                f"fit: model.fit takes no argument {', '.join(map(repr, unknown))}; the "
                f"keywords are {', '.join(('batch_size', 'epochs', *FIT_KEYWORDS))} (Keras 3 "
                f"moved workers/use_multiprocessing/max_queue_size to keras.utils.PyDataset)"
            )
        from kerastune_kit.training import _check_fit_arguments

        try:  # the same for every trial: stop the search at once, in one line
            _check_fit_arguments(**kwargs)  # (kwargs hold only FIT_KEYWORDS by now)
            weights = kwargs.get("sample_weight")
            if weights is not None and x is not None and not isinstance(x, tf.data.Dataset) \
                    and len(np.asarray(weights).reshape(-1)) != len(x):
                raise ValueError(f"sample_weight: expected one weight per sample, "
                                 f"{len(x)}, received {len(np.asarray(weights).reshape(-1))}")
        except ValueError as exc:
            raise UnsupportedFitArgument(str(exc)) from None
        streamed = isinstance(x, tf.data.Dataset)
        if x is None or (y is None and not streamed):
            raise ValueError("fit: expected training data x and y (or a tf.data.Dataset x), "
                             "received None")
        if batch_size is None:
            batch_size = int(hp.get("batch_size")) if "batch_size" in hp.values else 32
        val = validation_data
        if val is not None and not isinstance(val, tf.data.Dataset):
            val = (np.asarray(val[0], dtype="float32"), self.head.prepare_targets(val[1]),
                   *val[2:])
        if not streamed:
            x, y = np.asarray(x, dtype="float32"), self.head.prepare_targets(y)
            passes = passes_per_epoch(len(x), batch_size, self.min_steps_per_epoch)
            if passes > 1 and not kwargs.get("validation_split") \
                    and kwargs.get("steps_per_epoch") is None:
                x, y = np.concatenate([x] * passes), np.concatenate([y] * passes)
                if kwargs.get("sample_weight") is not None:
                    weights = np.asarray(kwargs["sample_weight"]).reshape(-1)
                    kwargs["sample_weight"] = np.concatenate([weights] * passes)
        _skip_idle_tuner_batch_hooks(callbacks or [])
        callbacks = self._with_schedule(hp, model, callbacks, epochs)
        loop = TrainLoop(model, loss=self.head.loss(), metrics=self.head.metrics(),
                         weight_histograms=self.weight_histograms,
                         explosion_factor=self.explosion_factor)
        history = loop.fit(
            x, y, batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch,
            validation_data=val, callbacks=callbacks, shuffle=shuffle, seed=self.seed,
            evaluate_first=True, verbose=verbose,
            explosion_reference=self.explosion_reference, **kwargs,
        )
        if history.divergence is not None and not _has_finite_epoch(history):
            raise DivergedTrialError(history)
        return history


    def _with_schedule(self, hp: Any, model: Any, callbacks: Sequence[Any] | None,
                       epochs: int) -> list[Any]:
        """``callbacks`` behind an :class:`~kerastune_kit.schedules.EpochScheduleCallback` when
        the trial's ``lr_schedule``/``warmup_epochs`` schedule its learning rate (first, so
        every other callback sees the epoch's rate). The horizon is :attr:`schedule_epochs`,
        at least ``epochs``."""
        from kerastune_kit.schedules import EpochScheduleCallback, schedule_for

        horizon = max(int(self.schedule_epochs or 0), int(epochs))
        schedule = schedule_for(hp.values, total_epochs=horizon,
                                base_learning_rate=float(np.asarray(
                                    model.optimizer.learning_rate)))
        if schedule is None:
            return list(callbacks or [])
        return [EpochScheduleCallback(schedule), *(callbacks or [])]


#: ``model.fit`` keywords :meth:`KitHyperModel.fit` passes on to :meth:`TrainLoop.fit` (Keras 3's
#: full list besides x, y, batch_size, epochs, verbose, callbacks, validation_data, shuffle and
#: initial_epoch).
FIT_KEYWORDS = ("validation_split", "class_weight", "sample_weight", "steps_per_epoch",
                "validation_steps", "validation_batch_size", "validation_freq")


class UnsupportedFitArgument(kt.errors.FatalError, TypeError):
    """A ``fit`` keyword that ``model.fit`` does not take, or a value it refuses (the same for
    every trial); stops a KerasTuner search at once with one line."""


class DivergedTrialError(kt.errors.FailedTrialError):
    """The loss became non-finite before any epoch finished; carries the loop's history."""

    def __init__(self, history: Any) -> None:
        super().__init__(history.divergence.reason())
        self.history = history


def passes_per_epoch(samples: int, batch_size: int, min_steps: int) -> int:
    """Passes over ``samples`` examples that make an epoch of at least ``min_steps``
    batches of ``batch_size`` (1 when one pass already has that many, or ``min_steps`` is 0).

    Example:
        >>> passes_per_epoch(353, 64, 100), passes_per_epoch(3840, 64, 50)
        (19, 1)
    """
    if min_steps <= 0 or samples <= 0:
        return 1
    return max(1, math.ceil(min_steps * max(1, int(batch_size)) / samples))


def _skip_idle_tuner_batch_hooks(callbacks: Sequence[Any]) -> None:
    """Let the loop run whole epochs under KerasTuner's ``TunerCallback``.

    ``TunerCallback`` forwards every batch to ``tuner.on_batch_begin``/``on_batch_end``; when
    the tuner keeps KerasTuner's no-op versions, those hooks do nothing, and marking the
    callback spares the loop from running one step per compiled call.
    """
    for callback in callbacks:
        tuner = getattr(callback, "tuner", None)
        if (isinstance(tuner, kt.Tuner)
                and type(tuner).on_batch_begin is kt.Tuner.on_batch_begin
                and type(tuner).on_batch_end is kt.Tuner.on_batch_end):
            callback._kerastune_kit_no_batch_hooks = True


def _has_finite_epoch(history: Any) -> bool:
    losses = history.history.get("loss", [])
    return any(np.isfinite(v) for v in losses)


class MLPHyperModel(KitHyperModel):
    """A multilayer perceptron over vectors (image-shaped input is flattened).

    Knobs: ``num_layers``, ``units_{i}``, ``dropout_{i}``, ``normalization``, ``residual``,
    ``activation``, ``kernel_initializer``, ``l2``, ``learning_rate``, ``optimizer``,
    ``clipnorm``, ``batch_size``; opt-in: ``width_profile`` with ``base_units`` (in place of
    ``units_{i}``) and the shared recipe knobs. See :data:`kerastune_kit.space.KNOBS`.

    Example:
        >>> hm = MLPHyperModel(input_shape=(4,), task="multiclass", n_classes=3)
        >>> model = hm.build(kt.HyperParameters())
    """

    family = "mlp"

    def cost(self, values: dict[str, Any]) -> float:
        width = float(np.prod(self.input_shape))
        total = 0.0
        layers = int(values.get("num_layers", 2))
        profile = (profile_widths(values["width_profile"], int(values.get("base_units", 128)),
                                  layers) if values.get("width_profile") else None)
        for i in range(layers):
            units = float(profile[i] if profile else values.get(f"units_{i}", 128))
            total += width * units
            width = units
        return total + width * self.head.units

    def _build_network(self, params: ModelParams) -> Any:
        inputs = keras.Input(shape=self.input_shape, name="features")
        h = inputs
        if len(self.input_shape) > 1:
            h = keras.layers.Flatten(name="flatten")(h)
        initializer = resolve_initializer(params.kernel_initializer, params.activation)
        for i in range(params.num_layers):
            h = dense_block(
                h, params.units[i], activation=params.activation,
                normalization_kind=params.normalization, dropout=params.dropout[i],
                kernel_initializer=initializer, l2=params.l2,
                residual=params.residual, index=i,
            )
        return keras.Model(inputs, self._output(h), name="mlp")


class CNNHyperModel(KitHyperModel):
    """A convolutional network over images: VGG-style conv blocks with 2x2 pooling, then a
    flatten (or global-average) head with dense layers, then the task's output layer.

    Input of shape ``(H, W, C)``, ``(H, W)`` (a channel axis is added), or flattened pixels with
    a known ``image_shape`` (reshaped in the model). Knobs: ``num_blocks``, ``filters_{i}``,
    ``dropout_{i}``, ``convs_per_block``, ``kernel_size``, ``pooling``, ``normalization``
    (none, batch, layer, group, instance), ``residual``, ``head`` (flatten, global_avg),
    ``dense_layers``, ``dense_units``, ``head_dropout`` plus the shared optimizer knobs; opt-in:
    image augmentation (``translation``, ``rotation``, ``zoom``, ``horizontal_flip``; one
    ``augmentation`` block after the input, training only, left out by :meth:`inference_model`)
    and the shared recipe knobs. See :data:`kerastune_kit.space.CNN_KNOBS`.

    The defaults build a LeNet-style network (LeCun et al., 1998): conv 32 -> pool -> conv 64
    -> pool -> flatten -> dense 128 -> dropout 0.3; ``convs_per_block`` 2-3 with batch
    normalization gives a small VGG (Simonyan & Zisserman, 2015). Pooling halves the feature
    map after each block while both sides are at least 2, so small images (digits are 8x8)
    never pool away to nothing.

    Example:
        >>> hm = CNNHyperModel(input_shape=(28, 28, 1), task="multiclass", n_classes=10)
        >>> model = hm.build(kt.HyperParameters())
    """

    family = "cnn"

    def cost(self, values: dict[str, Any]) -> float:
        height, width, channels = (float(d) for d in self.image_shape)
        kernel = float(values.get("kernel_size", 3)) ** 2
        total = 0.0
        for i in range(int(values.get("num_blocks", 2))):
            filters = float(values.get(f"filters_{i}", 32 * 2 ** i))
            for _ in range(int(values.get("convs_per_block", 1))):
                total += height * width * kernel * channels * filters
                channels = filters
            if min(height, width) >= 2:
                height, width = height // 2, width // 2
        features = channels if values.get("head", "flatten") == "global_avg" \
            else height * width * channels
        for _ in range(int(values.get("dense_layers", 1))):
            units = float(values.get("dense_units", 128))
            total += features * units
            features = units
        return total + features * self.head.units

    def __init__(self, space: SearchSpace | None = None, *, input_shape: Sequence[int],
                 task: str, n_classes: int | None = None, seed: int = 0,
                 image_shape: Sequence[int] | None = None, name: str | None = None) -> None:
        super().__init__(space, input_shape=input_shape, task=task, n_classes=n_classes,
                         seed=seed, name=name)
        shape = tuple(int(d) for d in (image_shape or ()))
        if not shape:
            if len(self.input_shape) == 3:
                shape = self.input_shape
            elif len(self.input_shape) == 2:
                shape = (*self.input_shape, 1)
        if len(shape) != 3 or int(np.prod(shape)) != int(np.prod(self.input_shape)):
            raise ConfigError(
                f"model: the CNN needs image-shaped input (H, W) or (H, W, C), received input "
                f"shape {self.input_shape}; use --model mlp for feature vectors"
            )
        self.image_shape = shape

    @classmethod
    def for_dataset(cls, dataset: Any, space: SearchSpace | None = None, *, seed: int = 0
                    ) -> CNNHyperModel:
        """A CNN sized for a :class:`~kerastune_kit.data.Dataset` with image-shaped samples."""
        shape = dataset.image_input_shape
        if shape is None:
            raise ConfigError(
                f"model: cnn needs image-shaped data, but '{dataset.name}' has "
                f"{int(np.prod(dataset.input_shape))} features per sample; use --model mlp"
            )
        hypermodel = cls(space, input_shape=dataset.input_shape, task=dataset.task,
                         n_classes=dataset.n_classes, seed=seed, image_shape=shape)
        hypermodel._adopt(dataset)
        return hypermodel

    def _build_network(self, params: ModelParams) -> Any:
        inputs = keras.Input(shape=self.input_shape, name="image")
        h = inputs
        if self.input_shape != self.image_shape:
            h = keras.layers.Reshape(self.image_shape, name="to_image")(h)
        augmentation = augmentation_block(
            translation=params.translation, rotation=params.rotation, zoom=params.zoom,
            horizontal_flip=params.horizontal_flip, seed=self.seed)
        if augmentation is not None:  # training only; inference_model leaves it out
            h = augmentation(h)
        initializer = resolve_initializer(params.kernel_initializer, params.activation)
        height, width = self.image_shape[:2]
        pool_layer = (keras.layers.MaxPooling2D if params.pooling == "max"
                      else keras.layers.AveragePooling2D)
        for i in range(params.num_layers):
            h = conv_block(
                h, params.units[i], kernel_size=int(params.kernel_size or 3),
                activation=params.activation, normalization_kind=params.normalization,
                dropout=params.dropout[i], kernel_initializer=initializer, l2=params.l2,
                residual=params.residual, index=i, convs=int(params.convs_per_block or 1),
            )
            if min(height, width) >= 2:
                h = pool_layer(2, name=f"pool_{i}")(h)
                height, width = height // 2, width // 2
        if (params.head or "flatten") == "flatten":
            h = keras.layers.Flatten(name="flatten")(h)
        else:
            h = keras.layers.GlobalAveragePooling2D(name="global_pool")(h)
        regularizer = keras.regularizers.L2(params.l2) if params.l2 else None
        for j in range(params.dense_layers or 0):
            h = keras.layers.Dense(int(params.dense_units or 128), activation=params.activation,
                                   kernel_initializer=initializer,
                                   kernel_regularizer=regularizer, name=f"head_dense_{j}")(h)
            if params.head_dropout:
                h = keras.layers.Dropout(float(params.head_dropout),
                                         name=f"head_dropout_{j}")(h)
        return keras.Model(inputs, self._output(h), name="cnn")


FACTORIES: dict[str, type[KitHyperModel]] = {"mlp": MLPHyperModel, "cnn": CNNHyperModel}


def factory_for(model: str, dataset: Any) -> type[KitHyperModel]:
    """The factory for ``--model``: ``auto`` picks the CNN for image-shaped samples."""
    if model == "auto":
        return CNNHyperModel if dataset.is_image else MLPHyperModel
    return FACTORIES[model]
