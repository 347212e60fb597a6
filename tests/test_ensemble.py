"""Ensembles of a run's best trials: ``export RUN --ensemble K`` and ``load_results(run).ensemble``.

Real searches (iris, diabetes; a public tuner on blobs), the file read back in a Python that
never imports kerastune_kit, the averages and scores recomputed from the members.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit import SearchConfig, load_results, run_search
from kerastune_kit.cli import main
from kerastune_kit.ensemble import check_ensemble_size, distinct_top_trials
from kerastune_kit.errors import ConfigError
from kerastune_kit.results import TrialRecord
from tests.conftest import error_lines, run_cli
from tests.helpers import assert_one_line

FAST = dict(min_steps_per_epoch=0, preflight=False)


def _members(run: Path, trial_ids: list[str]) -> tuple[list, object]:
    """The members' inference models, rebuilt here the way ``best_model.keras`` is."""
    from kerastune_kit.config import load_saved_config
    from kerastune_kit.session import prepare
    from kerastune_kit.tuners import build_tuner

    config = SearchConfig(**{**load_saved_config(run), "run_dir": str(run), "resume": True,
                             "overwrite": False})
    dataset, _, hypermodel, objective = prepare(config, check_run_dir=False)
    tuner = build_tuner(config, hypermodel, objective=objective)
    return [hypermodel.inference_model(tuner.load_model(tuner.oracle.get_trial(t)))
            for t in trial_ids], dataset


def _predict_without_kerastune_kit(model: Path, x: np.ndarray, tmp_path: Path) -> np.ndarray:
    """Load ``model`` and predict ``x`` in a fresh interpreter that never imports kerastune_kit."""
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, keras\n"
        f"model = keras.saving.load_model({str(model)!r})\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, model.predict(np.load({str(tmp_path / 'x.npy')!r}),"
        " verbose=0))\n"
        "assert not any(m.startswith('kerastune_kit') for m in sys.modules), 'imported'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(tmp_path / "p.npy")


# ---------------------------------------------------------------------- pure parts
def test_distinct_top_trials_keeps_the_best_of_each_configuration():
    def trial(trial_id, score, status="COMPLETED", **hp):
        return TrialRecord(trial_id=trial_id, status=status, score=score, best_epoch=1,
                           hyperparameters={"units": 32, "lr": 0.01, **hp})

    records = [
        trial("00", 0.80),                        # a Hyperband configuration ...
        trial("05", 0.90),                        # ... promoted: the same hyperparameters
        trial("01", 0.85, units=64),
        trial("02", None, "FAILED", units=128),   # never ranked
        trial("03", 0.99, "DIVERGED", units=16),  # never ranked
        trial("04", 0.70, lr=0.1),                # no checkpoint on disk
        trial("06", 0.60, lr=0.2),
    ]
    chosen = distinct_top_trials(records, 10, direction="max",
                                 has_checkpoint=lambda r: r.trial_id != "04")
    assert [r.trial_id for r in chosen] == ["05", "01", "06"]
    assert [r.trial_id for r in distinct_top_trials(records, 2, direction="max")] == ["05", "01"]
    # min direction: the lower score of the pair wins
    assert distinct_top_trials(records, 1, direction="min")[0].trial_id == "06"


@pytest.mark.parametrize("k", [1, 0, -3, 2.0, "3", True, None])
def test_ensemble_size_must_be_an_integer_of_two_or_more(k):
    with pytest.raises(ConfigError) as info:
        check_ensemble_size(k)
    assert_one_line(info.value, "ensemble:", repr(k), "--ensemble 3")


@pytest.mark.parametrize(("value", "expected"), [
    ("1", "received 1"), ("0", "received 0"), ("three", "expected an integer"),
    ("2.5", "expected an integer")])
