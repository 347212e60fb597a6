"""TrainLoop under tf.distribute.MirroredStrategy over two logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so the training runs in a
subprocess (which keeps this test process's TensorFlow untouched) and reports back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import json, os
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from kerastune_kit.training import TrainLoop

    rng = np.random.default_rng(0)
    x = rng.normal(size=(51, 6)).astype("float32")  # 51: replicas get 26 and 25 samples
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")

    def build(learning_rate=0.5):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6,))
        h = keras.layers.Dense(8, activation="relu",
                               kernel_regularizer=keras.regularizers.L2(1e-2))(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2)(h))
        model.compile(optimizer=keras.optimizers.SGD(learning_rate))
        return model

    def loop(model):
        return TrainLoop(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])

    out = {}
    single = build()
    reference = loop(single).fit(x, y, batch_size=51, epochs=1, validation_data=(x, y))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out["replicas"] = strategy.num_replicas_in_sync
    with strategy.scope():
        model = build()
        mirrored = loop(model)
    history = mirrored.fit(x, y, batch_size=51, epochs=1, validation_data=(x, y))
    out["reference"] = reference.history
    out["mirrored"] = history.history
    out["weight_gap"] = max(float(np.abs(a - b).max())
                            for a, b in zip(single.get_weights(), model.get_weights()))
    out["norms"] = [reference.diagnostics[0]["gradients/global_norm_mean"],
                    history.diagnostics[0]["gradients/global_norm_mean"]]

    more = mirrored.fit(x, y, batch_size=16, epochs=4, initial_epoch=1,
                        validation_data=(x, y))
    out["more"] = more.history
    out["trace_counts"] = dict(mirrored.trace_counts)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    streamed = mirrored.fit(dataset, epochs=2, validation_data=dataset)
    out["streamed"] = streamed.history

    with strategy.scope():
        exploding = build(learning_rate=1e6)
        diverging = loop(exploding)
    far = diverging.fit(x * 100, y, batch_size=8, epochs=5)
    out["divergence"] = None if far.divergence is None else far.divergence.reason()
    out["finite_after_divergence"] = all(bool(np.isfinite(w).all())
                                         for w in exploding.get_weights())
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def mirrored() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_mirrored_step_matches_single_device_exactly(mirrored):
    assert mirrored["replicas"] == 2
    # One full batch of 51 split 26/25 across replicas: the same loss, metrics, gradient and
    # update as on one device, so losses are scaled by the global batch, not per replica.
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert mirrored["mirrored"][key] == pytest.approx(mirrored["reference"][key], rel=1e-5)
    assert mirrored["weight_gap"] < 1e-5
    assert mirrored["norms"][1] == pytest.approx(mirrored["norms"][0], rel=1e-5)


@pytest.mark.slow
def test_mirrored_training_continues_streams_and_traces_once(mirrored):
    losses = mirrored["more"]["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert set(mirrored["more"]) == {"loss", "accuracy", "val_loss", "val_accuracy",
                                     "learning_rate"}
    assert mirrored["trace_counts"] == {"train": 1, "eval": 1}
    assert len(mirrored["streamed"]["val_loss"]) == 2


@pytest.mark.slow
def test_mirrored_divergence_stops_before_applying_the_step(mirrored):
    assert mirrored["divergence"] and "diverged" in mirrored["divergence"]
    assert mirrored["finite_after_divergence"]
