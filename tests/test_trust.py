"""Numbers and printed commands you can trust: ranking of diverged trials, one "best", one
direction rule, ``--resume`` from the saved settings."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kerastune_kit.cli import main
from kerastune_kit.report import rank_numbers
from kerastune_kit.results import TrialRecord, best_of, direction_of, rank, read_leaderboard
from tests.conftest import REPO, error_lines, run_cli


def _records(direction: str) -> list[TrialRecord]:
    good, bad = (0.2, 0.1083) if direction == "max" else (40.0, 60.0)
    stale = 0.1333 if direction == "max" else 50.0  # a stand-in better than the worst
    return [
        TrialRecord("0", "COMPLETED", score=bad),
        TrialRecord("1", "DIVERGED", score=stale, message="loss diverged"),
        TrialRecord("2", "PRUNED", score=good),
        TrialRecord("3", "FAILED", message="boom"),
        TrialRecord("4", "FAILED", score=None, message="the loss diverged at epoch 1"),
        TrialRecord("5", "RUNNING"),
    ]


@pytest.mark.parametrize("direction", ["max", "min"])
def test_diverged_trials_rank_below_every_completed_and_pruned_trial(direction):
    ranked = rank(_records(direction), direction)
    assert [r.trial_id for r in ranked] == ["2", "0", "1", "4", "3", "5"]
    assert rank_numbers(ranked) == ["1", "2", "-", "-", "-", "-"]  # 1..N, no gaps
    assert best_of(ranked, direction).trial_id == "2"  # a pruned trial can be the best


def test_one_direction_rule():
    from kerastune_kit.hypermodels import objective_direction

    for name in ("val_accuracy", "accuracy", "val_auc", "val_binary_accuracy", "val_loss",
                 "val_mae", "mse"):
        assert objective_direction(name) == direction_of(name)


def test_the_oracle_sees_diverged_trials_below_the_worst_finished_one(tmp_path):
    """A stand-in set when the trial diverged goes stale once a worse trial finishes."""
    kt = pytest.importorskip("keras_tuner")
    from kerastune_kit.tuners import rescore_diverged

    for direction, scores, stale in (("max", [0.5, 0.3], 0.4), ("min", [10.0, 30.0], 20.0)):
        oracle = kt.oracles.RandomSearchOracle(
            objective=kt.Objective("val_metric", direction), max_trials=5, seed=1)
        oracle._set_project_dir(str(tmp_path), f"p-{direction}")
        hp = kt.HyperParameters()
        hp.Float("x", 0, 1)
        oracle.update_space(hp)
        ids = []
        for value in [*scores, stale]:
            trial = oracle.create_trial("tuner0")
            oracle.update_trial(trial.trial_id, {"val_metric": value})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            ids.append(trial.trial_id)
        records = [TrialRecord(ids[0], "COMPLETED", score=scores[0]),
                   TrialRecord(ids[1], "COMPLETED", score=scores[1]),
                   TrialRecord(ids[2], "DIVERGED")]
        assert rescore_diverged(oracle, records) == [ids[2]]
        best = oracle.get_best_trials(3)
        assert [t.trial_id for t in best] == ids  # the diverged one last, below the worse one
        saved = json.loads(Path(oracle._get_trial_dir(ids[2]), "trial.json").read_text())
        assert saved["score"] == best[-1].score
        assert rescore_diverged(oracle, records) == []  # idempotent


@pytest.mark.slow
def test_diverging_search_ranks_every_diverged_trial_last_everywhere(tmp_path):
    """The issue's command: high SGD learning rates on diabetes (val_loss, minimized)."""
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.runs import load_results
    from kerastune_kit.tuning import run_search

    run = tmp_path / "run"
    result = run_search(SearchConfig(
        data="diabetes", tuner="random", max_trials=6, max_epochs=3, run_dir=str(run), seed=0,
        # (0.05, not the 0.5: standardized regression targets train stably at 0.5)
        overrides={"learning_rate": {"min": 0.05, "max": 10.0}, "optimizer": "sgd",
                   "clipnorm": "off", "normalization": "none"}))
    statuses = [r.status for r in result.trials]
    assert "DIVERGED" in statuses and "COMPLETED" in statuses, statuses
    rows = read_leaderboard(run)
    first_diverged = [row["status"] for row in rows].index("DIVERGED")
    assert all(row["status"] != "COMPLETED" for row in rows[first_diverged:])
    assert all(row["score"] == "" for row in rows if row["status"] == "DIVERGED")
    results = load_results(run)
    assert results.best.trial_id == result.best.trial_id == rows[0]["trial_id"]
    best_json = json.loads((run / "best_hyperparameters.json").read_text())
    assert best_json["trial_id"] == result.best.trial_id
    # The oracle (what a Bayesian oracle learns from) has every diverged trial last.
    finished = [r.score for r in result.trials if r.status in ("COMPLETED", "PRUNED")]
    for record in result.trials:
        if record.status == "DIVERGED":
            state = json.loads((run / "tuner" / f"trial_{record.trial_id}" /
                                "trial.json").read_text())
            assert state["score"] > max(finished)
    table = run_cli("inspect", str(run), "--top", "0", timeout=120)
    ranks = [line.split()[0] for line in table.stdout.splitlines()
             if re.match(r"^(\d+|-)\s+\d", line)]
    numbered = [int(r) for r in ranks if r != "-"]
    assert numbered == list(range(1, len(numbered) + 1))


