"""Contour plots: the objective over two knobs, interpolated between the trials, as Optuna draws it.

Owns: :func:`build_contour` (the ranked trials' points over two knobs and the objective
interpolated on a 100 x 100 grid), :func:`choose_knobs` (the two most important knobs that can
be drawn), :func:`contour_figure` / :func:`contour_image` (the chart, matplotlib with the Agg
canvas, no pyplot), :func:`write_contour` (``inspect RUN --contour``: a PNG in the run
directory, atomically) and the axis scales (:func:`knob_scales` from a KerasTuner search space,
:func:`run_knob_scales` from a run's ``tuner/oracle.json``). Imports no TensorFlow; matplotlib
(and SciPy, when installed) on first use. Does not own: importance (``importance``) or writing
TensorBoard summaries (``tensorboard``).

The plot follows ``optuna.visualization.matplotlib.plot_contour`` (Optuna 4): each knob is an
axis, log-scaled for a knob sampled on a log scale, categorical (one tick per value, in sorted
order) for strings and booleans, linear otherwise (numeric choices such as ``batch_size``
included, as Optuna does); each axis spans the trials' values with 5% padding; a trial lacking
either knob (an inactive one, ``units_1`` of a one-layer network) is left out; the objective is
filled in over a 100 x 100 grid by Plotly's heatmap interpolation (each empty cell the mean of
its four neighbours, the trials' cells fixed: a discrete Laplace equation with zero-derivative
edges, solved with ``scipy.sparse.linalg.spsolve``; inverse-distance weighting when SciPy is
missing), and the trials are drawn on top. Where several trials fall in one cell (a Hyperband
configuration and its promotions), the best score counts. Colours run so that brighter is better
in both directions, and the best trial is a red star.

Example:
    >>> from kerastune_kit import load_results
    >>> from kerastune_kit.contour import write_contour
    >>> plot = write_contour(load_results("runs/digits-hyperband"))
    >>> plot.path, plot.summary()
    (PosixPath('runs/digits-hyperband/contour_learning_rate_units_0.png'), 'val_accuracy ...')
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kerastune_kit.errors import ConfigError
from kerastune_kit.results import TrialRecord, is_ranked, rank

Scale = Literal["linear", "log", "categorical"]
#: Grid cells per axis (Optuna's ``CONTOUR_POINT_NUM``).
GRID = 100
#: Padding around the trials' values, a fraction of each axis's span (Optuna's).
PADDING = 0.05
#: The fewest ranked trials with both knobs that a contour is drawn from.
MIN_TRIALS = 3


# ---------------------------------------------------------------------- axis scales
def knob_scales(space_config: Mapping[str, Any]) -> dict[str, Scale]:
    """Each knob's axis scale from a KerasTuner search space.

    Args:
        space_config: ``HyperParameters.get_config()``, or the ``hyperparameters`` entry of
            KerasTuner's ``oracle.json`` (``{"space": [{"class_name": "Float", "config":
            {"name": ..., "sampling": "log"}}, ...]}``).

    Returns:
        ``{name: "log" | "linear" | "categorical"}``: ``Int``/``Float`` sampled on a log scale
        are ``log``; booleans and choices of strings ``categorical``; numbers ``linear``.
    """
    scales: dict[str, Scale] = {}
    for item in space_config.get("space", []) if isinstance(space_config, Mapping) else []:
        kind = item.get("class_name")
        config = item.get("config") or {}
        name = config.get("name")
        if not name:
            continue
        if kind in ("Int", "Float"):
            scales[name] = "log" if config.get("sampling") == "log" else "linear"
        elif kind == "Choice":
            values = config.get("values") or []
            scales[name] = "linear" if values and all(_number(v) for v in values) \
                else "categorical"
        elif kind == "Fixed":
            scales[name] = "linear" if _number(config.get("value")) else "categorical"
        else:  # Boolean
            scales[name] = "categorical"
    return scales


def run_knob_scales(run_dir: str | Path) -> dict[str, Scale]:
    """:func:`knob_scales` of a run's search space (``RUN/tuner/oracle.json``); empty when the
    run has none (a directory of event files alone): the scales are then guessed from the
    values (:func:`guess_scale`)."""
    from kerastune_kit.rundir import RunDir

    path = RunDir(run_dir).tuner_dir / "oracle.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return knob_scales(data.get("hyperparameters") or {}) if isinstance(data, dict) else {}


def guess_scale(values: Iterable[Any]) -> Scale:
    """The scale of a knob known only by its values: ``categorical`` unless all are numbers;
    ``log`` for positive numbers spanning two decades or more (as
    :mod:`~kerastune_kit.importance` encodes them); else ``linear``."""
    present = [v for v in values if v is not None]
    if not present or not all(_number(v) for v in present):
        return "categorical"
    low, high = min(present), max(present)
    return "log" if low > 0 and high / low >= 100 else "linear"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------- the data
@dataclasses.dataclass
class Axis:
    """One axis of a contour.

    Attributes:
        name: The knob.
        scale: ``linear``, ``log`` or ``categorical``.
        coordinates: Each point's position in plot units (log10 for ``log``, the category's
            index for ``categorical``).
        labels: The categories, in tick order (``categorical`` only).
        low: The axis's lower end, in plot units (padding included).
        high: Its upper end.
    """

    name: str
    scale: Scale
    coordinates: np.ndarray
    labels: list[str]
    low: float
    high: float

    def grid(self, n: int = GRID) -> np.ndarray:
        """``n`` evenly spaced positions from :attr:`low` to :attr:`high`, in plot units."""
        return np.linspace(self.low, self.high, n)

    def to_data(self, positions: np.ndarray) -> np.ndarray:
        """Plot units to the knob's values (``10 ** x`` on a log axis)."""
        return np.power(10.0, positions) if self.scale == "log" else positions

    @property
    def label(self) -> str:
        """The axis title: the knob, and its scale when not linear."""
        return self.name if self.scale == "linear" else f"{self.name} ({self.scale})"


