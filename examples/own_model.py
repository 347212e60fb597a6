"""Your own functional model with two named inputs, tuned by Bayesian optimization with the
median pruner: ``kk.BayesianOptimization`` is KerasTuner's, plus pruning, records, TensorBoard
and the run directory.

The data are scikit-learn's bundled wine measurements, split into two named inputs as a
real model might take them (``chemistry``: 10 features; ``color``: hue and intensity). A
model with dict inputs trains with ``model.fit`` (the leaderboard's ``training`` column says
so); every trial still reports each epoch to the median pruner, which stops trials below the
median of the finished ones at the same epoch.

Usage:
    python examples/own_model.py [--smoke] [--directory DIR]
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

import kerastune_kit as kk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true",
                    default=os.environ.get("KERASTUNE_KIT_SMOKE") == "1",
                    help="4 trials of 4 epochs")
parser.add_argument("--directory", default="runs", help="where the run directory goes")
args = parser.parse_args()

wine = load_wine()
x = wine.data.astype("float32")
x = (x - x.mean(axis=0)) / x.std(axis=0)  # (a real pipeline fits this on the train split)
color = [list(wine.feature_names).index(n) for n in ("hue", "color_intensity")]
chemistry = [i for i in range(x.shape[1]) if i not in color]
x_train, x_val, y_train, y_val = train_test_split(x, wine.target, test_size=0.3,
                                                  random_state=0, stratify=wine.target)


def named(rows: np.ndarray) -> dict[str, np.ndarray]:
    return {"chemistry": rows[:, chemistry], "color": rows[:, color]}


def build_model(hp):
    chem = keras.Input((len(chemistry),), name="chemistry")
    col = keras.Input((len(color),), name="color")
    h = keras.layers.Dense(hp.Int("units", 8, 128, sampling="log"), activation="relu")(chem)
    h = keras.layers.Dropout(hp.Float("dropout", 0.0, 0.5))(h)
    h = keras.layers.Concatenate()([h, col])
    out = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model({"chemistry": chem, "color": col}, out)
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-1,
                                                           sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


tuner = kk.BayesianOptimization(
    build_model, objective="val_accuracy", max_trials=4 if args.smoke else 20,
    num_initial_points=2 if args.smoke else 5, seed=1, overwrite=True,
    directory=args.directory, project_name="own-model-wine",
    pruner="median",  # kerastune_kit's keyword-only arguments follow KerasTuner's
)
tuner.search(named(x_train), y_train, epochs=4 if args.smoke else 20, batch_size=16,
             validation_data=(named(x_val), y_val), verbose=0)

results = kk.load_results(tuner.kit_run_dir)
print(f"{len(results)} trials: " + ", ".join(f"{n} {k}" for k, n in results.counts().items()))
best = results.best
print(f"best trial {best.trial_id}: val_accuracy={best.score:.4f} (training: {best.training})")
for name, value in best.hyperparameters.items():
    print(f"  {name} = {value}")
model = keras.saving.load_model(tuner.kit_run_dir / "best_model.keras")
print("best model on the validation split:",
      f"{model.evaluate(named(x_val), y_val, verbose=0)[1]:.4f}")
print(f"  python -m kerastune_kit inspect {tuner.kit_run_dir}")
