"""Plots of a finished (or running) search for a notebook: each takes the run's
:class:`~kerastune_kit.results.RunResults` (``load_results(run)``) and returns a matplotlib
``Figure``.

Owns: :func:`plot_best_so_far` (the optimisation history against trials or time),
:func:`plot_parallel_coordinates`, :func:`plot_learning_curves` (the top trials' objective per
epoch), :func:`plot_contour` and :func:`plot_importance` (the charts of
:mod:`~kerastune_kit.contour` and :mod:`~kerastune_kit.importance`, which the search also writes
to TensorBoard). Imports no TensorFlow; matplotlib on first use. Does not own: reading runs
(:func:`kerastune_kit.runs.load_results`), the contour's algorithm, importance.

The figures use ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global state):
in Jupyter a figure that is a cell's last expression is drawn once, as a PNG (these functions
set that up, as ``%matplotlib inline`` does, when nothing has yet); elsewhere
``figure.savefig("plot.png")``. Colours follow two rules: a value (the score) is a
colour map with a colour bar, brighter is better in both directions; distinct trials are
distinct colours of ``tab10``. Legends sit outside the axes, so they never cover data.

Example:
    >>> from kerastune_kit import load_results
    >>> from kerastune_kit import plots
    >>> results = load_results("runs/digits-hyperband")
    >>> plots.plot_best_so_far(results, x="time").savefig("history.png")
    >>> plots.plot_parallel_coordinates(results, top_k_hparams=5)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from kerastune_kit.errors import ConfigError
from kerastune_kit.results import TrialRecord, is_ranked

#: Most trials :func:`plot_learning_curves` tells apart by colour (``tab20``'s 20 colours).
MAX_TOP = 20
#: Where an inactive knob's value sits on a parallel-coordinates axis (below the axis's 0..1).
INACTIVE = -0.12
_FAINT = "#9e9e9e"


# ---------------------------------------------------------------------- shared pieces
def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _display_in_ipython()
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _display_in_ipython() -> None:
    """In an IPython kernel with no display of matplotlib figures set up yet (pyplot imported
    but not used, no ``%matplotlib inline``), show a ``Figure`` that ends a cell as a PNG, as
    ``%matplotlib inline`` does (``IPython.core.pylabtools.print_figure``)."""
    import sys

    if "IPython" not in sys.modules:
        return
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
        from matplotlib.figure import Figure
    except ImportError:
        return
    shell = get_ipython()
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return
    for formatter in formatters.values():
        try:
            formatter.lookup_by_type(Figure)
            return  # set up already (inline backend, ipympl, svg...)
        except KeyError:
            continue
    formatters["image/png"].for_type(
        Figure, lambda figure: print_figure(figure, "png", base64=True))


def _objective(results: Any) -> str:
    return results.objective or "score"


def trial_order(trial_id: str) -> tuple[int, int, int, str]:
    """Sort key putting trials in the order they were created: a refine stage's
    ``stage-<k>/<id>`` after stage 1's trials, numeric ids by value (``9`` before ``10``)."""
    from kerastune_kit.rundir import split_stage_trial_id

    stage, local = split_stage_trial_id(trial_id)
    number = int(local) if local.isdigit() else -1
    return (stage or 1, 0 if local.isdigit() else 1, number, local)