@dataclasses.dataclass
class Contour:
    """The objective over two knobs: the trials drawn and the interpolated surface.

    Attributes:
        x: The horizontal axis.
        y: The vertical axis.
        trials: The ranked trials with both knobs, best first.
        scores: Their scores, in the same order.
        z: The interpolated objective, shape ``(GRID, GRID)`` (row: y, column: x).
        objective: The objective's name.
        direction: ``max`` or ``min``.
    """

    x: Axis
    y: Axis
    trials: list[TrialRecord]
    scores: np.ndarray
    z: np.ndarray
    objective: str
    direction: str

    @property
    def best(self) -> TrialRecord:
        """The best trial drawn."""
        return self.trials[0]

    def summary(self) -> str:
        """One line: what is drawn over what, from how many trials, and where the best is."""
        best = self.best
        where = ", ".join(f"{axis.name}={_short(best.hyperparameters.get(axis.name))}"
                          for axis in (self.x, self.y))
        return (f"{self.objective} ({self.direction}) over {self.x.label} and {self.y.label}: "
                f"{len(self.trials)} trials, {self.objective} {_short(float(self.scores.min()))}"
                f"..{_short(float(self.scores.max()))}; best {_short(best.score)} at {where} "
                f"(trial {best.trial_id})")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _axis(name: str, values: list[Any], scale: Scale) -> Axis:
    if scale == "categorical" or not all(_number(v) for v in values):
        labels = sorted({str(v).lower() if isinstance(v, bool) else str(v) for v in values})
        index = {label: i for i, label in enumerate(labels)}
        coords = np.array([index[str(v).lower() if isinstance(v, bool) else str(v)]
                           for v in values], dtype="float64")
        span = len(labels) - 1
        return Axis(name, "categorical", coords, labels, -PADDING * span, span + PADDING * span)
    numbers = np.array([float(v) for v in values])
    if scale == "log" and numbers.min() <= 0:
        scale = "linear"  # (a log knob never holds 0; a guessed one might)
    coords = np.log10(numbers) if scale == "log" else numbers
    pad = PADDING * float(coords.max() - coords.min())
    return Axis(name, scale, coords, [], float(coords.min()) - pad, float(coords.max()) + pad)


