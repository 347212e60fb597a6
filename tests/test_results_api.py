"""Reading runs back without TensorFlow: records, load_results, importance, reports, and the
``inspect`` and ``export`` commands on a run directory written by hand."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.cli import main
from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.importance import MIN_TRIALS, hyperparameter_importance
from kerastune_kit.report import markdown_best, markdown_leaderboard, text_table
from kerastune_kit.results import (
    RECORD_FILE,
    TrialRecord,
    parse_value,
    rank,
    record_from_row,
    write_json_atomic,
    write_leaderboard,
)
from kerastune_kit.runs import export_best, load_results

HP_NAMES = ["learning_rate", "optimizer", "units_0", "residual"]


def _records(n: int = 8, seed: int = 0) -> list[TrialRecord]:
    """Completed trials whose score is driven by the learning rate alone."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        learning_rate = float(10 ** rng.uniform(-4, -1))
        score = 0.5 + 0.13 * (math.log10(learning_rate) + 4) + float(rng.normal(0, 0.002))
        records.append(TrialRecord(
            trial_id=f"{i:04d}", status="COMPLETED", score=score, best_epoch=1, epochs=2,
            wall_time_s=1.5, hyperparameters={
                "learning_rate": learning_rate, "optimizer": ["adam", "sgd"][i % 2],
                "units_0": int(rng.integers(16, 128)), "residual": i % 3 == 0}))
    return records


def _fake_run(tmp_path: Path, n: int = 8) -> tuple[Path, list[TrialRecord]]:
    """A run directory as a search leaves it mid-way: records, a leaderboard, a running trial."""
    run = tmp_path / "run"
    records = _records(n)
    records.append(TrialRecord(
        trial_id=f"{n:04d}", status="FAILED", epochs=1, hyperparameters={
            "learning_rate": 5.0, "optimizer": "sgd", "units_0": 32, "residual": False},
        message="diverged: non-finite loss at epoch 0 step 3 (learning_rate=5)"))
    for record in records:
        write_json_atomic(run / "tuner" / f"trial_{record.trial_id}" / RECORD_FILE,
                          record.to_json())
    running = TrialRecord(trial_id=f"{n + 1:04d}", status="RUNNING",
                          hyperparameters={"learning_rate": 1e-3, "optimizer": "adam"})
    write_leaderboard(run / "leaderboard.csv", rank([*records, running], "max"), HP_NAMES)
    write_json_atomic(run / "run.json", {"objective": "val_accuracy", "direction": "max"})
    return run, records


@pytest.mark.parametrize(("status", "message", "outcome"), [
    ("COMPLETED", None, "completed"),
    ("FAILED", "FailedTrialError: diverged: non-finite loss at epoch 2", "diverged"),
    ("FAILED", "ValueError: shapes do not match", "failed"),
    ("INVALID", None, "failed"),
    ("STOPPED", None, "pruned"),
    ("COMPLETED", "pruned at epoch 3: below the median", "pruned"),
    ("RUNNING", None, "running"),
])
def test_outcome_reads_status_and_message(status, message, outcome):
    assert TrialRecord("0001", status, message=message).outcome == outcome


def test_leaderboard_row_reads_back_as_the_record():
    record = TrialRecord("0007", "COMPLETED", score=0.91234, best_epoch=4, initial_epoch=3,
                         epochs=9, parent_trial_id="0002", start_score=0.88, wall_time_s=2.5,
                         hyperparameters={"learning_rate": 0.00123, "optimizer": "adam",
                                          "units_0": 64, "residual": True})
    back = record_from_row(record.row(HP_NAMES), HP_NAMES)
    assert back == record
    assert [parse_value(t) for t in ("true", "false", "64", "1e-05", "he_normal")] == [
        True, False, 64, 1e-05, "he_normal"]


def test_load_results_while_the_search_runs(tmp_path):
    run, records = _fake_run(tmp_path)
    results = load_results(run)
    assert results.source == "leaderboard"
    assert (results.objective, results.direction) == ("val_accuracy", "max")
    assert results.hp_names == HP_NAMES
    scores = [r.score for r in results if r.outcome == "completed"]
    assert scores == sorted(scores, reverse=True) and len(scores) == len(records) - 1
    assert results.best.trial_id == max(records[:-1], key=lambda r: r.score).trial_id
    assert results.counts() == {"completed": 8, "diverged": 1, "running": 1}
    assert results[-1].status == "RUNNING" and results[-1].hyperparameters["optimizer"] == "adam"
    by_id = {r.trial_id: r for r in results}
    assert by_id["0003"].hyperparameters == records[3].hyperparameters  # typed, from the record


def test_to_dataframe_has_a_row_per_trial_and_a_column_per_hyperparameter(tmp_path):
    pd = pytest.importorskip("pandas")
    results = load_results(_fake_run(tmp_path)[0])
    frame = results.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == [r.trial_id for r in results]
    assert {"outcome", "score", "best_epoch", *HP_NAMES} <= set(frame.columns)
    assert frame.loc[results.best.trial_id, "score"] == pytest.approx(results.best.score)


