"""The explosion rule: a loss above ``explosion_factor`` x the first epoch's stops a trial, in the
compiled epoch, and the trial is recorded as diverged with the factor in its reason."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")

import kerastune_kit as kk  # noqa: E402
from kerastune_kit import steps  # noqa: E402
from kerastune_kit.config import SearchConfig  # noqa: E402
from kerastune_kit.data import load_dataset  # noqa: E402
from kerastune_kit.errors import ConfigError  # noqa: E402
from kerastune_kit.fit_paths import DivergenceRecorder, fit_with_keras, fit_with_loop  # noqa: E402
from kerastune_kit.hypermodels import MLPHyperModel  # noqa: E402
from kerastune_kit.results import read_leaderboard, read_trial_records  # noqa: E402
from kerastune_kit.space import SearchSpace  # noqa: E402
from kerastune_kit.training import Divergence, TrainLoop  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.helpers import assert_one_line  # noqa: E402
from tests.tb_read import texts  # noqa: E402

#: A learning rate fine for the first epoch, then far too high: the loss explodes in the second
#: epoch and stays finite for several epochs (it overflows only at epoch 5 without the rule).
CALM, WILD = 0.05, 30.0


def _raise_learning_rate() -> keras.callbacks.Callback:
    return keras.callbacks.LearningRateScheduler(lambda epoch, lr: CALM if epoch == 0 else WILD)


def _blobs(n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(12, 3)), axis=1).astype("int32")
    return x, y


X, Y = _blobs()

#: One architecture, plain SGD: every trial's model has the same trace key.
SGD_SPACE = {"optimizer": "sgd", "learning_rate": CALM, "clipnorm": "off",
             "normalization": "none", "num_layers": 1, "units": 16, "dropout": 0.0,
             "batch_size": 32}


def _trial_model(space: dict | None = None) -> tuple[MLPHyperModel, object]:
    """A search trial's model, as KerasTuner makes it (clear_session, then the build)."""
    keras.backend.clear_session()
    hypermodel = MLPHyperModel(SearchSpace(space or SGD_SPACE), input_shape=(12,),
                               task="multiclass", n_classes=3, seed=5)
    return hypermodel, hypermodel.build(kt.HyperParameters())


def _loop(factor, space: dict | None = None) -> TrainLoop:
    hypermodel, model = _trial_model(space)
    return TrainLoop(model, loss=hypermodel.head.loss(), metrics=hypermodel.head.metrics(),
                     explosion_factor=factor)


def _finite_weights(model) -> bool:
    return all(bool(np.isfinite(np.asarray(v)).all()) for v in model.variables)


def test_a_finite_explosion_is_recorded_as_diverged_with_the_factor():
    loop = _loop(3)
    history = loop.fit(X, Y, batch_size=32, epochs=6, callbacks=[_raise_learning_rate()])
    divergence = history.divergence
    losses = history.history["loss"]
    assert divergence is not None and divergence.exploded
    assert divergence.epoch == 1 and len(losses) == 2  # stopped in the second epoch
    assert divergence.factor == 3
    assert divergence.reference == pytest.approx(losses[0]) == history.explosion_reference
    assert math.isfinite(divergence.loss) and divergence.loss > 3 * losses[0]
    assert losses[1] == divergence.loss  # the epoch's logs carry the loss that exploded
    assert divergence.learning_rate == pytest.approx(WILD)
    reason = divergence.reason()
    assert reason.startswith("diverged: loss ")
    assert "exceeded 3 x its starting loss" in reason and "(explosion_factor=3)" in reason
    assert f"learning_rate={WILD:g}" in reason and "\n" not in reason
    assert _finite_weights(loop.model)  # the step that exploded was not applied


@pytest.mark.parametrize("off", [0, None, "off"])
def test_with_the_rule_off_the_same_training_runs_on(off):
    history = _loop(off).fit(X, Y, batch_size=32, epochs=4, callbacks=[_raise_learning_rate()])
    losses = history.history["loss"]
    assert history.divergence is None and history.explosion_reference is None
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert max(losses[1:]) > 1000 * losses[0]  # the rule would have stopped it


