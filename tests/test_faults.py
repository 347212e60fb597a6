"""Faults that must cost no trials and hang nothing: full disks, read-only places, write errors,
two searches on one run directory, a closed stdout.

The full disk is a real 2 MiB tmpfs where this machine lets us mount one (root, or a user and
mount namespace); an injected ``ENOSPC`` covers the same path everywhere.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from kerastune_kit.cli import main
from kerastune_kit.errors import RunDirError, WriteError
from kerastune_kit.results import LEADERBOARD, read_leaderboard
from kerastune_kit.rundir import (
    LOCK_FILE,
    RunDirLock,
    find_write_error,
    holder_of,
    write_error,
)
from tests.conftest import REPO, error_lines, run_cli
from tests.helpers import assert_one_line


# ---------------------------------------------------------------------- helpers
def _mount_tmpfs(path: Path, size: str, *, read_only: bool = False) -> None:
    """Mount a tmpfs at ``path`` or skip (needs root)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A factory of small tmpfs mounts, unmounted at the end of the test."""
    mounted: list[Path] = []

    def make(name: str, size: str = "2m", *, read_only: bool = False) -> Path:
        path = tmp_path / name
        _mount_tmpfs(path, size, read_only=read_only)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        _umount(path)


def _statuses(run: Path) -> list[str]:
    return [row["status"] for row in read_leaderboard(run)]


# ---------------------------------------------------------------------- write errors, unit
@pytest.mark.parametrize("exc, code, name", [
    (OSError(errno.ENOSPC, "No space left on device", "/r/a.json"), errno.ENOSPC, "/r/a.json"),
    (PermissionError(errno.EACCES, "Permission denied", "/r/b"), errno.EACCES, "/r/b"),
    (OSError(errno.EROFS, "Read-only file system"), errno.EROFS, None),
    # h5py hides the errno in its text
    (OSError("Unable to synchronously create file (unable to open file: name = "
             "'/r/c.weights.h5', errno = 28, error message = 'No space left on device', "
             "flags = 13, o_flags = 242)"), errno.ENOSPC, "/r/c.weights.h5"),
    # TensorFlow's C++ writers: only the message says it
    (RuntimeError("ResourceExhaustedError: /r/events.out; No space left on device"),
     errno.ENOSPC, "/r/events.out"),
    (RuntimeError("Failed to flush: No space left on device"), errno.ENOSPC, None),
])
def test_write_errors_are_found_wherever_libraries_hide_them(exc, code, name):
    found = find_write_error(exc)
    assert found is not None and found.errno == code and found.filename == name


def test_a_write_error_is_found_through_the_exception_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/r/x")
        except OSError as inner:
            raise RuntimeError("saving the checkpoint failed") from inner
    except RuntimeError as outer:
        assert find_write_error(outer).filename == "/r/x"


@pytest.mark.parametrize("exc", [ValueError("bad value"), OSError(errno.ENOENT, "missing", "f"),
                                 KeyError("0"), BrokenPipeError(errno.EPIPE, "Broken pipe")])
def test_other_errors_are_not_write_errors(exc):
    assert find_write_error(exc) is None


@pytest.mark.parametrize("code, action, expected", [
    (errno.ENOSPC, "search", "no space left on device while writing '/r/tuner/x.h5' (in '/r'); "
                             "free space and continue with --resume"),
    (errno.EROFS, "start", "read-only file system while writing '/r/tuner/x.h5' (in '/r'); "
                           "pass a --run-dir you can write to"),
    (errno.EACCES, "export", "permission denied while writing '/r/tuner/x.h5' (in '/r'); "
                             "pass an --output you can write to"),
])
def test_write_error_messages_name_the_cause_the_path_and_the_fix(code, action, expected):
    error = write_error(OSError(code, os.strerror(code), "/r/tuner/x.h5"), "/r", action=action)
    assert isinstance(error, OSError) and error.errno == code
    assert str(error) == expected


def test_a_temporary_file_name_is_never_shown():
    error = write_error(OSError(errno.EACCES, "Permission denied", "/out/.m-x1y2.keras"),
                        "/out/m.keras", action="export")
    assert ".m-" not in str(error) and "'/out/m.keras'" in str(error)


# ---------------------------------------------------------------------- the run-directory lock
def test_a_second_lock_on_a_run_directory_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    with RunDirLock(run):
        assert f"pid {os.getpid()}" in holder_of(run)
        with pytest.raises(RunDirError) as excinfo:
            RunDirLock(run).acquire()
        assert_one_line(excinfo.value, str(run), f"pid {os.getpid()}", "--run-dir",
                        kind=RunDirError)
    assert holder_of(run) is None
    with RunDirLock(run):  # released: free again
        pass


def test_a_lock_left_by_a_killed_process_is_not_stale(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from kerastune_kit.rundir import RunDirLock
            RunDirLock({str(run)!r}).acquire()
            print("locked", flush=True)
            time.sleep(600)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert f"pid {holder.pid}" in holder_of(run)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    assert holder_of(run) is None  # the kernel released it with the process
    with RunDirLock(run):
        pass


def test_a_file_as_parent_of_the_run_dir_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "some.csv").write_text("a,b\n")
    code = main(["search", "--data", "iris", "--run-dir", str(tmp_path / "some.csv" / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "some.csv' is a file" in err[0] and "--run-dir" in err[0]


@pytest.mark.slow
def test_two_searches_on_one_run_directory(tmp_path):
    """A live search holds its directory: a second one is refused (with --overwrite, without,
    with --resume) naming the holder's pid; inspect still reads it; nothing is lost."""
    run = tmp_path / "R"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(
        [sys.executable, "-m", "kerastune_kit", "search", "--data", "iris", "--tuner", "random",
         "--max-trials", "40", "--max-epochs", "20", "--run-dir", str(run), "--seed", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None and not (
                (run / LEADERBOARD).is_file() and "COMPLETED" in _statuses(run)):
            time.sleep(0.5)
        assert first.poll() is None and "COMPLETED" in _statuses(run), first.stderr.read()
        for extra in (["--overwrite"], [], ["--resume"]):
            second = run_cli("search", "--data", "iris", "--tuner", "random", "--max-trials",
                             "40", "--max-epochs", "20", "--run-dir", str(run), "--seed", "2",
                             *extra, timeout=120)
            lines = error_lines(second.stderr)
            assert second.returncode == 2 and len(lines) == 1, second.stderr
            assert f"in use by another search (pid {first.pid} " in lines[0]
        inspected = run_cli("inspect", str(run), timeout=120)
        assert inspected.returncode == 0, inspected.stderr
        assert "trials:" in inspected.stdout
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=180)
    finally:
        first.kill()
    assert first.returncode == 130, err[-2000:]
    rows = read_leaderboard(run)
    finished = [row for row in rows if row["status"] == "COMPLETED"]
    assert finished and len(finished) == out.count(" completed ")  # nothing was deleted
    assert holder_of(run) is None
    assert (run / LOCK_FILE).is_file()


# ---------------------------------------------------------------------- a full disk
def _inject_enospc(monkeypatch, *, after: int, module: str = "kerastune_kit._saving",
                   name: str = "_write_bytes") -> list[int]:
    """Make the ``after``-th and later calls of ``module.name`` fail with ENOSPC."""
    import importlib

    target = importlib.import_module(module)
    original = getattr(target, name)
    calls = [0]

    def failing(path, *args, **kwargs):
        calls[0] += 1
        if calls[0] >= after:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(target, name, failing)
    return calls


@pytest.mark.parametrize("module, name, after", [
    ("kerastune_kit._saving", "_write_bytes", 4),  # a checkpoint mid-trial
    ("kerastune_kit.tuners", "write_json_atomic", 2),  # a trial record after the oracle ended it
], ids=["checkpoint", "trial-record"])
def test_a_full_disk_stops_the_search_and_resume_loses_no_trial(tmp_path, monkeypatch, module,
                                                                 name, after):
    pytest.importorskip("keras_tuner")
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    config = dict(data="iris", tuner="random", max_trials=4, max_epochs=2, seed=5,
                  run_dir=str(tmp_path / "run"), trials_per_worker=0)
    _inject_enospc(monkeypatch, after=after, module=module, name=name)
    with pytest.raises(WriteError) as excinfo:
        run_search(SearchConfig(**config))
    assert_one_line(excinfo.value, "no space left on device while writing", str(tmp_path),
                    "free space and continue with --resume", kind=WriteError)
    assert excinfo.value.errno == errno.ENOSPC
    assert "FAILED" not in _statuses(tmp_path / "run")
    assert holder_of(tmp_path / "run") is None
    monkeypatch.undo()
    result = run_search(SearchConfig(**config, resume=True))
    assert len(result.trials) == 4 and {r.status for r in result.trials} == {"COMPLETED"}
    assert _statuses(tmp_path / "run") == ["COMPLETED"] * 4
    assert (tmp_path / "run" / "best_model.keras").is_file()


def test_resume_reruns_trials_that_failed_only_because_a_write_failed(tmp_path):
    """Runs written before write errors stopped the search recorded such trials as FAILED."""
    pytest.importorskip("keras_tuner")
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    config = dict(data="iris", tuner="random", max_trials=3, max_epochs=2, seed=5,
                  run_dir=str(tmp_path / "run"), trials_per_worker=0)
    run_search(SearchConfig(**config))
    trial_json = tmp_path / "run" / "tuner" / "trial_1" / "trial.json"
    if not trial_json.is_file():
        trial_json = next((tmp_path / "run" / "tuner").glob("trial_*1/trial.json"))
    state = json.loads(trial_json.read_text())
    state.update(status="FAILED", score=None, message=(
        "Traceback (most recent call last):\n  ...\nOSError: [Errno 28] Unable to synchronously "
        "create file (unable to open file: errno = 28, error message = 'No space left on "
        "device')"))
    trial_json.write_text(json.dumps(state))
    record = trial_json.parent / "kerastune_kit_trial.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "FAILED",
                                  "score": None}))
    result = run_search(SearchConfig(**config, resume=True))
    assert len(result.trials) == 3 and {r.status for r in result.trials} == {"COMPLETED"}


