"""Pruners driven by scripted learning curves: they prune what they should, nothing else."""

from __future__ import annotations

import pytest

from kerastune_kit.errors import ConfigError
from kerastune_kit.pruning import ASHAPruner, MedianPruner, PercentilePruner, make_pruner


def curves(**series: list[float]) -> dict[str, dict[int, float]]:
    return {name: dict(enumerate(values)) for name, values in series.items()}


HISTORY = dict(a=[0.50, 0.70, 0.80], b=[0.55, 0.75, 0.85], c=[0.40, 0.60, 0.90])


def test_median_prunes_a_trial_below_the_median_of_earlier_trials():
    pruner = MedianPruner("max", warmup_trials=3, min_epoch=1)
    bad = curves(**HISTORY, new=[0.30, 0.35])
    decision = pruner.check("new", 1, bad)
    assert decision.prune and "median" in decision.reason
    good = curves(**HISTORY, new=[0.30, 0.74])
    assert not pruner.check("new", 1, good).prune


def test_median_waits_for_warmup_trials_and_min_epoch():
    pruner = MedianPruner("max", warmup_trials=3, min_epoch=1)
    two = curves(a=HISTORY["a"], b=HISTORY["b"], new=[0.1, 0.1])
    assert not pruner.check("new", 1, two).prune  # only two finished trials
    assert not pruner.check("new", 0, curves(**HISTORY, new=[0.0])).prune  # before min_epoch


def test_median_uses_best_so_far_not_the_last_value():
    pruner = MedianPruner("max", warmup_trials=3, min_epoch=1)
    # Dipped at epoch 1 but its best so far (0.72) beats the median best at epoch 1 (0.70).
    assert not pruner.check("new", 1, curves(**HISTORY, new=[0.72, 0.20])).prune


def test_minimized_objectives_prune_high_values():
    pruner = MedianPruner("min", warmup_trials=2, min_epoch=0)
    losses = curves(a=[1.0, 0.5], b=[0.9, 0.4], new=[2.0])
    assert pruner.check("new", 0, losses).prune
    assert not pruner.check("new", 0, curves(a=[1.0, 0.5], b=[0.9, 0.4], new=[0.8])).prune


def test_only_finished_trials_count_as_history():
    pruner = MedianPruner("max", warmup_trials=3, min_epoch=1)
    scripted = curves(**HISTORY, new=[0.3, 0.35])
    assert not pruner.check("new", 1, scripted, finished={"a", "b"}).prune
    assert pruner.check("new", 1, scripted, finished={"a", "b", "c"}).prune


def test_percentile_keeps_only_the_top_share():
    history = {f"t{i}": [0.1 * i, 0.1 * i + 0.05] for i in range(10)}
    pruner = PercentilePruner("max", percentile=25.0, warmup_trials=5, min_epoch=1)
    assert pruner.check("new", 1, curves(**history, new=[0.0, 0.85])).prune is False
    assert pruner.check("new", 1, curves(**history, new=[0.0, 0.6])).prune is True


def test_asha_keeps_the_top_third_at_each_rung():
    pruner = ASHAPruner("max", factor=3, min_epoch=1)
    assert pruner.rungs(9) == [0, 2, 8]
    history = curves(a=[0.9, 0.9, 0.9], b=[0.8, 0.8, 0.8], c=[0.7, 0.7, 0.7])
    assert pruner.check("new", 0, {**history, "new": {0: 0.5}}).prune
    assert not pruner.check("new", 0, {**history, "new": {0: 0.95}}).prune
    assert not pruner.check("new", 1, {**history, "new": {0: 0.95, 1: 0.1}}).prune  # no rung
    # The first trial to reach a rung always continues (asynchronous halving).
    assert not pruner.check("first", 0, {"first": {0: 0.01}}).prune


def test_a_trial_with_no_finite_value_is_pruned_once_history_exists():
    pruner = MedianPruner("max", warmup_trials=1, min_epoch=0)
    assert pruner.check("new", 0, {"a": {0: 0.5}, "new": {}}).prune


def test_make_pruner_by_name_and_bad_settings():
    assert make_pruner("none", "max") is None
    assert isinstance(make_pruner("median", "min"), MedianPruner)
    assert isinstance(make_pruner("asha", "max"), ASHAPruner)
    with pytest.raises(ConfigError, match="pruner"):
        make_pruner("hyperband", "max")
    with pytest.raises(ConfigError, match="percentile"):
        PercentilePruner("max", percentile=0)
    with pytest.raises(ConfigError, match="direction"):
        MedianPruner("up")