def build_contour(records: Iterable[TrialRecord], x_name: str, y_name: str, *,
                  objective: str | None, direction: str,
                  scales: Mapping[str, str] | None = None,
                  hp_names: Sequence[str] | None = None) -> Contour:
    """The objective over two knobs from a run's trial records.

    Args:
        records: Trial records; the ranked ones (:func:`~kerastune_kit.results.is_ranked`)
            holding both knobs are drawn.
        x_name: The knob on the horizontal axis.
        y_name: The knob on the vertical axis.
        objective: The objective's name (the colour bar's label).
        direction: ``max`` or ``min``.
        scales: Each knob's scale (:func:`knob_scales`); a knob missing here gets
            :func:`guess_scale`.
        hp_names: Every knob of the run (default: those the records hold), to check the names.

    Returns:
        A :class:`Contour`.

    Raises:
        ConfigError: A name is not a knob of the run, both names are the same, fewer than
            :data:`MIN_TRIALS` ranked trials hold both knobs, or a knob has one value only.
    """
    records = list(records)
    known = list(hp_names) if hp_names is not None else sorted(
        {name for r in records for name in r.hyperparameters})
    for name in (x_name, y_name):
        check_knob(name, known)
    if x_name == y_name:
        raise ConfigError(f"contour: expected two different knobs, received {x_name!r} twice; "
                          "pass for example --contour learning_rate units_0")
    drawn = [r for r in rank(records, direction) if is_ranked(r)
             and r.hyperparameters.get(x_name) is not None
             and r.hyperparameters.get(y_name) is not None]
    ranked = sum(is_ranked(r) for r in records)
    if len(drawn) < MIN_TRIALS:
        held = "" if len(drawn) == ranked else f" (of {ranked} ranked)"
        raise ConfigError(
            f"contour: need at least {MIN_TRIALS} ranked trials with both {x_name} and "
            f"{y_name}, received {len(drawn)}{held}; run more trials or pick knobs every "
            "trial has")
    scales = dict(scales or {})
    axes = []
    for name in (x_name, y_name):
        values = [r.hyperparameters[name] for r in drawn]
        if len({json.dumps(v, default=str) for v in values}) < 2:
            raise ConfigError(
                f"contour: {name} has one value ({_short(values[0])}) across the "
                f"{len(drawn)} ranked trials that have both knobs; pick a knob that varied")
        axes.append(_axis(name, values, scales.get(name) or guess_scale(values)))  # type: ignore[arg-type]
    x_axis, y_axis = axes
    scores = np.array([float(r.score) for r in drawn])  # type: ignore[arg-type]
    z = interpolate(x_axis, y_axis, scores, maximize=direction == "max")
    return Contour(x_axis, y_axis, drawn, scores, z, objective or "score", direction)


def check_knob(name: str, known: Sequence[str]) -> None:
    """Raise a one-line :class:`~kerastune_kit.errors.ConfigError` when ``name`` is not one of
    ``known``, with the closest knob as a suggestion."""
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"contour: unknown knob {name!r}; {hint}this run's knobs are "
                      f"{', '.join(known) or '(none)'}")


def interpolate(x: Axis, y: Axis, scores: np.ndarray, *, maximize: bool,
                n: int = GRID) -> np.ndarray:
    """The objective on an ``n`` x ``n`` grid spanning both axes: Plotly's heatmap
    interpolation, as Optuna's contour uses it (see the module docstring); inverse-distance
    weighting (power 2, in axis units scaled to [0, 1]) without SciPy.

    Returns:
        Shape ``(n, n)``, rows along ``y``, columns along ``x``, within the scores' minimum
        and maximum (clipped: an accuracy never reads above the best trial's).
    """
    cells: dict[tuple[int, int], float] = {}
    for cx, cy, score in zip(_cells(x, n), _cells(y, n), scores, strict=True):
        held = cells.get((cx, cy))
        if held is None or (score > held if maximize else score < held):
            cells[(cx, cy)] = float(score)
    try:
        from scipy.sparse import csc_matrix
        from scipy.sparse.linalg import spsolve
    except ImportError:
        return _clip_to(_inverse_distance(cells, n), cells)
    rows, cols, data = [], [], []
    b = np.zeros(n * n)
    for j in range(n):  # row (y)
        for i in range(n):  # column (x)
            k = j * n + i
            if (i, j) in cells:
                rows.append(k)
                cols.append(k)
                data.append(1.0)
                b[k] = cells[(i, j)]
                continue
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                if 0 <= i + di < n and 0 <= j + dj < n:
                    rows += [k, k]
                    cols += [k, k + dj * n + di]
                    data += [1.0, -1.0]
    matrix = csc_matrix((data, (rows, cols)), shape=(n * n, n * n))
    return _clip_to(np.asarray(spsolve(matrix, b)).reshape(n, n), cells)


def _clip_to(z: np.ndarray, cells: Mapping[tuple[int, int], float]) -> np.ndarray:
    """``z`` within the observed scores' range (a solver's round-off never overshoots it)."""
    return np.clip(z, min(cells.values()), max(cells.values()))


def _cells(axis: Axis, n: int) -> list[int]:
    span = (axis.high - axis.low) or 1.0
    return [int(round((c - axis.low) / span * (n - 1))) for c in axis.coordinates]


