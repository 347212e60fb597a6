"""Searches with KerasTuner's real oracles: results files, Hyperband checkpoints, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.config import SearchConfig
from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.results import read_leaderboard
from kerastune_kit.rundir import LOCK_FILE
from tests.tb_read import experiment_hparam_names, scalars, session_hparams, session_status

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")
from kerastune_kit.tuning import run_search  # noqa: E402


def _config(tmp_path: Path, **kwargs) -> SearchConfig:
    values = dict(data="iris", max_epochs=2, run_dir=str(tmp_path / "run"), seed=3)
    values.update(kwargs)
    return SearchConfig(**values)


def _check_run_dir(result, n_trials: int) -> None:
    run = result.run_dir
    for name in ("config.toml", "leaderboard.csv", "best_hyperparameters.json",
                 "best_model.keras"):
        assert (run / name).is_file(), name
    rows = read_leaderboard(run)
    assert len(rows) == n_trials == len(result.trials)
    assert rows[0]["trial_id"] == result.best.trial_id
    best = json.loads((run / "best_hyperparameters.json").read_text())
    assert best["hyperparameters"] == result.best.hyperparameters
    assert best["score"] == pytest.approx(result.best_score)
    assert [p.name for p in run.glob(".*")] == [LOCK_FILE], "temporary files left behind"

    tensorboard = run / "tensorboard"
    assert {"learning_rate", "units_0", "optimizer"} <= experiment_hparam_names(tensorboard)
    for record in result.trials:
        trial_run = tensorboard / record.trial_id
        hparams = session_hparams(trial_run)
        assert hparams["learning_rate"] == pytest.approx(record.hyperparameters["learning_rate"])
        assert hparams["optimizer"] == record.hyperparameters["optimizer"]
        assert session_status(trial_run) is not None
        train, val = scalars(trial_run / "train"), scalars(trial_run / "validation")
        assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
        assert {"epoch_loss", "epoch_accuracy"} <= set(val)
        steps = [step for step, _ in val["epoch_accuracy"]]  # epochs numbered from 1
        assert steps == list(range(record.initial_epoch + 1, record.epochs + 1))
        best_value = max(v for _, v in val["epoch_accuracy"])
        assert best_value == pytest.approx(record.score)


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["random", "bayesian", "grid"])
def test_each_oracle_runs_and_writes_results(tmp_path, tuner):
    result = run_search(_config(tmp_path, tuner=tuner, max_trials=2))
    assert [r.status for r in result.trials] == ["COMPLETED", "COMPLETED"]
    assert len({r.trial_id for r in result.trials}) == 2
    _check_run_dir(result, 2)
    model = keras.models.load_model(result.run_dir / "best_model.keras")
    assert model.predict(np.zeros((2, 4), "float32"), verbose=0).shape == (2, 3)


@pytest.mark.slow
def test_hyperband_promotions_continue_from_parent_checkpoint(tmp_path):
    # (the explosion rule off: with seed 3, promoted trial 0005 (RMSprop at learning rate 0.05)
    # exceeds 3x its parent's starting loss and would be stopped; tests/test_explosion.py
    # covers promotions under the rule)
    result = run_search(_config(tmp_path, tuner="hyperband", max_epochs=3, explosion_factor=0))
    by_id = {r.trial_id: r for r in result.trials}
    promoted = [r for r in result.trials if r.parent_trial_id]
    assert promoted, "Hyperband with max_epochs=3 promotes at least one trial"
    assert all(r.status == "COMPLETED" for r in result.trials)
    for record in promoted:
        parent = by_id[record.parent_trial_id]
        # The weights measured before training are the parent's best checkpoint ...
        assert record.start_score == pytest.approx(parent.score, abs=1e-6)
        # ... and the optimizer continued from the parent's state, not from step 0.
        assert record.start_optimizer_step > 0
        assert record.initial_epoch > 0
        assert record.hyperparameters == parent.hyperparameters
    _check_run_dir(result, len(result.trials))


@pytest.mark.slow
def test_max_trials_caps_hyperband(tmp_path):
    result = run_search(_config(tmp_path, tuner="hyperband", max_epochs=3, max_trials=2))
    assert len(result.trials) == 2


@pytest.mark.slow
def test_diverging_trials_are_recorded_and_do_not_crash_the_search(tmp_path):
    config = _config(tmp_path, data="diabetes", tuner="random", max_trials=2, max_epochs=3,
                     overrides={"optimizer": "sgd", "learning_rate": 50.0,
                                "clipnorm": "off", "normalization": "none"})
    result = run_search(config)
    assert [r.status for r in result.trials] == ["DIVERGED", "DIVERGED"]
    for record in result.trials:
        assert "diverged" in record.message and "learning_rate=50" in record.message
        assert record.score is None  # no score of its own to show
        # The oracle's stand-in is the worst finite score known: here the untrained model's
        # validation loss, never NaN/inf (which KerasTuner's Bayesian oracle would turn into a
        # perfect 0).
        state = json.loads((result.run_dir / "tuner" / f"trial_{record.trial_id}" /
                            "trial.json").read_text())
        assert math.isfinite(state["score"])
        assert state["score"] == pytest.approx(record.start_score)
    assert result.best is None
    rows = read_leaderboard(result.run_dir)
    assert all("diverged" in row["message"] for row in rows)
    assert not (result.run_dir / "best_model.keras").exists()


@pytest.mark.slow
def test_resume_continues_the_saved_search(tmp_path):
    first = run_search(_config(tmp_path, tuner="random", max_trials=2))
    resumed = run_search(_config(tmp_path, tuner="random", max_trials=3, resume=True))
    assert len(resumed.trials) == 3
    first_ids = {r.trial_id: r.hyperparameters for r in first.trials}
    for record in resumed.trials:
        if record.trial_id in first_ids:
            assert record.hyperparameters == first_ids[record.trial_id]
    with pytest.raises(RunDirError, match="seed"):
        run_search(_config(tmp_path, tuner="random", max_trials=3, resume=True, seed=4))


def test_existing_run_dir_needs_overwrite_or_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "something").write_text("x")
    with pytest.raises(RunDirError, match="--overwrite"):
        run_search(_config(tmp_path, tuner="random", max_trials=1))
    with pytest.raises(RunDirError, match="not a kerastune_kit run directory"):
        run_search(_config(tmp_path, tuner="random", max_trials=1, overwrite=True))
    assert sorted(p.name for p in run.iterdir()) == ["something"]


def test_objective_must_be_a_metric_the_model_reports(tmp_path):
    with pytest.raises(ConfigError, match="val_auc"):
        run_search(_config(tmp_path, objective="val_auc"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_factories_work_inside_a_plain_keras_tuner(tmp_path):
    from kerastune_kit.data import load_dataset
    from kerastune_kit.hypermodels import MLPHyperModel
    from kerastune_kit.space import SearchSpace

    data = load_dataset("wine")
    hypermodel = MLPHyperModel.for_dataset(data, SearchSpace(optimizer="adam", num_layers=1))
    tuner = kt.BayesianOptimization(hypermodel, objective="val_accuracy", max_trials=2,
                                    directory=str(tmp_path), project_name="plain", seed=1)
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                 epochs=2, verbose=0)
    trials = tuner.oracle.get_best_trials(2)
    assert len(trials) == 2 and all(t.status == "COMPLETED" for t in trials)
    assert all(0 <= t.score <= 1 and not math.isnan(t.score) for t in trials)
    assert all(t.hyperparameters.values["optimizer"] == "adam" for t in trials)


def test_in_process_search_leaves_the_garbage_collector_as_it_was(tmp_path):
    # The search freezes its start-up objects so that KerasTuner's per-trial gc.collect() stays
    # cheap; a search run inside a user's own process must unfreeze them when it ends.
    import gc

    result = run_search(_config(tmp_path, tuner="random", max_trials=1, max_epochs=1))
    assert len(result.trials) == 1
    assert gc.get_freeze_count() == 0
