"""Gradient health: measured in the compiled epoch, kept out of the logs, written to TensorBoard."""

from __future__ import annotations

import numpy as np
import pytest

from kerastune_kit.config import SearchConfig
from kerastune_kit.training import TrainLoop
from tests.tb_read import histograms, scalars

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

HEALTH = {"gradients/global_norm_mean", "gradients/global_norm_max",
          "gradients/clipped_fraction", "update_ratio/hidden", "update_ratio/logits"}


def _data(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 3))).argmax(axis=1).astype("int32")
    return x, y


def _model(optimizer):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(12, activation="tanh", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    model.compile(optimizer=optimizer)
    return model


def _loop(model, **kwargs):
    return TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                     **kwargs)


def test_diagnostics_per_epoch_stay_out_of_the_logs():
    class Logs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.keys: list[set[str]] = []

        def on_epoch_end(self, epoch, logs=None):
            self.keys.append(set(logs))

    seen: list[tuple[int, dict]] = []
    logs = Logs()
    x, y = _data()
    history = _loop(_model(keras.optimizers.Adam(1e-2, clipnorm=1.0))).fit(
        x, y, batch_size=16, epochs=3, initial_epoch=1, validation_data=_data(16, 1),
        callbacks=[logs], on_diagnostics=lambda epoch, d: seen.append((epoch, d)))
    assert sorted(history.diagnostics) == [1, 2]
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert seen[0][1] is history.diagnostics[1]
    for diagnostics in history.diagnostics.values():
        assert set(diagnostics) == HEALTH
        assert 0 < diagnostics["gradients/global_norm_mean"] <= diagnostics[
            "gradients/global_norm_max"]
        assert 0 <= diagnostics["gradients/clipped_fraction"] <= 1
        assert 1e-5 < diagnostics["update_ratio/hidden"] < 1
    assert logs.keys == [{"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}] * 2


def test_norm_and_update_ratio_are_exact_for_full_batch_sgd():
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.1))
    start = [w.copy() for w in model.get_weights()]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    gradients = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    history = _loop(model).fit(x, y, batch_size=64, epochs=1, shuffle=False)
    diagnostics = history.diagnostics[0]
    norm = np.sqrt(sum(float((g ** 2).sum()) for g in gradients))
    assert diagnostics["gradients/global_norm_mean"] == pytest.approx(norm, rel=1e-5)
    assert diagnostics["gradients/global_norm_max"] == pytest.approx(norm, rel=1e-5)
    assert diagnostics["gradients/clipped_fraction"] == 0
    names = [v.path for v in model.trainable_variables]
    for layer in ("hidden", "logits"):
        i = names.index(f"{layer}/kernel")
        expected = 0.1 * np.linalg.norm(gradients[i]) / np.linalg.norm(start[i])
        assert diagnostics[f"update_ratio/{layer}"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("clip", "fraction"), [
    ({"clipnorm": 1e-6}, 1.0), ({"clipnorm": 1e6}, 0.0),
    ({"global_clipnorm": 1e-6}, 1.0), ({"global_clipnorm": 1e6}, 0.0), ({}, 0.0),
])
def test_clipped_fraction_counts_clipped_steps(clip, fraction):
    x, y = _data()
    history = _loop(_model(keras.optimizers.SGD(0.1, **clip))).fit(x, y, batch_size=16)
    assert history.diagnostics[0]["gradients/clipped_fraction"] == fraction
    # The norm is measured before clipping.
    assert history.diagnostics[0]["gradients/global_norm_mean"] > 1e-3


def test_weight_histograms_behind_a_flag_and_diagnostics_can_be_off():
    x, y = _data()
    history = _loop(_model(keras.optimizers.Adam()), weight_histograms=True).fit(x, y)
    weights = {k: v for k, v in history.diagnostics[0].items() if k.startswith("weights/")}
    assert {k: v.shape for k, v in weights.items()} == {
        "weights/hidden/kernel": (5, 12), "weights/hidden/bias": (12,),
        "weights/logits/kernel": (12, 3), "weights/logits/bias": (3,)}
    assert not _loop(_model(keras.optimizers.Adam()), diagnostics=False).fit(x, y).diagnostics


