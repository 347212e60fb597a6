"""Parallel search on KerasTuner's chief/worker engine, over loopback."""

from __future__ import annotations

import contextlib
import csv
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kerastune_kit.cli import main
from kerastune_kit.config import SearchConfig
from kerastune_kit.distributed import free_port, parse_oracle_address, worker_environment
from kerastune_kit.errors import ConfigError
from tests.conftest import REPO
from tests.tb_read import session_hparams

pytest.importorskip("keras_tuner")
import keras  # noqa: E402

from kerastune_kit.tuning import run_search  # noqa: E402


def _config(tmp_path: Path, name: str = "run", **kwargs) -> SearchConfig:
    values = dict(data="iris", tuner="random", max_trials=4, max_epochs=2,
                  run_dir=str(tmp_path / name), seed=7)
    values.update(kwargs)
    return SearchConfig(**values)


def _experiment_configs(root: Path) -> int:
    """How many HParams experiment summaries the event files at ``root`` hold."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    count = 0
    for path in root.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            count += sum(value.tag == metadata.EXPERIMENT_TAG for value in event.summary.value)
    return count


def _files(run: Path) -> set[str]:
    return {p.name for p in run.iterdir() if p.is_file()}


@pytest.mark.slow
def test_two_workers_run_exactly_the_requested_trials(tmp_path):
    seen = []
    result = run_search(_config(tmp_path), workers=2, on_trial=seen.append)
    ids = [r.trial_id for r in result.trials]
    assert len(ids) == 4 == len(set(ids)) == len(seen)
    assert all(r.status == "COMPLETED" for r in result.trials)
    for trial_id in ids:  # one HParams session per trial
        assert session_hparams(result.run_dir / "tensorboard" / trial_id)
    assert _experiment_configs(result.run_dir / "tensorboard") == 1  # not one per worker
    single = run_search(_config(tmp_path, "single"))
    assert _files(result.run_dir) == _files(single.run_dir)
    # Same seed, same oracle: the same configurations were tried, in any order.
    assert sorted(str(sorted(r.hyperparameters.items())) for r in result.trials) == \
        sorted(str(sorted(r.hyperparameters.items())) for r in single.trials)


def _kill_first_worker(killed: list[int], named):
    """An ``on_trial`` callback: SIGKILL the first live worker process whose name matches,
    once; its pid goes to ``killed``."""

    def kill(record) -> None:
        if killed:
            return
        workers = [p for p in multiprocessing.active_children() if named(p.name)]
        if workers:
            killed.append(workers[0].pid)
            os.kill(workers[0].pid, signal.SIGKILL)

    return kill


@pytest.mark.slow
def test_a_killed_worker_does_not_hang_the_search(tmp_path):
    killed: list[int] = []
    kill_one_worker = _kill_first_worker(killed, lambda name: name.startswith(
        "kerastune-kit-worker"))
    with _warnings() as warnings:
        result = run_search(_config(tmp_path, max_trials=5, max_epochs=3), workers=2,
                            on_trial=kill_one_worker)
    assert killed
    assert len(result.trials) == 5 and len({r.trial_id for r in result.trials}) == 5
    assert all(r.status in ("COMPLETED", "FAILED") for r in result.trials)
    assert (result.run_dir / "best_model.keras").is_file()
    # The user is told: "worker worker0 was killed by SIGKILL during trial 3; ..."
    assert any("was killed by SIGKILL" in line for line in warnings), warnings
    assert not multiprocessing.active_children()


class HangOnExit(keras.callbacks.Callback):
    """Leaves a non-daemon thread behind: the worker process cannot exit after its trials
    (as a worker stuck in a library's exit handler would)."""

    def on_train_begin(self, logs=None):
        if os.environ.get("KERASTUNER_TUNER_ID", "").startswith("worker"):
            threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()


@pytest.mark.slow
def test_a_worker_that_does_not_exit_after_its_last_trial_is_killed(tmp_path, monkeypatch):
    from kerastune_kit import distributed

    monkeypatch.setattr(distributed, "WORKER_EXIT_GRACE_S", 3.0)
    started = time.monotonic()
    with _warnings() as warnings:
        result = run_search(_config(tmp_path, max_trials=3, max_epochs=1), workers=2,
                            callbacks=[HangOnExit()])
    assert time.monotonic() - started < 120
    assert len(result.trials) == 3 and all(r.status == "COMPLETED" for r in result.trials)
    assert (result.run_dir / "best_model.keras").is_file()
    assert any("did not exit 3s after" in line and "killed" in line for line in warnings), \
        warnings
    assert not multiprocessing.active_children()


@contextlib.contextmanager
def _warnings():
    """The kerastune_kit logger's warnings, as the CLI prints them."""
    from kerastune_kit._logging import get_logger

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect(logging.WARNING)
    get_logger().addHandler(handler)
    try:
        yield lines
    finally:
        get_logger().removeHandler(handler)


def test_worker_without_a_chief_fails_with_one_line(tmp_path, capsys):
    port = free_port()
    code = main(["search", "--role", "worker", "--worker-id", "w1", "--oracle",
                 f"127.0.0.1:{port}", "--run-dir", str(tmp_path), "--connect-timeout", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"no chief answers at 127.0.0.1:{port}" in err[0]


@pytest.mark.parametrize("bad", ["localhost", "host:0", ":80", "h:99999", "h:x"])
def test_bad_oracle_addresses(bad):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_oracle_address(bad)


def test_workers_get_keras_tuner_variables_a_gpu_each_or_a_share_of_the_cores():
    env = worker_environment("worker1", "127.0.0.1", 8000, index=3, n_workers=2, n_gpus=2)
    assert env["KERASTUNER_TUNER_ID"] == "worker1"
    assert env["KERASTUNER_ORACLE_IP"] == "127.0.0.1"
    assert env["KERASTUNER_ORACLE_PORT"] == "8000"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    cpu = worker_environment("worker0", "127.0.0.1", 8000, index=0, n_workers=2, n_gpus=0)
    assert "CUDA_VISIBLE_DEVICES" not in cpu
    assert int(cpu["TF_NUM_INTRAOP_THREADS"]) == max(1, (os.cpu_count() or 1) // 2)


@pytest.mark.slow
def test_chief_and_worker_roles_as_separate_programs(tmp_path):
    run = tmp_path / "shared-run"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "kerastune_kit", "search"]
    chief = subprocess.Popen(
        [*base, "--role", "chief", "--oracle", f"127.0.0.1:{port}", "--data", "iris",
         "--tuner", "random", "--max-trials", "3", "--max-epochs", "2", "--run-dir", str(run)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen(
        [*base, "--role", "worker", "--worker-id", "remote1", "--oracle", f"127.0.0.1:{port}",
         "--run-dir", str(run)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker_out, worker_err = worker.communicate(timeout=300)
    chief_out, chief_err = chief.communicate(timeout=120)
    assert worker.returncode == 0, worker_err[-2000:]
    assert chief.returncode == 0, chief_err[-2000:]
    assert "worker remote1 finished: 3 trials" in worker_out
    with open(run / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(row["status"] == "COMPLETED" for row in rows)
    assert (run / "best_model.keras").is_file()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_workers_end_when_their_chief_is_killed_and_the_run_resumes(tmp_path):
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").is_file():
        pytest.skip("needs Linux /proc/PID/task/PID/children")
    run = tmp_path / "run"
    args = ["--data", "iris", "--tuner", "random", "--max-trials", "30", "--max-epochs", "20",
            "--run-dir", str(run), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    chief = subprocess.Popen([sys.executable, "-m", "kerastune_kit", "search", *args],
                             cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (run / "leaderboard.csv").is_file():
            time.sleep(0.5)
        workers = [pid for pid in _children(chief.pid) if _alive(pid)]
        assert workers, chief.stderr.read() if chief.poll() is not None else "no workers"
        chief.kill()
        chief.wait(timeout=30)
        gone_by = time.time() + 30
        while time.time() < gone_by and any(_alive(pid) for pid in workers):
            time.sleep(0.5)
        assert not any(_alive(pid) for pid in workers), "workers outlived their chief"
    finally:
        chief.kill()
    resumed = subprocess.run(
        [sys.executable, "-m", "kerastune_kit", "search", *args, "--resume", "--max-time",
         "3s"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_the_chief_is_not_done_while_a_dead_workers_trial_waits_to_run_again():
    """Even with every other worker gone: the re-queued trial gets a fresh worker."""
    kt = pytest.importorskip("keras_tuner")
    from kerastune_kit.distributed import ChiefServer

    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_loss", "min"),
                                           max_trials=2)
    server = ChiefServer(oracle, "127.0.0.1", free_port())
    server.stop_triggered = True
    assert server.done()
    oracle._retry_queue.append("1")
    assert not server.done()


@pytest.mark.slow
def test_ctrl_c_while_workers_start_stops_cleanly(tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C) as the workers import
    TensorFlow: the chief stops them; no worker prints a KeyboardInterrupt traceback."""
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").is_file():
        pytest.skip("needs Linux /proc/PID/task/PID/children")
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    chief = subprocess.Popen(
        [sys.executable, "-m", "kerastune_kit", "search", "--data", "iris", "--tuner",
         "random", "--max-trials", "6", "--max-epochs", "2", "--workers", "2", "--run-dir",
         str(run)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        # multiprocessing's resource tracker and both workers; then, while the workers import
        # TensorFlow (seconds), not while the chief forks them (milliseconds, see
        # kerastune_kit.workers.sigint_ignored), the terminal's Ctrl-C
        while time.time() < deadline and len(_children(chief.pid)) < 3:
            time.sleep(0.1)
        assert len(_children(chief.pid)) >= 3, "the workers did not start"
        time.sleep(0.5)
        os.killpg(chief.pid, signal.SIGINT)
        out, err = chief.communicate(timeout=180)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(chief.pid, signal.SIGKILL)
    assert chief.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert "while idle" not in err


@pytest.mark.slow
def test_a_recycled_worker_killed_mid_search_is_replaced(tmp_path):
    killed: list[int] = []
    kill_the_worker = _kill_first_worker(killed, lambda name: name == "kerastune-kit-worker")
    with _warnings() as warnings:
        result = run_search(_config(tmp_path, max_trials=3, max_epochs=1,
                                    trials_per_worker=2), on_trial=kill_the_worker)
    assert killed
    # No trial lost or failed for the worker's death (a random configuration may diverge).
    assert len({r.trial_id for r in result.trials}) == 3
    assert {r.status for r in result.trials} <= {"COMPLETED", "DIVERGED"}, \
        [(r.trial_id, r.status, r.message) for r in result.trials]
    assert any("was killed by SIGKILL; starting a fresh one" in w for w in warnings), warnings
