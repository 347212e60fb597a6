"""TrainLoop: the GradientTape loop behaves like model.fit for the things tuning relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kerastune_kit.training import TrainLoop
from tests.helpers import exploding_regression

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


@pytest.mark.parametrize("n", [96, 100], ids=["whole-batches", "partial-last-batch"])
def test_matches_model_fit_losses_without_shuffle(n):
    x, y = _data(n)
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


class _TracedBatchSizes(keras.layers.Layer):
    """Identity that records the batch dimension it was traced with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, inputs):
        self.seen.append(inputs.shape[0])
        return inputs


@pytest.mark.parametrize(("n", "expected"), [(96, 16), (100, None)])
def test_whole_batches_train_with_a_static_batch_size(n, expected):
    x, y = _data(n)
    probe = _TracedBatchSizes()
    model = _model()
    model = keras.Model(model.inputs, model(probe(model.inputs[0])))
    loop = TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     optimizer=keras.optimizers.Adam(1e-2))
    probe.seen.clear()
    loop.fit(x, y, batch_size=16, epochs=2)
    assert loop.trace_counts["train"] == 1
    assert probe.seen == [expected]  # 96 = 6 x 16: static; 100 ends with a batch of 4


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


class CountBatches(keras.callbacks.Callback):
    """The batch indices ``on_train_batch_end`` saw."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(batch)


def test_batch_hooks_run_per_step_when_a_callback_needs_them():
    x, y = _data(96)
    counter = CountBatches()
    loop = _loop(_model())
    loop.fit(x, y, batch_size=32, epochs=2, callbacks=[counter])
    assert counter.batches == [0, 1, 2, 0, 1, 2]
    assert loop.trace_counts["train"] == 1


def _exploding_regression():
    """Plain SGD with a far too high learning rate on MSE: the loss overflows within a few steps."""
    model, x, y = exploding_regression(keras, loss="mse")
    return TrainLoop(model, loss=keras.losses.MeanSquaredError()), x, y


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


def _dataset(x, y, batch_size: int):
    tf = pytest.importorskip("tensorflow")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def test_tf_data_path_matches_arrays_and_traces_once():
    x, y = _data()
    x_val, y_val = _data(32, seed=1)
    arrays = _loop(_model()).fit(x, y, batch_size=16, epochs=3, shuffle=False,
                                 validation_data=(x_val, y_val)).history
    loop = _loop(_model())
    streamed = loop.fit(_dataset(x, y, 16), epochs=3,
                        validation_data=_dataset(x_val, y_val, 8)).history
    assert loop.trace_counts == {"train": 1, "eval": 1}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(streamed[key], arrays[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_tf_data_path_runs_batch_hooks_and_unknown_lengths():
    x, y = _data(96)
    counter = CountBatches()
    loop = _loop(_model())
    # filter() hides the dataset's length: the loop runs until the iterator ends.
    unknown = _dataset(x, y, 32).filter(lambda a, b: True)
    history = loop.fit(unknown, epochs=2, callbacks=[counter])
    assert counter.batches == [0, 1, 2, 0, 1, 2]
    assert counter.params["steps"] is None
    assert loop.trace_counts["train"] == 1
    assert len(history.history["loss"]) == 2


def test_bad_inputs_name_the_field():
    x, y = _data()
    loop = _loop(_model())
    with pytest.raises(ValueError, match="^y: "):
        loop.fit(x)
    with pytest.raises(ValueError, match="^y: "):
        loop.fit(_dataset(x, y, 16), y)
    with pytest.raises(ValueError, match="^x: .*tuples"):
        loop.fit(_dataset(x, y, 16).map(lambda a, b: a))
    with pytest.raises(ValueError, match="^validation_data: .*4-tuple"):
        loop.fit(x, y, validation_data=(x, y, y, y))
    with pytest.raises(ValueError, match="^class_weight: .*not both"):
        loop.fit(x, y, class_weight={0: 2.0}, sample_weight=np.ones(len(y)))
    with pytest.raises(ValueError, match=r"^sample_weight: .*\(96,\)"):
        loop.fit(x, y, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="^validation_split: "):
        loop.fit(x, y, validation_split=1.5)
    with pytest.raises(ValueError, match="^validation_split: .*tf.data"):
        loop.fit(_dataset(x, y, 16), validation_split=0.2)
    with pytest.raises(ValueError, match="^validation_freq: "):
        loop.fit(x, y, validation_freq=0)
    with pytest.raises(ValueError, match="^steps_per_epoch: "):
        loop.fit(x, y, steps_per_epoch=-1)
    compiled = _model()
    uncompiled = keras.Model(compiled.inputs, compiled.outputs)
    with pytest.raises(ValueError, match="^optimizer: .*compile the model"):
        _loop(uncompiled)


def test_adam_moments_survive_save_weights_and_load_weights(tmp_path):
    """What a promoted Hyperband trial relies on: slots and step count come back exactly."""
    x, y = _data(64)
    model = _model()
    _loop(model).fit(x, y, batch_size=16, epochs=2)
    path = tmp_path / "checkpoint.weights.h5"
    model.save_weights(path)

    fresh = _model()
    fresh.optimizer.build(fresh.trainable_variables)  # as hypermodels.build does
    fresh.load_weights(path)
    saved, loaded = model.optimizer.variables, fresh.optimizer.variables
    assert len(saved) == len(loaded) == 2 + 2 * len(model.trainable_variables)

    def kind(variable):  # iteration, (learning_)rate, momentum, velocity
        return variable.path.rsplit("/", 1)[-1].rsplit("_", 1)[-1]

    kinds = [kind(v) for v in saved]
    assert kinds.count("momentum") == kinds.count("velocity") == len(model.trainable_variables)
    for ours, theirs in zip(saved, loaded, strict=True):
        assert kind(ours) == kind(theirs)
        np.testing.assert_array_equal(np.asarray(theirs), np.asarray(ours), err_msg=ours.path)
    assert int(fresh.optimizer.iterations.numpy()) == 8
    moments = [np.asarray(v) for v in saved if v.path.endswith("momentum")]
    assert all(np.abs(m).max() > 0 for m in moments)

    # Training on from the checkpoint is training on from the original.
    _loop(model).fit(x, y, batch_size=16, epochs=3, initial_epoch=2)
    _loop(fresh).fit(x, y, batch_size=16, epochs=3, initial_epoch=2)
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_mixed_float16_trains_with_loss_scaling():
    x, y = _data(128)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6,))
        h = keras.layers.Dense(32, activation="relu")(inputs)
        outputs = keras.layers.Dense(3, dtype="float32")(h)  # a float32 head
        model = keras.Model(inputs, outputs)
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile(optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0))
    loop = _loop(model)
    assert loop.loss_scaling
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = loop.fit(x, y, batch_size=32, epochs=5, validation_data=_data(32, seed=1))
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]
    assert history.history["accuracy"][-1] > 0.6
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert model(x[:4]).dtype == "float32"
    assert model.layers[1].compute_dtype == "float16"
    norm = history.diagnostics[4]["gradients/global_norm_mean"]
    assert 0 < norm < 100  # unscaled, not multiplied by the loss scale (2**15)


def test_loss_scale_can_be_forced_on_a_float32_model():
    x, y = _data(64)
    model = _model(keras.optimizers.Adam(1e-2))
    loop = TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     loss_scale=True)
    history = loop.fit(x, y, batch_size=16, epochs=3)
    assert isinstance(loop.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer is loop.optimizer
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_a_loss_function_name_is_averaged_per_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    expected = reference.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    ours = TrainLoop(model, loss="mse").fit(x, y, batch_size=8, epochs=2, shuffle=False).history
    np.testing.assert_allclose(ours["loss"], expected["loss"], rtol=1e-5)


def test_a_diverged_epoch_reports_nan_validation_so_best_checkpoints_survive():
    """KerasTuner's SaveBestEpoch saves whenever the objective is missing from the logs; a
    diverged epoch must carry it (as NaN, never better) so the best checkpoint is kept."""
    recorder = Recorder()
    loop, x, y = _exploding_regression()
    history = loop.fit(x, y, batch_size=8, epochs=20, shuffle=False, validation_data=(x, y),
                       callbacks=[recorder])
    assert history.divergence is not None
    epoch_logs = [e[2] for e in recorder.events if e[0] == "epoch_end"]
    assert all({"loss", "val_loss", "learning_rate"} <= set(logs) for logs in epoch_logs)
    assert math.isnan(epoch_logs[-1]["val_loss"]) and math.isnan(epoch_logs[-1]["loss"])
    assert all(np.isfinite(logs["val_loss"]) for logs in epoch_logs[:-1])


def test_run_eagerly_matches_the_compiled_loop():
    x, y = _data(64)
    compiled = _loop(_model()).fit(x, y, batch_size=16, epochs=2, shuffle=False).history
    eager_loop = TrainLoop(_model(),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                           run_eagerly=True)
    eager = eager_loop.fit(x, y, batch_size=16, epochs=2, shuffle=False).history
    np.testing.assert_allclose(eager["loss"], compiled["loss"], rtol=1e-5)
    streamed = eager_loop.fit(_dataset(x, y, 16), epochs=1, validation_data=_dataset(x, y, 16))
    assert np.isfinite(streamed.history["val_loss"]).all()


_FIT_ARGUMENTS = {
    "sample_weight": lambda x, y: {"sample_weight": np.linspace(0.1, 2.0, len(y))},
    "class_weight": lambda x, y: {"class_weight": {0: 3.0, 1: 0.5}},  # class 2 weighs 1.0
    "validation_split": lambda x, y: {"validation_split": 0.25},
    "weighted_validation_split": lambda x, y: {
        "validation_split": 0.25, "sample_weight": np.linspace(2.0, 0.1, len(y))},
    "weighted_validation_data": lambda x, y: {
        "validation_data": (*_data(32, seed=1), np.linspace(0.5, 1.5, 32))},
    "validation_freq": lambda x, y: {"validation_freq": 2,
                                     "validation_data": _data(32, seed=1)},
    "steps_per_epoch": lambda x, y: {"steps_per_epoch": 4, "validation_steps": 1,
                                     "validation_batch_size": 8,
                                     "validation_data": _data(32, seed=1)},
}


@pytest.mark.parametrize("case", sorted(_FIT_ARGUMENTS))
def test_model_fit_keyword_arguments_match_model_fit(case):
    """Issue 13 item 5: ``model.fit``'s keywords work in the loop, with ``model.fit``'s numbers."""
    x, y = _data(96)
    kwargs = _FIT_ARGUMENTS[case](x, y)
    reference = _model().fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
                             **kwargs).history
    ours = _loop(_model()).fit(x, y, batch_size=16, epochs=4, shuffle=False, **kwargs).history
    assert sorted(ours) == sorted([*reference, "learning_rate"]) or sorted(ours) == sorted(
        reference)
    for key, values in reference.items():
        np.testing.assert_allclose(ours[key], values, rtol=1e-4, atol=1e-5, err_msg=key)


def test_class_weight_and_sample_weights_in_a_dataset_match_model_fit():
    x, y = _data(96)
    weights = np.linspace(0.1, 2.0, len(y)).astype("float32")
    import tensorflow as tf

    for make, kwargs in (
        (lambda: tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(16), {}),
        # (model.fit needs every class in class_weight for a dataset)
        (lambda: _dataset(x, y, 16), {"class_weight": {0: 3.0, 1: 0.5, 2: 1.0}}),
    ):
        reference = _model().fit(make(), epochs=3, verbose=0, **kwargs).history
        ours = _loop(_model()).fit(make(), epochs=3, **kwargs).history
        np.testing.assert_allclose(ours["loss"], reference["loss"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ours["accuracy"], reference["accuracy"], rtol=1e-4)


@pytest.mark.parametrize("repeat", [True, False], ids=["endless", "finite"])
def test_steps_per_epoch_reads_a_dataset_on_across_epochs(repeat):
    """As ``model.fit``: with ``steps_per_epoch`` the next epoch continues the iterator."""
    import tensorflow as tf

    x, y = _data(96)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    if repeat:
        dataset = dataset.repeat()
    reference = _model().fit(dataset, epochs=5, steps_per_epoch=4, verbose=0).history
    ours = _loop(_model()).fit(dataset, epochs=5, steps_per_epoch=4).history
    np.testing.assert_allclose(ours["loss"], reference["loss"], rtol=1e-4, atol=1e-5)