def test_update_ratios_sample_every_nth_step():
    from kerastune_kit.diagnostics import GradientHealth

    model = _model(keras.optimizers.SGD(0.1))
    health = GradientHealth(model.trainable_variables, model.optimizer, ratio_every=4)
    sampled = [bool(health.sampled(tf.constant(step))) for step in range(9)]
    assert sampled == [True, False, False, False, True, False, False, False, True]
    health.set_epoch_steps(30)  # a fixed interval stays fixed
    assert [bool(health.sampled(tf.constant(step))) for step in range(5)] == [
        True, False, False, False, True]
    with pytest.raises(ValueError, match="^ratio_every: "):
        GradientHealth(model.trainable_variables, model.optimizer, ratio_every=0)


@pytest.mark.parametrize(("steps", "sampled_steps"), [
    (30, [0, 8, 16, 24]), (6, [0, 2, 4]), (3, [0, 1, 2]), (None, [0, 8, 16, 24])])
def test_update_ratios_sample_about_four_steps_per_epoch_by_default(steps, sampled_steps):
    from kerastune_kit.diagnostics import GradientHealth

    model = _model(keras.optimizers.SGD(0.1))
    health = GradientHealth(model.trainable_variables, model.optimizer)
    health.set_epoch_steps(steps)
    epoch = range(steps or 30)
    assert [step for step in epoch if health.sampled(tf.constant(step))] == sampled_steps


def test_the_loop_sets_the_sampling_from_its_epoch_length():
    x, y = _data(96)  # 96 samples in batches of 16: 6 steps, so every 2nd step is measured
    loop = _loop(_model(keras.optimizers.Adam()))
    loop.fit(x, y, batch_size=16)
    assert int(loop.health.ratio_every.numpy()) == 2


def test_trial_writer_writes_scalars_and_histograms(tmp_path):
    from kerastune_kit.tensorboard import TrialWriter

    writer = TrialWriter(tmp_path, "0001")
    writer.write_diagnostics(3, {"gradients/global_norm_mean": 0.5,
                                 "weights/dense/kernel": np.ones((4, 2), "float32")})
    writer.close()
    train = tmp_path / "0001" / "train"  # epoch index 3 is the 4th epoch: step 4
    assert scalars(train)["gradients/global_norm_mean"] == [(4, 0.5)]
    assert histograms(train) == {"weights/dense/kernel": [4]}


@pytest.mark.slow
def test_search_writes_gradient_health_to_each_trial_run(tmp_path, monkeypatch):
    from kerastune_kit import training
    from kerastune_kit.tuning import run_search

    decisions: list[tuple[str, bool]] = []
    original = training.needs_batch_hooks

    def spy(callback):
        decisions.append((type(callback).__name__, original(callback)))
        return decisions[-1][1]

    monkeypatch.setattr(training, "needs_batch_hooks", spy)

    config = SearchConfig(data="iris", tuner="random", max_trials=1, max_epochs=2, seed=3,
                          run_dir=str(tmp_path / "run"),
                          overrides={"num_layers": 1, "clipnorm": 0.5})
    result = run_search(config)
    trial = result.trials[0]
    train = scalars(result.run_dir / "tensorboard" / trial.trial_id / "train")
    validation = scalars(result.run_dir / "tensorboard" / trial.trial_id / "validation")
    for tag in ("gradients/global_norm_mean", "gradients/global_norm_max",
                "gradients/clipped_fraction", "update_ratio/dense_0", "update_ratio/head"):
        assert [step for step, _ in train[tag]] == [1, 2], tag  # epochs numbered from 1
    assert all(0 <= v <= 1 for _, v in train["gradients/clipped_fraction"])
    assert not any(tag.startswith(("gradients/", "update_ratio/")) for tag in validation)
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
    # KerasTuner's TunerCallback forwards batches to no-op tuner hooks: whole epochs still run.
    assert ("TunerCallback", False) in decisions
    assert not any(needed for _, needed in decisions)


def test_hypermodel_weight_histograms_flag_reaches_the_loop():
    import keras_tuner as kt

    from kerastune_kit.hypermodels import MLPHyperModel
    from kerastune_kit.space import SearchSpace

    x, y = _data(32)
    hypermodel = MLPHyperModel(SearchSpace(num_layers=1, units=8), input_shape=(5,),
                               task="multiclass", n_classes=3)
    hypermodel.weight_histograms = True
    hp = kt.HyperParameters()
    history = hypermodel.fit(hp, hypermodel.build(hp), x, y, epochs=1)
    assert any(k.startswith("weights/dense_0") for k in history.diagnostics[0])
    assert "update_ratio/dense_0" in history.diagnostics[0]
