"""Keras's own callbacks inside TrainLoop behave as they do inside model.fit."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from kerastune_kit.training import TrainLoop, needs_batch_hooks
from tests.helpers import exploding_regression
from tests.tb_read import scalars

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")


def _data(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 3))).argmax(axis=1).astype("int32")
    return x, y


def _model(optimizer=None):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(12, activation="tanh", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def _loop(model, **kwargs):
    return TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                     **kwargs)


class WeightsAtEpochs(keras.callbacks.Callback):
    """Copies of the weights at every epoch's begin and end."""

    def __init__(self) -> None:
        super().__init__()
        self.begin: dict[int, list[np.ndarray]] = {}
        self.end: dict[int, list[np.ndarray]] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.begin[epoch] = [w.copy() for w in self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.end[epoch] = [w.copy() for w in self.model.get_weights()]


def _full_batch_gradient(model, weights, x, y):
    """The gradient of the full-batch loss at ``weights`` (eagerly, on a scratch model)."""
    scratch = keras.models.clone_model(model)
    scratch.set_weights(weights)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, scratch(x, training=True))
    return [g.numpy() for g in tape.gradient(loss, scratch.trainable_variables)]


def _assert_sgd_step(model, recorder, epoch, learning_rate, x, y):
    """The compiled step of ``epoch`` moved the weights by exactly -learning_rate * gradient."""
    before, after = recorder.begin[epoch], recorder.end[epoch]
    gradient = _full_batch_gradient(model, before, x, y)
    for w0, w1, g in zip(before, after, gradient, strict=True):
        np.testing.assert_allclose(w1 - w0, -learning_rate * g, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("fused_updates", [True, False], ids=["fused", "keras-apply"])
def test_reduce_lr_on_plateau_rate_reaches_the_compiled_step(fused_updates):
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.5))
    recorder = WeightsAtEpochs()
    # mode="max" on a falling loss: no improvement after epoch 0, so the rate drops at the
    # end of epoch 1 and epoch 2 must step with it.
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="loss", mode="max", factor=0.1,
                                               patience=1, min_lr=0.0)
    history = _loop(model, fused_updates=fused_updates).fit(
        x, y, batch_size=64, epochs=3, shuffle=False, callbacks=[reduce, recorder])
    # Logged before each epoch's reduction (as in model.fit); reduced again after epoch 2.
    assert history.history["learning_rate"] == pytest.approx([0.5, 0.5, 0.05])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)
    _assert_sgd_step(model, recorder, 1, 0.5, x, y)
    _assert_sgd_step(model, recorder, 2, 0.05, x, y)


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.5))
    recorder = WeightsAtEpochs()
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 0.3 / (epoch + 1))
    history = _loop(model).fit(x, y, batch_size=64, epochs=3, shuffle=False,
                               callbacks=[schedule, recorder])
    assert history.history["learning_rate"] == pytest.approx([0.3, 0.15, 0.1])
    _assert_sgd_step(model, recorder, 2, 0.1, x, y)


def test_early_stopping_restores_the_best_weights():
    x, y = _data()
    model = _model()
    recorder = WeightsAtEpochs()
    # mode="max" on a falling loss: epoch 0 stays the best, training stops after epoch 1.
    stopper = keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=1,
                                            restore_best_weights=True)
    loop = _loop(model)
    history = loop.fit(x, y, batch_size=16, epochs=10, callbacks=[recorder, stopper])
    assert len(history.history["loss"]) == 2
    for restored, best in zip(model.get_weights(), recorder.end[0], strict=True):
        np.testing.assert_array_equal(restored, best)
    assert not np.allclose(model.get_weights()[0], recorder.end[1][0])
    # The compiled eval pass sees the restored weights.
    reference = _model()
    reference.set_weights(recorder.end[0])
    expected = reference.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert loop.evaluate(x, y)["loss"] == pytest.approx(expected, rel=1e-5)


