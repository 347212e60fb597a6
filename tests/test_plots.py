"""kerastune_kit.plots: each figure drawn from a real small run (and from made-up records for
the cases a tiny run does not produce), checked for what it shows."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from kerastune_kit.errors import ConfigError
from kerastune_kit.results import RunResults, TrialRecord, is_ranked, rank
from tests.conftest import REPO
from tests.helpers import assert_one_line

plots = pytest.importorskip("kerastune_kit.plots")
pytest.importorskip("matplotlib")


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run_results(tmp_path_factory):
    """A real Hyperband search on iris (3 epochs: promoted trials with parents)."""
    from kerastune_kit import SearchConfig, load_results, run_search

    run_dir = tmp_path_factory.mktemp("plots") / "run"
    run_search(SearchConfig(data="iris", tuner="hyperband", max_epochs=3, seed=0,
                            run_dir=str(run_dir)))
    return load_results(run_dir)


def _record(trial_id: str, status: str, score: float | None, *, curve=None, wall=1.0,
            message=None, **hps) -> TrialRecord:
    curve = curve if curve is not None else ({} if score is None else {"0": score})
    return TrialRecord(trial_id=trial_id, status=status, score=score, best_epoch=0,
                       epochs=len(curve), wall_time_s=wall, message=message,
                       curve=curve, hyperparameters=hps)


@pytest.fixture
def made_up(tmp_path) -> RunResults:
    """Nine trials: completed, pruned, one diverged, one failed; an inactive knob (units_1),
    a log-scaled learning rate, a categorical optimizer."""
    records = [
        _record("0", "COMPLETED", 0.50, learning_rate=1e-4, optimizer="sgd", units_0=16),
        _record("1", "COMPLETED", 0.70, learning_rate=1e-3, optimizer="adam", units_0=32,
                units_1=8),
        _record("2", "FAILED", None, message="trial diverged: loss is nan",
                learning_rate=3e-1, optimizer="sgd", units_0=64),
        _record("3", "PRUNED", 0.60, learning_rate=3e-3, optimizer="adam", units_0=64),
        _record("4", "COMPLETED", 0.90, wall=2.5, learning_rate=1e-2, optimizer="adam",
                units_0=128, units_1=16),
        _record("5", "FAILED", None, message="OOM", learning_rate=1e-3, optimizer="rmsprop",
                units_0=256),
        _record("6", "COMPLETED", 0.85, learning_rate=2e-2, optimizer="rmsprop", units_0=128),
        _record("7", "COMPLETED", 0.88, learning_rate=5e-3, optimizer="adam", units_0=32,
                units_1=32),
        _record("10", "COMPLETED", 0.95, learning_rate=8e-3, optimizer="adam", units_0=64),
    ]
    return RunResults(run_dir=tmp_path, objective="val_accuracy", direction="max",
                      trials=rank(records, "max"),
                      hp_names=["learning_rate", "optimizer", "units_0", "units_1"])


def _legends_clear_of_the_axes(figure) -> None:
    """Every legend lies outside its axes' box, so it covers no data."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    found = 0
    for axes in figure.axes:
        legend = axes.get_legend()
        if legend is None:
            continue
        found += 1
        box, frame = legend.get_window_extent(renderer), axes.get_window_extent(renderer)
        assert not box.overlaps(frame), (box, frame)
    assert found, "no legend"


def _colourbar(figure):
    bars = [axes for axes in figure.axes if hasattr(axes, "_colorbar")]
    assert len(bars) == 1, "one colour bar"
    return bars[0]


def _line(axes, label: str):
    return next(line for line in axes.get_lines() if line.get_label().startswith(label))


# ---------------------------------------------------------------------- best so far
def test_best_so_far_orders_trials_numerically_and_steps_up(made_up):
    figure = plots.plot_best_so_far(made_up)
    axes = figure.axes[0]
    step = _line(axes, "best so far")
    xs, ys = step.get_xdata(), step.get_ydata()
    assert list(xs) == [0, 1, 2, 3, 4, 5, 6, 7, 10]  # at their ids; "10" last, after "7"
    assert list(ys) == [0.5, 0.7, 0.7, 0.7, 0.9, 0.9, 0.9, 0.9, 0.95]
    assert step.get_drawstyle() == "steps-post"
    labels = {c.get_label(): c for c in axes.collections}
    assert len(labels["a trial's score"].get_offsets()) == 6  # completed trials
    assert len(labels["pruned trial"].get_offsets()) == 1
    unscored = labels["no score (diverged, failed, running)"].get_offsets()
    assert [x for x, _ in unscored] == [2, 5]  # trials 2 and 5
    assert [x for x, _ in labels["new best"].get_offsets()] == [0, 1, 4, 10]  # trial 4 beat 1
    assert "0.95 (trial 10)" in axes.get_title()
    assert axes.get_xlabel() == "trial id"
    _legends_clear_of_the_axes(figure)


