"""Diagnoses a person can act on: is a trial overfitting or underfitting, and what to try next.

Owns: :func:`diagnose` (one trial's train and validation values of the objective at its best
epoch -> a :class:`Diagnosis` or None), :func:`diagnose_history` (the same from a Keras
``History.history`` dict), :func:`validation_size` (how many validation samples a ``fit`` call
has, for the standard error of an accuracy) and :func:`is_diagnosis` (recognizes the text again,
in a TensorBoard panel). Pure: imports no TensorFlow. Does not own: where the values come from
(``tuners`` builds each trial's record) or how the text is shown (``tensorboard``, ``cli``).

The rules follow the bias/variance reading of a learning curve (Ng, *Machine Learning
Yearning*, 2018, ch. 20-27): a large gap between the training and the validation value is
variance (overfitting: regularize, or shrink the model); a training value that is itself poor
is bias (underfitting: a bigger model, longer or faster training). The training value is the
objective's train counterpart (``accuracy`` for ``val_accuracy``, ``loss`` for ``val_loss``)
at the trial's best epoch, as Keras logs it: the running mean over the epoch, with dropout
active and the L2 penalty in the loss. That understates how well the network fits its training
set, so an overfitting call errs on the quiet side.

Thresholds and why:

- **Accuracy-like objectives** (maximized, values in ``[0, 1]``: accuracy, AUC):

  - *overfitting* when ``train - validation`` exceeds :data:`ACCURACY_GAP` (0.05, five points
    of accuracy: smaller gaps are normal with dropout and early stopping) **and** exceeds
    :data:`STANDARD_ERRORS` (2) standard errors of the validation estimate,
    ``sqrt(p (1 - p) / n)`` for ``n`` validation samples (the binomial approximation; on 30
    iris samples at 0.9 that is 0.11, so a 0.07 gap there is noise). Without ``n``, the 0.05
    rule alone.
  - *underfitting* when both values are below ``max(`` :data:`ACCURACY_FLOOR` ``,
    best - ``:data:`ACCURACY_MARGIN` ``)``: a network that fits less than half of its
    training set underfits whatever the task, and one whose *training* accuracy is 15 points
    below the best *validation* accuracy the search has reached fits less than another
    configuration generalizes. On the default digits search the baselines reach 0.97 in their
    first trials; a screening trial at 0.85 after one Hyperband epoch is not flagged, one
    stuck at 0.3 by a learning rate of 1e-5 is.

- **Loss-like objectives** (minimized, positive: the loss, MSE, MAE): ratios, since a loss has
  no fixed scale.

  - *overfitting* when ``validation > ratio * train``, with :data:`LOSS_RATIO` (1.5) for
    squared errors and cross-entropy and :data:`ERROR_RATIO` (1.25, about its square root)
    for errors in the target's units (MAE, RMSE); for a cross-entropy also at least
    :data:`NATS_GAP` (0.05 nats) apart, so that two tiny losses (0.01 and 0.02) of a network
    that classifies everything right are not called overfitting.
  - *underfitting* when both values exceed ``UNDERFIT_RATIO`` (2) times (1.5 for errors in
    the target's units) the best validation value of the search, and, for a cross-entropy,
    by at least :data:`NATS_MARGIN` (0.25 nats).

A trial's own score counts as the search's best when it is the best so far, so the first
trials are compared with those before them only; a diverged trial gets no diagnosis.

Example:
    >>> diagnose(0.99, 0.91, "val_accuracy", validation_size=360)
    Diagnosis(kind='overfitting', ...)
    >>> str(_)
    'overfitting: train accuracy 0.99 vs validation 0.91; more dropout or L2, or less capacity'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

#: Overfitting, accuracy-like: the smallest train - validation gap called out.
ACCURACY_GAP = 0.05
#: Overfitting, accuracy-like: the gap must also exceed this many standard errors.
STANDARD_ERRORS = 2.0
#: Underfitting, accuracy-like: training and validation values both below this...
ACCURACY_FLOOR = 0.5
#: ... or both this far below the search's best validation value.
ACCURACY_MARGIN = 0.15
#: Overfitting, squared errors and cross-entropy: validation above this multiple of train.
LOSS_RATIO = 1.5
#: Overfitting, errors in the target's units (MAE, RMSE): validation above this multiple.
ERROR_RATIO = 1.25
#: Overfitting, cross-entropy: also at least this many nats apart.
NATS_GAP = 0.05
#: Underfitting, squared errors and cross-entropy: both above this multiple of the best.
UNDERFIT_RATIO = 2.0
#: Underfitting, errors in the target's units.
UNDERFIT_ERROR_RATIO = 1.5
#: Underfitting, cross-entropy: both at least this many nats above the best.
NATS_MARGIN = 0.25

OVERFITTING_ADVICE = "more dropout or L2, or less capacity"
UNDERFITTING_ADVICE = "more capacity, more epochs or a higher learning rate"
KINDS = ("overfitting", "underfitting")

_LINEAR_ERRORS = ("mae", "mean_absolute", "rmse", "root_mean_squared", "mape", "msle_root")


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """One trial's diagnosis.

    Attributes:
        kind: ``overfitting`` or ``underfitting``.
        metric: The metric compared (``accuracy``, ``loss``, ``mae``): the objective without
            its ``val_`` prefix.
        train: Its training value at the best epoch.
        validation: Its validation value at the best epoch.
        best: The search's best validation value it was compared with (underfitting only).
        advice: What to try next.
        proportion: Whether the metric is a proportion (accuracy, AUC: shown with two
            decimals).
    """

    kind: Literal["overfitting", "underfitting"]
    metric: str
    train: float
    validation: float
    best: float | None = None
    advice: str = ""
    proportion: bool = False

    @property
    def text(self) -> str:
        """The one line shown to a person (``overfitting: train accuracy 0.99 vs validation
        0.91; more dropout or L2, or less capacity``)."""
        def num(value: float) -> str:
            if self.proportion:
                return f"{value:.2f}"
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"

        if self.kind == "overfitting":
            return (f"overfitting: train {self.metric} {num(self.train)} vs validation "
                    f"{num(self.validation)}; {self.advice}")
        best = "" if self.best is None else f" (the search's best: {num(self.best)})"
        return (f"underfitting: train {self.metric} {num(self.train)}, validation "
                f"{num(self.validation)}{best}; {self.advice}")

    def __str__(self) -> str:
        return self.text


def is_diagnosis(text: str | None) -> bool:
    """Whether a line of text is a diagnosis (starts with ``overfitting:`` or
    ``underfitting:``)."""
    return bool(text) and text.strip().startswith(tuple(f"{kind}:" for kind in KINDS))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def diagnose(train: float | None, validation: float | None, objective: str, *,
             direction: str | None = None, task: str | None = None,
             validation_size: int | None = None,
             best_score: float | None = None) -> Diagnosis | None:
    """Diagnose one trial from its train and validation values at its best epoch.

    Args:
        train: The training value of the objective's metric (``accuracy`` for
            ``val_accuracy``) at the best epoch.
        validation: The validation value (the objective) at the same epoch.
        objective: The objective's name (``val_accuracy``, ``val_loss``, ``val_mae``).
        direction: ``max`` or ``min``; default from the name
            (:func:`~kerastune_kit.results.direction_of`).
        task: ``binary``, ``multiclass`` or ``regression``: a classifier's ``loss`` is a
            cross-entropy (absolute margins in nats apply). None: regression-like ratios only.
        validation_size: Validation samples, for the standard error of an accuracy.
        best_score: The search's best validation value so far (this trial's included), for
            the underfitting rule relative to the search; None: the fixed floor alone.

    Returns:
        A :class:`Diagnosis`, or None when the trial looks healthy, a value is missing or not
        finite, or the objective is neither accuracy-like (in ``[0, 1]``) nor a positive loss.
    """
    from kerastune_kit.results import direction_of

    if not (_finite(train) and _finite(validation)):
        return None
    train, validation = float(train), float(validation)  # type: ignore[arg-type]
    metric = objective.removeprefix("val_")
    direction = direction or direction_of(objective)
    best = float(best_score) if _finite(best_score) else None
    if direction == "max":
        if not (0.0 <= train <= 1.0 and 0.0 <= validation <= 1.0):
            return None
        gap = train - validation
        noise = 0.0
        if validation_size:
            noise = STANDARD_ERRORS * math.sqrt(
                max(validation * (1.0 - validation), 0.0) / validation_size)
        if gap > ACCURACY_GAP and gap > noise:
            return Diagnosis("overfitting", metric, train, validation,
                             advice=OVERFITTING_ADVICE, proportion=True)
        line = ACCURACY_FLOOR if best is None else max(ACCURACY_FLOOR, best - ACCURACY_MARGIN)
        if train < line and validation < line:
            return Diagnosis("underfitting", metric, train, validation, best=best,
                             advice=UNDERFITTING_ADVICE, proportion=True)
        return None
    if train <= 0.0 or validation <= 0.0:
        return None
    linear = any(part in metric for part in _LINEAR_ERRORS)
    nats = task in ("binary", "multiclass") and (metric == "loss" or "crossentropy" in metric)
    ratio = ERROR_RATIO if linear else LOSS_RATIO
    if validation > ratio * train and (not nats or validation - train >= NATS_GAP):
        return Diagnosis("overfitting", metric, train, validation, advice=OVERFITTING_ADVICE)
    if best is not None and best > 0.0:
        factor = UNDERFIT_ERROR_RATIO if linear else UNDERFIT_RATIO
        margin = NATS_MARGIN if nats else 0.0
        if min(train, validation) > factor * best and min(train, validation) >= best + margin:
            return Diagnosis("underfitting", metric, train, validation, best=best,
                             advice=UNDERFITTING_ADVICE)
    return None


def diagnose_history(history: Mapping[str, Sequence[Any]], best_index: int, objective: str,
                     **kwargs: Any) -> Diagnosis | None:
    """:func:`diagnose` from a Keras ``History.history`` dict.

    Args:
        history: ``{"loss": [...], "accuracy": [...], "val_loss": [...], ...}``, one value
            per epoch trained in this call (a promoted Hyperband trial's start at index 0).
        best_index: The best epoch's index into those lists.
        objective: The objective; its validation key (``val_`` + metric) and train key
            (the metric) are read at ``best_index``.
        **kwargs: Passed to :func:`diagnose`.

    Returns:
        The diagnosis, or None (see :func:`diagnose`; also when a key is missing).
    """
    metric = objective.removeprefix("val_")
    train_series = history.get(metric)
    val_series = history.get(f"val_{metric}")
    if not train_series or not val_series or best_index < 0 \
            or best_index >= min(len(train_series), len(val_series)):
        return None
    return diagnose(_plain(train_series[best_index]), _plain(val_series[best_index]),
                    f"val_{metric}", **kwargs)


def _plain(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def validation_size(fit_kwargs: Mapping[str, Any], fit_args: Sequence[Any] = ()) -> int | None:
    """How many validation samples a ``fit`` call has: the length of ``validation_data``'s
    targets (or inputs), or ``validation_split`` of ``x``; None when unknown (a
    ``tf.data.Dataset``, a generator).

    Args:
        fit_kwargs: The keyword arguments of ``fit`` (``validation_data``,
            ``validation_split``, ``x``).
        fit_args: Its positional arguments (``x`` first).
    """
    data = fit_kwargs.get("validation_data")
    if isinstance(data, (tuple, list)) and data:
        part = data[1] if len(data) > 1 and data[1] is not None else data[0]
        return _length(part)
    split = fit_kwargs.get("validation_split")
    if data is None and isinstance(split, (int, float)) and 0 < split < 1:
        x = fit_kwargs.get("x", fit_args[0] if fit_args else None)
        total = _length(x)
        if total:
            return int(total * split) or None
    return None


def _length(value: Any) -> int | None:
    if isinstance(value, Mapping):
        value = next(iter(value.values()), None)
    elif isinstance(value, (tuple, list)) and value and hasattr(value[0], "shape"):
        value = value[0]
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) and isinstance(shape[0], int):
        return int(shape[0]) or None
    try:
        return len(value) or None  # type: ignore[arg-type]
    except TypeError:
        return None