def test_to_dataframe_without_pandas_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    results = load_results(_fake_run(tmp_path)[0])
    with pytest.raises(ImportError, match="pip install pandas"):
        results.to_dataframe()


def test_importance_finds_the_hyperparameter_that_drives_the_score():
    importance = hyperparameter_importance(_records(12), HP_NAMES, direction="max")
    assert list(importance.values)[0] == "learning_rate"
    assert importance.values["learning_rate"] > 0.5
    assert sum(importance.values.values()) == pytest.approx(1.0, abs=1e-3)
    assert importance.n_trials == 12
    assert "| learning_rate |" in importance.markdown()
    assert importance.bars()[0].startswith("learning_rate")


def test_importance_needs_enough_trials_and_some_variation():
    few = hyperparameter_importance(_records(MIN_TRIALS - 1), HP_NAMES)
    assert not few and few.message.startswith(f"importance: need at least {MIN_TRIALS} completed")
    assert few.bars() == [few.message]
    same = [TrialRecord(f"{i}", "COMPLETED", score=0.1 * i, hyperparameters={"a": 1, "b": i})
            for i in range(6)]
    assert "no hyperparameter varied" in hyperparameter_importance(same, ["a"]).message
    flat = [TrialRecord(f"{i}", "COMPLETED", score=0.5, hyperparameters={"b": i})
            for i in range(6)]
    assert "same score" in hyperparameter_importance(flat).message


def test_importance_counts_a_promoted_configuration_once():
    records = _records(MIN_TRIALS)
    promoted = TrialRecord("0099", "COMPLETED", score=0.99, epochs=9, parent_trial_id="0000",
                           hyperparameters=dict(records[0].hyperparameters))
    importance = hyperparameter_importance([*records[1:], promoted, records[0]])
    assert importance.n_trials == MIN_TRIALS


def test_importance_chart_is_an_rgb_image():
    pytest.importorskip("matplotlib")
    from kerastune_kit.importance import importance_figure, importance_image

    importance = hyperparameter_importance(_records(8), HP_NAMES)
    image = importance_image(importance)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 100 and image.shape[1] > 300
    assert importance_figure(hyperparameter_importance(_records(2))).axes


def test_markdown_and_text_reports(tmp_path):
    results = load_results(_fake_run(tmp_path)[0])
    board = markdown_leaderboard(results.trials, results.hp_names, objective="val_accuracy",
                                 top=3)
    assert board.startswith("**10 trials** (8 completed, 1 diverged, 1 running)")
    assert board.count("\n| ") == 4  # the header and three rows
    best = markdown_best(results.best, objective="val_accuracy")
    assert f"**best trial {results.best.trial_id}**" in best and "| learning_rate |" in best
    lines = text_table(results.trials, results.hp_names)
    assert lines[0].split()[:4] == ["rank", "trial", "outcome", "score"]
    assert len(lines) == len(results) + 1


