"""How a trial's model trains: our compiled loop when it supports the model and the data, else
``model.fit``, with the same per-epoch records on both paths.

Owns: :func:`loop_unsupported` (why :class:`~kerastune_kit.training.TrainLoop` cannot train a
user's compiled model on given data), :func:`fit_with_loop`, :func:`fit_with_keras` (``model.fit``
plus a divergence record) and :data:`TRAINING_PATHS`. Does not own: trials or tuners
(``tuners``), the loop itself (``training``).

Example:
    >>> why = loop_unsupported(model, x, y)
    >>> history = fit_with_keras(model, x, y, epochs=3) if why else fit_with_loop(model, x, y,
    ...                                                                           epochs=3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kerastune_kit._backend import keras as _keras

keras = _keras()
import tensorflow as tf  # noqa: E402  (after the backend check)

#: ``training=`` values of the public tuners: ``auto`` trains in our loop when it supports the
#: model and the data (else ``model.fit``), ``loop`` insists on it, ``fit`` always uses
#: ``model.fit``.
TRAINING_PATHS = ("auto", "loop", "fit")

#: ``model.fit`` keywords the loop takes besides x, y, batch_size, epochs, verbose, callbacks,
#: validation_data, shuffle and initial_epoch.
_LOOP_KEYWORDS = ("validation_split", "class_weight", "sample_weight", "steps_per_epoch",
                  "validation_steps", "validation_batch_size", "validation_freq")
_TRAINER_METHODS = ("train_step", "test_step", "compute_loss", "compute_metrics")


def _is_array(value: Any) -> bool:
    """A single array-like of samples (NumPy, a tensor, a DataFrame), not a structure."""
    if isinstance(value, (np.ndarray, tf.Tensor)):
        return True
    if isinstance(value, (dict, list, tuple, str, bytes)) or value is None:
        return False
    return hasattr(value, "__array__") and hasattr(value, "shape")


def _plain_pairs(dataset: Any) -> bool:
    spec = dataset.element_spec
    return (isinstance(spec, tuple) and len(spec) in (2, 3)
            and all(isinstance(s, tf.TensorSpec) for s in spec))


def loop_unsupported(model: Any, x: Any, y: Any = None, *,
                     validation_data: Any = None, **kwargs: Any) -> str | None:
    """Why :class:`~kerastune_kit.training.TrainLoop` cannot train ``model`` on this data, in a
    few words (None: it can, with the same results as ``model.fit``).

    The loop trains a compiled model with one loss, a list of metrics, one input tensor and
    one output, on arrays or a ``tf.data.Dataset`` of ``(inputs, targets[, weights])`` pairs,
    with Keras's own ``train_step``. Anything else (an overridden ``train_step`` or
    ``compute_loss``, several inputs or outputs, ``loss_weights``, ``weighted_metrics``, a
    ``PyDataset`` or a generator, ``run_eagerly``) goes to ``model.fit``.
    """
    if not getattr(model, "compiled", False):
        return "the model is not compiled"
    for name in _TRAINER_METHODS:
        if getattr(type(model), name, None) is not getattr(keras.Model, name, None):
            return f"the model overrides {name}"
    if getattr(model, "run_eagerly", False):
        return "the model runs eagerly"
    config = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    loss = config.get("loss")
    if loss is None:
        return "the model has no loss"
    if isinstance(loss, (list, tuple, dict)):
        return "the model has several losses"
    if config.get("loss_weights") is not None:
        return "the model has loss_weights"
    if config.get("weighted_metrics"):
        return "the model has weighted_metrics"
    metrics = config.get("metrics")
    if metrics is not None and (not isinstance(metrics, (list, tuple))
                                or any(isinstance(m, (list, tuple, dict)) for m in metrics)):
        return "the model has metrics per output"
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) > 1 or len(outputs) > 1:
        return "the model has several inputs or outputs"
    unknown = sorted(set(kwargs) - {"batch_size", "epochs", "initial_epoch", "callbacks",
                                    "verbose", "shuffle", *_LOOP_KEYWORDS})
    if unknown:
        return f"model.fit keyword {unknown[0]!r}"
    if isinstance(x, tf.data.Dataset):
        if y is not None or not _plain_pairs(x):
            return "the dataset's elements are not (inputs, targets) tensors"
    elif not (_is_array(x) and _is_array(y)):
        return f"x is a {type(x).__name__}" if not _is_array(x) else f"y is a {type(y).__name__}"
    if validation_data is not None:
        if isinstance(validation_data, tf.data.Dataset):
            if not _plain_pairs(validation_data):
                return "the validation dataset's elements are not (inputs, targets) tensors"
        elif not (isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3)
                  and all(_is_array(v) for v in validation_data[:2])):
            return "validation_data is not (x_val, y_val) arrays"
    return None


def _sample(x: Any, y: Any) -> tuple[Any, Any]:
    """A couple of samples of inputs and targets (for resolving ``"accuracy"`` and the like)."""
    if isinstance(x, tf.data.Dataset):
        batch = next(iter(x.take(1)))
        return batch[0][:2], batch[1][:2]
    return np.asarray(x[:2]), np.asarray(y[:2])


def compiled_loss_and_metrics(model: Any, x: Any, y: Any) -> tuple[Any, list[Any]]:
    """The loss and metric objects ``model.compile`` asked for, resolved as ``model.fit``
    resolves them (``"accuracy"`` becomes binary, sparse categorical or categorical accuracy
    from the targets' and predictions' shapes; Keras's ``compile_utils``)."""
    from keras.src.trainers import compile_utils

    config = model._compile_config.config
    sample_x, sample_y = _sample(x, y)
    y_pred = model(sample_x, training=False)
    y_true = tf.convert_to_tensor(sample_y)
    loss = compile_utils.get_loss(config["loss"], y_true, y_pred)
    metrics = [compile_utils.get_metric(m, y_true, y_pred)
               for m in (config.get("metrics") or [])]
    return loss, metrics


def fit_with_loop(model: Any, x: Any = None, y: Any = None, *, batch_size: int | None = None,
                  epochs: int = 1, initial_epoch: int = 0, validation_data: Any = None,
                  callbacks: Sequence[Any] | None = None, shuffle: bool = True,
                  verbose: Any = "auto", seed: int = 0, explosion_factor: float | None = None,
                  explosion_reference: float | None = None, **kwargs: Any) -> Any:
    """Train a user's compiled ``model`` in :class:`~kerastune_kit.training.TrainLoop`, taking
    ``model.fit``'s arguments (check :func:`loop_unsupported` first), with the explosion rule
    of ``explosion_factor`` (None: off; see :class:`~kerastune_kit.training.TrainLoop`).

    Returns:
        The loop's :class:`~kerastune_kit.training.TrainingHistory` (a ``keras.callbacks.History``
        with ``divergence``, ``initial_logs`` and ``diagnostics``).
    """
    from kerastune_kit.hypermodels import _skip_idle_tuner_batch_hooks
    from kerastune_kit.training import TrainLoop

    loss, metrics = compiled_loss_and_metrics(model, x, y)
    _skip_idle_tuner_batch_hooks(callbacks or [])
    loop = TrainLoop(model, loss=loss, metrics=metrics, explosion_factor=explosion_factor)
    verbose = 0 if verbose == "auto" else int(verbose)
    return loop.fit(x, y, batch_size=int(batch_size or 32), epochs=epochs,
                    initial_epoch=initial_epoch, validation_data=validation_data,
                    callbacks=callbacks, shuffle=shuffle, seed=seed, evaluate_first=True,
                    verbose=verbose, explosion_reference=explosion_reference, **kwargs)


class DivergenceRecorder(keras.callbacks.Callback):
    """Stops ``model.fit`` at the end of an epoch whose loss is not finite, or (with an
    ``explosion_factor``) above that many times the first epoch's loss, and records where
    (``divergence``: a :class:`~kerastune_kit.training.Divergence`), as the loop does inside its
    compiled epoch.

    Per epoch only, on the epoch's mean training loss: the rule cannot run inside
    ``model.fit``'s compiled step (Keras's ``train_step``), and a per-batch check would cost
    ``model.fit`` a host round trip per step. So the epoch that exploded was trained to its end
    (its updates applied), and without a given reference the first epoch is not checked (it
    sets the reference).

    Args:
        explosion_factor: The explosion rule's factor; None or 0: off.
        explosion_reference: The loss to compare with (a promoted Hyperband trial: its
            parent's starting loss); None: the first epoch's mean training loss (``model.fit``
            measures nothing before training).

    Attributes:
        divergence: The record, or None.
        explosion_reference: The reference the rule used (None: off, or not known yet).
    """

    def __init__(self, explosion_factor: float | None = None,
                 explosion_reference: float | None = None) -> None:
        from kerastune_kit.steps import check_explosion_factor
        from kerastune_kit.training import _positive

        super().__init__()
        self.divergence: Any = None
        self.initial_iterations = 0
        self.explosion_factor = check_explosion_factor(explosion_factor)
        self.explosion_reference = (_positive(explosion_reference) if self.explosion_factor
                                    else None)
        self._first = True

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "built", False):
            self.initial_iterations = int(optimizer.iterations.numpy())

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        from kerastune_kit.training import Divergence, _positive

        loss = (logs or {}).get("loss")
        first, self._first = self._first, False
        if loss is None or self.divergence is not None:
            return
        loss = float(loss)
        factor, reference = self.explosion_factor, self.explosion_reference
        exploded = bool(factor and reference is not None and math.isfinite(loss)
                        and loss > factor * reference)
        if math.isfinite(loss) and not exploded:
            if factor and first and reference is None:
                self.explosion_reference = _positive(loss)
            return
        steps = int(self.params.get("steps") or 0) if self.params else 0
        rate = float(np.asarray(self.model.optimizer.learning_rate))
        self.divergence = (Divergence(epoch, max(0, steps - 1), rate, loss=loss,
                                      reference=reference, factor=factor) if exploded
                           else Divergence(epoch, max(0, steps - 1), rate))
        self.model.stop_training = True


def fit_with_keras(model: Any, *args: Any, callbacks: Sequence[Any] | None = None,
                   explosion_factor: float | None = None,
                   explosion_reference: float | None = None, **kwargs: Any) -> Any:
    """``model.fit(*args, **kwargs)`` with a :class:`DivergenceRecorder` (applying the
    explosion rule of ``explosion_factor`` per epoch); the returned ``History`` carries
    ``divergence``, ``explosion_reference``, ``initial_logs`` (None) and
    ``initial_iterations`` as the loop's does."""
    recorder = DivergenceRecorder(explosion_factor, explosion_reference)
    history = model.fit(*args, callbacks=[*(callbacks or []), recorder], **kwargs)
    history.divergence = recorder.divergence
    history.explosion_reference = recorder.explosion_reference
    history.initial_logs = None
    history.initial_iterations = recorder.initial_iterations
    history.diagnostics = {}
    return history
