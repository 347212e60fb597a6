"""Per-trial fixed cost: a search's trials reuse the traced passes, with identical results."""

from __future__ import annotations

import gc
import math
import re
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import exploding_regression

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")
from kerastune_kit import steps  # noqa: E402
from kerastune_kit.hypermodels import MLPHyperModel  # noqa: E402
from kerastune_kit.space import SearchSpace  # noqa: E402
from kerastune_kit.training import TrainLoop  # noqa: E402
from tests.test_training import Recorder as _TrainingRecorder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(12, 3)), axis=1).astype("int32")
    return x, y


TRAIN, VAL = _data(100, 0), _data(40, 1)  # 100 = 3 x 32 + 4: a partial last batch

SPACES = {
    "default": {},
    "regularized": {"dropout": 0.3, "normalization": "batch", "residual": True, "l2": 1e-4,
                    "clipnorm": 1.0, "optimizer": "adamw", "units": 24},
    "sgd": {"optimizer": "sgd", "normalization": "layer", "activation": "gelu",
            "dropout": 0.1, "num_layers": 3, "units": 20},
    "rmsprop": {"optimizer": "rmsprop", "normalization": "group", "clipnorm": 0.5,
                "batch_size": 32},
}


class Recorder(_TrainingRecorder):
    """test_training's hook recorder, with validation passes and the logs of
    ``on_train_end`` too."""

    def on_test_begin(self, logs=None):
        self.events.append(("test_begin",))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", dict(logs or {})))


def _build(space: dict, *, fresh: bool = False, seed: int = 5):
    """A trial's model as KerasTuner makes it: clear_session, then the factory's build."""
    keras.backend.clear_session()
    if fresh:
        steps.clear_reused_traces()
    hypermodel = MLPHyperModel(SearchSpace(space), input_shape=(12,), task="multiclass",
                               n_classes=3, seed=seed)
    hp = kt.HyperParameters()
    return hypermodel, hp, hypermodel.build(hp)


def _fit(hypermodel, hp, model, *, epochs=3, initial_epoch=0, callbacks=()):
    """What ``KitHyperModel.fit`` runs, keeping the loop to read its trace counts."""
    loop = TrainLoop(model, loss=hypermodel.head.loss(), metrics=hypermodel.head.metrics())
    history = loop.fit(*TRAIN, batch_size=int(hp.get("batch_size")), epochs=epochs,
                       initial_epoch=initial_epoch, validation_data=VAL,
                       callbacks=list(callbacks), seed=hypermodel.seed, evaluate_first=True)
    return loop, history


def _state(model):
    return [np.asarray(v) for v in [*model.variables, *model.optimizer.variables]]


