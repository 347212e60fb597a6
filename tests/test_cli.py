"""The command line: an end-to-end search, and one clear error per bad input.

(The search runs in-process; the README test and the examples run it as a subprocess.)"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.cli import main
from tests.conftest import error_lines, run_cli
from tests.tb_read import experiment_hparam_names, scalars, session_hparams


@pytest.mark.slow
def test_search_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["search", "--data", "iris", "--max-epochs", "3", "--run-dir", str(run),
                 "--set", "normalization=batch", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    lines = out.splitlines()
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert any("search finished" in line for line in lines)
    assert any(line.startswith("best trial ") for line in lines)
    assert f"tensorboard --logdir {run / 'tensorboard'}" in out

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


# ---------------------------------------------------------------------- refused before TensorFlow
def _occupied(run: Path, text: str = "[search]\n") -> Path:
    run.mkdir(parents=True)
    (run / "config.toml").write_text(text)
    return run


_EARLY = [
    # (flags, setup in the working directory, fragment of the one error line)
    (["--data", "nope"], None, "data: unknown dataset 'nope'"),
    (["--data", "missing/file.npz"], None, "does not exist"),
    (["--data", "notes.txt"], "notes.txt", "unsupported suffix"),
    (["--set", "nosuchknob=3"], None, "unknown knob"),
    (["--set", "learning_rate=abc"], None, "learning_rate"),
    (["--set", "normalization=instance"], None, "--model cnn only"),
    (["--model", "cnn", "--set", "units=64"], None, "a knob of the mlp model"),
    (["--data", "iris", "--model", "cnn"], None, "use --model mlp"),
    (["--data", "diabetes", "--objective", "val_accuracy"], None, "objective: regression"),
    (["--objective", "val_auc"], None, "objective: multiclass"),
    (["--max-time", "soon"], None, "max_time"),
    (["--resume"], None, "'runs/digits-hyperband' holds no search to resume"),
    (["--resume", "--run-dir", "runs/missing"], None, "holds no search to resume"),
    ([], "runs/digits-hyperband", "'runs/digits-hyperband' already exists"),
    (["--overwrite", "--run-dir", "mine"], "mine", "not a kerastune_kit run directory"),
    (["--resume", "--max-epochs", "5"], "saved", "max_epochs: the saved search"),
]


def _prepare_early(cwd: Path, setup: str | None) -> None:
    if setup == "notes.txt":
        (cwd / "notes.txt").write_text("x\n")
    elif setup == "mine":  # a directory of the user's own, not a run
        (cwd / "mine").mkdir()
        (cwd / "mine" / "notes.txt").write_text("x\n")
    elif setup == "saved":
        run = Path("runs") / "digits-hyperband"
        from kerastune_kit.config import SearchConfig

        _occupied(cwd / run, SearchConfig(max_epochs=3, run_dir=str(run)).to_toml())
    elif setup is not None:
        _occupied(cwd / setup)


@pytest.mark.parametrize(("flags", "setup", "expected"), _EARLY,
                         ids=[" ".join(c[0]) or c[1] for c in _EARLY])
def test_refusals_that_need_no_tensorflow_come_within_a_second(tmp_path, flags, setup,
                                                               expected):
    """Each refusal: exit 2, one line, under a second to the process's exit (TensorFlow's
    start-up alone is 4-17 s), and neither TensorFlow, Keras nor scikit-learn imported."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    _prepare_early(tmp_path, setup)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kerastune_kit", "search", *flags],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert proc.stdout == ""
    assert elapsed < 1.0, f"refused after {elapsed:.2f}s: {lines[0]}"
    # The same refusal through main(), reporting which heavy modules it loaded.
    code = ("import sys; from kerastune_kit.cli import main; code = main(sys.argv[1:]); "
            "print([m for m in ('tensorflow', 'keras', 'keras_tuner', 'sklearn') "
            "if m in sys.modules]); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, "search", *flags], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout.strip() == "[]", (proc.stdout, proc.stderr)


def test_model_cnn_after_the_quick_start_has_a_run_dir_of_its_own(tmp_path, monkeypatch):
    from kerastune_kit.cli import _refuse_early
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.errors import RunDirError

    monkeypatch.chdir(tmp_path)
    _occupied(Path("runs") / "digits-hyperband")  # the quick start's run
    cnn = SearchConfig(model="cnn")
    _refuse_early(cnn)  # not refused: it goes elsewhere
    assert cnn.effective_run_dir() == Path("runs") / "digits-cnn-hyperband"
    with pytest.raises(RunDirError, match="already exists"):
        _refuse_early(SearchConfig())


def test_early_checks_agree_with_the_library():
    """The CLI's tables of the bundled datasets and each task's metrics (kept so that it need
    not load scikit-learn or TensorFlow to refuse) match what the library computes."""
    from kerastune_kit.cli import _BUNDLED_IMAGES, _BUNDLED_SHAPES, _TASK_METRICS
    from kerastune_kit.data import BUNDLED_DATASETS, load_dataset
    from kerastune_kit.hypermodels import available_objectives

    assert set(_BUNDLED_SHAPES) == set(BUNDLED_DATASETS)
    for name, (task, n_features) in _BUNDLED_SHAPES.items():
        data = load_dataset(name)
        assert (data.task, data.input_shape) == (task, (n_features,)), name
        assert (data.image_input_shape is not None) == (name in _BUNDLED_IMAGES), name
    for task, names in _TASK_METRICS.items():
        assert available_objectives(task) == [f"val_{n}" for n in names] + list(names)


@pytest.mark.parametrize("case", ["exists", "not_a_run", "nothing_to_resume"])
def test_early_run_dir_messages_are_the_librarys(tmp_path, case):
    """run_search checks the run directory again after TensorFlow loaded; both say the same."""
    from kerastune_kit import session
    from kerastune_kit.cli import _refuse_early
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.errors import RunDirError

    run = tmp_path / "run"
    if case != "nothing_to_resume":
        run.mkdir()
        (run / ("config.toml" if case == "exists" else "notes.txt")).write_text("[search]\n")
    config = SearchConfig(data="iris", run_dir=str(run), overwrite=case == "not_a_run",
                          resume=case == "nothing_to_resume")
    with pytest.raises(RunDirError) as early:
        _refuse_early(config)
    with pytest.raises(RunDirError) as late:
        session.check_resume_data(config, None, None)
    assert str(early.value) == str(late.value)