@pytest.mark.slow
def test_a_real_full_disk_exits_2_in_one_line_and_resume_finishes(tmpfs):
    """The issue's command on a 2 MiB tmpfs; then space is freed and --resume finishes."""
    disk = tmpfs("full", "2m")
    run = disk / "run"
    args = ["search", "--data", "iris", "--tuner", "random", "--max-trials", "10",
            "--max-epochs", "2", "--run-dir", str(run)]
    full = run_cli(*args, timeout=300)
    lines = error_lines(full.stderr)
    assert full.returncode == 2, full.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: no space left on device while "
                                                   f"writing '{run}"), full.stderr[-3000:]
    assert lines[0].endswith("free space and continue with --resume")
    assert "Traceback" not in full.stderr and "FAILED" not in _statuses(run)
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    resumed = run_cli(*args[:-2], "--run-dir", str(run), "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _statuses(run) == ["COMPLETED"] * 10


@pytest.mark.slow
def test_a_read_only_file_system_is_bad_input_for_search_and_export(tmpfs, tmp_path):
    read_only = tmpfs("ro", "1m", read_only=True)
    proc = run_cli("search", "--data", "iris", "--run-dir", str(read_only / "run"), timeout=120)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == (f"error: read-only file system while writing '{read_only / 'run'}'; "
                        "pass a --run-dir you can write to")
    run = tmp_path / "small"  # a finished run to export (in-process: no second TF start-up)
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    run_search(SearchConfig(data="iris", tuner="random", max_trials=1, max_epochs=1,
                            run_dir=str(run)))
    exported = run_cli("export", str(run), "--output", str(read_only / "m.keras"), timeout=120)
    lines = error_lines(exported.stderr)
    assert exported.returncode == 2 and len(lines) == 1, exported.stderr
    assert f"'{read_only / 'm.keras'}'" in lines[0] and ".m-" not in lines[0]
    assert "pass an --output you can write to" in lines[0]
    assert not os.listdir(read_only)


def test_export_to_a_place_that_refuses_writes_names_the_output(tmp_path, monkeypatch):
    from kerastune_kit.runs import export_best

    run = tmp_path / "run"
    run.mkdir()
    (run / "best_model.keras").write_bytes(b"model")
    (run / "best_hyperparameters.json").write_text(json.dumps({"trial_id": "0"}))

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/.m-abcd.keras")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    output = tmp_path / "out" / "m.keras"
    with pytest.raises(WriteError) as excinfo:
        export_best(run, output)
    assert_one_line(excinfo.value, f"'{output}'", "permission denied", "--output",
                    kind=WriteError)
    assert ".m-" not in str(excinfo.value)
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match="parent is a file"):
        export_best(run, tmp_path / "file" / "m.keras")
    assert not list((tmp_path).glob("**/.m-*"))


