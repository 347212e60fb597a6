"""What a search shows in a terminal (issue 17): the header, a live progress display on a
pseudo-terminal, plain lines into a pipe, every line within 100 columns, epochs numbered
from 1, and the printed commands working when pasted."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from kerastune_kit.config import SearchConfig
from kerastune_kit.plan import expected_trials, planned_epochs
from kerastune_kit.progress import (
    WIDTH,
    EpochProgress,
    SearchProgress,
    SearchStart,
    WrappingFormatter,
    clip,
    fit_lines,
    header_lines,
    knob_text,
    live_display_wanted,
    summary_lines,
    trial_line,
)
from kerastune_kit.results import TrialRecord
from tests.conftest import REPO, run_cli

#: CSI sequences (colours, cursor moves, erase line, hide/show cursor), OSC, charset switches.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]"
                  r"|\x1b[=>78]")
TINY = ["search", "--data", "iris", "--tuner", "random", "--max-trials", "3", "--max-epochs",
        "2", "--run-dir", "tmp"]
MLP = {"num_layers": 2, "units_0": 31, "dropout_0": 0.178, "units_1": 64, "dropout_1": 0.0728,
       "normalization": "layer", "residual": False, "learning_rate": 0.0825, "optimizer": "sgd",
       "use_clipnorm": True, "clipnorm": 1.36, "activation": "gelu",
       "kernel_initializer": "auto", "use_l2": False, "batch_size": 256}


def screen_lines(raw: str) -> list[str]:
    """What a terminal shows, line by line: escape sequences removed, split at ``\\r`` and
    ``\\n`` (every state of the live display is one line)."""
    return [line for line in re.split(r"[\r\n]", ANSI.sub("", raw))]


# ---------------------------------------------------------------------- lines
def test_a_trial_line_fits_and_numbers_epochs_from_one():
    promoted = TrialRecord("0014", "COMPLETED", score=0.99346, best_epoch=6, initial_epoch=3,
                           epochs=9, parent_trial_id="0012", wall_time_s=0.84,
                           hyperparameters=MLP)
    line = trial_line(promoted, 9)
    assert line == ("trial 0014 completed 0.9935  epochs 4-9 of 9, best 7  from 0012  0.8s  "
                    "lr=0.0825 sgd units=31-64 ...")

    message = ("Traceback (most recent call last):\n  ...\nthe training loss diverged at "
               "epoch 2 (nan), 3 times its first epoch's mean; ranked below every trial")
    diverged = TrialRecord("0003", "DIVERGED", score=0.1028, best_epoch=0, epochs=2,
                           wall_time_s=0.4, message=message,
                           hyperparameters={**MLP, "learning_rate": 3.2})
    line = trial_line(diverged, 9)
    assert line.startswith("trial 0003 diverged  -  epochs 1-2 of 9, best 1  0.4s  "
                           "[the training loss diverged")  # no score that looks real
    assert "0.1028" not in line and "Traceback" not in line and len(line) <= WIDTH

    baseline = TrialRecord("0000", "COMPLETED", score=0.98, best_epoch=5, epochs=6,
                           wall_time_s=1.3, baseline="mlp_2x256",
                           hyperparameters={**MLP, "units_0": 256, "units_1": 256,
                                            "normalization": "none"})
    assert trial_line(baseline, 9).endswith("best 6  1.3s  mlp_2x256: lr=0.0825 sgd bs=256")

    wide = {**MLP, "num_layers": 4, "units_2": 1000, "units_3": 1000}
    long = TrialRecord("stage-2/0123", "PRUNED", score=0.5, best_epoch=1, initial_epoch=1,
                       epochs=3, parent_trial_id="stage-2/0100", wall_time_s=12345.6,
                       message="pruned at epoch 2: below the median of the trials before",
                       hyperparameters=wide)
    line = trial_line(long, 9)
    assert len(line) <= WIDTH and line.endswith("12345.6s ...")


def test_knobs_are_the_few_that_matter():
    assert knob_text(MLP) == "lr=0.0825 sgd units=31-64 norm=layer bs=256"
    cnn = {"num_blocks": 2, "filters_0": 32, "filters_1": 64, "filters_2": 128,
           "normalization": "none", "residual": True, "learning_rate": 0.001,
           "optimizer": "adam", "batch_size": 64}
    assert knob_text(cnn) == "lr=0.001 adam filters=32-64 residual bs=64"
    assert knob_text(cnn, architecture=False) == "lr=0.001 adam residual bs=64"
    assert knob_text({"width_profile": "funnel", "base_units": 256, "num_layers": 3}) == (
        "units=256 funnel x3")
    assert knob_text({"alpha": 0.5, "tuner/epochs": 3}) == "alpha=0.5"


def test_long_lines_wrap_at_spaces_and_paths_stay_whole():
    text = "preflight warning: " + "word " * 40
    lines = fit_lines(text)
    assert len(lines) == 3 and all(len(line) <= WIDTH for line in lines)
    assert all(line.startswith("  ") for line in lines[1:])
    path = "/a/" + "x" * 120
    assert fit_lines(f"see {path} now") == ["see", f"  {path}", "  now"]
    assert clip("x" * 120) == "x" * 97 + "..."


def test_the_header_names_data_model_tuner_budget_run_and_the_tensorboard_command():
    start = SearchStart(data="digits: 1221 train / 306 val / 270 test, 64 features, "
                        "multiclass (10 classes)", model="mlp (auto: feature vectors), 20 "
                        "hyperparameters", tuner="hyperband", objective="val_accuracy",
                        direction="max", trials=25, max_epochs=9, max_time=None,
                        run_dir="runs/my run")
    assert header_lines(start) == [
        "data     digits: 1221 train / 306 val / 270 test, 64 features, multiclass (10 "
        "classes)",
        "model    mlp (auto: feature vectors), 20 hyperparameters",
        "tuner    hyperband, maximizing val_accuracy, up to 25 trials of at most 9 epochs",
        "run dir  runs/my run",
        "watch    tensorboard --logdir 'runs/my run/tensorboard'",
    ]
    budget = SearchStart(data="d", model="m", tuner="random", objective="val_loss",
                         direction="min", trials=None, max_epochs=1, max_time=1800,
                         run_dir="r", done=7, refine=2)
    assert header_lines(budget)[2:4] == [
        "tuner    random, minimizing val_loss, trials of at most 1 epoch until 30m is spent; 7 "
        "done before", "  this --resume; then 2 refine stages"]


def test_the_summary_is_short_and_points_at_inspect(tmp_path):
    records = [TrialRecord("0012", "COMPLETED", score=0.97, best_epoch=2, epochs=3,
                           hyperparameters=MLP),
               TrialRecord("0014", "COMPLETED", score=0.99346, best_epoch=6, initial_epoch=3,
                           epochs=9, parent_trial_id="0012", hyperparameters=MLP),
               TrialRecord("0015", "DIVERGED", message="loss diverged", hyperparameters=MLP)]
    result = SimpleNamespace(trials=records, best=records[1], objective="val_accuracy",
                             run_dir=tmp_path / "run", stopped="time budget", exhausted=None,
                             test=None, refit=None)
    lines = summary_lines(result, elapsed_s=52.31, first_trial_s=11.8, max_epochs=9)
    assert lines[0] == ("search stopped (time budget) in 52.3s (first trial at 11.8s): 3 trials "
                        "(2 completed, 1 diverged)")
    assert lines[2] == "best trial 0014  val_accuracy 0.9935  epochs 4-9 of 9, best 7  from 0012"
    assert lines[3] == "  lr=0.0825 sgd units=31-64 norm=layer bs=256"
    assert lines[4] == f"  all hyperparameters: python -m kerastune_kit inspect {tmp_path}/run"
    assert lines[1] == (f"continue it with: python -m kerastune_kit search --run-dir "
                        f"{tmp_path}/run --resume")
    assert lines[-1] == f"tensorboard --logdir {tmp_path}/run/tensorboard"
    # (commands to paste are never wrapped: only they may be longer, with a long run dir)
    assert all(len(line) <= WIDTH for line in lines
               if "python -m" not in line and not line.startswith("tensorboard --logdir"))
    assert "http://localhost:6006/#text&regexInput=search&tagFilter=leaderboard" in lines[-2]


def test_warnings_wrap_at_100_columns():
    record = logging.LogRecord("kerastune_kit", logging.WARNING, __file__, 1,
                               "trial %s " + "x " * 60, ("0003",), None)
    text = WrappingFormatter().format(record)
    assert text.startswith("warning: trial 0003 x x")
    assert all(len(line) <= WIDTH for line in text.splitlines()) and text.count("\n") == 1


# ---------------------------------------------------------------------- plan and ETA
@pytest.mark.parametrize("kwargs", [
    {}, {"max_trials": 10}, {"max_epochs": 27}, {"max_epochs": 2},
    {"baselines": False, "factor": 2, "max_epochs": 20}, {"tuner": "random", "max_trials": 5},
    {"tuner": "bayesian", "max_trials": 7, "max_epochs": 4},
])
def test_the_planned_epochs_are_one_entry_per_expected_trial(kwargs):
    config = SearchConfig(**kwargs)
    assert len(planned_epochs(config)) == expected_trials(config)


def test_the_default_hyperband_plan_is_kerastuners_schedule():
    # Two designs at 9 epochs, then brackets of 9x1 (3 promoted to 3: 2 more, 1 to 9: 6
    # more), 5x3 (2 promoted to 9: 6 more) and 3x9 (Li et al., 2018).
    plan = planned_epochs(SearchConfig())
    assert plan == [9, 9] + [1] * 9 + [2] * 3 + [6] + [3] * 5 + [6] * 2 + [9] * 3
    assert sum(plan) == 93


def _start(plan, *, max_time=None):
    return SearchStart(data="d", model="m", tuner="random", objective="val_accuracy",
                       direction="max", trials=len(plan), max_epochs=max(plan),
                       max_time=max_time, run_dir="r", plan=tuple(plan))


def test_the_eta_divides_the_planned_work_by_the_seconds_per_epoch_so_far():
    state = SearchProgress(started=0.0, start=_start([2, 2, 2, 2]))
    assert state.lines(now=5.0) == ("starting the first trial  0:05", None)
    state.epoch(EpochProgress("0", 0, 2, None, "val_accuracy"), now=10.0)
    assert state.eta(now=10.0) is None  # no rate yet
    state.epoch(EpochProgress("0", 1, 2, 0.5, "val_accuracy"), now=12.0)
    # 1 epoch in 2 s; left: 1 of this trial + 3 trials x 2
    assert state.eta(now=12.0) == pytest.approx(2.0 * 7)
    state.trial(TrialRecord("0", "COMPLETED", score=0.75, best_epoch=0, epochs=1))
    state.epoch(EpochProgress("1", 0, 2, None, "val_accuracy"), now=14.0)
    # Stopped early after 1 epoch: counts its 2 planned ones, so 4 s for 2 epochs.
    assert state.eta(now=14.0) == pytest.approx(2.0 * 6)
    state.epoch(EpochProgress("1", 1, 2, 0.8, "val_accuracy"), now=15.0)
    search, trial = state.lines(now=15.0)
    assert search.startswith("trials 1/4  0:15 elapsed, ETA 0:")
    assert search.endswith("best 0.7500 (0)")
    assert trial == "trial 1 epoch 2/2  val_accuracy 0.8000"  # epoch 1 done, 2 training
    assert state.fraction(now=15.0) == pytest.approx(3 / 8)

    budget = SearchProgress(started=0.0, start=_start([2] * 100, max_time=60.0), deadline=60.0)
    budget.epoch(EpochProgress("0", 1, 2, 0.5, "val_accuracy"), now=20.0)
    assert budget.eta(now=20.0) == pytest.approx(40.0)  # the budget ends first
    time_only = SearchProgress(started=0.0, start=SearchStart(
        data="d", model="m", tuner="random", objective="val_accuracy", direction="max",
        trials=None, max_epochs=2, max_time=90.0, run_dir="r"))
    time_only.epoch(EpochProgress("0", 0, 2, None, ""), now=30.0)
    assert time_only.lines(now=30.0)[0].startswith("time 0:30 of 1:30, 0 trials done")
    assert time_only.fraction(now=30.0) == pytest.approx(1 / 3)


def test_the_live_display_names_the_epoch_training_numbered_from_one():
    state = SearchProgress(started=0.0, start=_start([1, 3]))
    state.epoch(EpochProgress("0000", 0, 1, None, "val_accuracy"), now=1.0)
    assert state.lines(now=1.0)[1] == "trial 0000 epoch 1/1"  # Keras: "Epoch 1/1"
    state.epoch(EpochProgress("0000", 1, 1, 0.5, "val_accuracy"), now=2.0)
    assert state.lines(now=2.0)[1] == "trial 0000 epoch 1/1  val_accuracy 0.5000"  # never 2/1
    state.trial(TrialRecord("0000", "COMPLETED", score=0.5, best_epoch=0, epochs=1))
    state.epoch(EpochProgress("0001", 1, 3, None, "val_accuracy"), now=3.0)  # promoted
    assert state.lines(now=3.0)[1] == "trial 0001 epoch 2/3"
    state.epoch(EpochProgress("0001", 2, 3, 0.7, "val_accuracy"), now=4.0)
    assert state.lines(now=4.0)[1] == "trial 0001 epoch 3/3  val_accuracy 0.7000"


def test_the_live_best_breaks_ties_as_the_summary_and_counts_trials_before_a_resume():
    from kerastune_kit.results import best_of

    before = (TrialRecord("0004", "COMPLETED", score=0.9869, best_epoch=3, epochs=4),)
    start = SearchStart(data="d", model="m", tuner="random", objective="val_accuracy",
                        direction="max", trials=10, max_epochs=4, max_time=None, run_dir="r",
                        plan=(4,) * 10, done=5, previous=before)
    state = SearchProgress(started=0.0, start=start)
    state.epoch(EpochProgress("0007", 0, 4, None, "val_accuracy"), now=1.0)
    state.trial(TrialRecord("0007", "COMPLETED", score=0.9804, best_epoch=3, epochs=4))
    assert state.best == (0.9869, "0004")
    assert state.lines(now=2.0)[0].endswith("best 0.9869 (0004)")
    # Equal scores: the later best epoch first (a promoted trial over its parent), as best_of.
    early = TrialRecord("0012", "COMPLETED", score=0.9935, best_epoch=2, epochs=3)
    later = TrialRecord("0014", "COMPLETED", score=0.9935, best_epoch=6, initial_epoch=3,
                        epochs=9, parent_trial_id="0012")
    state.trial(early)
    state.trial(later)
    assert state.best == (0.9935, "0014") == (0.9935, best_of([*before, early, later],
                                                                "max").trial_id)
    loss = SearchProgress(started=0.0, start=SearchStart(
        data="d", model="m", tuner="random", objective="val_loss", direction="min",
        trials=3, max_epochs=2, max_time=None, run_dir="r"))
    for trial_id, score in (("0", 0.4), ("1", 0.3), ("2", 0.5)):
        loss.trial(TrialRecord(trial_id, "COMPLETED", score=score, best_epoch=1, epochs=2))
    assert loss.best == (0.3, "1")


def test_refine_stages_count_all_their_trials_name_theirs_and_show_of_e():
    from kerastune_kit.progress import SearchTerminal

    printed: list[str] = []
    terminal = SearchTerminal(write=printed.append, started=0.0, live=False)
    start = SearchStart(data="d", model="m", tuner="random", objective="val_accuracy",
                        direction="max", trials=15, max_epochs=3, max_time=None,
                        run_dir="r", plan=(3,) * 5 + (6,) * 5 + (12,) * 5, refine=2,
                        stage_epochs=(3, 6, 12))
    terminal.begin(start)
    state = terminal.state
    clock = 0.0
    for stage, epochs in ((1, 3), (2, 6)):
        for n in range(5):
            own = f"{n:04d}"
            name = own if stage == 1 else f"stage-{stage}/{own}"
            state.epoch(EpochProgress(name, 0, epochs, None, "val_accuracy"), now=clock)
            clock += epochs
            state.epoch(EpochProgress(name, epochs, epochs, 0.5, "val_accuracy"), now=clock)
            terminal.trial(TrialRecord(name, "COMPLETED", score=0.5 + n / 100,
                                       best_epoch=epochs - 1, epochs=epochs))
            assert not state.running
        search, trial = state.lines(now=clock)
        assert search.startswith(f"trials {5 * stage}/15 ") and ", ETA " in search, search
        assert "writing the results" not in search and trial is None
    state.epoch(EpochProgress("stage-3/0003", 2, 12, 0.6, "val_accuracy"), now=clock)
    assert state.lines(now=clock)[1] == "trial stage-3/0003 epoch 3/12  val_accuracy 0.6000"
    assert printed[-1].startswith("trial stage-2/0004 completed 0.5400  epochs 1-6 of 6, ")
    assert printed[5].startswith("trial 0000 completed 0.5000  epochs 1-3 of 3, ")  # (header 0-4)
    assert state.eta(now=clock) == pytest.approx(1.0 * (12 - 2 + 4 * 12))


def test_after_the_preflight_lines_the_display_awaits_the_first_trial():
    from kerastune_kit.progress import SearchTerminal

    printed: list[str] = []
    terminal = SearchTerminal(write=printed.append, started=0.0, live=False)
    terminal.begin(SearchStart(data="d", model="m", tuner="random", objective="val_accuracy",
                               direction="max", trials=3, max_epochs=2, max_time=None,
                               run_dir="r", plan=(2, 2, 2), preflight=True))
    assert terminal.state.lines(now=3.0)[0] == "preflight checks  0:03"
    terminal.say("random search: 3 trials of at most 2 epochs")
    assert terminal.state.lines(now=4.0)[0] == "preflight checks  0:04"
    terminal.say("preflight (2.1s): ok")
    assert terminal.state.lines(now=5.0)[0] == "starting the first trial  0:05"


def test_commands_reach_a_narrow_terminal_unbroken():
    from rich.console import Console

    from kerastune_kit.progress import SearchTerminal, holds_command

    terminal = SearchTerminal(write=print, started=0.0, live=False)
    buffer = io.StringIO()
    terminal._console = Console(file=buffer, width=60, force_terminal=True, color_system=None,
                                highlight=False)
    watch = "watch    tensorboard --logdir /tmp/some/rather/long/run/directory/tensorboard"
    inspect = "  all hyperparameters: python -m kerastune_kit inspect /tmp/some/long/run/dir"
    prose = "results: " + "word " * 16
    assert holds_command(watch) and holds_command(inspect) and not holds_command(prose)
    assert holds_command("leaderboard: http://localhost:6006/#text&regexInput=search, in:")
    terminal.lines([watch, inspect, prose.strip()])
    shown = buffer.getvalue().splitlines()
    assert shown[:2] == [watch, inspect]  # the terminal wraps them: they copy as one line
    assert all(len(line) <= 60 for line in shown[2:]) and len(shown) == 4


def test_search_start_plans_every_refine_stage_and_reads_a_resumed_runs_trials(tmp_path):
    import dataclasses
    import json

    from kerastune_kit.progress import search_start
    from kerastune_kit.rundir import RunDir, record_path

    config = SearchConfig(data="iris", tuner="random", max_trials=5, max_epochs=3, refine=2,
                          baselines=False, preflight=False, run_dir=str(tmp_path / "run"))
    dataset = SimpleNamespace(summary=lambda: "iris: 150 samples")
    hypermodel = SimpleNamespace(family="mlp", space=None)
    start = search_start(config, dataset, hypermodel, "val_accuracy")
    assert start.trials == 15 and start.stage_epochs == (3, 6, 12)
    assert start.plan == (3,) * 5 + (6,) * 5 + (12,) * 5 and start.done == 0

    run = RunDir(config.run_dir)
    for tuner_dir, trial_id, score in ((run.tuner_dir, "0004", 0.9869),
                                       (RunDir(run.stage_dir(2)).tuner_dir, "0001", 0.99),
                                       (run.tuner_dir, "0005", None)):
        record = TrialRecord(trial_id, "COMPLETED" if score else "FAILED", score=score,
                             best_epoch=2, epochs=3)
        path = record_path(tuner_dir / f"trial_{trial_id}")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record.to_json()))
    resumed = search_start(dataclasses.replace(config, resume=True), dataset,
                           hypermodel, "val_accuracy")
    assert resumed.done == 3
    assert [r.trial_id for r in resumed.previous] == ["0004", "stage-2/0001"]


def test_the_live_display_is_for_terminals_only():
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    xterm = {"TERM": "xterm-256color"}
    assert live_display_wanted(Stream(True), xterm)
    assert live_display_wanted(Stream(True), {**xterm, "NO_COLOR": "1"})  # no colour, still live
    assert not live_display_wanted(Stream(False), xterm)
    assert not live_display_wanted(Stream(False), {**xterm, "FORCE_COLOR": "1"})  # a pipe
    assert not live_display_wanted(Stream(True), {"TERM": "dumb"})
    assert not live_display_wanted(Stream(True), {**xterm, "TTY_COMPATIBLE": "0"})
    read, write = os.pipe()
    try:
        with os.fdopen(write, "w") as pipe:
            assert not live_display_wanted(pipe, xterm)
    finally:
        os.close(read)


# ---------------------------------------------------------------------- real searches
def _run_in_pty(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 280,
                columns: int = 100) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal ``columns`` wide; returns
    (exit status, everything it wrote)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_a_search_on_a_terminal_shows_a_header_a_live_display_and_fits_100_columns(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", "LINES": "30",
           "TERM": "xterm-256color", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    code, raw = _run_in_pty([sys.executable, "-m", "kerastune_kit", *TINY, "--preflight"],
                            cwd=tmp_path, env=env)
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines[-30:])
    assert "\x1b[" in raw  # the live display moved the cursor
    for header in ("data     iris: ", "model    mlp", "tuner    random, maximizing "
                   "val_accuracy, up to 3 trials of at most 2 epochs", "run dir  tmp",
                   "watch    tensorboard --logdir tmp/tensorboard"):
        assert any(line.startswith(header) for line in lines), header
    header_at = next(i for i, line in enumerate(lines) if line.startswith("data     "))
    first_trial = next(i for i, line in enumerate(lines) if line.startswith("trial 0 "))
    preflight = next(i for i, line in enumerate(lines) if line.startswith("preflight ("))
    assert header_at < preflight < first_trial
    progress = [line for line in lines if re.search(r"trials [0-3]/3 ", line)]
    assert progress, "\n".join(lines)
    assert any(re.search(r"trial \d epoch [0-2]/2", line) for line in lines)
    assert any("search finished in " in line for line in lines)
    too_wide = [line for line in lines if len(line) > WIDTH]
    assert not too_wide, too_wide


@pytest.mark.slow
def test_a_search_into_a_pipe_prints_plain_lines_and_commands_that_paste(tmp_path):
    from tests.tb_server import tensorboard_server

    began = time.monotonic()
    proc = run_cli(*TINY, cwd=tmp_path, timeout=280)
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "\x1b" not in out and "\r" not in out
    assert "\x1b" not in proc.stderr
    lines = out.splitlines()
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    trials = [line for line in lines if line.startswith("trial ")]
    assert len(trials) == 3
    assert all(re.match(r"trial \d completed \d\.\d{4}  epochs? [\d-]+ of 2, best \d  "
                        r"\d+\.\ds  ", line) for line in trials), trials
    assert lines[0].startswith("data     iris: ") and lines[4].startswith("watch    ")
    finished = next(line for line in lines if line.startswith("search finished in "))
    best = lines.index(next(line for line in lines if line.startswith("best trial ")))
    assert lines[best + 2].startswith("  all hyperparameters: python -m kerastune_kit inspect")

    # "search finished in N s" counts from the command's start: TensorFlow's start-up too.
    total, before = map(float, re.match(r"search finished in ([\d.]+)s \(first trial at "
                                        r"([\d.]+)s\)", finished).groups())
    assert before > 1.0 and total > before and total >= 0.7 * took

    # The header's command, pasted: `tensorboard --logdir tmp/tensorboard` in the same place.
    watch = shlex.split(lines[4].removeprefix("watch    "))
    assert watch[:2] == ["tensorboard", "--logdir"] and len(watch) == 3
    assert (Path(sys.executable).parent / "tensorboard").is_file()
    with tensorboard_server(tmp_path / watch[2]) as server:
        runs = server.get("/data/runs")
    assert {"0", "1", "2"} <= {run.split("/")[0] for run in runs}, runs

    # The summary's pointer to every hyperparameter, pasted.
    command = shlex.split(lines[best + 2].split(": ", 1)[1])
    assert command[:4] == ["python", "-m", "kerastune_kit", "inspect"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    shown = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    best_id = lines[best].split()[2]
    assert f"best trial {best_id}" in shown.stdout and "learning_rate" in shown.stdout


@pytest.mark.slow
def test_run_search_reports_each_trials_start_and_epochs_numbered_from_one(tmp_path):
    """In this process and from recycled worker processes: a promoted Hyperband trial starts
    at its parent's epochs and counts on from there, as Keras's ``Epoch k/E``."""
    from kerastune_kit.tuning import run_search

    events: list[EpochProgress] = []
    starts: list[SearchStart] = []
    config = SearchConfig(data="iris", tuner="hyperband", max_epochs=3, max_trials=4,
                          baselines=False, preflight=False, trials_per_worker=3,
                          run_dir=str(tmp_path / "run"))
    result = run_search(config, on_epoch=events.append, on_begin=starts.append)
    assert [s.plan for s in starts] == [(1, 1, 1, 2)]
    assert starts[0].trials == 4 and starts[0].data.startswith("iris: ")
    by_trial: dict[str, list[EpochProgress]] = {}
    for event in events:
        by_trial.setdefault(event.trial_id, []).append(event)
    records = {r.trial_id: r for r in result.trials}
    assert set(by_trial) == set(records) and len(records) == 4
    for trial_id, seen in by_trial.items():
        record = records[trial_id]
        assert seen[0].value is None and seen[0].epoch == record.initial_epoch
        assert [e.epoch for e in seen[1:]] == list(range(record.initial_epoch + 1,
                                                         record.epochs + 1))
        assert {e.epochs for e in seen} == {3 if record.parent_trial_id else 1}
        assert [e.value for e in seen[1:]] == pytest.approx(
            [record.curve[str(e.epoch - 1)] for e in seen[1:]])
        assert {e.objective for e in seen} == {"val_accuracy"}
    promoted = [r for r in records.values() if r.parent_trial_id]
    assert [[e.epoch for e in by_trial[r.trial_id]] for r in promoted] == [[1, 2, 3]]