def test_inspect_table_csv_and_json(tmp_path, capsys):
    run, records = _fake_run(tmp_path)
    assert main(["inspect", str(run), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "objective val_accuracy (max)" in out and "10 trials:" in out
    assert "best trial" in out and "hyperparameter importance" in out
    assert "(top 3 of 10; --top 0 shows all)" in out

    assert main(["inspect", str(run), "--format", "csv", "--top", "0"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 10 and rows[0]["rank"] == "1"
    assert {row["outcome"] for row in rows} == {"completed", "diverged", "running"}
    assert set(HP_NAMES) <= set(rows[0])

    assert main(["inspect", str(run), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["trials"]) == 10  # the default --top
    assert data["best"]["trial_id"] == data["trials"][0]["trial_id"]
    assert data["importance"]["values"] and data["importance"]["n_trials"] == 8
    assert data["counts"] == {"completed": 8, "diverged": 1, "running": 1}


@pytest.mark.parametrize(("args", "expected"), [
    (["inspect", "{tmp}/missing"], "is not a directory"),
    (["inspect", "{tmp}/empty"], "holds no kerastune_kit results"),
    (["inspect", "{tmp}/run", "--format", "xml"], "invalid choice: 'xml'"),
    (["inspect", "{tmp}/run", "--top", "-1"], "top"),
    (["inspect", "{tmp}/run", "--top", "many"], "many"),
    (["inspect"], "RUN"),
    (["export", "{tmp}/run", "--output", "{tmp}/model.h5"], "ending in .keras"),
    (["export", "{tmp}/run", "--output", "{tmp}/model.keras"], "no best_model.keras"),
    (["export", "{tmp}/missing", "--output", "{tmp}/model.keras"], "is not a directory"),
    (["export", "{tmp}/run"], "--output"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, expected):
    _fake_run(tmp_path)
    (tmp_path / "empty").mkdir()
    code = main([arg.format(tmp=tmp_path) for arg in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0]
    assert not (tmp_path / "model.keras").exists()


def test_export_copies_the_model_and_writes_its_hyperparameters(tmp_path, capsys):
    run, records = _fake_run(tmp_path)
    (run / "best_model.keras").write_bytes(b"model bytes")
    best = {"trial_id": "0003", "objective": "val_accuracy", "score": 0.9,
            "hyperparameters": records[3].hyperparameters}
    write_json_atomic(run / "best_hyperparameters.json", best)
    output = tmp_path / "out" / "digits.keras"
    assert main(["export", str(run), "--output", str(output)]) == 0
    assert str(output) in capsys.readouterr().out
    assert output.read_bytes() == b"model bytes"
    saved = json.loads(output.with_suffix(".json").read_text())
    assert saved["hyperparameters"] == records[3].hyperparameters
    assert saved["trial_id"] == "0003" and saved["model"] == "digits.keras"
    assert sorted(p.name for p in output.parent.iterdir()) == ["digits.json", "digits.keras"]
    with pytest.raises(ConfigError):
        export_best(run, tmp_path / "out")
    with pytest.raises(RunDirError):
        export_best(tmp_path / "nowhere", output)


def test_memory_readings_without_psutil():
    from kerastune_kit import _memory

    _memory.reset_peak()
    reading = _memory.memory_mb()
    assert reading["peak_rss_mb"] > 1
    if sys.platform.startswith("linux"):
        assert 1 < reading["rss_mb"] <= reading["peak_rss_mb"] + 1
    assert "gpu_peak_mb" not in reading or reading["gpu_peak_mb"] >= 0


# ---------------------------------------------------------------------- one status, one best
def test_trial_status_is_the_string_it_names(tmp_path):
    from kerastune_kit.results import TrialStatus, read_leaderboard

    assert [s.value for s in TrialStatus] == [
        "RUNNING", "IDLE", "INVALID", "STOPPED", "COMPLETED", "FAILED", "PRUNED", "DIVERGED"]
    assert TrialStatus.COMPLETED == "COMPLETED" and TrialStatus("PRUNED") is TrialStatus.PRUNED
    assert str(TrialStatus.DIVERGED) == f"{TrialStatus.DIVERGED}" == "DIVERGED"
    # a record built with a member writes what one built with the string writes
    member = TrialRecord("0001", TrialStatus.PRUNED, score=0.5, message="pruned at epoch 1")
    plain = TrialRecord("0001", "PRUNED", score=0.5, message="pruned at epoch 1")
    assert json.dumps(member.to_json()) == json.dumps(plain.to_json())
    assert member.outcome == plain.outcome == "pruned"
    for name, record in (("member", member), ("plain", plain)):
        write_leaderboard(tmp_path / name / "leaderboard.csv", [record], HP_NAMES)
    assert (tmp_path / "member" / "leaderboard.csv").read_bytes() == (
        tmp_path / "plain" / "leaderboard.csv").read_bytes()
    assert read_leaderboard(tmp_path / "member")[0]["status"] == "PRUNED"


def _mixed_records() -> list[TrialRecord]:
    """Every kind of trial, with the diverged and failed ones scoring best were they counted."""
    return [
        TrialRecord("0000", "COMPLETED", score=0.80, best_epoch=2),
        TrialRecord("0001", "PRUNED", score=0.90, best_epoch=1, message="pruned at epoch 1"),
        TrialRecord("0002", "COMPLETED", score=0.90, best_epoch=3),  # ties 0001, trained longer
        TrialRecord("0003", "DIVERGED", score=None, message="diverged: non-finite loss"),
        TrialRecord("0004", "FAILED", score=0.99, message="ValueError"),
        TrialRecord("0005", "RUNNING", score=0.99),
        TrialRecord("0006", "COMPLETED", score=float("nan")),
        TrialRecord("0007", "STOPPED", score=0.99),
    ]


@pytest.mark.parametrize("direction", ["max", "min"])
def test_every_reader_picks_the_same_best(tmp_path, direction):
    """``best_of`` is the one definition: ``RunResults.best``, TensorBoard's best panel and the
    first ranked row of the leaderboard agree, pruned trials count, diverged ones never do."""
    from kerastune_kit.report import rank_numbers
    from kerastune_kit.results import RunResults, best_of, is_ranked

    records = _mixed_records()
    ranked = rank(records, direction)
    best = best_of(records, direction)
    assert best.trial_id == ("0002" if direction == "max" else "0000")
    assert best is next(r for r in ranked if r.has_model)  # the old TensorBoard/tuning rule
    assert best is best_of(ranked, None)  # already ranked: the first ranked one
    assert rank_numbers(ranked)[ranked.index(best)] == "1"
    assert {r.trial_id for r in records if is_ranked(r)} == {"0000", "0001", "0002"}
    results = RunResults(run_dir=tmp_path, objective="val_accuracy", direction=direction,
                         trials=ranked, hp_names=[])
    assert results.best is best
    assert best_of([r for r in records if not is_ranked(r)], direction) is None


def test_run_results_moved_to_results_and_still_import_from_runs():
    from kerastune_kit import RunResults as lazy
    from kerastune_kit import results, runs

    assert runs.RunResults is results.RunResults is lazy
