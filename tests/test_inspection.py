"""A finished Hyperband search and a plain ``model.fit`` run logged beside it: event files read
back with TensorBoard's own readers, a real TensorBoard server's HParams API, ``inspect`` on event
files alone, ``load_results``, learning curves and ``export``."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from kerastune_kit.cli import main
from kerastune_kit.config import SearchConfig
from tests.tb_read import (
    experiment,
    images,
    scalars,
    session_hparams,
    session_status,
    texts,
)
from tests.tb_server import tensorboard_server

keras = pytest.importorskip("keras")
from kerastune_kit import HParamsCallback, load_curves, load_results  # noqa: E402
from kerastune_kit.tuning import run_search  # noqa: E402

pytestmark = pytest.mark.slow
SUCCESS, FAILURE = 1, 2
MANUAL = "manual_fit"


def _small_model(learning_rate: float, n_inputs: int = 4, n_outputs: int = 3) -> object:
    model = keras.Sequential([keras.Input((n_inputs,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(n_outputs)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A Hyperband search on iris (6 trials, one promotion) and a model.fit run beside it."""
    from kerastune_kit.data import load_dataset

    run_dir = tmp_path_factory.mktemp("inspection") / "run"
    result = run_search(SearchConfig(data="iris", tuner="hyperband", max_epochs=3, seed=1,
                                     run_dir=str(run_dir)))
    data = load_dataset("iris")
    keras.utils.set_random_seed(0)
    callback = HParamsCallback(run_dir / "tensorboard" / MANUAL,
                               {"learning_rate": 0.01, "num_layers": 1, "units_0": 8,
                                "optimizer": "adam"}, objective="val_accuracy")
    _small_model(0.01).fit(data.x_train, data.y_train, epochs=3, verbose=0,
                           validation_data=(data.x_val, data.y_val), callbacks=[callback])
    return result, callback.record


def test_trial_sessions_carry_score_status_best_epoch_parent_and_memory(finished):
    result, _ = finished
    tensorboard = result.run_dir / "tensorboard"
    config = experiment(tensorboard)
    assert "parent_trial_id" in {h.name for h in config.hparam_infos}
    trial_metrics = {m.name.tag: m for m in config.metric_infos if m.name.group == ""}
    assert {"trial/score", "trial/best_epoch", "trial/epochs", "trial/wall_time_s",
            "trial/peak_memory_mb"} <= set(trial_metrics)
    assert trial_metrics["trial/score"].description.startswith("val_accuracy (max)")
    assert any(r.parent_trial_id for r in result.trials), "a promotion to look at"
    for record in result.trials:
        run = tensorboard / record.trial_id
        assert session_hparams(run)["parent_trial_id"] == (record.parent_trial_id or "")
        assert session_status(run) == SUCCESS
        own = scalars(run)
        assert own["trial/score"][-1][1] == pytest.approx(record.score, rel=1e-6)
        assert own["trial/best_epoch"][-1][1] == record.best_epoch + 1  # numbered from 1
        assert own["trial/epochs"][-1][1] == record.epochs
        assert own["trial/wall_time_s"][-1][1] > 0
        assert own["trial/peak_memory_mb"][-1][1] > 10
        epochs = list(range(record.initial_epoch + 1, record.epochs + 1))
        assert [step for step, _ in own["memory/rss_mb"]] == epochs
        assert all(value > 10 for _, value in own["memory/peak_rss_mb"])
        assert texts(run)["trial/outcome"][-1][1].startswith("**completed**")


def test_live_summary_panels_follow_the_finished_trials(finished):
    result, _ = finished
    root = result.run_dir / "tensorboard" / "search"
    panels = texts(root)
    n = len(result.trials)
    # One panel per finished trial, plus the final rewrite when the results are written.
    steps = [step for step, _ in panels["search/leaderboard"]]
    assert sorted(set(steps)) == list(range(1, n + 1)) and steps[-1] == n
    final = panels["search/leaderboard"][-1][1]
    assert final.startswith(f"**{n} trials** ({n} completed)")
    for record in result.trials:
        assert f"| {record.trial_id} |" in final
    first_row = final.splitlines()[4]
    assert first_row.startswith(f"| 1 | {result.best.trial_id} | completed |")
    best = panels["search/best_configuration"][-1][1]
    assert f"**best trial {result.best.trial_id}**" in best
    assert f"| learning_rate | {result.best.hyperparameters['learning_rate']:.4g} |" in best
    importance = panels["search/importance"][-1][1]
    assert "| hyperparameter | importance |" in importance
    assert images(root) == {"search/importance_chart": [n], "search/contour": [n]}


