"""Smoke tests of benchmarks/search_quality.py's helpers: no training, a few seconds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sq():
    spec = importlib.util.spec_from_file_location(
        "search_quality", REPO / "benchmarks" / "search_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_quality"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("search_quality", None)


def test_importing_the_script_loads_no_tensorflow(sq):
    assert "search_quality" in sys.modules
    # the orchestrator needs numpy and scikit-learn only; TensorFlow loads in the workers
    assert not hasattr(sq, "tf") and not hasattr(sq, "keras")


def test_digits28_has_the_held_back_shape_and_no_source_leak(sq):
    data = sq.make_digits28(seed=0, n_train=600, n_val=200, n_test=150)
    assert data["x_train"].shape == (600, 28, 28) and data["x_train"].dtype == np.uint8
    assert data["x_val"].shape == (200, 28, 28) and data["x_val"].dtype == np.uint8
    assert data["x_test"].shape == (150, 28, 28) and data["x_test"].dtype == np.uint8
    assert set(np.unique(data["y_train"])) == set(range(10))
    assert not set(data["src_train"]) & set(data["src_val"])
    assert not set(data["src_test"]) & (set(data["src_train"]) | set(data["src_val"]))
    again = sq.make_digits28(seed=0, n_train=600, n_val=200, n_test=150)
    assert np.array_equal(data["x_val"], again["x_val"])


def test_cases_are_written_with_an_explicit_split(sq, tmp_path):
    path = sq.write_case("digits", tmp_path, 0)
    with np.load(path) as archive:
        assert sorted(archive.files) == ["x_test", "x_train", "x_val", "y_test", "y_train",
                                         "y_val"]
        assert archive["x_test"].shape == (270, 8, 8)
        assert archive["x_train"].shape == (1221, 8, 8) and archive["x_train"].dtype == np.uint8
        assert archive["x_train"].max() == 255
    diabetes = sq.make_diabetes(0)
    prepared = sq.prepare(diabetes, regression=True)
    assert abs(float(prepared["x_train"].mean())) < 1e-5
    assert abs(float(prepared["y_train"].std()) - 1.0) < 1e-4
    assert 30 < sq.linear_mae(diabetes) < 60


def test_best_so_far_checkpoints_and_time_to_target(sq):
    events = [{"t": 5.0, "score": 0.90}, {"t": 8.0, "score": 0.85}, {"t": 12.0, "score": None},
              {"t": 15.0, "score": 0.95}, {"t": 40.0, "score": 0.99}]
    curve = sq.best_so_far(events, maximize=True, budget=30.0)
    assert curve == [(5.0, 0.90), (15.0, 0.95)]
    assert sq.best_at(curve, 4.0) is None and sq.best_at(curve, 10.0) == 0.90
    assert sq.time_to_target(curve, 0.94, True) == 15.0
    assert sq.time_to_target(curve, 0.972, True) is None
    low = sq.best_so_far([{"t": 1.0, "score": 60.0}, {"t": 2.0, "score": 50.0}], maximize=False)
    assert sq.time_to_target(low, 55.0, False) == 2.0
    assert sq.not_worse(0.95, 0.94, True) and not sq.not_worse(None, 0.5, True)
    assert sq.not_worse(40.0, 45.0, False) and sq.not_worse(None, None, True)


def test_our_trial_lines_are_parsed(sq):
    line = ("trial 0012 completed 0.9806  epochs 4-9 of 9, best 7  from 0010  1.1s  "
            "lr=0.0825 sgd units=31-64")
    assert sq.parse_trial_line(line) == {"trial": "0012", "status": "completed", "score": 0.9806}
    assert sq.parse_trial_line("trial 0003 diverged  -  epoch 1 of 9  0.4s")["score"] is None
    assert sq.parse_trial_line("trial 0004 pruned    0.5000  0.4s")["status"] == "pruned"
    old = "trial 0012 completed score=0.9806 epochs 3-9 from 0010 (1.1s)  num_layers=2"
    assert sq.parse_trial_line(old)["score"] == 0.9806  # logs written before issue 17
    assert sq.parse_trial_line("search finished in 37.2s: 23 trials") is None
    command = sq.ours_command(Path("d.npz"), 30, Path("/tmp/r"), "mlp", 0)
    assert command[1:] == ["-u", "-m", "kerastune_kit", "search", "--data", "d.npz",
                           "--max-time", "30s", "--run-dir", "/tmp/r", "--overwrite",
                           "--model", "mlp"]
    assert sq._cpu_list([1]) == "1" and sq._cpu_list([0, 1, 3]) == "0-1,3"


def test_the_validation_vs_test_note_reads_the_best_files_test_entry(sq):
    assert sq.test_note(None) == "no test score"
    note = sq.test_note({"trial_id": "0007", "validation_metric": "val_accuracy",
                         "validation_score": 0.97, "metric": "test_accuracy", "score": 0.95,
                         "samples": 270, "gap": 0.02, "large_gap": False})
    assert note == ("best trial 0007: val_accuracy 0.9700 vs test_accuracy 0.9500 on 270 "
                    "samples (gap +0.0200)")
    regression = sq.test_note({"trial_id": "3", "validation_metric": "val_loss",
                               "validation_score": 0.5, "metric": "test_loss", "score": 0.7,
                               "samples": 67, "gap": 0.2, "large_gap": True,
                               "metrics": {"test_mae": 44.25}})
    assert regression.endswith("(gap +0.2000, LARGE), test MAE 44.25")
