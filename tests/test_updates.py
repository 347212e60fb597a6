"""Fused optimizer updates reproduce Keras's own apply_gradients, configuration by configuration."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
from kerastune_kit.updates import fused_update  # noqa: E402

O = keras.optimizers

SUPPORTED = {
    "adam": lambda: O.Adam(1e-2),
    "adam-clipnorm": lambda: O.Adam(1e-2, clipnorm=0.05),
    "adam-global-clipnorm": lambda: O.Adam(1e-2, global_clipnorm=0.05),
    "adam-schedule": lambda: O.Adam(O.schedules.ExponentialDecay(1e-2, 1, 0.5)),
    "adam-weight-decay": lambda: O.Adam(1e-2, weight_decay=0.1),
    "adamw": lambda: O.AdamW(1e-2, weight_decay=0.05, clipnorm=1.0),
    "sgd": lambda: O.SGD(0.1),
    "sgd-momentum": lambda: O.SGD(0.1, momentum=0.9),
    "sgd-nesterov-clipnorm": lambda: O.SGD(0.1, momentum=0.9, nesterov=True, clipnorm=0.05),
    "rmsprop": lambda: O.RMSprop(1e-2),
    "rmsprop-momentum": lambda: O.RMSprop(1e-2, momentum=0.5),
}

UNSUPPORTED = {
    "amsgrad": lambda: O.Adam(amsgrad=True),
    "centered-rmsprop": lambda: O.RMSprop(centered=True),
    "clipvalue": lambda: O.Adam(clipvalue=0.1),
    "ema": lambda: O.Adam(use_ema=True),
    "adamax": lambda: O.Adamax(),
    "loss-scaling": lambda: O.LossScaleOptimizer(O.Adam()),
}


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(7, activation="tanh", kernel_constraint=keras.constraints.MaxNorm(1.5),
                           name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(h))


def _train(make_optimizer, fused: bool, steps: int = 4):
    model = _model()
    optimizer = make_optimizer()
    variables = model.trainable_variables
    optimizer.build(variables)
    update = fused_update(optimizer, variables) if fused else None
    if fused:
        assert update is not None
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(16, 5)).astype("float32"))
    y = tf.constant(rng.normal(size=(16, 2)).astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y)) * 5.0
        gradients = tape.gradient(loss, variables)
        if update is not None:
            update(gradients)
        else:
            optimizer.apply_gradients(zip(gradients, variables, strict=True))

    for _ in range(steps):
        step()
    return model, optimizer


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_fused_update_matches_keras_apply(name):
    make = SUPPORTED[name]
    keras_model, keras_optimizer = _train(make, fused=False)
    fused_model, fused_optimizer = _train(make, fused=True)
    for ours, theirs in zip(fused_model.get_weights(), keras_model.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-7)
    for ours, theirs in zip(fused_optimizer.variables, keras_optimizer.variables, strict=True):
        assert ours.path.split("/", 1)[1] == theirs.path.split("/", 1)[1]
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=2e-5, atol=1e-7,
                                   err_msg=ours.path)
    assert int(fused_optimizer.iterations.numpy()) == 4


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_other_configurations_fall_back_to_keras(name):
    model = _model()
    optimizer = UNSUPPORTED[name]()
    optimizer.build(model.trainable_variables)
    assert fused_update(optimizer, model.trainable_variables) is None


def test_unbuilt_optimizer_falls_back_to_keras():
    model = _model()
    assert fused_update(O.Adam(), model.trainable_variables) is None
