"""Epochs numbered one way (issue 17, point 8) and ``inspect`` fitted to the terminal (point 7).

Epochs are 0-based indices inside Python (``TrialRecord.initial_epoch``/``best_epoch``, like
Keras's ``History.epoch``) and numbered from 1 wherever a person reads them: ``leaderboard.csv``,
``inspect`` (table and JSON), ``best_hyperparameters.json``, TensorBoard's steps (read back with
TensorBoard's own readers) and ``trial/best_epoch``. A real Hyperband search shows one trial's
numbers agreeing everywhere, a promoted trial's steps continuing its parent's. ``inspect``'s
lines fit ``COLUMNS`` on a run with many hyperparameters, the most important first, and
``--wide`` shows them all.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.cli import main
from kerastune_kit.results import (
    RECORD_FILE,
    TrialRecord,
    rank,
    read_leaderboard,
    record_from_row,
    write_leaderboard,
)
from kerastune_kit.rundir import write_json_atomic

#: Many knobs with long names, so that a table of all of them is far wider than 100 columns.
MANY = ["learning_rate", "optimizer", "num_layers", "units_0", "units_1", "units_2", "dropout_0",
        "dropout_1", "dropout_2", "batch_size", "activation", "kernel_initializer", "clipnorm",
        "l2", "residual", "batch_norm", "label_smoothing"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _promoted() -> TrialRecord:
    """Hyperband's continuation of a 3-epoch trial to 9 epochs, best at its 8th."""
    return TrialRecord("0012", "COMPLETED", score=0.99, best_epoch=7, initial_epoch=3, epochs=9,
                       parent_trial_id="0003", wall_time_s=2.0, curve={"3": 0.9, "7": 0.99},
                       hyperparameters={"learning_rate": 0.01, "optimizer": "adam"})


# ---------------------------------------------------------------------- stored forms
def test_the_leaderboard_numbers_epochs_from_1_and_reads_back_the_indices():
    record = _promoted()
    row = record.row(["learning_rate", "optimizer"])
    assert (row["epochs"], row["best_epoch"]) == ("4-9", "8")
    assert record_from_row(row, ["learning_rate", "optimizer"]) == \
        TrialRecord(**{**record.__dict__, "curve": {}, "seed": None})
    one = TrialRecord("0000", "COMPLETED", score=0.5, best_epoch=0, epochs=1)
    assert (one.row([])["epochs"], one.row([])["best_epoch"]) == ("1-1", "1")
    assert TrialRecord("0001", "RUNNING").row([])["epochs"] == ""
    # A leaderboard written before (a from-scratch trial's "0-9") still reads as 0..9.
    old = record_from_row({"trial_id": "0002", "status": "COMPLETED", "epochs": "0-9"}, [])
    assert (old.initial_epoch, old.epochs) == (0, 9)


def test_public_json_and_the_dataframe_number_epochs_like_the_csv(tmp_path):
    public = _promoted().to_public_json()
    assert (public["best_epoch"], public["epochs"]) == (8, "4-9")
    assert "initial_epoch" not in public and public["curve"] == {"4": 0.9, "8": 0.99}
    assert _promoted().to_json()["best_epoch"] == 7  # the stored record keeps the index
    pd = pytest.importorskip("pandas")
    run = _fake_run(tmp_path)
    from kerastune_kit import load_results

    frame = load_results(run).to_dataframe()
    assert isinstance(frame, pd.DataFrame) and "initial_epoch" not in frame.columns
    assert (frame.loc["0012", "best_epoch"], frame.loc["0012", "epochs"]) == (8, "4-9")
    rows = {r["trial_id"]: r for r in read_leaderboard(run)}
    assert (rows["0012"]["best_epoch"], rows["0012"]["epochs"]) == ("8", "4-9")