# ---------------------------------------------------------------------- a closed stdout
def _big_run(root: Path, trials: int = 3000) -> Path:
    """A run directory with a leaderboard of ``trials`` rows (far more than a pipe holds)."""
    run = root / "big"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"objective": "val_accuracy", "direction": "max"}))
    with open(run / LEADERBOARD, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial_id", "status", "score", "best_epoch", "epochs",
                         "parent_trial_id", "start_score", "wall_time_s", "message",
                         "learning_rate", "units_0"])
        for i in range(trials):
            writer.writerow([f"{i:04d}", "COMPLETED", 0.5 + i / (3 * trials), 2, "1-3", "", "",
                             1.0, "", 10 ** -(1 + i % 4), 16 + i % 100])
    return run


def test_inspect_into_a_closed_pipe_ends_quietly(tmp_path):
    run = _big_run(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         f"{shlex_quote(sys.executable)} -m kerastune_kit inspect {shlex_quote(str(run))} "
         "--top 0 | head -2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert len(proc.stdout.splitlines()) == 2
    assert error_lines(proc.stderr) == [], proc.stderr
    assert proc.returncode == 141  # 128 + SIGPIPE, as `head`'s writers end


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_overwrite_keeps_the_lock_file_and_refuses_nothing_it_holds(tmp_path):
    from kerastune_kit.rundir import empty_run_dir, is_occupied

    run = tmp_path / "run"
    with RunDirLock(run):
        (run / "tuner").mkdir()
        (run / "leaderboard.csv").write_text("x")
        assert is_occupied(run)
        empty_run_dir(run)
        assert sorted(os.listdir(run)) == [LOCK_FILE] and not is_occupied(run)
        assert holder_of(run) is not None
    shutil.rmtree(run)


def test_keras_tuner_state_files_are_written_atomically(tmp_path, monkeypatch):
    """A full disk during KerasTuner's own writes (oracle.json, trial.json, tuner0.json) leaves
    the previous file intact, never an empty or cut one that --resume cannot parse."""
    pytest.importorskip("keras_tuner")
    from keras_tuner.src import utils

    from kerastune_kit.tuners import tuner_class

    tuner_class("random")  # installs the patch
    path = tmp_path / "oracle.json"
    utils.save_json(str(path), {"trials": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        utils.save_json(str(path), {"trials": 2})
    assert json.loads(path.read_text()) == {"trials": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oracle.json"]


def test_export_to_a_full_disk_names_the_output_not_the_model_it_copies(tmp_path, monkeypatch):
    from kerastune_kit.runs import export_best

    run = tmp_path / "run"
    run.mkdir()
    (run / "best_model.keras").write_bytes(b"model")
    (run / "best_hyperparameters.json").write_text(json.dumps({"trial_id": "0"}))

    def full(src, dst, **kwargs):
        error = OSError(errno.ENOSPC, "No space left on device")
        error.filename, error.filename2 = str(src), str(dst)  # as shutil reports it
        raise error

    monkeypatch.setattr(shutil, "copyfile", full)
    output = tmp_path / "out" / "m.keras"
    with pytest.raises(WriteError) as excinfo:
        export_best(run, output)
    assert str(excinfo.value) == (f"no space left on device while writing '{output}'; "
                                  "free space and export again")


def test_tensorflow_write_errors_name_the_event_file():
    text = ("{{function_node __wrapped__WriteSummary}} /r/tensorboard/0/train/events.out."
            "tfevents.1.vm.1.v2; No space left on device\n\tFailed to flush 11 events")
    found = find_write_error(RuntimeError(text))
    assert found.errno == errno.ENOSPC
    assert found.filename == "/r/tensorboard/0/train/events.out.tfevents.1.vm.1.v2"


def test_a_resumed_search_on_a_read_only_place_says_make_it_writable(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / LOCK_FILE))

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(WriteError, match="make it writable and continue with --resume"):
        RunDirLock(tmp_path / "run", action="search").acquire()
    with pytest.raises(WriteError, match="pass a --run-dir you can write to"):
        RunDirLock(tmp_path / "run").acquire()


@pytest.mark.slow
def test_search_into_a_closed_pipe_still_finishes_and_writes_its_results(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["bash", "-c",
         f"{shlex_quote(sys.executable)} -m kerastune_kit search --data iris --tuner random "
         f"--max-trials 3 --max-epochs 1 --run-dir {shlex_quote(str(run))} | head -1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("data     iris: "), proc.stdout + proc.stderr  # the header
    assert error_lines(proc.stderr) == [], proc.stderr
    assert _statuses(run) == ["COMPLETED"] * 3
    assert (run / "best_model.keras").is_file()


def test_a_kill_between_keras_tuners_two_saves_does_not_rerun_a_completed_trial(tmp_path):
    """KerasTuner writes oracle.json (the trial still "ongoing") before it forgets an ended
    trial; a search killed right then must not run that COMPLETED trial again on resume."""
    pytest.importorskip("keras_tuner")
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    config = dict(data="iris", tuner="random", max_epochs=1, seed=5,
                  run_dir=str(tmp_path / "run"), trials_per_worker=0)
    first = run_search(SearchConfig(**config, max_trials=2))
    done = first.trials[0].trial_id
    oracle_json = tmp_path / "run" / "tuner" / "oracle.json"
    state = json.loads(oracle_json.read_text())
    state["ongoing_trials"] = {"tuner0": done}
    oracle_json.write_text(json.dumps(state))
    seen = []
    result = run_search(SearchConfig(**config, max_trials=3, resume=True), on_trial=seen.append)
    assert [r.trial_id for r in seen] == [t for t in sorted(r.trial_id for r in result.trials)
                                          if t not in {r.trial_id for r in first.trials}]
    assert len(result.trials) == 3


def test_a_trial_created_but_never_recorded_in_oracle_json_runs_on_resume(tmp_path):
    """A full disk can let trial.json (RUNNING) through and stop oracle.json's update: the
    trial belongs to nobody; --resume must run it, not leave it RUNNING for good."""
    pytest.importorskip("keras_tuner")
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    config = dict(data="iris", tuner="random", max_epochs=1, seed=5, max_trials=2,
                  run_dir=str(tmp_path / "run"), trials_per_worker=0)
    first = run_search(SearchConfig(**config))
    orphan = first.trials[-1].trial_id
    tuner_dir = tmp_path / "run" / "tuner"
    trial_json = tuner_dir / f"trial_{orphan}" / "trial.json"
    trial_json.write_text(json.dumps({**json.loads(trial_json.read_text()),
                                      "status": "RUNNING", "score": None}))
    (tuner_dir / f"trial_{orphan}" / "kerastune_kit_trial.json").unlink()
    oracle = json.loads((tuner_dir / "oracle.json").read_text())
    oracle["end_order"] = [t for t in oracle["end_order"] if t != orphan]
    (tuner_dir / "oracle.json").write_text(json.dumps(oracle))
    seen = []
    result = run_search(SearchConfig(**config, resume=True), on_trial=seen.append)
    assert [r.trial_id for r in seen] == [orphan]
    assert [r.status for r in result.trials] == ["COMPLETED", "COMPLETED"]
