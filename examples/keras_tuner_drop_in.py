"""KerasTuner's getting-started program with one import changed: ``kt.RandomSearch`` becomes
``kk.RandomSearch``, and the search gains a run directory that ``inspect``, ``export`` and
TensorBoard read (leaderboard, HParams dashboard, per-trial curves, best model).

The program is KerasTuner's own (https://keras.io/keras_tuner/getting_started/): the same build
function, ``RandomSearch(max_trials=3, executions_per_trial=2)``, ``search``,
``get_best_models``, ``results_summary``. Only the data differ: scikit-learn's bundled 8x8
digits instead of MNIST, since nothing is downloaded here.

Usage:
    python examples/keras_tuner_drop_in.py [--smoke] [--directory DIR]

Then:
    python -m kerastune_kit inspect my_dir/helloworld
    tensorboard --logdir my_dir/helloworld/tensorboard
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np
from sklearn.datasets import load_digits

import kerastune_kit as kk  # was: import keras_tuner as kt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true",
                    default=os.environ.get("KERASTUNE_KIT_SMOKE") == "1",
                    help="one epoch per trial")
parser.add_argument("--directory", default="my_dir", help="KerasTuner's directory")
args = parser.parse_args()

# The data: 1,797 8x8 digit images, pixels 0..16 scaled to 0..1.
images, labels = load_digits(return_X_y=True)
images = (images.reshape(-1, 8, 8) / 16.0).astype("float32")
x_train, x_val = images[:-500], images[-500:]
y_train, y_val = labels[:-500], labels[-500:]


def build_model(hp):
    model = keras.Sequential()
    model.add(keras.layers.Flatten())
    model.add(
        keras.layers.Dense(
            # Tune number of units.
            units=hp.Int("units", min_value=32, max_value=512, step=32),
            # Tune the activation function to use.
            activation=hp.Choice("activation", ["relu", "tanh"]),
        )
    )
    # Tune whether to use dropout.
    if hp.Boolean("dropout"):
        model.add(keras.layers.Dropout(rate=0.25))
    model.add(keras.layers.Dense(10, activation="softmax"))
    # Define the optimizer learning rate as a hyperparameter.
    learning_rate = hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


tuner = kk.RandomSearch(  # was: kt.RandomSearch
    hypermodel=build_model,
    objective="val_accuracy",
    max_trials=3,
    executions_per_trial=2,
    overwrite=True,
    directory=args.directory,
    project_name="helloworld",
)
tuner.search_space_summary()
tuner.search(x_train, y_train, epochs=1 if args.smoke else 2,
             validation_data=(x_val, y_val))

# Get the top 2 models.
models = tuner.get_best_models(num_models=2)
best_model = models[0]
best_model.summary()
tuner.results_summary()

accuracy = best_model.evaluate(x_val, y_val, verbose=0)[1]
print(f"best model: val_accuracy={accuracy:.4f}")
print(f"run directory: {tuner.kit_run_dir}")
print(f"  python -m kerastune_kit inspect {tuner.kit_run_dir}")
print(f"  tensorboard --logdir {tuner.kit_run_dir / 'tensorboard'}")
assert np.isfinite(accuracy)
