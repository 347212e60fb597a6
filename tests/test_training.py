"""TrainLoop: the GradientTape loop behaves like model.fit for the things tuning relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kerastune_kit.training import TrainLoop

keras = pytest.importorskip("keras")


def _data(n: int = 96, features: int = 6, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=(features, classes))
    y = np.argmax(x @ w, axis=1).astype("int32")
    return x, y


def _model(optimizer=None, features: int = 6, classes: int = 3):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((features,))
    h = keras.layers.Dense(16, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(classes)(h))
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2, clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def _loop(model):
    return TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


class Recorder(keras.callbacks.Callback):
    """Records the hooks it sees, in order, with the epoch logs."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, dict(logs or {})))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def test_matches_model_fit_losses_without_shuffle():
    x, y = _data()
    x_val, y_val = _data(32, seed=1)
    reference = _model().fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0,
                             validation_data=(x_val, y_val)).history
    ours = _loop(_model()).fit(x, y, batch_size=16, epochs=3, shuffle=False,
                               validation_data=(x_val, y_val)).history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_compiles_train_and_eval_once_for_all_epochs():
    x, y = _data()
    loop = _loop(_model())
    loop.fit(x, y, batch_size=16, epochs=4, validation_data=_data(32, seed=1))
    assert loop.trace_counts == {"train": 1, "eval": 1}


def test_callbacks_see_fit_protocol_and_log_keys():
    x, y = _data()
    recorder = Recorder()
    _loop(_model()).fit(x, y, batch_size=32, epochs=3, initial_epoch=1,
                        validation_data=_data(32, seed=1), callbacks=[recorder])
    kinds = [e[0] for e in recorder.events]
    assert kinds == ["train_begin", "epoch_begin", "epoch_end", "epoch_begin", "epoch_end",
                     "train_end"]
    assert [e[1] for e in recorder.events if e[0] == "epoch_begin"] == [1, 2]
    logs = recorder.events[2][2]
    assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert logs["learning_rate"] == pytest.approx(1e-2)


def test_stop_training_is_honoured():
    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    x, y = _data()
    history = _loop(_model()).fit(x, y, epochs=5, callbacks=[StopAfterFirst()])
    assert len(history.history["loss"]) == 1


def test_keras_early_stopping_works_inside_the_loop():
    x, y = _data()
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    history = _loop(_model()).fit(x, y, epochs=6, callbacks=[stopper])
    assert len(history.history["loss"]) == 2


def test_batch_hooks_run_per_step_when_a_callback_needs_them():
    class CountBatches(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches: list[int] = []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append(batch)

    x, y = _data(96)
    counter = CountBatches()
    loop = _loop(_model())
    loop.fit(x, y, batch_size=32, epochs=2, callbacks=[counter])
    assert counter.batches == [0, 1, 2, 0, 1, 2]
    assert loop.trace_counts["train"] == 1


def _exploding_regression():
    """Plain SGD with a far too high learning rate on MSE: the loss overflows within a few steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32") * 10
    y = rng.normal(size=(64, 1)).astype("float32")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8)(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=5.0), loss="mse")
    loop = TrainLoop(model, loss=keras.losses.MeanSquaredError())
    return loop, x, y


def test_non_finite_loss_stops_training_and_records_where():
    loop, x, y = _exploding_regression()
    history = loop.fit(x, y, batch_size=8, epochs=20, shuffle=False)
    divergence = history.divergence
    assert divergence is not None
    assert len(history.history["loss"]) == divergence.epoch + 1 < 20
    assert math.isnan(history.history["loss"][-1])
    assert 0 <= divergence.step < 8
    assert divergence.learning_rate == pytest.approx(5.0)
    assert "learning rate" in divergence.reason()


def test_weights_stay_finite_when_training_stops_on_divergence():
    loop, x, y = _exploding_regression()
    loop.fit(x, y, batch_size=8, epochs=20, shuffle=False)
    assert all(np.isfinite(w).all() for w in loop.model.get_weights())


def test_optimizer_state_continues_across_fit_calls():
    x, y = _data(64)
    model = _model()
    loop = _loop(model)
    loop.fit(x, y, batch_size=32, epochs=2)
    history = _loop(model).fit(x, y, batch_size=32, epochs=3, initial_epoch=2)
    assert history.initial_iterations == 4
    assert int(model.optimizer.iterations.numpy()) == 6


def test_clipnorm_bounds_the_update():
    x, y = _data(32)
    y = y.copy()
    model = _model(keras.optimizers.SGD(learning_rate=1.0, clipnorm=1e-3))
    before = [w.copy() for w in model.trainable_variables[0].numpy()[None]]
    _loop(model).fit(x * 1e3, y, batch_size=32, epochs=1, shuffle=False)
    step = model.trainable_variables[0].numpy() - before[0]
    assert np.linalg.norm(step) <= 1e-3 + 1e-6
