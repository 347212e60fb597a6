"""Hyperparameter importance: which knobs explained the scores of the finished trials.

Owns: :func:`hyperparameter_importance` (a scikit-learn random forest fitted on the trials'
encoded hyperparameters, its impurity importances normalized to sum to one, as Optuna's
``MeanDecreaseImpurityImportanceEvaluator`` does), :class:`Importance`, and its chart
(:func:`importance_figure`, :func:`importance_image`, with matplotlib imported on first use).
Does not own: reading runs (``results``) or writing TensorBoard summaries (``tensorboard``).
Imports no TensorFlow.

A Hyperband configuration trained several times (a trial and its promotions) counts once, with
the score of its longest training, so a good configuration is not counted three times.

Example:
    >>> from kerastune_kit import load_results
    >>> importance = load_results("runs/digits-hyperband").importance()
    >>> importance.values
    {'learning_rate': 0.41, 'units_0': 0.22, ...}
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from kerastune_kit.trial_status import TrialStatus

#: The fewest distinct completed configurations an importance estimate is made from.
MIN_TRIALS = 5
METHOD = "random-forest impurity importance"


@dataclasses.dataclass
class Importance:
    """Importance of each hyperparameter, largest first, summing to one.

    Attributes:
        values: ``{name: importance}``, largest first; empty when there were too few trials.
        n_trials: How many distinct completed configurations the estimate used.
        method: How it was estimated.
        message: Why there is no estimate (for example ``need at least 5 completed trials``).
    """

    values: dict[str, float]
    n_trials: int
    method: str = METHOD
    message: str | None = None

    def __bool__(self) -> bool:
        return bool(self.values)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    def markdown(self) -> str:
        """A markdown table (or the reason there is none), for TensorBoard's text panel."""
        if not self.values:
            return f"_{self.message}_"
        lines = [f"hyperparameter importance ({self.method}, {self.n_trials} configurations)",
                 "", "| hyperparameter | importance |", "|---|---|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in self.values.items()]
        return "\n".join(lines)

    def bars(self, width: int = 30) -> list[str]:
        """Text lines with one bar per hyperparameter, for a terminal."""
        if not self.values:
            return [str(self.message)]
        pad = max(len(name) for name in self.values)
        top = max(self.values.values()) or 1.0
        return [f"{name:<{pad}}  {value:5.3f}  {'#' * round(width * value / top)}".rstrip()
                for name, value in self.values.items()]


def hyperparameter_importance(
    records: Iterable[Any], hp_names: Sequence[str] | None = None, *, direction: str = "max",
    min_trials: int = MIN_TRIALS, seed: int = 0,
) -> Importance:
    """Estimate each hyperparameter's importance from finished trials.

    Args:
        records: :class:`~kerastune_kit.results.TrialRecord` objects; only completed trials
            with a finite score are used.
        hp_names: Hyperparameters to consider (default: every one the trials carry).
        direction: ``max`` or ``min``: of a configuration's trials with the same (longest)
            training, the best counts. Importances themselves do not depend on the sign.
        min_trials: The fewest distinct configurations to estimate from.
        seed: The random forest's seed.

    Returns:
        An :class:`Importance`; empty, with a ``message``, when there are too few trials or no
        hyperparameter varied.

    Example:
        >>> imp = hyperparameter_importance(results.trials, direction="max")
        >>> imp.bars()
        ['learning_rate  0.412  ##############################', ...]
    """
    finished = _distinct_configurations(records, direction)
    names = list(hp_names) if hp_names is not None else sorted(
        {name for r in finished for name in r.hyperparameters})
    if len(finished) < min_trials:
        return Importance({}, len(finished), message=(
            f"importance: need at least {min_trials} completed trials with distinct "
            f"hyperparameters, have {len(finished)}; run more trials"))
    columns, used = [], []
    for name in names:
        column = _encode([r.hyperparameters.get(name) for r in finished])
        if column is not None:
            columns.append(column)
            used.append(name)
    if not used:
        return Importance({}, len(finished), message=(
            "importance: no hyperparameter varied across the completed trials"))
    from sklearn.ensemble import RandomForestRegressor

    x = np.stack(columns, axis=1)
    y = np.array([r.score for r in finished], dtype="float64")
    if np.ptp(y) == 0:
        return Importance({}, len(finished), message=(
            "importance: every completed trial has the same score"))
    forest = RandomForestRegressor(n_estimators=64, max_depth=8, min_samples_leaf=1,
                                   random_state=seed, n_jobs=1)
    forest.fit(x, y)
    raw = np.nan_to_num(forest.feature_importances_)
    total = float(raw.sum()) or 1.0
    ranked = sorted(zip(used, raw / total, strict=True), key=lambda item: (-item[1], item[0]))
    return Importance({name: round(float(value), 4) for name, value in ranked}, len(finished))


# ---------------------------------------------------------------------- knob order
#: The order knobs are shown in before importance is known: the recipe's priority (Bengio 2012,
#: "Practical recommendations for gradient-based training of deep architectures", and Smith
#: 2018, "A disciplined approach to neural network hyper-parameters": the learning rate first,
#: then the optimizer, depth, width, regularization, batch size). Per-layer knobs (``units_0``,
#: ``units_1``) follow their base name, layer 0 first; a ``use_<knob>`` switch comes right
#: before its knob; names not listed follow in alphabetical order.
RECIPE_PRIORITY = (
    "learning_rate", "optimizer", "num_layers", "num_blocks", "units", "base_units", "filters",
    "width_profile", "dropout", "batch_size", "normalization", "weight_decay", "l2",
    "lr_schedule", "warmup_epochs", "one_minus_momentum", "clipnorm", "activation",
    "dense_layers", "dense_units", "head_dropout", "convs_per_block", "kernel_size", "pooling",
    "head", "residual", "kernel_initializer",
)
_LAYER = re.compile(r"^(?P<base>.+)_(?P<index>\d+)$")


def _priority_key(name: str) -> tuple[int, int, int, str]:
    base, switch = (name[4:], 0) if name.startswith("use_") else (name, 1)
    index = 0
    found = _LAYER.match(base)
    if found and found.group("base") in RECIPE_PRIORITY:
        base, index = found.group("base"), int(found.group("index"))
    rank = RECIPE_PRIORITY.index(base) if base in RECIPE_PRIORITY else len(RECIPE_PRIORITY)
    return (rank, index, switch, name)


def knob_order(names: Iterable[str], importance: Importance | dict[str, float] | None = None
               ) -> list[str]:
    """``names`` in the order a person should see them: by importance, largest first, once it
    is known; before that (and for knobs the estimate left out) by :data:`RECIPE_PRIORITY`.

    Example:
        >>> knob_order(["units_1", "batch_size", "units_0", "learning_rate", "activation"])
        ['learning_rate', 'units_0', 'units_1', 'batch_size', 'activation']
    """
    values = importance.values if isinstance(importance, Importance) else (importance or {})
    return sorted(names, key=lambda name: (-values.get(name, -1.0), _priority_key(name)))


def leading_knobs(names: Sequence[str], count: int, *,
                  importance: Importance | dict[str, float] | None = None,
                  records: Iterable[Any] | None = None) -> list[str]:
    """The first ``count`` knobs of :func:`knob_order` that every trial carries, for views that
    drop a trial lacking a shown value (TensorBoard's parallel coordinates do): knobs absent
    from some of ``records`` (an inactive layer's ``units_2``, ``l2`` behind ``use_l2``) come
    only when too few others are left. Without records, a knob is taken as conditional when it
    belongs to a layer above the first (``units_1``) or has a ``use_<knob>`` switch.
    """
    order = knob_order(names, importance)
    seen = [r.hyperparameters for r in records or () if getattr(r, "hyperparameters", None)]
    if seen:
        always = {name for name in order if all(name in values for values in seen)}
    else:
        switched = {name[4:] for name in order if name.startswith("use_")}
        always = {name for name in order if name not in switched
                  and not ((found := _LAYER.match(name)) and int(found.group("index")) > 0)}
    return ([name for name in order if name in always]
            + [name for name in order if name not in always])[:count]


def _distinct_configurations(records: Iterable[Any], direction: str) -> list[Any]:
    sign = 1.0 if direction == "max" else -1.0
    best: dict[str, Any] = {}
    for record in records:
        if record.status != TrialStatus.COMPLETED or not _finite(record.score):
            continue
        key = json.dumps(record.hyperparameters, sort_keys=True, default=str)
        held = best.get(key)
        rank = (record.epochs or 0, sign * record.score)
        if held is None or rank > (held.epochs or 0, sign * held.score):
            best[key] = record
    return sorted(best.values(), key=lambda r: r.trial_id)


def _encode(values: list[Any]) -> np.ndarray | None:
    """One numeric column: numbers as they are (log10 for positive ranges spanning decades),
    booleans 0/1, strings as ordinal codes, absent values (an inactive knob) as -1."""
    present = [v for v in values if v is not None]
    if len({json.dumps(v, default=str) for v in values}) < 2:
        return None
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and present:
        numbers = np.array([float(v) for v in present])
        use_log = bool(numbers.min() > 0 and numbers.max() / numbers.min() >= 100)
        low = float(np.log10(numbers.min()) if use_log else numbers.min())
        encoded = [(math.log10(v) if use_log else float(v)) if v is not None else low - 1.0
                   for v in values]
        return np.array(encoded, dtype="float64")
    codes = {text: i for i, text in enumerate(sorted({str(v) for v in present}))}
    return np.array([codes[str(v)] if v is not None else -1 for v in values], dtype="float64")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------------- chart
def importance_figure(importance: Importance, *, title: str | None = None) -> Any:
    """A matplotlib ``Figure`` with one horizontal bar per hyperparameter.

    Uses ``matplotlib.figure.Figure`` (no pyplot, no global state), so it is safe in a search
    running in a thread and needs no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(importance.values)[::-1]
    height = 1.2 + 0.32 * max(1, len(names))
    figure = Figure(figsize=(6.4, height), dpi=100, layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if names:
        axes.barh(names, [importance.values[n] for n in names], color="#ff7043")
        axes.set_xlabel("importance (sums to 1)")
    else:
        axes.text(0.5, 0.5, importance.message or "no estimate", ha="center", va="center",
                  wrap=True)
        axes.set_axis_off()
    axes.set_title(title or f"hyperparameter importance\n({importance.n_trials} configurations)",
                   fontsize="medium")
    return figure


#: Points of the lettering of charts written to TensorBoard (``search/importance_chart``,
#: ``search/contour``): its IMAGES cards shrink a 720-pixel chart to about 350 pixels, which
#: leaves matplotlib's 10 points at 7 pixels; 15 points stay near 10.
IMAGE_FONT_SIZE = 15


def importance_image(importance: Importance) -> np.ndarray:
    """The chart as an RGB ``uint8`` array of shape ``(height, width, 3)``, lettered at
    :data:`IMAGE_FONT_SIZE` (for ``tf.summary.image``)."""
    import matplotlib

    with matplotlib.rc_context({"font.size": IMAGE_FONT_SIZE}):
        figure = importance_figure(importance)
        figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])