def test_model_checkpoint_saves_every_epoch_and_the_best(tmp_path):
    x, y = _data()
    model = _model()
    every = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch_{epoch}.weights.h5"),
                                            save_weights_only=True)
    best = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_loss",
                                           save_best_only=True)
    assert not needs_batch_hooks(every) and not needs_batch_hooks(best)
    _loop(model).fit(x, y, batch_size=16, epochs=3, validation_data=_data(32, seed=1),
                     callbacks=[every, best])
    assert sorted(p.name for p in tmp_path.glob("epoch_*")) == [
        "epoch_1.weights.h5", "epoch_2.weights.h5", "epoch_3.weights.h5"]
    restored = _model()
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(tmp_path / "epoch_3.weights.h5")
    for a, b in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert keras.models.load_model(tmp_path / "best.keras").predict(x[:2], verbose=0).shape == (
        2, 3)


def test_model_checkpoint_every_n_batches_runs_batch_hooks(tmp_path):
    x, y = _data()
    saver = keras.callbacks.ModelCheckpoint(str(tmp_path / "b{epoch}-{batch}.weights.h5"),
                                            save_weights_only=True, save_freq=2)
    assert needs_batch_hooks(saver)
    _loop(_model()).fit(x, y, batch_size=16, epochs=1, callbacks=[saver])
    assert len(list(tmp_path.glob("*.weights.h5"))) == 2  # 4 batches, every 2nd


@pytest.mark.parametrize("raise_error", [False, True])
def test_terminate_on_nan_sees_the_nan_batch(raise_error):
    model, x, y = exploding_regression(keras)
    terminate = keras.callbacks.TerminateOnNaN(raise_error=raise_error)
    assert not needs_batch_hooks(terminate)  # the loop detects NaN in-graph and reports it
    loop = TrainLoop(model, loss="mse")
    if raise_error:
        with pytest.raises(RuntimeError, match="NaN or Inf loss"):
            loop.fit(x, y, batch_size=8, epochs=20, shuffle=False, callbacks=[terminate])
        return
    history = loop.fit(x, y, batch_size=8, epochs=20, shuffle=False, callbacks=[terminate])
    assert history.divergence is not None
    assert len(history.history["loss"]) == history.divergence.epoch + 1 < 20


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    _loop(_model()).fit(x, y, batch_size=16, epochs=3, validation_data=_data(32, seed=1),
                        callbacks=[keras.callbacks.CSVLogger(str(path))])
    rows = list(csv.DictReader(path.open()))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                            "learning_rate"}
    assert float(rows[2]["loss"]) < float(rows[0]["loss"])


def test_keras_tensorboard_writes_its_event_files(tmp_path):
    x, y = _data()
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    assert not needs_batch_hooks(board)
    _loop(_model()).fit(x, y, batch_size=16, epochs=2, validation_data=_data(32, seed=1),
                        callbacks=[board])
    train, validation = scalars(tmp_path / "train"), scalars(tmp_path / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
    assert [step for step, _ in train["epoch_loss"]] == [0, 1]
    assert {"epoch_loss", "epoch_accuracy", "evaluation_loss_vs_iterations"} <= set(validation)
    # model.fit's step for the evaluation scalars: the optimizer's iteration count.
    assert [step for step, _ in validation["evaluation_loss_vs_iterations"]] == [4, 8]


def test_keras_tensorboard_per_batch_scalars_run_batch_hooks(tmp_path):
    x, y = _data()
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path), update_freq="batch")
    assert needs_batch_hooks(board)
    loop = _loop(_model())
    loop.fit(x, y, batch_size=16, epochs=2, callbacks=[board])
    train = scalars(tmp_path / "train")
    assert [step for step, _ in train["batch_loss"]] == list(range(1, 9))
    assert loop.trace_counts["train"] == 1


def test_user_progbar_logger_prints_progress(capsys):
    x, y = _data()
    _loop(_model()).fit(x, y, batch_size=16, epochs=2, verbose=1,
                        callbacks=[keras.callbacks.ProgbarLogger()])
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "loss" in out


def test_model_history_and_test_hooks_follow_model_fit():
    class Seen(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events: list[str] = []

        def on_test_begin(self, logs=None):
            self.events.append("test_begin")

        def on_test_end(self, logs=None):
            self.events.append(f"test_end:{sorted(logs)}")

    x, y = _data()
    model = _model()
    seen = Seen()
    history = _loop(model).fit(x, y, batch_size=32, epochs=2, validation_data=_data(32, 1),
                               callbacks=[seen])
    assert model.history is history
    assert seen.params == {"epochs": 2, "steps": 2, "verbose": 0}
    assert seen.events == ["test_begin", "test_end:['accuracy', 'loss']"] * 2