def test_best_so_far_with_refine_stages_counts_positions_from_0(made_up):
    for record, stage_id in zip(made_up.trials, ["stage-2/0000", "stage-2/0001"], strict=False):
        record.trial_id = stage_id  # stage 2 comes after stage 1's trials
    trials, xs, _ = plots.best_so_far(made_up)
    assert [r.trial_id for r in trials][-2:] == ["stage-2/0000", "stage-2/0001"]
    assert xs.tolist() == list(range(len(trials)))
    figure = plots.plot_best_so_far(made_up)
    assert figure.axes[0].get_xlabel() == "trial (from 0, in the order trials started)"
    _legends_clear_of_the_axes(figure)


def test_best_so_far_against_time_adds_up_the_trials_wall_times(made_up):
    trials, xs, best = plots.best_so_far(made_up, x="time")
    assert [r.trial_id for r in trials] == ["0", "1", "2", "3", "4", "5", "6", "7", "10"]
    assert xs.tolist() == pytest.approx([1, 2, 3, 4, 6.5, 7.5, 8.5, 9.5, 10.5])
    figure = plots.plot_best_so_far(made_up, x="time")
    assert figure.axes[0].get_xlabel() == "cumulative trial time (s)"


def test_best_so_far_is_minimised_for_a_loss(made_up):
    made_up.direction = "min"
    _, _, best = plots.best_so_far(made_up)
    assert best.tolist() == [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]


def test_bad_arguments_are_one_line_errors(made_up):
    with pytest.raises(ConfigError) as caught:
        plots.plot_best_so_far(made_up, x="epoch")  # type: ignore[arg-type]
    assert_one_line(caught.value, "x:", "'epoch'", "x='trial'")
    with pytest.raises(ConfigError) as caught:
        plots.plot_learning_curves(made_up, top=0)
    assert_one_line(caught.value, "top:", "0", "top=5")
    with pytest.raises(ConfigError) as caught:
        plots.plot_parallel_coordinates(made_up, top_k_hparams=0)
    assert_one_line(caught.value, "top_k_hparams:", "0")
    with pytest.raises(ConfigError) as caught:
        plots.plot_contour(made_up, knobs=["learning_rate"])
    assert_one_line(caught.value, "knobs:", "1")
    made_up.trials = [r for r in made_up.trials if not is_ranked(r)]
    with pytest.raises(ConfigError) as caught:
        plots.plot_best_so_far(made_up)
    assert_one_line(caught.value, "no ranked trial")


# ---------------------------------------------------------------------- parallel coordinates
def test_parallel_coordinates_scales_and_inactive_values(made_up):
    figure = plots.plot_parallel_coordinates(made_up)
    axes = figure.axes[0]
    titles = [label.get_text() for label in axes.get_xticklabels()]
    assert titles[-1] == "val_accuracy"
    assert "learning_rate\n(log)" in titles  # 1e-4..3e-1: guessed log without a search space
    assert set(titles[:-1]) == {"learning_rate\n(log)", "optimizer", "units_0",
                                "units_1"}
    texts = {text.get_text() for text in axes.texts}
    assert {"adam", "rmsprop", "sgd", "inactive"} <= texts  # categories; units_1 missing
    trial_lines = [line for line in axes.get_lines() if len(line.get_xdata()) == 5]
    assert len(trial_lines) == 7  # the ranked trials (completed and pruned)
    units_1 = titles.index("units_1")
    inactive = [line for line in trial_lines
                if line.get_ydata()[units_1] == pytest.approx(plots.INACTIVE)]
    assert len(inactive) == 4  # trials 0, 3, 6, 10 have one layer
    best = max(trial_lines, key=lambda line: line.get_linewidth())
    assert best.get_ydata()[-1] == pytest.approx(1.0)  # the best score is the axis's top
    bar = _colourbar(figure)
    assert bar.get_ylabel().startswith("val_accuracy")
    low, high = bar.get_ylim()
    assert (low, high) == pytest.approx((0.5, 0.95))


@pytest.mark.slow
def test_parallel_coordinates_of_a_real_run(run_results):
    figure = plots.plot_parallel_coordinates(run_results, top_k_hparams=4)
    axes = figure.axes[0]
    knobs = plots.parallel_knobs(run_results, 4)
    titles = [label.get_text().split("\n")[0] for label in axes.get_xticklabels()]
    assert titles == [*knobs, run_results.objective] and len(knobs) == 4
    importance = run_results.importance()
    if importance:
        ranked = [name for name in importance.values if name in knobs]
        assert knobs == ranked  # most important first
    ranked_trials = [r for r in run_results if is_ranked(r)]
    lines = [line for line in axes.get_lines() if len(line.get_xdata()) == len(knobs) + 1]
    assert len(lines) == len(ranked_trials)
    # Each line's colour is its score's: the bar's colour map at its score.
    bar = _colourbar(figure)
    mappable = bar._colorbar.mappable
    best = max(lines, key=lambda line: line.get_linewidth())
    expected = mappable.to_rgba(run_results.best.score)
    assert np.allclose(best.get_color(), expected)
    figure.savefig(os.devnull, format="png")