def _assert_same_run(a, b):
    (loop_a, history_a), (loop_b, history_b) = a, b
    assert history_b.history == history_a.history
    assert history_b.diagnostics == history_a.diagnostics
    assert history_b.initial_logs == history_a.initial_logs
    assert history_b.divergence == history_a.divergence
    for ours, theirs in zip(_state(loop_b.model), _state(loop_a.model), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_a_repeated_architecture_reuses_its_traces_with_identical_results(name):
    space = SPACES[name]
    recorders = [Recorder(), Recorder()]
    first = _fit(*_build(space, fresh=True), callbacks=[recorders[0]])
    again = _fit(*_build(space), callbacks=[recorders[1]])
    assert first[0].trace_counts == {"train": 1, "eval": 1}
    assert again[0].trace_key == first[0].trace_key is not None
    assert again[0].trace_counts == {"train": 0, "eval": 0}  # nothing traced
    _assert_same_run(first, again)
    assert recorders[1].events == recorders[0].events  # the callbacks saw the same run
    assert [e[0] for e in recorders[1].events].count("test_begin") == 3
    assert all(math.isfinite(v) for v in first[1].history["val_loss"])


def test_what_the_graph_bakes_in_separates_traces_and_variables_do_not():
    keys = {}
    for label, space in {"base": {}, "dropout": {"dropout": 0.2}, "clipnorm": {"clipnorm": 0.5},
                         "l2": {"l2": 1e-3}, "adamw": {"optimizer": "adamw"},
                         "units": {"units": 64}, "lr": {"learning_rate": 0.05}}.items():
        hypermodel, hp, model = _build(space)
        keys[label] = TrainLoop(model, loss=hypermodel.head.loss(),
                                metrics=hypermodel.head.metrics()).trace_key
    assert keys["lr"] == keys["base"]  # the learning rate lives in a variable
    others = [v for k, v in keys.items() if k != "lr"]
    assert len(set(others)) == len(others)

    # A reused trace reads this trial's learning rate: the same run as a fresh trace.
    _fit(*_build({}, fresh=True))
    reused = _fit(*_build({"learning_rate": 0.05}))
    assert reused[0].trace_counts == {"train": 0, "eval": 0}
    fresh = _fit(*_build({"learning_rate": 0.05}, fresh=True))
    _assert_same_run(fresh, reused)


def test_a_promoted_trial_continues_from_its_parent_through_a_reused_trace(tmp_path):
    """What Hyperband does: the child loads the parent's weights and optimizer state."""
    space = SPACES["regularized"]
    parent = _fit(*_build(space, fresh=True), epochs=2)
    path = tmp_path / "parent.weights.h5"
    parent[0].model.save_weights(path)

    runs = []
    for fresh in (True, False):
        hypermodel, hp, model = _build(space, fresh=fresh)
        model.load_weights(path)
        runs.append(_fit(hypermodel, hp, model, epochs=4, initial_epoch=2))
    assert runs[1][0].trace_counts == {"train": 0, "eval": 0}
    _assert_same_run(*runs)
    steps_per_epoch = math.ceil(len(TRAIN[1]) / int(hp.get("batch_size")))
    assert runs[1][1].initial_iterations == 2 * steps_per_epoch  # from the parent
    assert runs[1][1].initial_logs["loss"] == pytest.approx(parent[1].history["val_loss"][-1])


def test_divergence_is_detected_the_same_through_a_reused_trace():
    runs = []
    for fresh in (True, False):
        keras.backend.clear_session()
        if fresh:
            steps.clear_reused_traces()
        model, x, y = exploding_regression(keras)
        setattr(model, steps.SEARCH_TRIAL_ATTRIBUTE, True)
        loop = TrainLoop(model, loss=keras.losses.MeanSquaredError())
        recorder = Recorder()
        runs.append((loop, loop.fit(x, y, batch_size=8, epochs=20, shuffle=False,
                                    validation_data=(x, y), callbacks=[recorder]), recorder))
    (first, history, recorder), (again, history_again, recorder_again) = runs
    assert again.trace_counts == {"train": 0, "eval": 0}
    assert history.divergence is not None and history_again.divergence == history.divergence
    assert str(recorder_again.events) == str(recorder.events)  # NaN != NaN: compare text
    assert all(np.isfinite(w).all() for w in again.model.get_weights())


def test_only_marked_models_of_keras_parts_reuse_traces():
    hypermodel, hp, model = _build({})
    plain = keras.Model(model.inputs, model.outputs)  # the same layers, not marked
    plain.compile(optimizer=keras.optimizers.Adam())
    assert TrainLoop(plain, loss=hypermodel.head.loss()).trace_key is None
    assert TrainLoop(plain, loss=hypermodel.head.loss(), reuse_traces=True).trace_key

    class Scale(keras.layers.Layer):  # Python state a configuration does not show
        factor = 2.0

        def call(self, inputs):
            return inputs * self.factor

    inputs = keras.Input((12,))
    custom = keras.Model(inputs, keras.layers.Dense(3)(Scale()(inputs)))
    custom.compile(optimizer=keras.optimizers.Adam())
    setattr(custom, steps.SEARCH_TRIAL_ATTRIBUTE, True)
    assert TrainLoop(custom, loss=hypermodel.head.loss()).trace_key is None
    assert TrainLoop(model, loss=hypermodel.head.loss(), run_eagerly=True).trace_key is None
    assert TrainLoop(model, loss="mse").trace_key is None  # a loss function, not a Loss


def test_earlier_trials_are_released_and_the_kept_traces_are_bounded(monkeypatch):
    monkeypatch.setattr(steps, "REUSED_TRACES", 4)
    first = weakref.ref(_fit(*_build({}, fresh=True), epochs=1)[0].model)
    for units in (16, 24, 32):
        _fit(*_build({"units": units}), epochs=1)
    keras.backend.clear_session()
    gc.collect()
    assert first() is None
    assert len(steps._REUSED) == 4
    _, history = _fit(*_build({}), epochs=1)  # its traces were dropped: it traces again
    assert math.isfinite(history.history["loss"][0])


def test_grappler_stays_on_outside_trials_and_when_the_user_configured_it(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    hypermodel, hp, model = _build({})
    options = steps._call_options()
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert TrainLoop(model, loss=hypermodel.head.loss()).grappler == on_gpu
    if on_gpu:
        assert options is None
    else:
        config = tf.compat.v1.ConfigProto()
        config.ParseFromString(options.config_proto_serialized)
        rewrite = config.graph_options.rewrite_options
        assert rewrite.remapping == rewrite.arithmetic_optimization == rewrite.OFF
        assert not rewrite.disable_meta_optimizer  # (that leaks runtime memory per trial)
    monkeypatch.setattr(tf.config.optimizer, "get_experimental_options",
                        lambda: {"constant_folding": False})
    assert steps._call_options() is None
    monkeypatch.undo()
    # Grappler's own options for a plain model (and on request): the passes as they were.
    plain = keras.Model(model.inputs, model.outputs)
    plain.compile(optimizer=keras.optimizers.Adam())
    for loop in (TrainLoop(plain, loss=hypermodel.head.loss()),
                 TrainLoop(model, loss=hypermodel.head.loss(), grappler=True)):
        assert loop.grappler


@pytest.mark.slow
def test_trial_overhead_benchmark_runs_and_ends_with_its_goal_line(tmp_path):
    """The benchmark's output format (its figures are measured, not asserted)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "trial_overhead.py"),
                           "--trials", "2", "--epochs", "2", "--kinds", "default,random"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"fixed_cost_cpu_s=\d+\.\d{3} fixed_cost_wall_s=\d+\.\d{3}",
                        lines[-1]), lines[-1]
    for phase in ("clear_session", "build", "first epoch", "steady epoch", "fixed (brief)"):
        assert any(line.startswith(phase) for line in lines), phase