class BatchLosses(keras.callbacks.Callback):
    """The running mean loss after each batch of the first epoch."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


def test_the_first_epoch_sets_the_reference_and_only_a_non_finite_loss_stops_it():
    # A loss far above the first batch's during the first epoch (an adaptive optimizer's
    # early spike often recovers) is no reason to stop: the first epoch is the reference.
    batches = BatchLosses()
    history = _loop(3, {**SGD_SPACE, "learning_rate": WILD}).fit(
        X, Y, batch_size=32, epochs=1, callbacks=[batches])
    assert max(batches.losses) > 3 * batches.losses[0]  # a running mean: some batch was higher
    assert history.divergence is None
    assert history.explosion_reference == pytest.approx(history.history["loss"][0])


def test_a_given_reference_applies_from_the_first_step_and_a_later_fit_keeps_it():
    loop = _loop(3)
    first = loop.fit(X, Y, batch_size=32, epochs=1, callbacks=[_raise_learning_rate()])
    assert first.divergence is None and loop.explosion_reference == first.history["loss"][0]
    # fit again from epoch 1 (a continued training): the loop's reference still holds.
    again = loop.fit(X, Y, batch_size=32, epochs=4, initial_epoch=1,
                     callbacks=[_raise_learning_rate()])
    assert again.divergence.exploded and again.divergence.epoch == 1
    assert again.divergence.reference == first.history["loss"][0]
    # A promoted trial's reference (its parent's first epoch): checked from its first step.
    promoted = _loop(3).fit(X, Y, batch_size=32, epochs=3, callbacks=[_raise_learning_rate()],
                            explosion_reference=1e-3)
    assert promoted.divergence.exploded and promoted.divergence.epoch == 0
    assert promoted.divergence.reference == 1e-3 == promoted.explosion_reference


@pytest.mark.parametrize("data,epochs", [("iris", 30), ("diabetes", 15)])
def test_no_false_positive_when_training_is_healthy(data, epochs):
    dataset = load_dataset(data, seed=0)
    task = dataset.task
    keras.backend.clear_session()
    hypermodel = MLPHyperModel(SearchSpace({"learning_rate": 1e-3, "optimizer": "adam"}),
                               input_shape=dataset.input_shape, task=task,
                               n_classes=dataset.n_classes, seed=0)
    model = hypermodel.build(kt.HyperParameters())
    loop = TrainLoop(model, loss=hypermodel.head.loss(), metrics=hypermodel.head.metrics(),
                     explosion_factor=3)
    history = loop.fit(dataset.x_train, hypermodel.head.prepare_targets(dataset.y_train),
                       batch_size=32, epochs=epochs)
    losses = history.history["loss"]
    assert history.divergence is None and len(losses) == epochs
    assert history.explosion_reference == pytest.approx(losses[0])
    assert losses[-1] < losses[0]  # it trained


def test_reused_traces_follow_each_loops_own_factor():
    steps.clear_reused_traces()
    results = {}
    for name, factor in (("off", 0), ("3", 3), ("off again", 0), ("1e6", 1e6)):
        loop = _loop(factor)
        history = loop.fit(X, Y, batch_size=32, epochs=6, callbacks=[_raise_learning_rate()])
        results[name] = (loop.trace_counts["train"], history.divergence)
    assert results["off"][0] == 1 and all(results[n][0] == 0 for n in ("3", "off again", "1e6"))
    for name in ("off", "off again"):  # ran until the loss overflowed
        assert not results[name][1].exploded and results[name][1].epoch == 5
    three, million = results["3"][1], results["1e6"][1]
    assert three.exploded and three.factor == 3 and three.epoch == 1
    assert million.exploded and million.factor == 1e6
    assert million.loss > 1e6 * million.reference and (million.epoch, million.step) > (
        three.epoch, three.step)


def _user_model(learning_rate: float = CALM):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_model_fit_path_applies_the_rule_per_epoch():
    history = fit_with_keras(_user_model(), X, Y, batch_size=32, epochs=5, verbose=0,
                             callbacks=[_raise_learning_rate()], explosion_factor=3)
    losses = history.history["loss"]
    divergence = history.divergence
    assert divergence is not None and divergence.exploded and divergence.epoch == 1
    assert len(losses) == 2 and divergence.loss == losses[1] > 3 * losses[0]
    assert history.explosion_reference == divergence.reference == losses[0]
    assert "(explosion_factor=3)" in divergence.reason()
    off = fit_with_keras(_user_model(), X, Y, batch_size=32, epochs=3, verbose=0,
                         callbacks=[_raise_learning_rate()], explosion_factor=0)
    assert off.divergence is None and len(off.history["loss"]) == 3
    # The loop path for a user's compiled model takes the factor too.
    loop = fit_with_loop(_user_model(), X, Y, batch_size=32, epochs=5, verbose=0,
                         callbacks=[_raise_learning_rate()], explosion_factor=3)
    assert loop.divergence.exploded and loop.divergence.epoch == 1


def test_the_recorder_with_a_given_reference_checks_the_first_epoch():
    recorder = DivergenceRecorder(explosion_factor=3, explosion_reference=0.1)
    model = _user_model()
    model.fit(X, Y, batch_size=32, epochs=3, verbose=0, callbacks=[recorder])
    divergence = recorder.divergence
    assert isinstance(divergence, Divergence) and divergence.exploded
    assert (divergence.epoch, divergence.step, divergence.reference, divergence.factor) == (
        0, 3, 0.1, 3)
    assert divergence.loss > 0.3 and recorder.explosion_reference == 0.1


@pytest.mark.parametrize("bad", [1, 0.5, -3, math.inf, "often", True])
def test_a_bad_factor_is_refused_in_one_line(bad, tmp_path):
    with pytest.raises(ValueError, match="explosion_factor") as caught:
        _loop(bad)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        kk.RandomSearch(_search_build, objective="val_loss", max_trials=1,
                        explosion_factor=bad, directory=str(tmp_path))
    assert_one_line(caught.value, "explosion_factor", repr(bad))


def _search_build(hp):
    model = _user_model()
    hp.Choice("units", [8, 16])  # two distinct trials
    return model


@pytest.mark.slow
def test_a_search_records_exploded_trials_as_diverged(tmp_path):
    tuner = kk.RandomSearch(_search_build, objective="val_loss", max_trials=2, seed=1,
                            directory=str(tmp_path), project_name="wild")
    tuner.search(X, Y, validation_data=_blobs(40, seed=1), epochs=4, batch_size=32,
                 callbacks=[_raise_learning_rate()])
    run = tmp_path / "wild"
    records = read_trial_records(run / "tuner")
    assert [r.status for r in records] == ["DIVERGED", "DIVERGED"]
    for record in records:
        assert "(explosion_factor=3)" in record.message, record.message
        assert "exceeded 3 x its starting loss" in record.message
        assert record.score is None and record.epochs == 2
        assert record.explosion_reference is not None and record.explosion_reference > 0
        outcome = texts(run / "tensorboard" / record.trial_id)["trial/outcome"][-1][1]
        assert outcome.startswith("**diverged**") and "explosion_factor=3" in outcome
    rows = read_leaderboard(run)
    assert all("explosion_factor=3" in row["message"] for row in rows)

    off = kk.RandomSearch(_search_build, objective="val_loss", max_trials=2, seed=1,
                          directory=str(tmp_path), project_name="off", explosion_factor="off")
    off.search(X, Y, validation_data=_blobs(40, seed=1), epochs=3, batch_size=32,
               callbacks=[_raise_learning_rate()])
    records = read_trial_records(tmp_path / "off" / "tuner")
    assert [r.status for r in records] == ["COMPLETED", "COMPLETED"]
    assert all(r.explosion_reference is None for r in records)


@pytest.mark.slow
def test_the_cli_flag_sets_the_factor_or_turns_the_rule_off(tmp_path):
    from kerastune_kit.cli import main

    for flag in ("off", "4"):
        assert main(["search", "--data", "iris", "--tuner", "random", "--max-trials", "1",
                     "--max-epochs", "2", "--seed", "3", "--no-preflight",
                     "--explosion-factor", flag, "--run-dir", str(tmp_path / flag)]) == 0
    (off,), (on,) = (read_trial_records(tmp_path / flag / "tuner") for flag in ("off", "4"))
    assert off.status == on.status == "COMPLETED"
    assert off.explosion_reference is None  # no rule, no reference
    assert on.explosion_reference > 0


@pytest.mark.slow
def test_a_promoted_hyperband_trial_keeps_its_parents_reference(tmp_path):
    from kerastune_kit.tuning import run_search

    result = run_search(SearchConfig(data="iris", tuner="hyperband", max_epochs=3,
                                     max_trials=6, seed=3, preflight=False,
                                     run_dir=str(tmp_path / "run")))
    records = {r.trial_id: r for r in result.trials}
    promoted = [r for r in records.values() if r.parent_trial_id]
    assert promoted, [(r.trial_id, r.status) for r in records.values()]
    for record in records.values():
        assert record.explosion_reference is not None and record.explosion_reference > 0
    for record in promoted:
        parent = records[record.parent_trial_id]
        assert record.explosion_reference == parent.explosion_reference
        assert record.initial_epoch > 0


MIRRORED = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from kerastune_kit.training import TrainLoop

    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 12)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(12, 3)), axis=1).astype("int32")

    def fit():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(3)])
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        loop = TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         explosion_factor=3)
        schedule = keras.callbacks.LearningRateScheduler(lambda e, lr: 0.05 if e == 0 else 30.0)
        history = loop.fit(x, y, batch_size=32, epochs=6, callbacks=[schedule], shuffle=False)
        d = history.divergence
        return {"losses": history.history["loss"], "epoch": d and d.epoch, "step": d and d.step,
                "exploded": bool(d and d.exploded), "reference": history.explosion_reference,
                "finite": all(bool(np.isfinite(w).all()) for w in model.get_weights())}

    out = {"single": fit()}
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        out["mirrored"] = fit()
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow
def test_the_rule_holds_under_a_mirrored_strategy():
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    single, mirrored = out["single"], out["mirrored"]
    assert single["exploded"] and mirrored["exploded"] and mirrored["finite"]
    assert mirrored["epoch"] == single["epoch"] == 1
    assert mirrored["step"] == single["step"]
    assert mirrored["reference"] == pytest.approx(single["reference"], rel=1e-4)
    assert mirrored["reference"] == pytest.approx(mirrored["losses"][0])