def test_cli_refuses_a_bad_k_in_one_line_exit_2(tmp_path, capsys, value, expected):
    output = tmp_path / "ens.keras"
    code = main(["export", str(tmp_path), "--ensemble", value, "--output", str(output)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert "ensemble" in err[0]
    assert not output.exists()


# ---------------------------------------------------------------------- a real search
@pytest.fixture(scope="module")
def iris_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("iris") / "run"
    run_search(SearchConfig(data="iris", tuner="random", max_trials=4, max_epochs=3,
                            run_dir=str(run), **FAST))
    return run


@pytest.mark.slow
def test_cli_export_ensemble_averages_the_top_trials_probabilities(iris_run, tmp_path):
    from kerastune_kit.data import load_dataset

    output = tmp_path / "iris-ensemble.keras"
    done = run_cli("export", str(iris_run), "--ensemble", "3", "--output", str(output))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not error_lines(done.stderr), done.stderr  # 4 distinct trials: no warning
    sidecar = json.loads(output.with_suffix(".json").read_text())
    results = load_results(iris_run)
    top = [r.trial_id for r in results.trials[:3]]
    assert sidecar["trial_ids"] == top and sidecar["requested"] == 3
    assert [m["hyperparameters"] for m in sidecar["members"]] == \
        [r.hyperparameters for r in results.trials[:3]]
    assert sidecar["model_card"]["outputs"].startswith("the mean of 3 trials' class probab")

    # The file loads without kerastune_kit; its output is the mean of the members' probabilities.
    raw = load_dataset("iris", standardize=False)
    assert raw.x_test is not None  # the run's held-out split (default test_split)
    x = np.concatenate([raw.x_val, raw.x_test]).astype("float32")
    predicted = _predict_without_kerastune_kit(output, x, tmp_path)
    members, dataset = _members(iris_run, top)
    probabilities = np.stack([m.predict(x, verbose=0) for m in members])
    assert predicted.shape == (len(x), 3)
    np.testing.assert_allclose(predicted, probabilities.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, rtol=1e-5)
    assert np.abs(probabilities[0] - probabilities[1]).max() > 1e-3  # the members really differ

    # The printed scores are the real ones: accuracy of the averaged probabilities, and the
    # best trial's own score as the search recorded it.
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"wrote {output} and {output.with_suffix('.json')}")
    printed = {}
    for line in lines[1:]:
        match = re.fullmatch(r"(validation|test) accuracy: ensemble ([\d.]+), "
                             r"best trial \((\w+)\) ([\d.]+)", line)
        assert match, line
        assert match.group(3) == top[0]
        printed[match.group(1)] = float(match.group(2)), float(match.group(4))
    n_val = len(raw.x_val)
    for split, y, rows in (("validation", raw.y_val, slice(None, n_val)),
                           ("test", raw.y_test, slice(n_val, None))):
        accuracy = float(np.mean(predicted[rows].argmax(axis=1) == y))
        single = float(np.mean(probabilities[0][rows].argmax(axis=1) == y))
        assert printed[split][0] == pytest.approx(accuracy, abs=6e-5), split
        assert sidecar["scores"][split]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert printed[split][1] == pytest.approx(single, abs=6e-5), split
    assert printed["validation"][1] == pytest.approx(results.trials[0].score, abs=6e-5)
    np.testing.assert_array_equal(dataset.y_val, raw.y_val)  # the same split was reloaded


@pytest.mark.slow
def test_python_api_returns_the_model_and_its_scores(iris_run, tmp_path):
    from kerastune_kit.data import load_dataset

    ensemble = load_results(iris_run).ensemble(2)
    assert ensemble.trial_ids == [r.trial_id for r in load_results(iris_run).trials[:2]]
    raw = load_dataset("iris", standardize=False)
    scores = ensemble.model.evaluate(raw.x_val, raw.y_val, verbose=0, return_dict=True)
    assert ensemble.scores["validation"]["accuracy"] == pytest.approx(scores["accuracy"])
    assert ensemble.scores["validation"]["loss"] == pytest.approx(scores["loss"], rel=1e-4)
    assert ensemble.score("test") == ensemble.scores["test"]["accuracy"]
    assert ensemble.score("validation", best=True) == pytest.approx(
        load_results(iris_run).best.score, abs=1e-5)
    path = ensemble.save(tmp_path / "two.keras")
    import keras

    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict(raw.x_test, verbose=0),
                               ensemble.predict(raw.x_test, verbose=0), rtol=1e-6)
    with pytest.raises(ConfigError):
        ensemble.save(tmp_path / "two.h5")