def test_callback_run_is_a_session_with_the_same_tags(finished):
    result, record = finished
    run = result.run_dir / "tensorboard" / MANUAL
    assert session_hparams(run) == {"learning_rate": 0.01, "num_layers": 1.0, "units_0": 8.0,
                                    "optimizer": "adam", "outcome": "completed"}
    assert session_status(run) == SUCCESS
    train, val = scalars(run / "train"), scalars(run / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
    assert set(val) == {"epoch_loss", "epoch_accuracy"}
    assert [step for step, _ in val["epoch_accuracy"]] == [1, 2, 3]
    assert record.status == "COMPLETED" and record.epochs == 3
    assert record.score == pytest.approx(max(v for _, v in val["epoch_accuracy"]))
    assert scalars(run)["trial/score"][-1][1] == pytest.approx(record.score)


def test_tensorboard_server_shows_every_trial_and_the_callback_run(finished):
    result, manual = finished
    with tensorboard_server(result.run_dir / "tensorboard") as server:
        config = server.hparams_experiment()
        groups = {group["name"]: group for group in server.session_groups()}
    names = {info["name"] for info in config["hparamInfos"]}
    assert {"learning_rate", "units_0", "optimizer", "parent_trial_id"} <= names
    metric_names = {(m["name"].get("group", ""), m["name"]["tag"]) for m in config["metricInfos"]}
    assert {("", "trial/score"), ("", "trial/best_epoch"), ("validation", "epoch_accuracy"),
            ("train", "epoch_loss")} <= metric_names

    assert set(groups) == {r.trial_id for r in result.trials} | {MANUAL}
    for record in [*result.trials, manual]:
        group = groups[record.trial_id]
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
        hparams = group["hparams"]
        assert hparams["learning_rate"] == pytest.approx(record.hyperparameters["learning_rate"])
        assert hparams["optimizer"] == record.hyperparameters["optimizer"]
        metrics = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"]
                   for m in group["metricValues"]}
        assert metrics[("", "trial/score")] == pytest.approx(record.score, rel=1e-6)
        assert metrics[("", "trial/best_epoch")] == record.best_epoch + 1
        assert ("validation", "epoch_accuracy") in metrics
        assert ("train", "epoch_loss") in metrics
        if record is not manual:
            assert hparams["parent_trial_id"] == (record.parent_trial_id or "")


