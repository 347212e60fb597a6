"""Example scripts, the tutorial notebook and the training-loop benchmark run, on tiny budgets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

EXAMPLES = REPO / "examples"
NOTEBOOK = REPO / "notebooks" / "tutorial.ipynb"


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "KERASTUNE_KIT_SMOKE": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run_example(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--smoke", *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_quickstart_cli_searches_inspects_and_exports(tmp_path):
    out = _run_example("quickstart_cli.py", tmp_path).stdout
    run = tmp_path / "runs" / "quickstart"
    assert "search finished" in out and "best trial" in out
    assert "hyperparameter importance" in out
    assert (run / "export" / "best.keras").is_file() and (run / "export" / "best.json").is_file()


@pytest.mark.slow
def test_bayesian_factories_runs_a_kerastuner_tuner(tmp_path):
    out = _run_example("bayesian_factories.py", tmp_path, "--run-dir", str(tmp_path)).stdout
    assert "2 trials on iris" in out and "best model on the validation split" in out
    assert "normalization = batch" in out


@pytest.mark.slow
def test_hparams_callback_logs_beside_a_search(tmp_path):
    from kerastune_kit.runs import load_results
    from tests.tb_read import session_hparams

    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    out = _run_example("hparams_callback.py", tmp_path, "--beside", str(run)).stdout
    assert "fit-lr0.01: val_accuracy=" in out
    session = run / "tensorboard" / "fit-lr0.01"
    assert session_hparams(session)["learning_rate"] == pytest.approx(0.01)
    results = load_results(run)
    assert [r.trial_id for r in results] == ["fit-lr0.01"]
    assert (results.objective, results.direction) == ("val_accuracy", "max")


def test_notebook_is_committed_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "the tutorial has code cells"
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


@pytest.mark.slow
def test_tutorial_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from kerastune_kit._backend import TF_LOG_LINE

    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")  # as a user starts Jupyter
    monkeypatch.delenv("KERASTUNE_KIT_TF_LOGS", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "best trial" in text
    stderr = "".join(o.get("text", "") for o in outputs
                     if o.output_type == "stream" and o.get("name") == "stderr")
    assert not [line for line in stderr.splitlines() if TF_LOG_LINE.match(line)], stderr
    assert "cuInit" not in stderr and "oneDNN" not in stderr
    # Every plotting cell shows its figure once: best so far (trials, time), learning curves,
    # importance, parallel coordinates, contour, and the scatter drawn by hand.
    images = [sum("image/png" in o.get("data", {}) for o in cell.outputs) for cell in code
              if "plots.plot_" in cell.source or "plt.show()" in cell.source]
    assert images == [1] * 7, images
    assert (tmp_path / "runs" / "tutorial" / "leaderboard.csv").is_file()


@pytest.mark.slow
def test_train_loop_benchmark_runs_and_ends_with_its_goal_line(tmp_path):
    """The benchmark's output format (its figures are measured, not asserted)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_loop.py"),
                           "--repeats", "1", "--epochs", "2"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio_vs_model_fit=\d+\.\d\d cnn_ratio_vs_model_fit=\d+\.\d\d",
                        lines[-1]), lines[-1]
    for workload in ("[mlp 784-128-64-10", "[cnn 16/32", "[mlp 64-128-64-10 on digits"):
        assert any(line.startswith(workload) for line in lines), workload
    assert "oneDNN" not in proc.stderr  # TensorFlow's C++ start-up notices are silenced


@pytest.mark.slow
def test_keras_tuner_drop_in_opens_in_inspect_and_tensorboard(tmp_path):
    """KerasTuner's getting-started program with the import changed: its run directory reads
    in ``inspect`` and in a real TensorBoard, one HParams session per trial."""
    from tests.conftest import run_cli
    from tests.tb_server import tensorboard_server

    out = _run_example("keras_tuner_drop_in.py", tmp_path, "--directory", "my_dir").stdout
    run = tmp_path / "my_dir" / "helloworld"
    assert "best model: val_accuracy=" in out and "Results summary" in out
    # The printed commands work when pasted.
    inspect = run_cli("inspect", str(run), cwd=tmp_path, timeout=120)
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    assert "3 trials: 3 completed" in inspect.stdout and "units" in inspect.stdout
    with tensorboard_server(run / "tensorboard") as server:
        groups = server.session_groups()
        experiment = server.hparams_experiment()
    assert len(groups) == 3
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"units", "activation", "dropout", "lr"} <= names


@pytest.mark.slow
def test_own_model_prunes_with_a_functional_two_input_model(tmp_path):
    out = _run_example("own_model.py", tmp_path, "--directory", str(tmp_path)).stdout
    assert "4 trials:" in out and "(training: fit)" in out
    assert "best model on the validation split:" in out


@pytest.mark.slow
def test_tf_data_images_trains_in_the_loop(tmp_path):
    out = _run_example("tf_data_images.py", tmp_path, "--directory", str(tmp_path)).stdout
    assert "trials on 3 classes" in out and "(training: loop)" in out
    assert len(list((tmp_path / "digit_images").glob("*/*.png"))) > 500