@pytest.mark.slow
def test_regression_ensemble_averages_values_and_skips_promoted_duplicates(tmp_path):
    from kerastune_kit.data import load_dataset

    run = tmp_path / "run"
    # (no baselines, no explosion rule: every trial of the first bracket trains, so one
    # is promoted)
    run_search(SearchConfig(data="diabetes", tuner="hyperband", max_epochs=3, factor=3,
                            run_dir=str(run), test_split=0.0, baselines=False,
                            explosion_factor=0, **FAST))
    results = load_results(run)
    keys = [json.dumps(r.hyperparameters, sort_keys=True) for r in results.trials]
    assert len(set(keys)) < len(keys)  # Hyperband promoted a configuration: a duplicate
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore
    logger = logging.getLogger("kerastune_kit")
    logger.addHandler(handler)
    try:
        ensemble = results.ensemble(50)
    finally:
        logger.removeHandler(handler)
    distinct = {k for k, r in zip(keys, results.trials, strict=True) if r.has_model}
    assert len(ensemble.trial_ids) == len(distinct) >= 2
    assert len(messages) == 1 and "50 trials requested" in messages[0]
    assert f"averaging those {len(distinct)}" in messages[0]
    by_id = {r.trial_id: k for k, r in zip(keys, results.trials, strict=True)}
    chosen = [by_id[t] for t in ensemble.trial_ids]
    assert len(set(chosen)) == len(chosen)
    for trial_id in ensemble.trial_ids:  # each is the best-ranked trial of its configuration
        first = next(r for r in results.trials if by_id[r.trial_id] == by_id[trial_id])
        assert first.trial_id == trial_id

    raw = load_dataset("diabetes", standardize=False, test_split=0.0)
    members, _ = _members(run, ensemble.trial_ids)
    values = np.stack([m.predict(raw.x_val, verbose=0) for m in members])
    predicted = ensemble.predict(raw.x_val, verbose=0)
    assert predicted.shape == (len(raw.x_val), 1)
    np.testing.assert_allclose(predicted, values.mean(axis=0), rtol=1e-5, atol=1e-4)
    assert float(raw.y_val.std()) > 10 and abs(float(predicted.mean()) - raw.y_val.mean()) < 60
    mae = float(np.mean(np.abs(predicted[:, 0] - raw.y_val)))
    assert ensemble.objective == "val_loss"
    assert ensemble.scores["validation"]["mae"] == pytest.approx(mae, rel=1e-4)
    assert ensemble.scores["test"] is None and ensemble.best_scores["test"] is None
    assert ensemble.summary_lines()[1] == "test: n/a (no test split)"
    assert ensemble.score("validation", best=True) == pytest.approx(results.best.score,
                                                                    rel=1e-4)


# ---------------------------------------------------------------------- a public tuner's run
def _blobs(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(3, 6))
    y = rng.integers(0, 3, size=n)
    return (centers[y] + rng.normal(size=(n, 6))).astype("float32"), y.astype("int64")


def _build(hp):
    import keras

    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(hp.Int("units", 8, 32, step=8),
                                                 activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow
def test_public_tuner_run_needs_its_tuner_and_data(tmp_path):
    import kerastune_kit as kk

    x, y = _blobs()
    tuner = kk.RandomSearch(_build, objective="val_accuracy", max_trials=3, seed=2,
                            directory=str(tmp_path), project_name="mine")
    tuner.search(x[:120], y[:120], epochs=2, validation_data=(x[120:], y[120:]), verbose=0)
    run = tmp_path / "mine"
    done = run_cli("export", str(run), "--ensemble", "2", "--output", str(tmp_path / "e.keras"))
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert line.startswith("error: tuner: ") and "tuner=tuner, validation_data=" in line
    with pytest.raises(ConfigError, match="validation_data"):
        load_results(run).ensemble(2, tuner=tuner)

    ensemble = load_results(run).ensemble(2, tuner=tuner, validation_data=(x[120:], y[120:]))
    models = [tuner.load_model(tuner.oracle.get_trial(t)) for t in ensemble.trial_ids]
    expected = np.mean([m.predict(x[120:], verbose=0) for m in models], axis=0)
    np.testing.assert_allclose(ensemble.predict(x[120:], verbose=0), expected, rtol=1e-5)
    accuracy = float(np.mean(expected.argmax(axis=1) == y[120:]))
    assert ensemble.scores["validation"]["accuracy"] == pytest.approx(accuracy)
    assert ensemble.scores["test"] is None