def test_inspect_rebuilds_the_table_from_event_files_alone(finished, tmp_path, capsys):
    result, manual = finished
    only_events = tmp_path / "copy"
    shutil.copytree(result.run_dir / "tensorboard", only_events / "tensorboard")
    assert main(["inspect", str(only_events), "--format", "json", "--top", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "tensorboard"
    assert (data["objective"], data["direction"]) == ("val_accuracy", "max")
    rows = {row["trial_id"]: row for row in data["trials"]}
    assert set(rows) == {r.trial_id for r in result.trials} | {MANUAL}
    for record in [*result.trials, manual]:
        row = rows[record.trial_id]
        assert row["status"] == "COMPLETED" and row["outcome"] == "completed"
        assert row["score"] == pytest.approx(record.score, rel=1e-6)
        assert row["best_epoch"] == record.best_epoch + 1  # numbered from 1, as in the CSV
        assert row["epochs"] == f"{record.initial_epoch + 1}-{record.epochs}"
        assert row["parent_trial_id"] == record.parent_trial_id
        if record is not manual:
            assert row["hyperparameters"] == record.hyperparameters  # ints are ints again
    scores = [row["score"] for row in data["trials"]]
    assert scores == sorted(scores, reverse=True)
    assert data["best"]["score"] == pytest.approx(max(scores))

    assert main(["inspect", str(only_events), "--top", "3"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # (long lines wrap to the width)
    assert "read from TensorBoard event files" in out and "best trial" in out


def test_inspect_refuses_a_directory_that_mixes_several_searches(finished, tmp_path, capsys):
    result, _ = finished
    for name in ("a", "b"):
        shutil.copytree(result.run_dir / "tensorboard", tmp_path / "both" / name / "tensorboard")
    assert main(["inspect", str(tmp_path / "both")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run_dir:") and "\n" not in err
    assert "2 searches" in err and "--run-dir" in err
    assert main(["inspect", str(tmp_path / "both" / "a")]) == 0  # one of them is fine


def test_load_results_curves_and_export(finished, tmp_path, capsys):
    result, _ = finished
    results = load_results(result.run_dir)
    assert results.source == "leaderboard"
    assert [r.trial_id for r in results] == [r.trial_id for r in result.trials]
    assert results.best.trial_id == result.best.trial_id
    curves = load_curves(result.run_dir, "epoch_accuracy")
    assert set(curves) == {r.trial_id for r in result.trials} | {MANUAL}
    for record in result.trials:
        assert [step for step, _ in curves[record.trial_id]] == list(
            range(record.initial_epoch + 1, record.epochs + 1))
        assert max(v for _, v in curves[record.trial_id]) == pytest.approx(record.score)

    output = tmp_path / "exported" / "iris.keras"
    assert main(["export", str(result.run_dir), "--output", str(output)]) == 0
    capsys.readouterr()
    model = keras.models.load_model(output)
    assert model.predict(np.zeros((2, 4), "float32"), verbose=0).shape == (2, 3)
    saved = json.loads(output.with_suffix(".json").read_text())
    assert saved["trial_id"] == result.best.trial_id
    assert saved["hyperparameters"] == result.best.hyperparameters


def test_callback_marks_a_diverged_run_failed_and_filters_metrics(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) * 1e3).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e6), loss="mse", metrics=["mae"])
    log_dir = tmp_path / "diverging"
    callback = HParamsCallback(log_dir, {"learning_rate": 1e6}, trial_id="lr-huge",
                               metrics=("loss",))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    assert callback.record.status == "FAILED" and callback.record.outcome == "diverged"
    assert session_status(log_dir) == FAILURE
    train = scalars(log_dir / "train")
    assert set(train) == {"epoch_loss", "epoch_learning_rate"}
    assert all(math.isnan(v) for _, v in train["epoch_loss"])
    assert "diverged" in texts(log_dir)["trial/outcome"][-1][1]
    results = load_results(tmp_path)  # a bare log directory works too
    assert [(r.trial_id, r.outcome) for r in results] == [("diverging", "diverged")]
    assert (results.objective, results.direction) == ("loss", "min")


@pytest.mark.parametrize("direction", ["max", "min", None])
def test_the_best_panel_is_results_best_of(tmp_path, direction):
    """The TensorBoard panel names the trial ``best_of`` does: a pruned trial counts, a
    diverged one (or one that failed with a score) never does, whatever the objective's name
    says about its direction (``val_f1`` read by name would be minimized)."""
    from kerastune_kit.results import TrialRecord, best_of, rank
    from kerastune_kit.tensorboard import SearchSummaryWriter

    records = [
        TrialRecord("0000", "COMPLETED", score=0.7, best_epoch=1),
        TrialRecord("0001", "PRUNED", score=0.9, best_epoch=1, message="pruned at epoch 1"),
        TrialRecord("0002", "DIVERGED", message="diverged: non-finite loss"),
        TrialRecord("0003", "FAILED", score=0.99, message="ValueError"),
    ]
    ranked = rank(records, direction or "max")  # as the tuner hands them over: best first
    summary = SearchSummaryWriter(tmp_path)
    summary.write_leaderboard(ranked, [], objective="val_f1", step=1, direction=direction)
    summary.close()
    expected = best_of(records, direction or "max")
    assert expected.trial_id == ("0000" if direction == "min" else "0001")
    panel = texts(tmp_path / "search")["search/best_configuration"][-1][1]
    assert panel.startswith(f"**best trial {expected.trial_id}**")