# ---------------------------------------------------------------------- learning curves
@pytest.mark.slow
def test_learning_curves_of_the_top_five_have_distinct_colours(run_results):
    from matplotlib.colors import to_hex

    figure = plots.plot_learning_curves(run_results, top=5)
    axes = figure.axes[0]
    top = plots.top_configurations(run_results, 5)
    assert len(top) == 5
    assert top[0].trial_id == run_results.best.trial_id
    coloured = [line for line in axes.get_lines() if line.get_label().startswith("trial ")]
    assert [line.get_label().split(":")[0] for line in coloured][::-1] == \
        [f"trial {r.trial_id}" for r in top]
    colours = [to_hex(line.get_color()) for line in coloured]
    assert len(set(colours)) == 5, colours
    markers = {line.get_marker() for line in coloured}
    assert len(markers) == 5
    for line in coloured:  # epochs numbered from 1, whole numbers
        xs = np.asarray(line.get_xdata(), dtype=float)
        assert xs.min() >= 1 and np.all(xs == np.round(xs))
    # A promoted trial's parents' epochs are dotted in its colour.
    promoted = [r for r in top if r.parent_trial_id]
    dotted = [line for line in axes.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == len(promoted)
    legend = axes.get_legend()
    assert [t.get_text().split(":")[0] for t in legend.get_texts()][:5] == \
        [f"trial {r.trial_id}" for r in top]
    _legends_clear_of_the_axes(figure)


def test_learning_curves_count_every_trial_of_the_run(made_up):
    title = plots.plot_learning_curves(made_up, top=3).axes[0].get_title()
    assert title.endswith("the best 3 configurations of 9 trials (2 without a curve)"), title


def test_learning_curves_join_a_promoted_trial_to_its_parents(tmp_path):
    parent = _record("00", "COMPLETED", 0.6, curve={"0": 0.6}, units=8)
    child = _record("01", "COMPLETED", 0.8, curve={"1": 0.7, "2": 0.8}, units=8)
    child.parent_trial_id, child.initial_epoch, child.epochs = "00", 1, 3
    other = _record("02", "COMPLETED", 0.5, curve={"0": 0.4, "1": 0.5}, units=16)
    results = RunResults(run_dir=tmp_path, objective="val_accuracy", direction="max",
                         trials=rank([parent, child, other], "max"), hp_names=["units"])
    assert [r.trial_id for r in plots.top_configurations(results, 5)] == ["01", "02"]
    axes = plots.plot_learning_curves(results).axes[0]
    dotted = [line for line in axes.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1
    assert list(dotted[0].get_xdata()) == [1, 2] and list(dotted[0].get_ydata()) == [0.6, 0.7]
    solid = _line(axes, "trial 01")
    assert list(solid.get_xdata()) == [2, 3]
    # trial 00 is the same configuration: drawn as 01's dotted start, not as its own curve.
    assert not [line for line in axes.get_lines() if line.get_label().startswith("trial 00")]


# ---------------------------------------------------------------------- contour, importance
@pytest.mark.slow
def test_contour_and_importance_of_a_real_run(run_results):
    figure = plots.plot_contour(run_results)
    bar = _colourbar(figure)
    assert "brighter is better" in bar.get_ylabel()
    axes = [a for a in figure.axes if a is not bar][0]
    star = [c for c in axes.collections if c.get_label().startswith("best: trial")]
    assert star and run_results.best.trial_id in star[0].get_label()
    figure = plots.plot_importance(run_results)
    assert "hyperparameter importance" in figure.axes[0].get_title()


@pytest.mark.slow
def test_best_so_far_of_a_real_run_is_monotone(run_results):
    for x in ("trial", "time"):
        axes = plots.plot_best_so_far(run_results, x=x).axes[0]
        step = _line(axes, "best so far")
        ys = np.asarray(step.get_ydata(), dtype=float)
        assert np.all(np.diff(ys) >= 0)
        assert ys[-1] == pytest.approx(run_results.best.score)
        xs = np.asarray(step.get_xdata(), dtype=float)
        assert np.all(np.diff(xs) > 0)
        if x == "time":
            total = sum(r.wall_time_s for r in run_results if r.wall_time_s)
            assert xs[-1] == pytest.approx(total)
            assert not math.isclose(xs[-1], len(run_results))


def test_plots_import_without_tensorflow():
    code = ("import sys, kerastune_kit.plots; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'keras_tuner', 'matplotlib') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # matplotlib too loads on first use
