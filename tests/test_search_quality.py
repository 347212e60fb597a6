"""Search quality: popular designs first, the whole time budget used, budgets sized to the data,
early stopping on plateaus, standardized regression targets, and the tpe/bohb tuners end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kerastune_kit.config import SearchConfig
from kerastune_kit.designs import POPULAR_DESIGNS
from tests import tb_read

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")

from kerastune_kit.hypermodels import MLPHyperModel, passes_per_epoch  # noqa: E402
from kerastune_kit.results import read_leaderboard  # noqa: E402
from kerastune_kit.tuning import run_search  # noqa: E402

pytestmark = pytest.mark.slow


def _config(tmp_path, **kwargs) -> SearchConfig:
    base = dict(data="iris", tuner="random", max_trials=3, max_epochs=2, seed=0,
                run_dir=str(tmp_path / "run"))
    return SearchConfig(**{**base, **kwargs})


@pytest.mark.parametrize("tuner", ["random", "bayesian"])
def test_baselines_run_first_with_their_design_values_and_are_marked(tmp_path, tuner):
    result = run_search(_config(tmp_path, tuner=tuner))
    by_id = {r.trial_id: r for r in result.trials}
    first, second = by_id["0"], by_id["1"]
    mlp_2x256, mlp_2x64 = POPULAR_DESIGNS["mlp"]
    assert (first.baseline, second.baseline) == (mlp_2x256.name, mlp_2x64.name)
    assert by_id["2"].baseline is None
    for record, design in ((first, mlp_2x256), (second, mlp_2x64)):
        for name, value in design.values.items():
            if name in record.hyperparameters:
                assert record.hyperparameters[name] == pytest.approx(value), name
        assert "kit/baseline" not in record.hyperparameters
    assert first.hyperparameters["units_1"] == 256 and second.hyperparameters["units_0"] == 64
    # leaderboard.csv and the HParams dashboard say which design each baseline ran
    rows = {row["trial_id"]: row for row in read_leaderboard(result.run_dir)}
    assert rows["0"]["baseline"] == "mlp_2x256" and rows["2"]["baseline"] == ""
    tensorboard = result.run_dir / "tensorboard"
    assert "baseline" in tb_read.experiment_hparam_names(tensorboard)
    assert tb_read.session_hparams(tensorboard / "1")["baseline"] == "mlp_2x64"
    assert tb_read.session_hparams(tensorboard / "2")["baseline"] == ""
    # the best is never below the best baseline
    baseline_best = max(r.score for r in result.trials if r.baseline)
    assert result.best_score >= baseline_best


def test_user_overrides_apply_to_the_baselines(tmp_path):
    config = _config(tmp_path, max_trials=2, overrides={
        "learning_rate": {"min": 1e-2, "max": 1e-1, "log": True}, "optimizer": "sgd",
        "num_layers": 1, "units": {"min": 16, "max": 100}})
    result = run_search(config)
    values = {r.trial_id: r.hyperparameters for r in result.trials}
    assert values["0"]["learning_rate"] == pytest.approx(1e-2)  # clamped into the range
    assert values["0"]["optimizer"] == "sgd" and values["0"]["num_layers"] == 1
    assert values["0"]["units_0"] == 100 and values["1"]["units_0"] == 64
    assert "units_1" not in values["0"]


def test_no_baseline_turns_them_off_and_grid_search_has_none(tmp_path):
    result = run_search(_config(tmp_path, baselines=False, max_trials=2))
    assert all(r.baseline is None for r in result.trials)
    assert "baseline" not in tb_read.experiment_hparam_names(result.run_dir / "tensorboard")


def test_hyperband_baselines_train_to_max_epochs_outside_the_brackets(tmp_path):
    result = run_search(_config(tmp_path, tuner="hyperband", max_trials=None, max_epochs=3,
                                patience=0))
    baselines = [r for r in result.trials if r.baseline]
    assert [r.trial_id for r in baselines] == ["0000", "0001"]
    assert all(r.epochs == 3 and r.initial_epoch == 0 for r in baselines)
    # one Hyperband iteration of max_epochs 3, factor 3 still runs in full after them
    others = [r for r in result.trials if not r.baseline]
    assert len(others) == 6 and not any(r.parent_trial_id in ("0000", "0001") for r in others)


def test_a_time_budget_without_max_trials_keeps_the_search_going(tmp_path):
    # One Hyperband iteration at max_epochs 1 is a single trial; with --max-time the
    # brackets repeat until the time is spent.
    result = run_search(_config(tmp_path, tuner="hyperband", max_trials=None, max_epochs=1,
                                baselines=False, max_time=7, trials_per_worker=0))
    assert result.stopped == "time budget"
    assert len(result.trials) >= 2  # (without max_time: exactly 1)
    # --max-trials stays a cap
    capped = run_search(_config(tmp_path, tuner="random", max_trials=3, max_time=600,
                                run_dir=str(tmp_path / "capped"), baselines=False))
    assert len(capped.trials) == 3 and capped.stopped is None


def test_small_data_get_at_least_min_steps_per_epoch():
    assert passes_per_epoch(353, 64, 100) == 19
    assert passes_per_epoch(3840, 64, 50) == 1
    assert passes_per_epoch(100, 32, 0) == 1
    x = np.random.default_rng(0).normal(size=(100, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    steps = {}
    for minimum in (0, 20):
        hypermodel = MLPHyperModel(input_shape=(4,), task="binary")
        hypermodel.min_steps_per_epoch = minimum
        hp = kt.HyperParameters()
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, x, y, batch_size=32, epochs=2, validation_data=(x, y))
        steps[minimum] = int(model.optimizer.iterations.numpy())
    assert steps == {0: 2 * 4, 20: 2 * 22}  # 4 batches a pass; 7 passes make 22 steps


def test_a_trial_on_a_plateau_stops_early(tmp_path):
    # A learning rate of 1e-5 leaves the accuracy flat: patience 1 stops after 2 epochs.
    config = _config(tmp_path, max_trials=1, max_epochs=8, patience=1, baselines=False,
                     overrides={"learning_rate": 1e-9, "optimizer": "sgd"})
    (record,) = run_search(config).trials
    assert record.status == "COMPLETED" and record.epochs == 2


def test_regression_targets_are_standardized_inside_the_model(tmp_path):
    from kerastune_kit.data import load_dataset

    config = SearchConfig(data="diabetes", tuner="random", max_trials=2, max_epochs=4,
                          run_dir=str(tmp_path / "run"), objective="val_mae")
    result = run_search(config)
    raw = load_dataset("diabetes", standardize=False)
    y_mean, y_std = float(raw.y_train.mean()), float(raw.y_train.std())
    assert y_std > 10  # diabetes targets are far from unit scale: the test means something
    model = keras.models.load_model(result.run_dir / "best_model.keras")
    scale = model.get_layer(next(layer.name for layer in model.layers
                                 if isinstance(layer, keras.Model))).get_layer("target_units")
    assert scale.scale == pytest.approx(y_std, rel=1e-5)
    assert scale.offset == pytest.approx(y_mean, rel=1e-5)
    scores = model.evaluate(raw.x_val, raw.y_val, verbose=0, return_dict=True)
    assert scores["mae"] == pytest.approx(result.best_score, rel=1e-4)  # in the target's units
    # the loss the search trained is the MSE over the targets' variance
    assert scores["loss"] == pytest.approx(scores["mse"] / y_std**2, rel=1e-4)
    assert result.best_score < 0.9 * float(np.mean(np.abs(raw.y_val - y_mean)))  # beats the mean


@pytest.mark.parametrize("tuner", ["tpe", "bohb"])
def test_model_based_tuners_run_and_resume(tmp_path, tuner):
    pytest.importorskip("optuna")
    first = run_search(_config(tmp_path, tuner=tuner, max_trials=4, max_epochs=3))
    assert len(first.trials) == 4 and first.best is not None
    assert sum(1 for r in first.trials if r.baseline) == 2
    resumed = run_search(_config(tmp_path, tuner=tuner, max_trials=7, max_epochs=3,
                                 resume=True))
    ids = sorted(r.trial_id for r in resumed.trials)
    assert len(ids) == 7 and len(set(ids)) == 7
    keys = {json.dumps(r.hyperparameters, sort_keys=True)
            for r in resumed.trials if r.parent_trial_id is None}
    assert len(keys) == len([r for r in resumed.trials if r.parent_trial_id is None])


def test_random_proposals_stay_under_the_cost_limit(tmp_path):
    from kerastune_kit.hypermodels import CNNHyperModel
    from kerastune_kit.tuners import COST_LIMIT_FACTOR, cost_limit, tuner_class

    hypermodel = CNNHyperModel(input_shape=(28, 28, 1), task="multiclass", n_classes=10)
    limit = cost_limit(hypermodel)
    lenet = hypermodel.cost(dict(POPULAR_DESIGNS["cnn"][0].values))
    assert lenet == pytest.approx(28 * 28 * 9 * 32 + 14 * 14 * 9 * 32 * 64 + 7 * 7 * 64 * 128
                                  + 128 * 10)
    assert limit >= COST_LIMIT_FACTOR * lenet

    def draws(guarded: bool) -> list[float]:
        tuner = tuner_class("random")(
            hypermodel=hypermodel, objective=kt.Objective("val_accuracy", "max"),
            max_trials=100, seed=3, directory=str(tmp_path), project_name=f"g{guarded}",
            kit_run_dir=tmp_path / f"run{guarded}", kit_space=hypermodel.space,
            kit_metric_names=hypermodel.head.metric_names)
        if guarded:
            tuner.oracle.kit_cost, tuner.oracle.kit_cost_limit = hypermodel.cost, limit
        return [hypermodel.cost(tuner.oracle._random_values()) for _ in range(40)]

    assert max(draws(False)) > limit  # the space has such corners...
    assert max(draws(True)) <= limit  # ...and random proposals avoid them


def test_the_trial_running_at_the_time_budget_ends_and_counts(tmp_path):
    # Each trial is long (40 epochs of 1,500 steps); the budget ends inside the first one.
    config = _config(tmp_path, max_trials=3, max_epochs=40, max_time=6, baselines=False,
                     patience=0, trials_per_worker=0, min_steps_per_epoch=1500)
    result = run_search(config)
    assert result.stopped == "time budget"
    (first, *_) = result.trials
    assert first.status == "COMPLETED" and 0 < first.epochs < 40
    assert first.message.startswith("stopped by the time budget after epoch")
    assert result.best is first and (result.run_dir / "best_model.keras").is_file()


def test_cli_no_baseline_flag_and_tpe_without_optuna(tmp_path, capsys, monkeypatch):
    import importlib.util

    from kerastune_kit.cli import main

    run = tmp_path / "run"
    assert main(["search", "--data", "iris", "--tuner", "random", "--max-trials", "2",
                 "--max-epochs", "1", "--no-baseline", "--run-dir", str(run), "--quiet"]) == 0
    assert [row["baseline"] for row in read_leaderboard(run)] == ["", ""]
    assert "baselines = false" in (run / "config.toml").read_text()
    capsys.readouterr()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else real(name, *a))
    for tuner in ("tpe", "bohb"):
        assert main(["search", "--data", "iris", "--tuner", tuner,
                     "--run-dir", str(tmp_path / tuner)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: tuner: --tuner tpe and --tuner bohb need Optuna, which is not "
                       "installed; run pip install 'kerastune_kit[tpe]'"]
        assert not (tmp_path / tuner).exists()
