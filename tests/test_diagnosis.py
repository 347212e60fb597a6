"""Diagnoses (overfitting, underfitting) and contour plots: the pure rules, the chart drawn from
hand-made records, and a real search read back by ``inspect --contour``, the leaderboard and
TensorBoard's own readers."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.contour import (
    GRID,
    build_contour,
    choose_knobs,
    contour_figure,
    guess_scale,
    knob_scales,
    write_contour,
)
from kerastune_kit.diagnosis import (
    ACCURACY_GAP,
    Diagnosis,
    diagnose,
    diagnose_history,
    is_diagnosis,
    validation_size,
)
from kerastune_kit.errors import ConfigError
from kerastune_kit.results import (
    RunResults,
    TrialRecord,
    read_leaderboard,
    record_from_row,
    write_leaderboard,
)
from tests.conftest import error_lines, run_cli
from tests.helpers import assert_one_line


# ---------------------------------------------------------------------- the rules
def test_a_large_accuracy_gap_is_overfitting_with_what_to_try():
    found = diagnose(0.99, 0.91, "val_accuracy", validation_size=360)
    assert isinstance(found, Diagnosis) and found.kind == "overfitting"
    assert (found.metric, found.train, found.validation) == ("accuracy", 0.99, 0.91)
    assert str(found) == ("overfitting: train accuracy 0.99 vs validation 0.91; more dropout "
                          "or L2, or less capacity")
    assert is_diagnosis(found.text)


def test_a_gap_within_the_noise_of_a_small_validation_set_is_not_called_out():
    # 2 standard errors of 0.90 on 30 samples is 0.11: a 0.07 gap there is noise ...
    assert diagnose(0.97, 0.90, "val_accuracy", validation_size=30) is None
    # ... and on 1000 samples (2 SE = 0.019) it is not; without a size, the 0.05 rule alone.
    assert diagnose(0.97, 0.90, "val_accuracy", validation_size=1000).kind == "overfitting"
    assert diagnose(0.97, 0.90, "val_accuracy").kind == "overfitting"
    assert diagnose(0.95, 0.95 - ACCURACY_GAP + 0.001, "val_accuracy") is None


def test_low_train_and_validation_accuracy_is_underfitting():
    found = diagnose(0.62, 0.60, "val_accuracy", best_score=0.98, validation_size=360)
    assert found is not None and found.kind == "underfitting"
    assert found.text == ("underfitting: train accuracy 0.62, validation 0.60 (the search's "
                          "best: 0.98); more capacity, more epochs or a higher learning rate")
    # Below the fixed floor of 0.5 even with no other trial to compare with.
    assert diagnose(0.31, 0.30, "val_accuracy").kind == "underfitting"
    # A validation score far below while the training one is fine is not underfitting.
    assert diagnose(0.97, 0.60, "val_accuracy", best_score=0.98).kind == "overfitting"


@pytest.mark.parametrize(("train", "val", "best"), [
    (0.99, 0.97, 0.98),   # a good trial
    (0.995, 0.9806, 0.9806),  # the default digits search's best
    (0.85, 0.84, 0.98),   # a Hyperband screening trial after one epoch
    (1.0, 1.0, 1.0),
])
def test_healthy_trials_get_no_diagnosis(train, val, best):
    assert diagnose(train, val, "val_accuracy", validation_size=360, best_score=best) is None


def test_regression_losses_use_ratios():
    over = diagnose(0.20, 0.50, "val_loss", task="regression", best_score=0.45)
    assert over.kind == "overfitting" and over.text.startswith(
        "overfitting: train loss 0.2 vs validation 0.5;")
    assert diagnose(0.40, 0.45, "val_loss", task="regression", best_score=0.40) is None
    under = diagnose(1.00, 1.05, "val_loss", task="regression", best_score=0.40)
    assert under.kind == "underfitting" and "(the search's best: 0.4)" in under.text
    # Errors in the target's units: 1.25x is the overfitting line, 1.5x the underfitting one.
    assert diagnose(30.0, 40.0, "val_mae", best_score=40.0).kind == "overfitting"
    assert diagnose(30.0, 36.0, "val_mae", best_score=36.0) is None
    assert diagnose(2900.0, 3100.0, "val_mse", best_score=2800.0) is None
    assert diagnose(6000.0, 6100.0, "val_mse", best_score=2800.0).kind == "underfitting"


def test_tiny_cross_entropies_are_not_overfitting():
    # Three times the training loss, but 0.02 nats: a network that classifies everything right.
    assert diagnose(0.01, 0.03, "val_loss", task="multiclass", best_score=0.03) is None
    assert diagnose(0.05, 0.40, "val_loss", task="multiclass").kind == "overfitting"
    # Twice the best loss, but only 0.11 nats above it: not underfitting.
    assert diagnose(0.20, 0.21, "val_loss", task="multiclass", best_score=0.09) is None
    assert diagnose(0.90, 0.95, "val_loss", task="binary", best_score=0.1).kind == "underfitting"


@pytest.mark.parametrize("args", [
    (None, 0.9, "val_accuracy"),
    (0.9, float("nan"), "val_accuracy"),
    (1.5, 0.9, "val_accuracy"),   # not a proportion
    (-1.0, 2.0, "val_loss"),      # not a positive loss
])
def test_missing_or_meaningless_values_give_none(args):
    assert diagnose(*args) is None


def test_diagnose_history_reads_the_best_epoch_of_the_train_counterpart():
    history = {"loss": [1.0, 0.05, 0.01], "accuracy": [0.5, 0.99, 1.0],
               "val_loss": [1.0, 0.4, 0.5], "val_accuracy": [0.5, 0.90, 0.89]}
    found = diagnose_history(history, 1, "val_accuracy", validation_size=200)
    assert (found.train, found.validation) == (0.99, 0.90)
    assert diagnose_history(history, 0, "val_accuracy") is None  # epoch 0 was healthy
    loss = diagnose_history(history, 1, "val_loss", task="multiclass")
    assert (loss.metric, loss.train, loss.validation) == ("loss", 0.05, 0.4)
    assert diagnose_history({"val_accuracy": [0.9]}, 0, "val_accuracy") is None
    assert diagnose_history(history, 3, "val_accuracy") is None
    assert diagnose_history(history, 1, "val_auc") is None


def test_validation_size_of_a_fit_call():
    x = np.zeros((100, 3))
    assert validation_size({"validation_data": (np.zeros((40, 3)), np.zeros(40))}) == 40
    assert validation_size({"validation_data": ({"a": np.zeros((7, 2))}, None)}) == 7
    assert validation_size({"validation_split": 0.2}, (x,)) == 20
    assert validation_size({"x": x, "validation_split": 0.25}) == 25
    assert validation_size({}) is None
    assert validation_size({"validation_data": object()}) is None


def test_the_diagnosis_survives_records_and_leaderboards(tmp_path):
    text = "overfitting: train accuracy 0.99 vs validation 0.91; more dropout or L2"
    record = TrialRecord("03", "COMPLETED", score=0.91, best_epoch=4, diagnosis=text,
                         hyperparameters={"units": 64})
    assert TrialRecord.from_json(json.loads(json.dumps(record.to_json()))).diagnosis == text
    write_leaderboard(tmp_path / "leaderboard.csv", [record], ["units"])
    rows = read_leaderboard(tmp_path)
    assert rows[0]["diagnosis"] == text
    assert record_from_row(rows[0], ["units"]).diagnosis == text
    # A leaderboard written before the column existed still reads, with no diagnosis.
    old = {k: v for k, v in rows[0].items() if k != "diagnosis"}
    assert record_from_row(old, ["units"]).diagnosis is None
    assert record_from_row(old, ["units"]).hyperparameters == {"units": 64}


# ---------------------------------------------------------------------- contours
def _records(n: int = 8, *, seed: int = 0) -> list[TrialRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lr = float(10 ** rng.uniform(-4, -1))
        units = int(2 ** rng.integers(4, 9))
        optimizer = ["adam", "sgd", "rmsprop"][i % 3]
        score = 0.95 - 0.1 * abs(math.log10(lr) + 2.5) + (0.02 if optimizer == "adam" else 0.0)
        out.append(TrialRecord(f"{i:02d}", "COMPLETED", score=score, best_epoch=2, epochs=3,
                               hyperparameters={"learning_rate": lr, "units_0": units,
                                                "optimizer": optimizer,
                                                "num_layers": 2}))
    return out


SCALES = {"learning_rate": "log", "units_0": "log", "optimizer": "categorical",
          "num_layers": "linear"}
HP_NAMES = ["num_layers", "units_0", "optimizer", "learning_rate"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_contour_interpolates_between_the_trials_on_their_scales():
    records = _records()
    contour = build_contour(records, "learning_rate", "units_0", objective="val_accuracy",
                            direction="max", scales=SCALES)
    assert (contour.x.scale, contour.y.scale) == ("log", "log")
    assert contour.z.shape == (GRID, GRID)
    scores = [r.score for r in records]
    assert contour.best.score == max(scores)
    # The surface passes through the trials and, a mean of neighbours, stays within them.
    assert contour.z.min() >= min(scores) - 1e-9 and contour.z.max() <= max(scores) + 1e-9
    column = round((contour.x.coordinates[0] - contour.x.low)
                   / (contour.x.high - contour.x.low) * (GRID - 1))
    row = round((contour.y.coordinates[0] - contour.y.low)
                / (contour.y.high - contour.y.low) * (GRID - 1))
    assert contour.z[row, column] == pytest.approx(contour.scores[0])
    assert contour.summary().startswith(
        "val_accuracy (max) over learning_rate (log) and units_0 (log): 8 trials")
    figure = contour_figure(contour)
    axes = figure.axes[0]
    assert (axes.get_xscale(), axes.get_yscale()) == ("log", "log")
    assert axes.get_xlabel() == "learning_rate (log)" and "val_accuracy" in axes.get_title()
    assert len(figure.axes) == 2  # the plot and its colour bar
    assert "val_accuracy" in figure.axes[1].get_ylabel()
    low, high = figure.axes[1].get_ylim()  # the bar spans the scores, not rounded beyond them
    assert (low, high) == (pytest.approx(min(scores)), pytest.approx(max(scores)))


def test_contour_of_a_categorical_knob_and_a_minimized_objective():
    records = _records()
    for record in records:
        record.score = 1.0 - record.score  # a loss now
    contour = build_contour(records, "optimizer", "learning_rate", objective="val_loss",
                            direction="min", scales=SCALES)
    assert contour.x.scale == "categorical" and contour.x.labels == ["adam", "rmsprop", "sgd"]
    assert contour.best.score == min(r.score for r in records)
    axes = contour_figure(contour).axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["adam", "rmsprop", "sgd"]
    assert axes.get_xscale() == "linear" and axes.get_yscale() == "log"


def test_write_contour_writes_a_readable_png(tmp_path):
    results = RunResults(run_dir=tmp_path, objective="val_accuracy", direction="max",
                         trials=_records(), hp_names=HP_NAMES)
    plot = write_contour(results, ["learning_rate", "optimizer"])
    assert plot.path == tmp_path / "contour_learning_rate_optimizer.png"
    width, height = _png_size(plot.path)
    assert 500 <= width <= 1500 and 400 <= height <= 1200
    assert plot.path.stat().st_size > 20_000
    # No oracle.json: the scales are guessed from the values (log for 1e-4..1e-1).
    assert (plot.contour.x.scale, plot.contour.y.scale) == ("log", "categorical")
    other = write_contour(results, ["units_0", "learning_rate"], tmp_path / "x" / "c.png")
    assert other.path.is_file() and other.chosen_by == "given"
    assert not list(tmp_path.glob("x/.*"))  # written atomically: no temporary file left


def test_contour_refuses_unknown_knobs_and_too_few_trials(tmp_path):
    records = _records()
    with pytest.raises(ConfigError) as info:
        build_contour(records, "lerning_rate", "units_0", objective="val_accuracy",
                      direction="max", hp_names=HP_NAMES)
    assert_one_line(info.value, "contour", "'lerning_rate'", "did you mean 'learning_rate'")
    with pytest.raises(ConfigError) as info:
        build_contour(records[:2], "learning_rate", "units_0", objective="val_accuracy",
                      direction="max")
    assert_one_line(info.value, "at least 3 ranked trials", "received 2")
    for record in records[:2]:  # (an inactive knob: a trial without units_0)
        del record.hyperparameters["units_0"]
    records[4].status = "FAILED"
    with pytest.raises(ConfigError) as info:
        build_contour(records[:5], "learning_rate", "units_0", objective="val_accuracy",
                      direction="max")
    assert_one_line(info.value, "received 2 (of 4 ranked)")
    with pytest.raises(ConfigError) as info:
        build_contour(_records(), "learning_rate", "num_layers", objective="val_accuracy",
                      direction="max")
    assert_one_line(info.value, "num_layers has one value (2)")
    results = RunResults(run_dir=tmp_path, objective="val_accuracy", direction="max",
                         trials=_records(), hp_names=HP_NAMES)
    with pytest.raises(ConfigError) as info:
        write_contour(results, ["learning_rate"])
    assert_one_line(info.value, "expected two knobs or none, received 1")


def test_knob_scales_from_a_keras_tuner_space_and_from_values():
    kt = pytest.importorskip("keras_tuner")
    hp = kt.HyperParameters()
    hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")
    hp.Int("units", 16, 512, sampling="log")
    hp.Int("num_layers", 1, 4)
    hp.Choice("optimizer", ["adam", "sgd"])
    hp.Choice("batch_size", [32, 64])
    hp.Boolean("residual")
    assert knob_scales(hp.get_config()) == {
        "learning_rate": "log", "units": "log", "num_layers": "linear",
        "optimizer": "categorical", "batch_size": "linear", "residual": "categorical"}
    assert guess_scale([1e-4, 1e-2]) == "log"
    assert guess_scale([1, 4]) == "linear"
    assert guess_scale([True, False]) == "categorical"
    assert guess_scale(["adam", None, "sgd"]) == "categorical"


def test_choose_knobs_follows_importance_and_skips_knobs_that_cannot_be_drawn():
    records = _records()
    assert choose_knobs(records, HP_NAMES, ["num_layers", "optimizer", "learning_rate"]) == (
        "optimizer", "learning_rate")   # num_layers never varied
    assert choose_knobs(records, HP_NAMES) == ("units_0", "optimizer")  # the run's order
    with pytest.raises(ConfigError) as info:
        choose_knobs(records[:2], HP_NAMES)
    assert_one_line(info.value, "no two knobs varied", "--contour KNOB_A KNOB_B")


# ---------------------------------------------------------------------- a real search
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A random search on iris: the two popular designs and two random trials, 2 epochs."""
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    run_dir = tmp_path_factory.mktemp("diagnosis") / "run"
    result = run_search(SearchConfig(
        data="iris", tuner="random", max_trials=4, max_epochs=2, seed=3, run_dir=str(run_dir),
        overrides={"optimizer": "adam", "normalization": "none", "clipnorm": "off",
                   "learning_rate": {"min": 1e-3, "max": 1e-2}}))
    return result


