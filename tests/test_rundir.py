"""The run directory's layout (``RunDir``), its atomic writers and readers. Pure: no TensorFlow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kerastune_kit import results
from kerastune_kit.config import SearchConfig, load_saved_fingerprint
from kerastune_kit.errors import RunDirError
from kerastune_kit.rundir import (
    LOCK_FILE,
    RunDir,
    RunDirLock,
    atomic_path,
    check_run_dir_for_search,
    read_json_object,
)


def test_every_path_of_the_layout(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    root = tmp_path / "run"
    assert run.path == root
    assert run.config == root / "config.toml"
    assert run.marker == root / "run.json"
    assert run.tuner_dir == root / "tuner"
    assert run.tensorboard_dir == root / "tensorboard"
    assert run.leaderboard == root / "leaderboard.csv"
    assert run.best_hyperparameters == root / "best_hyperparameters.json"
    assert run.best_model == root / "best_model.keras"
    assert run.lock == root / LOCK_FILE == RunDirLock(root).path
    # KerasTuner's trial directories (Tuner.get_trial_dir) and our record inside each
    assert run.trial_dir("0003") == root / "tuner" / "trial_0003"
    assert run.trial_record("0003") == root / "tuner" / "trial_0003" / "kerastune_kit_trial.json"
    assert run.trial_logdir("0003") == root / "tensorboard" / "0003"
    assert not root.exists()  # computing paths creates nothing


def test_the_old_names_still_import_from_results() -> None:
    run = RunDir("r")
    assert run.leaderboard.name == results.LEADERBOARD
    assert run.best_hyperparameters.name == results.BEST_HYPERPARAMETERS
    assert run.best_model.name == results.BEST_MODEL
    assert run.marker.name == results.RUN_MARKER
    assert run.tuner_dir.name == results.TUNER_DIR
    assert run.tensorboard_dir.name == results.TENSORBOARD_DIR
    assert run.trial_record("1").name == results.RECORD_FILE
    from kerastune_kit import rundir

    assert results.atomic_path is rundir.atomic_path
    assert results.write_text_atomic is rundir.write_text_atomic
    assert results.write_json_atomic is rundir.write_json_atomic


def test_a_run_dir_is_a_path_like(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert os.fspath(run) == str(tmp_path) == str(run)
    assert Path(run) == tmp_path and run / "x" == tmp_path / "x"
    assert run == RunDir(str(tmp_path)) and len({run, RunDir(tmp_path)}) == 1
    assert repr(RunDir("runs/x")) == "RunDir('runs/x')"


def test_writes_are_atomic_and_land_where_named(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / "x")
    assert run.write_json(run.marker, {"objective": "val_loss"}) == run.marker
    assert run.write_text("notes.txt", "hello\n") == run.path / "notes.txt"  # a name inside
    assert run.write_text(run.leaderboard, "a,b\n") == run.leaderboard  # a path of the layout
    assert json.loads(run.marker.read_text()) == {"objective": "val_loss"}
    assert sorted(p.name for p in run.path.iterdir()) == ["leaderboard.csv", "notes.txt",
                                                           "run.json"]  # no temporary left
    # a relative run directory: its own paths are not joined twice
    relative = RunDir(Path("runs") / "x")
    assert relative._inside(relative.leaderboard) == Path("runs/x/leaderboard.csv")
    assert relative._inside("leaderboard.csv") == Path("runs/x/leaderboard.csv")


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_json(run.marker, {"objective": "val_loss"})
    with pytest.raises(RuntimeError), atomic_path(run.marker) as tmp:
        tmp.write_text('{"objective": "half-written')
        raise RuntimeError("the writer died")
    assert json.loads(run.marker.read_text()) == {"objective": "val_loss"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary left


def test_readers_never_raise_on_a_missing_or_broken_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_marker() == {} and run.read_best_hyperparameters() == {}
    assert run.read_config_document() == {} and run.read_fingerprint() == {}
    assert run.saved_objective() is None and run.saved_direction() is None
    run.marker.write_text("{not json")
    run.config.write_text("[search\n")
    assert run.read_marker() == {} and run.read_fingerprint() == {}
    run.marker.write_text("[1, 2]")  # JSON, but not an object
    assert run.read_marker() == {} and read_json_object(run.marker) == {}


def test_saved_objective_direction_and_fingerprint(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_json(run.best_hyperparameters, {"objective": "val_accuracy"})
    assert run.saved_objective() == "val_accuracy"  # best_hyperparameters.json, failing run.json
    run.write_json(run.marker, {"objective": "val_loss", "direction": "min"})
    assert run.saved_objective() == "val_loss" and run.saved_direction() == "min"
    run.write_json(run.marker, {"direction": "sideways"})
    assert run.saved_direction() is None
    run.write_text(run.config, SearchConfig(data="iris").to_toml(
        fingerprint={"data": "abc", "space": "def"}))
    assert run.read_fingerprint() == {"data": "abc", "space": "def"}
    assert load_saved_fingerprint(tmp_path) == run.read_fingerprint()
    assert run.read_config_document()["search"]["data"] == "iris"


def test_what_is_there(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and not run.is_occupied()
    assert run.logdir == run.path  # no tensorboard/: a bare log directory
    run.tensorboard_dir.mkdir(parents=True)
    assert run.logdir == run.tensorboard_dir and run.is_occupied() and not run.is_run()
    for name in ("0001", "0000"):
        run.write_text(run.trial_record(name), "{}")
    assert run.trial_records() == [run.trial_record("0000"), run.trial_record("0001")]
    run.write_text(run.config, "")
    assert run.is_run()


def test_resume_check_goes_through_the_config(tmp_path: Path) -> None:
    """``check_run_dir_for_search`` stays below ``config``: the saved settings are compared by
    ``SearchConfig.check_against_saved``."""
    where = tmp_path / "run"
    run = RunDir(where)
    run.write_text(run.config, SearchConfig(data="iris", tuner="random",
                                            run_dir=str(where)).to_toml())
    same = SearchConfig(data="iris", tuner="random", run_dir=str(where), resume=True)
    assert check_run_dir_for_search(same) is True
    changed = SearchConfig(data="iris", tuner="random", run_dir=str(where), resume=True,
                           seed=7)
    with pytest.raises(RunDirError, match="seed: the saved search"):
        check_run_dir_for_search(changed)
