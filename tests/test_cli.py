"""The command line: an end-to-end search as a subprocess, and one clear error per bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.cli import main
from tests.conftest import error_lines, run_cli
from tests.tb_read import experiment_hparam_names, scalars, session_hparams


@pytest.mark.slow
def test_search_subprocess_end_to_end(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("search", "--data", "iris", "--max-epochs", "3", "--run-dir", str(run),
                   "--set", "normalization=batch", "--seed", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert any("search finished" in line for line in lines)
    assert any(line.startswith("best trial ") for line in lines)
    assert f"tensorboard --logdir {run / 'tensorboard'}" in proc.stdout

    with open(run / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(trial_lines) >= 4
    assert {row["normalization"] for row in rows} == {"batch"}
    assert all(row["status"] == "COMPLETED" for row in rows)

    tensorboard = run / "tensorboard"
    assert "normalization" in experiment_hparam_names(tensorboard)
    for row in rows:
        trial_run = tensorboard / row["trial_id"]
        hparams = session_hparams(trial_run)
        assert hparams["normalization"] == "batch"
        assert hparams["num_layers"] == float(row["num_layers"])
        val = scalars(trial_run / "validation")
        best = max(value for _, value in val["epoch_accuracy"])
        assert best == pytest.approx(float(row["score"]), rel=1e-5)
        assert "epoch_learning_rate" in scalars(trial_run / "train")

    saved = (run / "config.toml").read_text()
    assert 'data = "iris"' in saved and 'normalization = "batch"' in saved


def test_datasets_lists_the_bundled_sets(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "iris", "wine", "breast_cancer", "diabetes"):
        assert name in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--data", "digitz"], "did you mean 'digits'"),
        (["--data", "missing/file.npz"], "does not exist"),
        (["--set", "normalization"], "KNOB=VALUE"),
        (["--set", "learning_rat=0.01"], "did you mean 'learning_rate'"),
        (["--set", "normalization=instance"], "normalization"),
        (["--set", "learning_rate=1e-2..1e-4"], "min <= max"),
        (["--max-trials", "0"], "max_trials"),
        (["--objective", "val_auc"], "val_auc"),
        (["--tuner", "bayes"], "did you mean 'bayesian'"),
        (["--max-epochs", "many"], "many"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args, expected):
    run = tmp_path / "run"
    code = main(["search", "--run-dir", str(run), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0]
    assert not run.exists()


def test_existing_run_dir_without_overwrite_or_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("[search]\n")
    code = main(["search", "--data", "iris", "--run-dir", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--overwrite" in err[0] and "--resume" in err[0]
    assert [p.name for p in run.iterdir()] == ["config.toml"]


def test_csv_without_target_and_bad_config_file(tmp_path, capsys):
    data = tmp_path / "table.csv"
    data.write_text("a,b,label\n1,2,x\n3,4,y\n")
    assert main(["search", "--data", str(data), "--run-dir", str(tmp_path / "r")]) == 2
    assert "--target" in capsys.readouterr().err
    config = tmp_path / "bad.toml"
    config.write_text("[search]\nmax_epoch = 3\n")
    assert main(["search", "--config", str(config), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "max_epoch" in err and "did you mean 'max_epochs'" in err
    assert not (tmp_path / "r").exists()


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    proc = run_cli("search", "--data", "nope", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: data:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_keras_backend_other_than_tensorflow_is_refused(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run(
        [sys.executable, "-m", "kerastune_kit", "search", "--data", "iris",
         "--run-dir", str(tmp_path / "r")],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert proc.returncode == 2
    assert "KERAS_BACKEND" in proc.stderr and "tensorflow" in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_npz_dataset_from_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    path = tmp_path / "binary.npz"
    np.savez(path, x=x, y=y)
    run = tmp_path / "run"
    code = main(["search", "--data", str(path), "--tuner", "random", "--max-trials", "1",
                 "--max-epochs", "2", "--run-dir", str(run), "--quiet"])
    assert code == 0
    with open(run / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["status"] == "COMPLETED"


def test_cnn_on_feature_vectors_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--data", "iris", "--model", "cnn", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model mlp" in err[0] and "iris" in err[0]
    assert not run.exists()


@pytest.mark.slow
def test_cnn_search_with_group_normalization_on_digits(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["search", "--model", "cnn", "--set", "normalization=group", "--tuner", "random",
                 "--max-trials", "2", "--max-epochs", "1", "--run-dir", str(run)])
    assert code == 0
    with open(run / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {row["normalization"] for row in rows} == {"group"}
    assert all(row["filters_0"] for row in rows) and "units_0" not in rows[0]


@pytest.mark.slow
def test_image_npz_gets_the_cnn_automatically(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, x=rng.integers(0, 255, size=(60, 10, 10), dtype=np.uint8),
             y=np.arange(60) % 3)
    run = tmp_path / "run"
    assert main(["search", "--data", str(path), "--tuner", "random", "--max-trials", "1",
                 "--max-epochs", "1", "--run-dir", str(run), "--quiet"]) == 0
    with open(run / "leaderboard.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["status"] == "COMPLETED" and row["num_blocks"] and row["kernel_size"]