def test_texts_say_the_epoch_a_person_counts():
    from kerastune_kit.pruning import MedianPruner
    from kerastune_kit.report import best_lines, markdown_best, summary_rows
    from kerastune_kit.training import Divergence

    record = _promoted()
    head = best_lines(record, objective="val_accuracy")[0]
    assert head == ("best trial 0012: val_accuracy=0.9900 at epoch 8 (continued from trial "
                    "0003 after epoch 3)")
    assert "at epoch 8 (continued from trial 0003 after epoch 3)" in markdown_best(record)
    cells = summary_rows([record], [])[0]
    assert (cells[4], cells[5]) == ("8", "4-9")  # best_epoch, epochs
    assert "at epoch 3 step 5" in Divergence(2, 5, 0.1).reason()
    curves = {"a": {0: 0.9, 1: 0.9}, "b": {0: 0.9, 1: 0.9}, "c": {0: 0.9, 1: 0.9},
              "new": {0: 0.1, 1: 0.1}}
    decision = MedianPruner("max", warmup_trials=3, min_epoch=1).check("new", 1, curves)
    assert decision.prune and "by epoch 2 " in decision.reason


# ---------------------------------------------------------------------- inspect's width
def _fake_run(root: Path) -> Path:
    """A finished-looking run: 12 trials over :data:`MANY`, the score driven by the learning
    rate, one diverged, one promoted with a long diagnosis."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        learning_rate = float(10 ** rng.uniform(-4, -1))
        values = {name: float(rng.uniform(0, 0.5)) for name in MANY}
        values.update(learning_rate=learning_rate, optimizer=["adam", "sgd", "rmsprop"][i % 3],
                      num_layers=int(rng.integers(1, 4)), residual=bool(i % 2),
                      kernel_initializer=["he_normal", "glorot_uniform"][i % 2])
        score = 0.5 + 0.13 * (math.log10(learning_rate) + 4) + float(rng.normal(0, 0.005))
        records.append(TrialRecord(f"{i:04d}", "COMPLETED", score=score, best_epoch=1, epochs=3,
                                   wall_time_s=1.5, hyperparameters=values, training="loop"))
    records[5] = TrialRecord("0005", "DIVERGED", epochs=2, message="diverged: non-finite loss "
                             "at epoch 2 step 3", hyperparameters=records[5].hyperparameters)
    parent = max(records, key=lambda r: r.score or 0.0)  # continued, a little better
    promoted = _promoted()
    promoted.parent_trial_id, promoted.score = parent.trial_id, round(parent.score + 0.005, 4)
    promoted.hyperparameters = dict(parent.hyperparameters)
    promoted.diagnosis = ("overfitting: train accuracy 1.00 vs validation 0.91; more dropout or "
                          "L2, or less capacity, or a smaller learning rate for longer")
    records.append(promoted)
    run = root / "run"
    for record in records:
        write_json_atomic(run / "tuner" / f"trial_{record.trial_id}" / RECORD_FILE,
                          record.to_json())
    write_leaderboard(run / "leaderboard.csv", rank(records, "max"), MANY)
    write_json_atomic(run / "run.json", {"objective": "val_accuracy", "direction": "max"})
    return run


@pytest.mark.parametrize("columns", [80, 100])
def test_inspect_fits_columns_most_important_knobs_first(tmp_path, capsys, monkeypatch, columns):
    from kerastune_kit import load_results

    run = _fake_run(tmp_path)
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["inspect", str(run)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns, max(lines, key=len)
    assert "\x1b" not in out  # not a terminal: plain text
    header = next(line for line in lines if line.startswith("rank")).split()
    assert header[:6] == ["rank", "trial", "outcome", "score", "epochs", "best_epoch"]
    knobs = header[6:]
    order = list(load_results(run).importance().values)
    assert order[0] == "learning_rate" and knobs and knobs == order[: len(knobs)]
    hidden = len(MANY) - len(knobs) + 3  # the other knobs, parent, wall_s and training
    assert f"{hidden} more columns: --wide shows all" in lines
    row = next(line for line in lines if line.split()[1:2] == ["0012"]).split()
    assert row[4:6] == ["4-9", "8"]
    best = load_results(run).best
    assert best.trial_id == "0012" and (f"best trial 0012: val_accuracy={best.score:.4f} at "
                                        f"epoch 8 (continued from trial {best.parent_trial_id} "
                                        "after epoch 3)") in " ".join(out.split())  # wrapped
    assert any(line.startswith("    ") and "learning rate for longer" in line for line in lines)


def test_inspect_wide_shows_every_column(tmp_path, capsys, monkeypatch):
    run = _fake_run(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["inspect", str(run), "--wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("rank")).split()
    assert set(MANY) <= set(header) and {"wall_s", "training"} <= set(header)
    assert len(lines[lines.index(next(li for li in lines if li.startswith("rank")))]) > 80
    assert not any("--wide shows all" in line for line in lines)
    others = [line for line in lines if not line.startswith(("rank", "1 ", "2 ", "3 ", "4 ",
                                                              "5 ", "6 ", "7 ", "8 ", "9 ",
                                                              "10 ", "- "))]
    assert max(len(line) for line in others) <= 80  # only the table is wide


def test_inspect_says_why_trials_ended_early_within_the_width(tmp_path, capsys, monkeypatch):
    run = _fake_run(tmp_path)
    long_reason = ("diverged: loss 91.9 exceeded 3 x its starting loss 7.79 (explosion_factor=3) "
                   "at epoch 2 step 16 (learning_rate=0.0501); the learning rate is probably "
                   "too high")
    write_json_atomic(run / "tuner" / "trial_0005" / RECORD_FILE,
                      TrialRecord("0005", "DIVERGED", epochs=2, message=long_reason).to_json())
    (run / "leaderboard.csv").unlink()  # read the records
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["inspect", str(run), "--top", "3"]) == 0  # not in the top 3, listed still
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    at = lines.index("why trials ended early:")
    reason = " ".join(line.strip() for line in lines[at + 1:at + 4])
    assert reason.startswith(f"trial 0005 (diverged): {long_reason}")


def test_inspect_caps_the_reasons_and_says_how_many_more(tmp_path):
    from kerastune_kit.inspect_view import MAX_ENDED_EARLY, ended_early_lines

    class Run:
        trials = [TrialRecord(f"{i:04d}", "PRUNED", score=0.5, message=f"pruned at epoch {i}")
                  for i in range(MAX_ENDED_EARLY + 4)]
        trials.append(TrialRecord("0099", "COMPLETED", score=0.9))
        trials.append(TrialRecord("0098", "FAILED", message="Traceback ...\nValueError: bad"))

    lines = ended_early_lines(Run())
    assert lines[:3] == ["", "why trials ended early:", "  trial 0000 (pruned): pruned at epoch 0"]
    assert len(lines) == 2 + MAX_ENDED_EARLY + 1
    assert lines[-1] == ("  ... and 5 more (inspect --top 0 --format csv lists every trial's "
                         "message)")
    assert ended_early_lines(Run(), limit=20)[-1] == "  trial 0098 (failed): ValueError: bad"


def test_a_terminal_gets_rich_s_table_within_its_width(tmp_path):
    from kerastune_kit import load_results
    from kerastune_kit.inspect_view import inspection_lines, print_inspection, terminal_width

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    results = load_results(_fake_run(tmp_path))
    stream = Terminal()
    print_inspection(results, results.trials, results.importance(), stream=stream, width=90)
    drawn = stream.getvalue()
    assert "\x1b[" in drawn  # rich's styles
    plain = [ANSI.sub("", line).rstrip() for line in drawn.splitlines()]
    assert max(len(line) for line in plain) <= 90
    same = inspection_lines(results, results.trials, results.importance(), width=90)
    assert plain == same  # the same columns and widths as the plain text
    assert terminal_width(Terminal(), {"COLUMNS": "72"}) == 72
    assert terminal_width(io.StringIO(), {}) == 100  # a pipe or a file


# ---------------------------------------------------------------------- a real search
@pytest.fixture(scope="module")
def hyperband(tmp_path_factory):
    """A Hyperband search on iris (one bracket of 1 then 3 epochs: a promotion)."""
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    run = tmp_path_factory.mktemp("epochs") / "run"
    result = run_search(SearchConfig(data="iris", tuner="hyperband", max_epochs=3, factor=3,
                                     seed=1, baselines=False, preflight=False,
                                     explosion_factor=0, min_steps_per_epoch=0,
                                     run_dir=str(run)))
    return run, result


@pytest.mark.slow
def test_one_trial_s_epochs_agree_in_csv_json_tensorboard_and_inspect(hyperband, capsys,
                                                                        monkeypatch, tmp_path):
    from tests.tb_read import scalars, texts

    run, result = hyperband
    records = {r.trial_id: r for r in result.trials}
    promoted = [r for r in result.trials if r.parent_trial_id and r.epochs]
    assert promoted, "no Hyperband promotion ran: the continued step axis went unchecked"
    rows = {row["trial_id"]: row for row in read_leaderboard(run)}
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["inspect", str(run), "--format", "json", "--top", "0"]) == 0
    shown = {t["trial_id"]: t for t in json.loads(capsys.readouterr().out)["trials"]}
    assert main(["inspect", str(run), "--top", "0"]) == 0
    table = capsys.readouterr().out.splitlines()
    for record in result.trials:
        row = rows[record.trial_id]
        first, last = (int(part) for part in row["epochs"].split("-"))
        assert (first, last) == (record.initial_epoch + 1, record.epochs)
        best = int(row["best_epoch"])
        assert best == record.best_epoch + 1 and first <= best <= last
        assert (shown[record.trial_id]["epochs"], shown[record.trial_id]["best_epoch"]) == (
            row["epochs"], best)
        cells = next(line for line in table if line.split()[1:2] == [record.trial_id]).split()
        assert cells[4:6] == [row["epochs"], row["best_epoch"]]
        session = run / "tensorboard" / record.trial_id
        curve = scalars(session / "validation")["epoch_accuracy"]
        assert [step for step, _ in curve] == list(range(first, last + 1))
        assert dict(curve)[best] == pytest.approx(record.score, rel=1e-6)
        assert [step for step, _ in scalars(session / "train")["epoch_loss"]] == \
            list(range(first, last + 1))
        own = scalars(session)
        assert [step for step, _ in own["memory/rss_mb"]] == list(range(first, last + 1))
        assert own["trial/best_epoch"][-1][1] == best
        assert own["trial/epochs"][-1] == (last, last)  # the count is the last epoch's number
    for record in promoted:  # the child's axis continues its parent's
        parent = records[record.parent_trial_id]
        assert int(rows[parent.trial_id]["epochs"].split("-")[1]) + 1 == \
            int(rows[record.trial_id]["epochs"].split("-")[0])
        outcome = texts(run / "tensorboard" / record.trial_id)["trial/outcome"][-1][1]
        assert f"continued from trial {parent.trial_id} after epoch {parent.epochs}" in outcome
    best = json.loads((run / "best_hyperparameters.json").read_text())
    assert best["best_epoch"] == int(rows[best["trial_id"]]["best_epoch"])

    # The event files alone give the same indices back (inspect on a bare tensorboard/).
    from kerastune_kit import load_results

    only_events = tmp_path / "events"
    shutil.copytree(run / "tensorboard", only_events / "tensorboard")
    rebuilt = {r.trial_id: r for r in load_results(only_events)}
    for record in result.trials:
        back = rebuilt[record.trial_id]
        assert (back.initial_epoch, back.epochs, back.best_epoch) == (
            record.initial_epoch, record.epochs, record.best_epoch)


def test_the_csv_written_by_inspect_numbers_epochs_from_1(tmp_path, capsys):
    run = _fake_run(tmp_path)
    assert main(["inspect", str(run), "--format", "csv", "--top", "0"]) == 0
    rows = {r["trial_id"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert (rows["0012"]["epochs"], rows["0012"]["best_epoch"]) == ("4-9", "8")
    assert (rows["0000"]["epochs"], rows["0000"]["best_epoch"]) == ("1-3", "2")
