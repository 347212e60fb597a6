"""Searches that survive: pruning, divergence, time budgets, signals, SIGKILL + resume, workers."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.config import SearchConfig
from kerastune_kit.errors import RunDirError
from tests.conftest import REPO
from tests.tb_read import scalars, session_hparams

pytest.importorskip("keras_tuner")
from kerastune_kit.tuning import run_search  # noqa: E402


def _config(tmp_path: Path, **kwargs) -> SearchConfig:
    values = dict(data="iris", tuner="random", max_epochs=2, run_dir=str(tmp_path / "run"),
                  seed=5)
    values.update(kwargs)
    return SearchConfig(**values)


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "leaderboard.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _spawn_search(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "kerastune_kit", "search", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"search ended early: {proc.communicate()}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("timed out waiting for the search")


def _finished_trials(run: Path) -> int:
    return len(list((run / "tuner").glob("trial_*/kerastune_kit_trial.json")))


@pytest.mark.slow
def test_asha_prunes_trials_and_keeps_their_best_score(tmp_path):
    result = run_search(_config(tmp_path, max_trials=6, max_epochs=4, pruner="asha",
                                pruner_min_epoch=1))
    statuses = [r.status for r in result.trials]
    assert "PRUNED" in statuses and "COMPLETED" in statuses
    for record in result.trials:
        curve = [v for _, v in sorted((int(e), v) for e, v in record.curve.items())]
        assert record.score == pytest.approx(max(curve))  # best so far, pruned or not
        if record.status == "PRUNED":
            assert record.epochs < 4 and "asha" in record.message
        assert record.seed is not None


@pytest.mark.slow
def test_forced_divergence_completes_and_records_diverged_trials(tmp_path):
    config = _config(tmp_path, data="diabetes", max_trials=3, max_epochs=3,
                     overrides={"learning_rate": 10.0, "optimizer": "sgd", "clipnorm": "off"})
    result = run_search(config)
    assert len(result.trials) == 3
    diverged = [r for r in result.trials if r.status == "DIVERGED"]
    assert diverged and all("diverged" in r.message for r in diverged)
    # A diverged trial shows no score; every other trial has a finite one.
    assert all(r.score is None if r.status == "DIVERGED" else np.isfinite(r.score)
               for r in result.trials)


@pytest.mark.slow
def test_max_time_is_respected_and_the_run_resumes(tmp_path):
    started = time.perf_counter()
    result = run_search(_config(tmp_path, max_trials=40, max_epochs=3, max_time=6.0,
                                trials_per_worker=0))
    elapsed = time.perf_counter() - started
    assert result.stopped == "time budget"
    assert len(result.trials) < 40
    assert elapsed < 6.0 + 30.0  # the budget, one epoch, loading and saving (a loaded machine)
    resumed = run_search(_config(tmp_path, max_trials=len(result.trials) + 1, max_epochs=3,
                                 resume=True))
    assert resumed.stopped is None
    assert [r.status for r in resumed.trials].count("COMPLETED") == len(result.trials) + 1


@pytest.mark.slow
def test_same_seed_same_trials_and_scores(tmp_path):
    first = run_search(_config(tmp_path / "a", max_trials=2))
    second = run_search(_config(tmp_path / "b", max_trials=2))

    def summary(result):
        return sorted((r.trial_id, r.score, r.seed, json.dumps(r.hyperparameters, sort_keys=True))
                      for r in result.trials)

    assert summary(first) == summary(second)


@pytest.mark.slow
def test_worker_processes_are_recycled_and_report_every_trial(tmp_path):
    seen = []
    result = run_search(_config(tmp_path, max_trials=3, max_epochs=1, trials_per_worker=2),
                        on_trial=seen.append)  # two worker processes: 2 trials, then 1
    assert len(result.trials) == 3 == len(seen)
    assert sorted(r.trial_id for r in seen) == sorted(r.trial_id for r in result.trials)
    assert all(r.status == "COMPLETED" for r in result.trials)
    assert (result.run_dir / "best_model.keras").is_file()


def test_resume_with_changed_data_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(40, 3)), y=np.arange(40) % 2)
    run_search(_config(tmp_path, data=str(data), max_trials=1, max_epochs=1))
    np.savez(data, x=rng.normal(size=(40, 3)), y=np.arange(40) % 2)
    with pytest.raises(RunDirError, match="data: the data behind"):
        run_search(_config(tmp_path, data=str(data), max_trials=2, max_epochs=1, resume=True))


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_ends_with_exactly_the_requested_trials(tmp_path):
    run = tmp_path / "run"
    args = ["--data", "digits", "--tuner", "random", "--max-trials", "4", "--max-epochs", "40",
            "--seed", "2", "--set", "batch_size=32", "--set", "num_layers=1", "--patience", "0",
            "--run-dir", str(run)]
    proc = _spawn_search(*args)
    # Kill while the second trial is training: after trial 0's record, once trial 1 logged.
    _wait_for(lambda: _finished_trials(run) >= 1
              and (run / "tensorboard" / "1" / "validation").is_dir(), 240, proc)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _finished_trials(run) < 4

    resumed = _spawn_search(*args, "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    rows = _rows(run)
    assert len(rows) == 4 and len({row["trial_id"] for row in rows}) == 4
    assert all(row["status"] == "COMPLETED" for row in rows)
    for row in rows:  # one session per trial, each epoch logged once
        trial_run = run / "tensorboard" / row["trial_id"]
        assert session_hparams(trial_run)["num_layers"] == 1.0
        steps = [step for step, _ in scalars(trial_run / "validation")["epoch_accuracy"]]
        assert steps == list(range(1, 41))  # epochs numbered from 1


@pytest.mark.slow
def test_sigint_writes_results_and_leaves_the_run_resumable(tmp_path):
    run = tmp_path / "run"
    args = ["--data", "digits", "--tuner", "random", "--max-trials", "3", "--max-epochs", "40",
            "--set", "batch_size=32", "--set", "num_layers=1", "--run-dir", str(run)]
    proc = _spawn_search(*args)
    _wait_for(lambda: _finished_trials(run) >= 1, 240, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in out
    rows = _rows(run)
    assert any(row["status"] == "COMPLETED" for row in rows)
    assert (run / "best_model.keras").is_file()
    resumed = _spawn_search(*args, "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert len(_rows(run)) == 3


@pytest.mark.slow
def test_grid_search_killed_then_resumed_runs_every_point_exactly_once(tmp_path):
    """Issue 13 item 3: KerasTuner keeps its grid walk in memory only; the first resume used to
    exit 1 with KeyError and the second to stop with grid points never run."""
    run = tmp_path / "run"
    fixed = ["num_layers=1", "units=16", "dropout=0", "normalization=none", "residual=false",
             "clipnorm=off", "activation=relu", "kernel_initializer=auto", "l2=off",
             "batch_size=32", "optimizer=adam,sgd,rmsprop", "learning_rate=1e-3,1e-2"]
    args = ["--data", "iris", "--tuner", "grid", "--max-trials", "6", "--max-epochs", "10",
            *[part for knob in fixed for part in ("--set", knob)], "--run-dir", str(run)]
    proc = _spawn_search(*args)
    _wait_for(lambda: _finished_trials(run) >= 2, 240, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= _finished_trials(run) < 6

    resumed = _spawn_search(*args, "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    rows = _rows(run)
    points = sorted((row["optimizer"], float(row["learning_rate"])) for row in rows)
    assert points == sorted((o, lr) for o in ("adam", "sgd", "rmsprop") for lr in (1e-3, 1e-2))
    assert all(row["status"] == "COMPLETED" for row in rows)