def _score_colours(results: Any, scores: Sequence[float]) -> tuple[Any, Any]:
    """A colour map and norm over ``scores``: brighter is better (``viridis`` when maximising,
    reversed when minimising)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    low, high = float(min(scores)), float(max(scores))
    if low == high:
        low, high = low - 0.5 * (abs(low) or 1.0) * 1e-3, high + 0.5 * (abs(high) or 1.0) * 1e-3
    cmap = colormaps["viridis" if results.direction == "max" else "viridis_r"]
    return cmap, Normalize(low, high)


def _legend_outside(axes: Any, **kwargs: Any) -> Any:
    """A legend to the right of the axes (never over the data)."""
    return axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                       fontsize=8, **kwargs)


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# ---------------------------------------------------------------------- best so far
def best_so_far(results: Any, x: Literal["trial", "time"] = "trial"
                ) -> tuple[list[TrialRecord], np.ndarray, np.ndarray]:
    """The optimisation history behind :func:`plot_best_so_far`.

    Args:
        results: A run's :class:`~kerastune_kit.results.RunResults`.
        x: ``trial``: each trial's id as a number when every id is one (a plain run:
            trial ``0014`` at 14), else its 0-based position in creation order (a run with
            refine stages: ``stage-2/0000`` after stage 1's trials); ``time``: the
            cumulative training time in seconds when each trial ended, the sum of
            ``wall_time_s`` of it and every trial before it (trials run one after another; the
            search's start-up and the gaps between trials are not counted; with parallel
            workers it is the workers' time added up). A trial without ``wall_time_s`` (read
            from event files of another tool) adds nothing.

    Returns:
        ``(trials, xs, best)``: every trial in creation order, its x, and the best score of
        the ranked trials up to and including it (NaN before the first ranked trial).

    Raises:
        ConfigError: ``x`` is neither ``trial`` nor ``time``.
    """
    if x not in ("trial", "time"):
        raise ConfigError(f"x: expected 'trial' or 'time', received {x!r}; pass "
                          "x='trial' or x='time'")
    trials = sorted(results.trials, key=lambda r: trial_order(r.trial_id))
    if x == "trial":
        plain = all(r.trial_id.isdigit() for r in trials)
        xs = np.asarray([int(r.trial_id) for r in trials] if plain else range(len(trials)),
                        dtype="float64")
    else:
        xs = np.cumsum([r.wall_time_s if _finite(r.wall_time_s) else 0.0 for r in trials])
    pick = max if results.direction == "max" else min
    best, held = [], math.nan
    for record in trials:
        if is_ranked(record):
            held = float(record.score) if math.isnan(held) else pick(held, float(record.score))
        best.append(held)
    return trials, np.asarray(xs, dtype="float64"), np.asarray(best, dtype="float64")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def plot_best_so_far(results: Any, x: Literal["trial", "time"] = "trial") -> Any:
    """The best score so far against the trial number or the time spent (Optuna's
    optimisation history).

    Draws the best score of the ranked trials so far as a step line (it only moves at a trial
    that beat every earlier one, marked with a larger dot), each ranked trial's own score as a
    faint dot (hollow for a pruned trial), and a trial with no score (diverged, failed or
    running) as a red ``x`` on the bottom edge. The legend is outside the axes.

    Args:
        results: A run's :class:`~kerastune_kit.results.RunResults` (``load_results(run)``).
        x: ``trial`` (the trial's id, so that trial ``0014`` is at 14; its 0-based position
            in creation order when the run has refine stages) or ``time`` (cumulative training
            time in seconds), as :func:`best_so_far` computes them.

    Returns:
        A matplotlib ``Figure``.

    Raises:
        ConfigError: ``x`` is not ``trial`` or ``time``; the run has no ranked trial; ``x="time"``
            and no trial recorded its wall time.

    Example:
        >>> plot_best_so_far(load_results("runs/digits-hyperband"), x="time")
    """
    trials, xs, best = best_so_far(results, x)
    ranked = [i for i, r in enumerate(trials) if is_ranked(r)]
    objective = _objective(results)
    if not ranked:
        raise ConfigError(f"results: no ranked trial in '{results.run_dir}' ({len(trials)} "
                          "trials, none completed or pruned with a score); plot after a trial "
                          "finishes")
    if x == "time" and not any(_finite(r.wall_time_s) for r in trials):
        raise ConfigError(f"x: 'time' needs the trials' wall_time_s, which '{results.run_dir}' "
                          "does not record; pass x='trial'")
    figure, axes = _figure(7.6, 4.2)
    completed = [i for i in ranked if trials[i].outcome != "pruned"]
    pruned = [i for i in ranked if trials[i].outcome == "pruned"]
    axes.scatter(xs[completed], [trials[i].score for i in completed], s=22, color="C0",
                 alpha=0.35, linewidths=0, label="a trial's score", zorder=2)
    if pruned:
        axes.scatter(xs[pruned], [trials[i].score for i in pruned], s=22, facecolors="none",
                     edgecolors="C0", alpha=0.5, label="pruned trial", zorder=2)
    first = ranked[0]
    # The step line runs from the first ranked trial to the last trial.
    axes.step(xs[first:], best[first:], where="post", color="C3", linewidth=2.0,
              label=f"best so far ({results.direction})", zorder=3)
    improved = [i for i in ranked if i == first or best[i] != best[i - 1]]
    axes.scatter(xs[improved], best[improved], s=40, color="C3", zorder=4,
                 label="new best")
    unscored = [i for i, r in enumerate(trials) if not is_ranked(r)]
    if unscored:
        axes.scatter(xs[unscored], np.zeros(len(unscored)), marker="x", s=30, color="#d32f2f",
                     transform=axes.get_xaxis_transform(), clip_on=False, zorder=4,
                     label="no score (diverged, failed, running)")
    if x == "trial":
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        numbered = all(r.trial_id.isdigit() for r in trials)
        axes.set_xlabel("trial id" if numbered
                        else "trial (from 0, in the order trials started)")
    else:
        axes.set_xlabel("cumulative trial time (s)")
    axes.set_ylabel(objective)
    axes.grid(alpha=0.3)
    winner = results.best
    axes.set_title(f"best {objective} so far: {_short(winner.score)} (trial "
                   f"{winner.trial_id}), {len(trials)} trials", fontsize=10)
    _legend_outside(axes)
    return figure


# ---------------------------------------------------------------------- parallel coordinates
def _scale_of(name: str, present: Sequence[Any], scales: Mapping[str, str]) -> str:
    """A knob's axis scale: the search space's (``scales``), else guessed from its values;
    ``categorical`` whenever a value is not a number, ``linear`` for a log knob holding 0."""
    from kerastune_kit.contour import guess_scale

    if not all(_finite(v) for v in present):
        return "categorical"
    scale = scales.get(name) or guess_scale(present)
    return "linear" if scale == "log" and min(present) <= 0 else scale


class _ParallelAxis:
    """One knob's vertical axis: its values mapped to 0..1 and its tick labels."""

    def __init__(self, name: str, values: Sequence[Any], scale: str, *,
                 listed: int = 6) -> None:
        self.name, self.scale, self.listed = name, scale, listed
        present = [v for v in values if v is not None]
        self.inactive = len(present) < len(values)
        if scale == "categorical":
            self.labels = sorted({_short(v) for v in present})
            self.low, self.high = 0.0, float(max(len(self.labels) - 1, 1))
        else:
            numbers = np.array([float(v) for v in present])
            coords = np.log10(numbers) if scale == "log" else numbers
            self.low, self.high = float(coords.min()), float(coords.max())
            self.integer = all(isinstance(v, int) for v in present)
            self.distinct = sorted({float(v) for v in present})

    def position(self, value: Any) -> float:
        """``value`` on the axis, 0 (bottom) to 1 (top); :data:`INACTIVE` when absent."""
        if value is None:
            return INACTIVE
        if self.scale == "categorical":
            index = self.labels.index(_short(value))
            return 0.5 if len(self.labels) == 1 else index / self.high
        coord = math.log10(float(value)) if self.scale == "log" else float(value)
        span = self.high - self.low
        return 0.5 if span == 0 else (coord - self.low) / span

    def ticks(self) -> list[tuple[float, str]]:
        """``(position, label)`` pairs: every category; a numeric knob's values when it took
        ``listed`` or fewer; else round values inside its range (matplotlib's locators: powers
        of ten on a log axis, with 2 and 5 when it spans under two decades; about five
        otherwise)."""
        from matplotlib.ticker import LogLocator, MaxNLocator

        if self.scale == "categorical":
            return [(self.position(label), label) for label in self.labels]
        if len(self.distinct) <= self.listed:
            values = list(self.distinct)
        elif self.scale == "log":
            low, high = 10.0 ** self.low, 10.0 ** self.high
            subs = (1.0,) if self.high - self.low >= 2 else (1.0, 2.0, 5.0)
            values = [v for v in LogLocator(subs=subs).tick_values(low, high)
                      if low * (1 - 1e-9) <= v <= high * (1 + 1e-9)]
        else:
            locator = MaxNLocator(5, integer=self.integer)
            values = [v for v in locator.tick_values(self.low, self.high)
                      if self.low - 1e-12 <= v <= self.high + 1e-12]
        out: list[tuple[float, str]] = []
        for value in values:  # (labels closer than 6% of the axis would overlap: one is kept)
            position = self.position(round(value) if self.integer else float(value))
            if all(abs(position - kept) >= 0.06 for kept, _ in out):
                out.append((position, f"{round(value)}" if self.integer else f"{value:.3g}"))
        return out

    @property
    def title(self) -> str:
        return self.name if self.scale != "log" else f"{self.name}\n(log)"


def parallel_knobs(results: Any, top_k_hparams: int | None = 6, *,
                   importance: Any = None) -> list[str]:
    """The knobs :func:`plot_parallel_coordinates` draws: those that took two or more values
    among the ranked trials, most important first (:meth:`RunResults.importance
    <kerastune_kit.results.RunResults.importance>`; before there are enough trials for an
    estimate, the recipe's priority: learning rate, optimizer, depth, width, ...), the first
    ``top_k_hparams`` of them (all with None). ``importance``: the run's
    :class:`~kerastune_kit.importance.Importance` when already computed."""
    from kerastune_kit.importance import knob_order

    ranked = [r for r in results.trials if is_ranked(r)]
    varied = [name for name in results.hp_names
              if len({json.dumps(r.hyperparameters.get(name), default=str) for r in ranked
                      if r.hyperparameters.get(name) is not None}) > 1]
    if importance is None and len(ranked) >= 2:
        importance = results.importance()
    order = knob_order(varied, importance)
    return order if top_k_hparams is None else order[:top_k_hparams]


def plot_parallel_coordinates(results: Any, top_k_hparams: int | None = 6) -> Any:
    """Parallel coordinates: one vertical axis per knob and a last one for the score, one line
    per ranked trial, coloured by its score (colour bar; brighter is better), the best trial
    drawn thickest and on top.

    Knobs are chosen and ordered by :func:`parallel_knobs` (most important first). An axis is
    log-scaled for a knob sampled on a log scale (``RUN/tuner/oracle.json``; guessed from the
    values for a run without one: positive numbers spanning two decades), categorical for
    strings and booleans (one tick per value, sorted), linear otherwise; a knob a trial lacks
    (``units_2`` of a two-layer network) is drawn at an ``inactive`` mark below its axis.

    Args:
        results: A run's :class:`~kerastune_kit.results.RunResults`.
        top_k_hparams: How many knobs to draw (None: every knob that varied).

    Returns:
        A matplotlib ``Figure``.

    Raises:
        ConfigError: ``top_k_hparams`` is below 1; fewer than two ranked trials; no knob took
            two values among them.
    """
    from kerastune_kit.contour import run_knob_scales

    if top_k_hparams is not None and (isinstance(top_k_hparams, bool)
                                      or not isinstance(top_k_hparams, int)
                                      or top_k_hparams < 1):
        raise ConfigError(f"top_k_hparams: expected a positive count or None, received "
                          f"{top_k_hparams!r}; pass for example top_k_hparams=6")
    ranked = [r for r in results.trials if is_ranked(r)]
    if len(ranked) < 2:
        raise ConfigError(f"results: parallel coordinates need at least 2 ranked trials, "
                          f"'{results.run_dir}' has {len(ranked)}; run more trials")
    importance = results.importance()
    knobs = parallel_knobs(results, top_k_hparams, importance=importance)
    if not knobs:
        raise ConfigError(f"results: no hyperparameter took two values across the "
                          f"{len(ranked)} ranked trials of '{results.run_dir}'; run more trials")
    scales = run_knob_scales(results.run_dir)
    axes_list = []
    for name in knobs:
        values = [r.hyperparameters.get(name) for r in ranked]
        present = [v for v in values if v is not None]
        axes_list.append(_ParallelAxis(name, values, _scale_of(name, present, scales)))
    scores = [float(r.score) for r in ranked]
    objective = _objective(results)
    score_axis = _ParallelAxis(objective, scores, "linear", listed=0)
    cmap, norm = _score_colours(results, scores)
    sign = 1.0 if results.direction == "max" else -1.0

    figure, axes = _figure(max(6.0, 1.25 * (len(knobs) + 1) + 2.2), 4.8)
    positions = np.arange(len(knobs) + 1, dtype="float64")
    # Worst first, so the better lines lie on top; the best trial (results.best) last.
    drawn = sorted(ranked[1:], key=lambda r: sign * float(r.score)) + ranked[:1]
    for order, record in enumerate(drawn):
        ys = [axis.position(record.hyperparameters.get(axis.name)) for axis in axes_list]
        ys.append(score_axis.position(float(record.score)))
        best = order == len(drawn) - 1
        axes.plot(positions, ys, color=cmap(norm(float(record.score))),
                  linewidth=2.8 if best else 1.2, alpha=1.0 if best else 0.75,
                  zorder=3 if best else 2, solid_capstyle="round")
    for position, axis in zip(positions, [*axes_list, score_axis], strict=True):
        axes.axvline(position, color="black", linewidth=0.9, zorder=1)
        ticks = axis.ticks()
        if axis.inactive:
            ticks.append((INACTIVE, "inactive"))
        for y, label in ticks:
            axes.plot([position - 0.03, position], [y, y], color="black", linewidth=0.8,
                      zorder=1)
            axes.text(position - 0.05, y, label, ha="right", va="center", fontsize=7,
                      zorder=5, bbox={"boxstyle": "round,pad=0.1", "facecolor": "white",
                                      "edgecolor": "none", "alpha": 0.75})
    axes.set_xlim(-0.55, len(knobs) + 0.15)
    axes.set_ylim(INACTIVE - 0.06 if any(a.inactive for a in axes_list) else -0.06, 1.06)
    axes.set_xticks(positions, [axis.title for axis in [*axes_list, score_axis]], fontsize=8)
    axes.xaxis.tick_top()
    axes.set_yticks([])
    for side in ("left", "right", "bottom", "top"):
        axes.spines[side].set_visible(False)
    from matplotlib.cm import ScalarMappable

    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, pad=0.02)
    bar.set_label(f"{objective} (brighter is better)")
    best = ranked[0]
    axes.set_xlabel(f"{len(ranked)} ranked trials; the thick line is the best, trial "
                    f"{best.trial_id} ({objective} {_short(best.score)}); knobs "
                    + ("most important first" if importance else
                       "in the recipe's order (too few trials for importance)"), fontsize=8)
    return figure


