"""A user's own model, the same trials: KerasTuner + ``model.fit`` against kerastune_kit.

Runs the same random search twice in one process, alternating which goes first over
``--repeats`` rounds: ``kt.RandomSearch`` (KerasTuner; every trial trains with ``model.fit``)
and ``kk.RandomSearch`` (kerastune_kit, one import changed; trials train in its compiled loop).
Both get the same build function, the same oracle seed (so the same hyperparameters, checked),
the same data, epochs and batch size. Prints the wall time of each search, the ratio, and the
best validation accuracy of each.

The model: KerasTuner's getting-started MLP (units 32..512 step 32, relu|tanh, dropout on/off,
Adam with a log-uniform learning rate), on a synthetic 10-class problem of ``--samples``
samples and 64 features (scikit-learn's ``make_classification``), 20% held out.

Usage:
    python benchmarks/own_model.py [--trials 10] [--epochs 5] [--samples 20000] [--repeats 2]
        [--batch-size 64] [--smoke]

The last line is ``speedup=<kt time / kk time>`` (the median over rounds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_model(hp: Any) -> Any:
    import keras

    model = keras.Sequential([keras.Input((64,))])
    model.add(keras.layers.Dense(hp.Int("units", min_value=32, max_value=512, step=32),
                                 activation=hp.Choice("activation", ["relu", "tanh"])))
    if hp.Boolean("dropout"):
        model.add(keras.layers.Dropout(rate=0.25))
    model.add(keras.layers.Dense(10, activation="softmax"))
    learning_rate = hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(samples: int) -> tuple[Any, ...]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=samples, n_features=64, n_informative=24,
                               n_classes=10, n_clusters_per_class=2, random_state=0)
    x = x.astype("float32")
    cut = int(samples * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def run(which: str, args: argparse.Namespace, arrays: tuple[Any, ...], root: Path
        ) -> tuple[float, float, list[dict[str, Any]]]:
    import keras_tuner as kt

    import kerastune_kit as kk

    tuner_class = kt.RandomSearch if which == "keras_tuner" else kk.RandomSearch
    directory = root / which
    shutil.rmtree(directory, ignore_errors=True)
    x_train, y_train, x_val, y_val = arrays
    tuner = tuner_class(build_model, objective="val_accuracy", max_trials=args.trials, seed=7,
                        directory=str(directory), project_name="bench", overwrite=True)
    started = time.perf_counter()
    tuner.search(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                 validation_data=(x_val, y_val), verbose=0)
    elapsed = time.perf_counter() - started
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id.lstrip("0") or 0))
    values = [dict(t.hyperparameters.values) for t in trials]
    best = max(float(t.score) for t in trials if t.score is not None)
    return elapsed, best, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 trials, 1 epoch, 2000 samples")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.epochs, args.samples, args.repeats = 2, 1, 2000, 1
    arrays = data(args.samples)
    root = Path(tempfile.mkdtemp(prefix="own_model_bench_"))
    times: dict[str, list[float]] = {"keras_tuner": [], "kerastune_kit": []}
    scores: dict[str, list[float]] = {"keras_tuner": [], "kerastune_kit": []}
    hps: dict[str, list[dict[str, Any]]] = {}
    try:
        for repeat in range(args.repeats):
            order = ["keras_tuner", "kerastune_kit"]
            if repeat % 2:
                order.reverse()
            for which in order:
                elapsed, best, values = run(which, args, arrays, root)
                times[which].append(elapsed)
                scores[which].append(best)
                hps[which] = values
    finally:
        shutil.rmtree(root, ignore_errors=True)
    same = hps["keras_tuner"] == hps["kerastune_kit"]
    print(f"{args.trials} trials x {args.epochs} epochs, {len(arrays[0])} train / "
          f"{len(arrays[2])} val samples, batch {args.batch_size}, {args.repeats} round(s); "
          f"same hyperparameters in both: {'yes' if same else 'NO'}")
    print(f"{'search':<34}{'wall s (median)':>16}{'each round':>22}{'best val_accuracy':>19}")
    for which, label in (("keras_tuner", "kt.RandomSearch + model.fit"),
                         ("kerastune_kit", "kk.RandomSearch (loop)")):
        rounds = " ".join(f"{t:.1f}" for t in times[which])
        print(f"{label:<34}{statistics.median(times[which]):>16.1f}{rounds:>22}"
              f"{max(scores[which]):>19.4f}")
    ratios = [a / b for a, b in zip(times["keras_tuner"], times["kerastune_kit"], strict=True)]
    print(f"speedup={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
