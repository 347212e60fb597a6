"""TensorFlow's C++ log lines stay off stderr from Python, as in the CLI; KERASTUNE_KIT_TF_LOGS=1
shows them again (kerastune_kit._backend)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from kerastune_kit._backend import TF_LOG_LINE, TF_LOGS_ENV, native_stderr_silenced
from tests.conftest import REPO

#: What TensorFlow's C++ runtime prints: absl/glog lines (``I0000 00:00:17... port.cc:153]``),
#: the CUDA probe, oneDNN's and cpu_feature_guard's notices, absl's pre-InitializeLog warning.
TF_NOISE = re.compile(r"^[IWEF]\d{4} |cuInit|oneDNN|absl::InitializeLog|cpu_feature_guard",
                      re.MULTILINE)

SEARCH = textwrap.dedent("""
    import os, sys
    {before}
    from kerastune_kit import SearchConfig, run_search
    print("user line on stderr", file=sys.stderr, flush=True)
    result = run_search(SearchConfig(data="iris", tuner="random", max_trials=2, max_epochs=1,
                                     run_dir=sys.argv[1], seed=0))
    print("trials", len(result.trials), "level", os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
""")


def _search(tmp_path, *, before: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``run_search`` in a fresh interpreter whose environment does not quiet TensorFlow."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", TF_LOGS_ENV)}
    clean.update(PYTHONPATH=str(REPO), **env)
    proc = subprocess.run([sys.executable, "-c", SEARCH.format(before=before),
                           str(tmp_path / "run")], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trials 2" in proc.stdout
    return proc


@pytest.mark.slow
def test_run_search_from_python_prints_no_tensorflow_log_line(tmp_path):
    proc = _search(tmp_path)
    assert not TF_NOISE.findall(proc.stderr), proc.stderr
    assert proc.stderr.splitlines() == ["user line on stderr"]  # the user's own output stays
    assert "level 2" in proc.stdout  # TF_CPP_MIN_LOG_LEVEL defaulted before TensorFlow loaded


@pytest.mark.slow
def test_the_switch_shows_tensorflows_logs(tmp_path):
    proc = _search(tmp_path, **{TF_LOGS_ENV: "1"})
    assert "level None" in proc.stdout  # TF_CPP_MIN_LOG_LEVEL left as the user had it (unset)
    # TensorFlow's own start-up notices reach stderr (this CPU build logs oneDNN's at least).
    assert [line for line in proc.stderr.splitlines() if TF_LOG_LINE.match(line)], proc.stderr


@pytest.mark.slow
def test_tensorflow_imported_by_the_user_first_prints_nothing_more_during_the_search(tmp_path):
    """What remains when the program imported TensorFlow itself: only that import's notices
    (before our marker); the device probe and the search add none."""
    proc = _search(tmp_path, before="import tensorflow\n"
                   "print('MARK', file=sys.stderr, flush=True)")
    after = proc.stderr.split("MARK\n", 1)[1]
    assert not TF_NOISE.findall(after), after
    assert after.splitlines() == ["user line on stderr"]


# ------------------------------------------- the other entry points of the Python API
def _python(tmp_path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter whose environment does not quiet TensorFlow."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", TF_LOGS_ENV)}
    clean.update(PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=tmp_path,
                          env=clean, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """A finished 2-trial search (made in this process: its TensorFlow output is not checked)."""
    from kerastune_kit import SearchConfig, run_search

    run_dir = tmp_path_factory.mktemp("quiet") / "run"
    run_search(SearchConfig(data="iris", tuner="random", max_trials=2, max_epochs=2,
                            run_dir=str(run_dir), seed=0))
    return run_dir


@pytest.mark.slow
def test_load_curves_prints_no_tensorflow_log_line(tmp_path, iris_run):
    proc = _python(tmp_path, """
        import sys
        import kerastune_kit as kk
        curves = kk.load_curves(sys.argv[1], "epoch_accuracy")
        print("curves", sorted(curves), [len(points) for points in curves.values()])
    """, str(iris_run))
    assert "curves ['0', '1'] [2, 2]" in proc.stdout, proc.stdout
    assert not TF_NOISE.findall(proc.stderr), proc.stderr


@pytest.mark.slow
def test_load_results_from_event_files_and_ensemble_print_no_tensorflow_log_line(
        tmp_path, iris_run):
    proc = _python(tmp_path, """
        import sys
        from kerastune_kit import load_results
        rebuilt = load_results(sys.argv[1] + "/tensorboard")  # from the event files alone
        print("rebuilt", len(rebuilt.trials))
        ensemble = load_results(sys.argv[1]).ensemble(2)
        print("ensemble", type(ensemble).__name__)
    """, str(iris_run))
    assert "rebuilt 2" in proc.stdout and "ensemble Ensemble" in proc.stdout, proc.stdout
    assert not TF_NOISE.findall(proc.stderr), proc.stderr


@pytest.mark.slow
def test_bring_your_own_model_search_prints_nothing_after_the_users_own_import(tmp_path):
    """README's flow with ``import keras`` first: only that import's notices (before MARK);
    the device probe (``failed call to cuInit`` without a GPU) and the search add none."""
    proc = _python(tmp_path, """
        import sys
        import keras
        import numpy as np
        print("MARK", file=sys.stderr, flush=True)
        import kerastune_kit as kk

        def build_model(hp):
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
                hp.Int("units", 4, 8, step=4), activation="relu"), keras.layers.Dense(3)])
            model.compile(optimizer="adam", metrics=["accuracy"],
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(60, 4)).astype("float32"), rng.integers(0, 3, size=60)
        tuner = kk.RandomSearch(build_model, objective="val_accuracy", max_trials=2,
                                directory=sys.argv[1], project_name="byo", overwrite=True)
        tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0)
        print("trials", len(tuner.oracle.trials))
    """, str(tmp_path))
    assert "trials 2" in proc.stdout, proc.stdout
    after = proc.stderr.split("MARK\n", 1)[1]
    assert not TF_NOISE.findall(after), after


# ---------------------------------------------------------------------- the filter itself
def _write_fd2(*lines: str) -> None:
    os.write(2, "".join(f"{line}\n" for line in lines).encode())


TF_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796061908.585303   29259 port.cc:153] oneDNN custom operations are on.",
    "E0000 00:00:1796061911.239938   29259 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
    "2024-05-01 12:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
)


def test_the_filter_drops_tensorflow_lines_and_keeps_everything_else(capfd, monkeypatch):
    monkeypatch.delenv(TF_LOGS_ENV, raising=False)
    with native_stderr_silenced():
        _write_fd2(TF_LINES[0], "a line of the user's", *TF_LINES[1:])
        print("a Python warning", file=sys.stderr)
    err = capfd.readouterr().err  # (capfd's sys.stderr is not fd 2: no order between them)
    assert sorted(err.splitlines()) == ["a Python warning", "a line of the user's"]


def test_the_filter_lets_exceptions_through_and_restores_stderr(capfd, monkeypatch):
    monkeypatch.delenv(TF_LOGS_ENV, raising=False)
    with pytest.raises(ZeroDivisionError), native_stderr_silenced():
        _write_fd2(TF_LINES[1], "before the error")
        raise ZeroDivisionError
    _write_fd2("after")
    assert capfd.readouterr().err.splitlines() == ["before the error", "after"]


@pytest.mark.parametrize("enabled, env", [(False, None), (True, "1")])
def test_debug_or_the_switch_turns_the_filter_off(capfd, monkeypatch, enabled, env):
    if env is None:
        monkeypatch.delenv(TF_LOGS_ENV, raising=False)
    else:
        monkeypatch.setenv(TF_LOGS_ENV, env)
    with native_stderr_silenced(enabled=enabled):
        _write_fd2(*TF_LINES)
    assert capfd.readouterr().err.splitlines() == list(TF_LINES)