def _inverse_distance(cells: Mapping[tuple[int, int], float], n: int) -> np.ndarray:
    points = np.array(list(cells), dtype="float64") / max(n - 1, 1)
    values = np.array(list(cells.values()))
    grid = np.linspace(0.0, 1.0, n)
    gx, gy = np.meshgrid(grid, grid)
    distance = np.hypot(gx[..., None] - points[:, 0], gy[..., None] - points[:, 1])
    weights = 1.0 / np.maximum(distance, 1e-9) ** 2
    return (weights * values).sum(axis=-1) / weights.sum(axis=-1)


# ---------------------------------------------------------------------- choosing the knobs
def choose_knobs(records: Iterable[TrialRecord], hp_names: Sequence[str],
                 importance: Iterable[str] = ()) -> tuple[str, str]:
    """The two knobs a default contour draws: the first pair, in order of ``importance``
    (then the run's order), that :data:`MIN_TRIALS` ranked trials hold with two or more
    values each.

    Args:
        records: Trial records.
        hp_names: Every knob of the run.
        importance: Knob names, most important first (``Importance.values``).

    Raises:
        ConfigError: No two knobs can be drawn (too few ranked trials, or nothing varied).
    """
    drawn = [r for r in records if is_ranked(r)]
    order = [n for n in importance if n in hp_names]
    order += [n for n in hp_names if n not in order]

    def varied(name: str, among: Sequence[TrialRecord]) -> bool:
        values = [r.hyperparameters.get(name) for r in among
                  if r.hyperparameters.get(name) is not None]
        return len(values) >= MIN_TRIALS and len({json.dumps(v, default=str)
                                                  for v in values}) > 1

    usable = [name for name in order if varied(name, drawn)]
    for i, first in enumerate(usable):
        for second in usable[i + 1:]:
            both = [r for r in drawn if r.hyperparameters.get(first) is not None
                    and r.hyperparameters.get(second) is not None]
            if varied(first, both) and varied(second, both):
                return first, second
    raise ConfigError(
        f"contour: no two knobs varied across {MIN_TRIALS} or more ranked trials (the run has "
        f"{len(drawn)} ranked trials); run more trials, or name two knobs: --contour KNOB_A "
        "KNOB_B")


# ---------------------------------------------------------------------- the chart
def contour_figure(contour: Contour, *, title: str | None = None) -> Any:
    """A matplotlib ``Figure``: the interpolated objective (filled contours and a colour bar),
    the trials as dots and the best trial as a red star.

    Uses ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global state): safe in
    a search's thread and without a display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure = Figure(figsize=(7.2, 5.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x, y = contour.x, contour.y
    xs, ys = x.to_data(x.grid()), y.to_data(y.grid())
    cmap = "viridis" if contour.direction == "max" else "viridis_r"
    z = contour.z
    if float(np.ptp(z)) > 0:
        # levels from the lowest to the highest value (an automatic locator rounds outwards:
        # a colour bar up to 1.02 for an accuracy whose best is 0.99)
        levels = np.linspace(float(z.min()), float(z.max()), 16)
        filled = axes.contourf(xs, ys, z, levels, cmap=cmap)
        axes.contour(xs, ys, z, levels, colors="k", linewidths=0.4, alpha=0.5)
    else:  # every trial scored the same: one flat colour
        filled = axes.pcolormesh(xs, ys, z, cmap=cmap, shading="auto")
    bar = figure.colorbar(filled, ax=axes)
    bar.set_label(f"{contour.objective} (interpolated; brighter is better)", fontsize="small")
    px, py = x.to_data(x.coordinates), y.to_data(y.coordinates)
    axes.scatter(px[1:], py[1:], s=28, c="black", edgecolors="white", linewidths=1.0,
                 label="trials", zorder=3)
    axes.scatter(px[:1], py[:1], s=220, c="red", marker="*", edgecolors="white",
                 linewidths=1.0, label=f"best: trial {contour.best.trial_id}, "
                 f"{contour.objective} {_short(contour.best.score)}", zorder=4)
    for axis, set_scale, set_lim, set_ticks, set_labels, set_title in (
            (x, axes.set_xscale, axes.set_xlim, axes.set_xticks, axes.set_xticklabels,
             axes.set_xlabel),
            (y, axes.set_yscale, axes.set_ylim, axes.set_yticks, axes.set_yticklabels,
             axes.set_ylabel)):
        if axis.scale == "log":
            set_scale("log")
            ruler = axes.xaxis if axis is x else axes.yaxis
            decades = axis.high - axis.low  # labels: 1, 2, 5 per decade; 1 over 3 or more
            subs = (1.0,) if decades >= 3 else (1.0, 2.0, 5.0) if decades >= 1 \
                else tuple(range(1, 10))
            ruler.set_major_locator(LogLocator(subs=subs))
            ruler.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ruler.set_minor_formatter(NullFormatter())
        set_lim(*axis.to_data(np.array([axis.low, axis.high])))
        if axis.scale == "categorical":
            set_ticks(range(len(axis.labels)))
            set_labels(axis.labels)
        set_title(axis.label)
    axes.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=2, fontsize="small",
                frameon=False)
    axes.set_title(title or f"{contour.objective} ({contour.direction}) over {x.name} and "
                   f"{y.name},\n{len(contour.trials)} trials", fontsize="medium")
    return figure


def contour_image(contour: Contour) -> np.ndarray:
    """The chart as an RGB ``uint8`` array of shape ``(height, width, 3)`` (for
    ``tf.summary.image``), lettered at :data:`~kerastune_kit.importance.IMAGE_FONT_SIZE`:
    TensorBoard's IMAGES cards shrink a chart to about 350 pixels wide."""
    import matplotlib

    from kerastune_kit.importance import IMAGE_FONT_SIZE

    with matplotlib.rc_context({"font.size": IMAGE_FONT_SIZE}):
        figure = contour_figure(contour)
        figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