# ---------------------------------------------------------------------- learning curves
def _lineage(record: TrialRecord, by_id: Mapping[str, TrialRecord]) -> list[TrialRecord]:
    """``record``'s ancestors (the Hyperband trials whose checkpoints it continued), oldest
    first."""
    chain: list[TrialRecord] = []
    seen = {record.trial_id}
    parent = by_id.get(record.parent_trial_id or "")
    while parent is not None and parent.trial_id not in seen:
        chain.append(parent)
        seen.add(parent.trial_id)
        parent = by_id.get(parent.parent_trial_id or "")
    return chain[::-1]


def _points(record: TrialRecord, below: int | None = None) -> list[tuple[int, float]]:
    """``(epoch number from 1, value)`` of ``record.curve``, finite values only, epoch indices
    under ``below``."""
    out = []
    for key, value in record.curve.items():
        try:
            index = int(key)
        except ValueError:
            continue
        if _finite(value) and (below is None or index < below):
            out.append((index + 1, float(value)))  # type: ignore[arg-type]
    return sorted(out)


def top_configurations(results: Any, top: int = 5) -> list[TrialRecord]:
    """The best ``top`` ranked trials, one per configuration (a Hyperband configuration
    trained in several trials counts once, by its best trial), best first."""
    chosen, seen = [], set()
    for record in results.trials:
        if not is_ranked(record) or not _points(record):
            continue
        key = json.dumps(record.hyperparameters, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(record)
        if len(chosen) == top:
            break
    return chosen


def plot_learning_curves(results: Any, top: int = 5, *, zoom: bool = True) -> Any:
    """The objective after each epoch (numbered from 1, as Keras prints them), the best
    ``top`` configurations in distinct colours and every other trial in faint grey.

    The curves are the trials' own records (``TrialRecord.curve``: the objective on the
    validation split after each epoch). A promoted Hyperband trial trains from its parent's
    checkpoint: the epochs its parents trained are drawn dotted in its colour, so each coloured
    line runs from epoch 1. Colours are ``tab10`` (``tab20`` above ten), one per trial, in rank
    order; the legend, outside the axes, gives each trial's score.

    Args:
        results: A run's :class:`~kerastune_kit.results.RunResults`.
        top: How many of the best configurations to colour (1 to :data:`MAX_TOP`;
            :func:`top_configurations`).
        zoom: When the coloured curves span under 40% of the range of all curves (the usual
            case: a few trials far below), the y axis shows the coloured curves' range only
            (its label says so); False: every curve in full.

    Returns:
        A matplotlib ``Figure``.

    Raises:
        ConfigError: ``top`` is outside 1..20; no trial recorded a curve.
    """
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        raise ConfigError(f"top: expected 1 to {MAX_TOP} trials to colour, received {top!r}; "
                          "pass for example top=5")
    with_curves = [r for r in results.trials if _points(r)]
    if not with_curves:
        raise ConfigError(f"results: no trial of '{results.run_dir}' recorded a learning curve "
                          "(trial records with per-epoch objective values); plot after a trial "
                          "finishes an epoch")
    chosen = top_configurations(results, top)
    palette = colormaps["tab10" if len(chosen) <= 10 else "tab20"].colors
    by_id = {r.trial_id: r for r in results.trials}
    objective = _objective(results)
    figure, axes = _figure(8.0, 4.4)
    highlighted = {r.trial_id for r in chosen}
    for record in with_curves:  # the others first, underneath
        if record.trial_id in highlighted:
            continue
        epochs, values = zip(*_points(record), strict=True)
        axes.plot(epochs, values, color=_FAINT, linewidth=0.8, alpha=0.45, zorder=1,
                  marker="o" if len(epochs) == 1 else None, markersize=2.5)
    lines = []  # (record, the epochs its parents trained, its own), best first
    for record in chosen:
        chain = [*_lineage(record, by_id), record]  # its parents, oldest first
        before = [point for ancestor, child in zip(chain, chain[1:], strict=False)
                  for point in _points(ancestor, below=child.initial_epoch)]
        lines.append((record, before, _points(record)))
    markers = "osD^vP*Xhp<>dH8" * 2
    dotted = False
    # The best last, on top; a distinct marker each, and a curve identical to a better one's
    # (hidden under it) says so in the legend.
    for rank, (record, before, own) in reversed(list(enumerate(lines))):
        colour = palette[rank]
        same = next((other.trial_id for other, b, o in lines[:rank] if b + o == before + own),
                    None)
        if before:
            epochs, values = zip(*before, own[0], strict=True)
            axes.plot(epochs, values, color=colour, linestyle=":", linewidth=1.6, zorder=3)
            dotted = True
        epochs, values = zip(*own, strict=True)
        label = f"trial {record.trial_id}: {_short(record.score)}"
        axes.plot(epochs, values, color=colour, linewidth=2.0, marker=markers[rank],
                  markersize=5, zorder=4,
                  label=label if same is None else f"{label} (curve of {same})")
    shown = [value for _, before, own in lines for _, value in [*before, *own]]
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    every = [value for r in with_curves for _, value in _points(r)]
    low, high = min(shown), max(shown)
    if zoom and high > low and high - low < 0.4 * (max(every) - min(every)):
        margin = 0.08 * (high - low)
        axes.set_ylim(low - margin, high + margin)
        axes.set_ylabel(f"{objective} (zoomed on the best {len(chosen)})")
    else:
        axes.set_ylabel(objective)
    axes.grid(alpha=0.3)
    handles, labels = (list(reversed(items)) for items in axes.get_legend_handles_labels())
    extra = [Line2D([], [], color=_FAINT, linewidth=1.0, label="other trials")]
    if dotted:
        extra.append(Line2D([], [], color="black", linestyle=":", linewidth=1.4,
                            label="epochs its parent trained"))
    _legend_outside(axes, handles=handles + extra,
                    labels=labels + [h.get_label() for h in extra],
                    title=f"best {len(chosen)} ({objective})", title_fontsize=8)
    without = len(results.trials) - len(with_curves)
    axes.set_title(f"{objective} per epoch: the best {len(chosen)} configurations of "
                   f"{len(results.trials)} trials"
                   f"{f' ({without} without a curve)' if without else ''}", fontsize=10)
    return figure


# ---------------------------------------------------------------------- contour, importance
def plot_contour(results: Any, knobs: Sequence[str] | None = None) -> Any:
    """The objective over two knobs, interpolated between the trials as Optuna's
    ``plot_contour`` does (:mod:`kerastune_kit.contour`), with a colour bar and the best trial
    as a red star.

    Args:
        results: A run's :class:`~kerastune_kit.results.RunResults`.
        knobs: The two knobs (x, then y); None: the two most important that varied
            (:func:`~kerastune_kit.contour.choose_knobs`).

    Returns:
        A matplotlib ``Figure``.

    Raises:
        ConfigError: Not two knobs, an unknown knob, fewer than three ranked trials with both,
            or a knob with one value (:func:`~kerastune_kit.contour.build_contour`).
    """
    from kerastune_kit.contour import contour_figure, run_contour

    names = list(knobs or [])
    if names and len(names) != 2:
        raise ConfigError(f"knobs: expected two knob names or None, received {len(names)} "
                          f"({', '.join(map(str, names))}); pass for example "
                          "knobs=('learning_rate', 'units_0')")
    contour, _ = run_contour(results, names)
    _display_in_ipython()
    return contour_figure(contour)


def plot_importance(results: Any) -> Any:
    """Hyperparameter importance as horizontal bars, largest on top
    (:func:`kerastune_kit.importance.importance_figure`; with too few trials, the reason there
    is no estimate).

    Args:
        results: A run's :class:`~kerastune_kit.results.RunResults`.

    Returns:
        A matplotlib ``Figure``.
    """
    from kerastune_kit.importance import importance_figure

    _display_in_ipython()
    return importance_figure(results.importance())