# ---------------------------------------------------------------------- --resume
def _printed_command(stdout: str, prefix: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if prefix in line)
    return shlex.split(line.split(prefix, 1)[1].strip())


@pytest.mark.slow
def test_the_printed_resume_command_works_as_pasted(tmp_path):
    run = tmp_path / "R"
    stopped = run_cli("search", "--data", "iris", "--tuner", "random", "--max-trials", "60",
                      "--max-epochs", "2", "--max-time", "15s", "--run-dir", str(run),
                      timeout=300)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "search stopped (time budget)" in stopped.stdout, stopped.stdout
    command = _printed_command(stopped.stdout, "continue it with: ")
    assert command[:4] == ["python", "-m", "kerastune_kit", "search"]
    before = len(read_leaderboard(run))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    resumed = subprocess.run([sys.executable, *command[1:], "--max-trials", str(before + 2)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    saved = (run / "config.toml").read_text()
    assert 'tuner = "random"' in saved and 'data = "iris"' in saved
    assert len(read_leaderboard(run)) == before + 2


def test_resume_refuses_a_typed_flag_that_contradicts_the_saved_search(tmp_path, capsys):
    run = tmp_path / "R"
    run.mkdir()
    (run / "config.toml").write_text(
        f'[search]\ndata = "iris"\ntuner = "random"\nmax_epochs = 2\nrun_dir = "{run}"\n')
    (run / "run.json").write_text("{}")
    code = main(["search", "--run-dir", str(run), "--resume", "--tuner", "bayesian"])
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1, err
    assert "tuner" in err[0] and "'random'" in err[0] and "'bayesian'" in err[0]


# ---------------------------------------------------------------------- Bayesian proposals
def test_initial_random_points_follow_the_budget():
    from kerastune_kit.tuners import initial_random_points

    assert initial_random_points(12, 16) == 3
    assert initial_random_points(100, 16) == 25
    assert initial_random_points(1000, 2) == 6  # never more than KerasTuner's 3 x dimensions
    assert initial_random_points(None, 16) == 10  # a time budget: Optuna's start-up count


def test_a_12_trial_bayesian_search_makes_model_based_proposals(tmp_path, monkeypatch):
    """The oracle of a 12-trial search is driven directly: 3 random points, 9 proposals."""
    pytest.importorskip("keras_tuner")
    from keras_tuner.src.tuners.bayesian import BayesianOptimizationOracle

    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuners import build_tuner, search_plan
    from kerastune_kit.tuning import prepare

    config = SearchConfig(data="iris", tuner="bayesian", max_trials=12, max_epochs=1,
                          run_dir=str(tmp_path / "run"), seed=3, baselines=False)
    _, _, hypermodel, objective = prepare(config)
    plan = search_plan(config, hypermodel)
    assert plan.startswith("bayesian optimization: the first 3 of 12 trials are random, "
                           "the other 9 are proposed by a Gaussian process")
    tuner = build_tuner(config, hypermodel, objective=objective)
    oracle = tuner.oracle
    assert oracle.num_initial_points == 3
    random_calls = []
    original = BayesianOptimizationOracle._random_populate_space

    def counted(self):
        random_calls.append(1)
        return original(self)

    monkeypatch.setattr(BayesianOptimizationOracle, "_random_populate_space", counted)
    for i in range(12):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {objective: 0.5 + 0.03 * (i % 5)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert len(random_calls) == 3
    assert len(oracle.trials) == 12


# ---------------------------------------------------------------------- messages
@pytest.mark.parametrize("objective, validation, hint", [
    ("val_acc", True, "val_accuracy"),
    ("val_accuracy", False, "validation_data or validation_split"),
])
def test_hparams_callback_warns_when_its_objective_is_not_logged(tmp_path, objective,
                                                                 validation, hint):
    keras = pytest.importorskip("keras")
    import numpy as np

    from kerastune_kit import HParamsCallback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    callback = HParamsCallback(tmp_path / "run", {"learning_rate": 1e-3}, objective=objective)
    with pytest.warns(UserWarning, match=rf"objective '{objective}' is not in the epoch logs"
                      rf".*{hint}") as caught:
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callback],
                  validation_data=(x, y) if validation else None)
    assert len([w for w in caught if "HParamsCallback" in str(w.message)]) == 1  # once
    assert callback.record.score is None


def test_a_budget_that_ends_before_the_first_trial_says_so_in_one_line(tmp_path, capsys):
    code = main(["search", "--data", "iris", "--tuner", "random", "--max-epochs", "400",
                 "--max-time", "1s", "--run-dir", str(tmp_path / "run"), "--quiet"])
    captured = capsys.readouterr()
    err = error_lines(captured.err)
    assert code == 2 and len(err) == 1, captured
    assert err[0].startswith("error: max_time: the budget of 1s ran out before the first "
                             "epoch of the first trial ended")
    assert "0 trials" not in captured.out
    # the command it prints continues the run (pasted, with a cap to keep the test short)
    command = shlex.split(err[0].split("continue with a longer one: ", 1)[1])
    assert command[:4] == ["python", "-m", "kerastune_kit", "search"]
    assert main([*command[3:], "--max-trials", "1", "--max-time", "6s", "--quiet"]) == 0


def test_resume_accepts_the_effective_objective_and_refuses_a_new_pruner(tmp_path, capsys):
    run = tmp_path / "R"
    run.mkdir()
    (run / "config.toml").write_text(  # written before the default objective was saved
        f'[search]\ndata = "iris"\ntuner = "random"\nmax_epochs = 2\nrun_dir = "{run}"\n')
    (run / "run.json").write_text(json.dumps({"objective": "val_accuracy"}))
    from kerastune_kit.config import build_config, check_resume_settings, resume_base

    def resumed(**flags):
        values = resume_base(None, run_dir=str(run), data=None, tuner=None)
        return build_config(values, resume=True, **flags)

    check_resume_settings(resumed(objective="val_accuracy"))  # the value it really used
    check_resume_settings(resumed(max_trials=30, max_time=60.0))  # may change
    from kerastune_kit.errors import RunDirError

    with pytest.raises(RunDirError, match="objective: .* used 'val_accuracy', received "
                                          "'val_loss'"):
        check_resume_settings(resumed(objective="val_loss"))
    with pytest.raises(RunDirError, match="pruner: .* used 'none', received 'median'"):
        check_resume_settings(resumed(pruner="median"))


def _image_npz(path: Path) -> Path:
    """Raw uint8 8x8 images (digits scaled to 0..255): the search rescales them by 1/255."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:400] * 16).clip(0, 255).astype("uint8")
    np.savez(path, x=images, y=digits.target[:400])
    return path


@pytest.mark.parametrize("case", ["iris", "diabetes", "images"])
def test_the_exported_model_takes_raw_inputs_and_reproduces_the_score(tmp_path, case):
    """Issue 13 item 4: the model used to expect features standardized with statistics saved
    nowhere, so ``predict(raw_x)`` was silently wrong."""
    import numpy as np

    keras = pytest.importorskip("keras")
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.data import load_dataset
    from kerastune_kit.runs import export_best
    from kerastune_kit.tuning import run_search

    data = str(_image_npz(tmp_path / "images.npz")) if case == "images" else case
    model = "cnn" if case == "images" else "auto"
    overrides = {"num_blocks": 1, "filters": 8} if case == "images" else {}
    result = run_search(SearchConfig(data=data, model=model, tuner="random", max_trials=2,
                                     max_epochs=3, seed=3, run_dir=str(tmp_path / "run"),
                                     overrides=overrides))
    raw = load_dataset(data, seed=3, standardize=False)
    scaled = load_dataset(data, seed=3)
    assert scaled.preprocessing.kind == ("rescale" if case == "images" else "standardize")
    assert not np.allclose(raw.x_val, scaled.x_val)  # the raw inputs really differ
    exported, sidecar = export_best(tmp_path / "run", tmp_path / "best.keras")
    card = json.loads(sidecar.read_text())["model_card"]
    assert card["preprocessing"]["kind"] == scaled.preprocessing.kind
    for path in (tmp_path / "run" / "best_model.keras", exported):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. Keras's "Skipping variable loading"
            loaded = keras.models.load_model(path)
        scores = loaded.evaluate(raw.x_val, raw.y_val, verbose=0, return_dict=True)
        metric = result.objective.removeprefix("val_")
        assert scores[metric] == pytest.approx(result.best.score, rel=1e-4, abs=1e-5), path
        predictions = loaded.predict(raw.x_val, verbose=0)
        if case == "diabetes":
            assert predictions.shape == (len(raw.x_val), 1)
        else:
            assert predictions.shape == (len(raw.x_val), scaled.n_classes)
            np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)  # probabilities
            assert card["class_names"] == list(scaled.class_names)


_SIX_POINTS = {"num_layers": 1, "units": 16, "dropout": 0.0, "normalization": "none",
               "residual": False, "clipnorm": "off", "activation": "relu",
               "kernel_initializer": "auto", "l2": "off", "learning_rate": 1e-3,
               "batch_size": [32, 64, 128], "optimizer": ["adam", "sgd"]}


@pytest.mark.parametrize("tuner", ["hyperband", "random", "bayesian", "grid"])
def test_a_space_that_runs_out_is_said_and_hyperband_still_trains_to_max_epochs(tmp_path, tuner):
    """Issue 13 item 8: Hyperband used to stop after 6 one-epoch trials (best model: 1 of 9
    epochs) and Bayesian to run the same configurations again; nothing said why."""
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    result = run_search(SearchConfig(data="iris", tuner=tuner, max_trials=10, max_epochs=9,
                                     seed=1, run_dir=str(tmp_path / "run"), patience=0,
                                     overrides=_SIX_POINTS))
    assert result.exhausted == 6 and result.stopped is None
    configurations = [json.dumps(r.hyperparameters, sort_keys=True) for r in result.trials
                      if not r.parent_trial_id]
    assert len(configurations) == len(set(configurations)) == 6  # each tried once
    assert max(r.epochs for r in result.trials) == 9  # someone trained to max_epochs
    if tuner == "hyperband":
        assert any(r.parent_trial_id for r in result.trials)  # promoted, not stopped
    assert main(["inspect", str(tmp_path / "run")]) == 0


def test_the_cli_says_the_space_ran_out(tmp_path, capsys):
    sets = [part for knob in ("num_layers=1", "units=16", "dropout=0", "normalization=none",
                              "residual=false", "clipnorm=off", "l2=off", "learning_rate=1e-3",
                              "activation=relu", "kernel_initializer=auto",
                              "batch_size=32,64,128", "optimizer=adam,sgd")
            for part in ("--set", knob)]
    code = main(["search", "--data", "iris", "--tuner", "random", "--max-trials", "8",
                 "--max-epochs", "2", *sets, "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if "ran out" in line]
    assert lines == ["the search space ran out: all 6 distinct configurations were tried; "
                     "widen it with --set for more"]


def test_hyperband_never_promotes_a_diverged_trial_even_when_a_whole_round_diverged(tmp_path):
    """Review of issue 13: every first-round trial diverged and Hyperband promoted one of them;
    the promotion crashed on its missing checkpoint (a traceback, a FAILED trial)."""
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    result = run_search(SearchConfig(
        data="diabetes", tuner="hyperband", max_epochs=3, seed=1, run_dir=str(tmp_path / "r"),
        overrides={"learning_rate": {"min": 5.0, "max": 10.0}, "optimizer": "sgd",
                   "clipnorm": "off"}))
    diverged = {r.trial_id for r in result.trials if r.outcome == "diverged"}
    assert diverged
    assert not [r for r in result.trials if r.parent_trial_id in diverged]
    assert not [r for r in result.trials if r.status == "FAILED"]


def test_a_diverged_trial_read_from_event_files_alone_is_diverged():
    message = ("diverged: non-finite loss at epoch 0 step 3 (learning_rate=7.1); ranked below "
               "every completed and pruned trial")
    assert TrialRecord("1", "FAILED", message=message).outcome == "diverged"
    assert TrialRecord("2", "FAILED", message="pruned by asha at epoch 2").outcome == "pruned"


def test_bayesian_proposals_stay_inside_the_space(tmp_path, monkeypatch):
    """KerasTuner maps a probability of exactly 1 to max_value + 1 (units_0=513 of 16..512);
    an L-BFGS-B refinement that stops on the upper bound must not leave the space."""
    import numpy as np
    import scipy.optimize

    kt = pytest.importorskip("keras_tuner")
    from kerastune_kit.tuners import tuner_class

    hp = kt.HyperParameters()
    hp.Int("units", 16, 512)
    oracle = kt.oracles.BayesianOptimizationOracle(
        objective=kt.Objective("score", "max"), max_trials=20, hyperparameters=hp,
        num_initial_points=3, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.__class__ = tuner_class("bayesian_oracle")
    for i, units in enumerate((16, 100, 400)):
        trial = oracle.create_trial(f"t{i}")
        trial.hyperparameters.values["units"] = units
        oracle.update_trial(trial.trial_id, {"score": units / 512})
        oracle.end_trial(trial)

    class AtTheBound:
        def __init__(self, bounds):
            self.x, self.fun = np.array(bounds)[:, 1].astype(float), np.array([-1e9])

    monkeypatch.setattr(scipy.optimize, "minimize",
                        lambda fun, x0, bounds, method: AtTheBound(bounds))
    values = oracle.populate_space("t3")["values"]
    assert 16 <= values["units"] <= 512