# ---------------------------------------------------------------------- a run's contour
@dataclasses.dataclass
class ContourPlot:
    """A contour written to a file.

    Attributes:
        path: The PNG.
        contour: What it draws.
        chosen_by: How the knobs were picked: ``given``, ``importance`` or ``order`` (the
            run's first two that varied, when importance has too few trials).
    """

    path: Path
    contour: Contour
    chosen_by: str

    def summary(self) -> str:
        """:meth:`Contour.summary`."""
        return self.contour.summary()


def run_contour(results: Any, knobs: Sequence[str] = ()) -> tuple[Contour, str]:
    """The :class:`Contour` of a run over ``knobs`` (two names, checked against the run), or
    over the two :func:`choose_knobs` picks when ``knobs`` is empty; with how they were chosen
    (``given``, ``importance`` or ``order``). Callers check that ``knobs`` holds 0 or 2 names.

    Raises:
        ConfigError: An unknown knob, or too few ranked trials (:func:`build_contour`).
    """
    names = list(knobs)
    if names:
        for name in names:
            check_knob(name, results.hp_names)
        chosen_by = "given"
    else:
        importance = results.importance()
        names = list(choose_knobs(results.trials, results.hp_names, importance.values))
        chosen_by = "importance" if importance else "order"
    contour = build_contour(results.trials, names[0], names[1], objective=results.objective,
                            direction=results.direction,
                            scales=run_knob_scales(results.run_dir), hp_names=results.hp_names)
    return contour, chosen_by


def default_path(run_dir: str | Path, x_name: str, y_name: str) -> Path:
    """``RUN/contour_<x>_<y>.png``."""
    return Path(run_dir) / f"contour_{x_name}_{y_name}.png"


def write_contour(results: Any, knobs: Sequence[str] | None = None,
                  path: str | Path | None = None) -> ContourPlot:
    """Draw a run's objective over two knobs and write it as a PNG, atomically.

    Args:
        results: A :class:`~kerastune_kit.results.RunResults` (``load_results(run)``).
        knobs: The two knobs (x, then y); empty or None: the two most important
            (:meth:`RunResults.importance`), or the run's first two that varied when there
            are too few trials for importance.
        path: Where to write (default ``RUN/contour_<x>_<y>.png``).

    Returns:
        A :class:`ContourPlot`.

    Raises:
        ConfigError: Not two knobs, an unknown knob, too few ranked trials (see
            :func:`build_contour`).
        WriteError: The file could not be written.
    """
    from kerastune_kit.rundir import atomic_path, write_errors

    names = list(knobs or [])
    if names and len(names) != 2:
        raise ConfigError(f"contour: expected two knobs or none, received {len(names)} "
                          f"({' '.join(names)}); pass --contour KNOB_A KNOB_B, or --contour "
                          "alone for the two most important")
    contour, chosen_by = run_contour(results, names)
    target = (Path(path) if path is not None
              else default_path(results.run_dir, contour.x.name, contour.y.name))
    if target.suffix.lower() != ".png" or target.is_dir():
        raise ConfigError(f"contour_output: expected a file path ending in .png, received "
                          f"'{target}'; pass for example --contour-output contour.png")
    figure = contour_figure(contour)
    with write_errors(target, action="output"), atomic_path(target) as tmp:
        figure.savefig(tmp, format="png")
    return ContourPlot(target, contour, chosen_by)