@pytest.mark.slow
def test_inspect_contour_of_a_real_search(searched):
    run = searched.run_dir
    done = run_cli("inspect", str(run), "--contour")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"wrote {run}/contour_")  # the path, whole, to copy
    # the summary wrapped (continuations indented) to 100 columns, whatever the path's length
    assert max(len(line) for line in lines[1:]) <= 100, lines
    lines = [line for line in lines if not line.startswith(" ")]
    assert len(lines) == 2
    path = Path(lines[0].split()[1])
    assert path.is_file() and _png_size(path)[0] >= 500
    assert lines[1].startswith("val_accuracy (max) over ")

    done = run_cli("inspect", str(run), "--contour", "learning_rate", "units_0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"wrote {run}/contour_learning_rate_units_0.png"
    assert "over learning_rate (log) and units_0 (log): 4 trials" in " ".join(done.stdout.split())
    assert (run / "contour_learning_rate_units_0.png").is_file()

    done = run_cli("inspect", str(run), "--contour", "learning_rat", "units_0")
    assert done.returncode == 2 and done.stdout == ""
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and errors[0].startswith(
        "error: contour: unknown knob 'learning_rat'; did you mean 'learning_rate'?")
    done = run_cli("inspect", str(run), "--contour", "units_0")
    assert done.returncode == 2 and len(error_lines(done.stderr)) == 1


@pytest.mark.slow
def test_the_search_writes_a_contour_image_to_tensorboard(searched):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    from tests.tb_read import images

    root = searched.run_dir / "tensorboard" / "search"
    assert images(root)["search/contour"] == [len(searched.trials)]  # step: finished trials
    acc = ea.EventAccumulator(str(root), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    (event,) = acc.Tensors("search/contour")
    width, height, png = tensor_util.make_ndarray(event.tensor_proto)  # the image plugin's
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int(width) >= 500 and int(height) >= 400
    summary = acc.SummaryMetadata("search/contour").summary_description
    assert summary.startswith("val_accuracy (max) over ") and " 4 trials" in summary


# ---------------------------------------------------------------------- an overfitting trial
@pytest.mark.slow
def test_an_overfitting_trial_is_diagnosed_everywhere(tmp_path, capsys):
    """30 training samples of digits, a 512-unit network, 40 epochs: it memorizes them."""
    keras = pytest.importorskip("keras")
    from sklearn.datasets import load_digits

    import kerastune_kit as kk
    from kerastune_kit.cli import main
    from tests.tb_read import texts

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, y_train, x_val, y_val = x[:30], y[:30], x[1000:1250], y[1000:1250]

    def build(hp):
        model = keras.Sequential([keras.Input((64,)),
                                  keras.layers.Dense(hp.Fixed("units", 512),
                                                     activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile(optimizer=keras.optimizers.Adam(hp.Fixed("learning_rate", 3e-3)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    tuner = kk.RandomSearch(build, objective="val_accuracy", max_trials=1, directory=tmp_path,
                            project_name="overfit", overwrite=True, seed=0)
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=40, batch_size=32,
                 verbose=0)
    run = tmp_path / "overfit"
    (record,) = kk.load_results(run)
    assert record.diagnosis is not None, record
    assert record.diagnosis.startswith("overfitting: train accuracy 1.00 vs validation 0.")
    assert record.diagnosis.endswith("; more dropout or L2, or less capacity")
    assert read_leaderboard(run)[0]["diagnosis"] == record.diagnosis
    outcome = texts(run / "tensorboard" / record.trial_id)["trial/outcome"][-1][1]
    assert record.diagnosis in outcome.split("  \n")

    capsys.readouterr()
    assert main(["inspect", str(run)]) == 0
    out = capsys.readouterr().out
    line = next(n for n, text in enumerate(out.splitlines()) if text.startswith("  trial "))
    shown = " ".join(out.splitlines()[line:line + 2]).split()  # (wrapped to the width)
    assert " ".join(shown).startswith(f"trial {record.trial_id}: {record.diagnosis}")
    # Event files alone: the diagnosis is read back from the trial's outcome text, and is
    # not taken for the trial's message.
    alone = tmp_path / "alone"
    shutil.copytree(run / "tensorboard", alone / "tensorboard")
    (again,) = kk.load_results(alone)
    assert again.diagnosis == record.diagnosis and again.message != record.diagnosis


def test_diagnosis_and_contour_import_without_tensorflow():
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys, kerastune_kit.diagnosis, kerastune_kit.contour; "
            "print([m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
