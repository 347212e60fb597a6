"""TrainLoop vs model.fit: training throughput, side by side in one run.

Workloads (training only, no validation, no progress bar):

- ``mlp``: 784-128-64-10 with dropout 0.2, 3,840 samples of synthetic 784-dim data, batch 128,
  Adam(1e-3, clipnorm=1.0), 10 epochs.
- ``cnn``: conv 16 -> pool -> conv 32 -> pool -> dense 64 -> 10 on 28x28x1 inputs, 2,048 samples,
  batch 128, Adam(1e-3, clipnorm=1.0), 10 epochs.
- ``digits`` (reported, not in the last line): the MLP above on scikit-learn's digits (64
  features, 1,797 samples), the size of a default search's trials, where the cost of each small
  op, not arithmetic, dominates.

Each repeat builds fresh models (same seed) and trains them, back to back in alternating order,
with ``model.fit`` and with ``TrainLoop`` (gradient diagnostics on, as in a search; also off, to
show their cost), each run after ``keras.backend.clear_session()`` and a garbage collection.
Times, in seconds per 10 epochs:

- ``steady``: tracing EXCLUDED for both: 10 x the median time of the epochs after the first
  (the first epoch holds the tracing);
- ``total``: tracing INCLUDED for both: the whole 10-epoch ``fit`` call.

The ratios (model.fit time / TrainLoop time) are computed per repeat, from runs seconds apart,
and the median over repeats is reported: on a shared machine the background load drifts, and
pairing cancels most of it. Per-method medians and the fastest epoch seen are printed too.

Run: ``python benchmarks/train_loop.py [--repeats N]``. The last line is
``ratio_vs_model_fit=<mlp> cnn_ratio_vs_model_fit=<cnn>`` (steady-state ratio, tracing
excluded, TrainLoop with diagnostics on).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from kerastune_kit._backend import native_stderr_silenced  # noqa: E402

with native_stderr_silenced():  # TensorFlow's C++ start-up notices
    from kerastune_kit._backend import keras as _keras
    from kerastune_kit._backend import warm_up_tensorflow
    from kerastune_kit.training import TrainLoop

    warm_up_tensorflow()
    keras = _keras()

EPOCHS = 10
BATCH = 128


class EpochClock(keras.callbacks.Callback):
    """Wall time of each epoch (epoch hooks only, so it changes neither loop's mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.times.append(time.perf_counter() - self._start)


def mlp_workload() -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3840, 784)).astype("float32")
    y = rng.integers(0, 10, size=3840).astype("int32")
    return x, y, _mlp_builder(784)


def digits_workload() -> tuple[Any, Any, Any]:
    """The same MLP on scikit-learn's digits (1,797 x 64): the size of a default search's trials."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean(axis=0)) / (x.std(axis=0) + 1e-7)).astype("float32")
    return x, y.astype("int32"), _mlp_builder(64)


def _mlp_builder(features: int) -> Any:
    def build() -> Any:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((features,))
        h = keras.layers.Dense(128, activation="relu")(inputs)
        h = keras.layers.Dropout(0.2)(h)
        h = keras.layers.Dense(64, activation="relu")(h)
        h = keras.layers.Dropout(0.2)(h)
        return _compiled(keras.Model(inputs, keras.layers.Dense(10)(h)))

    return build


def cnn_workload() -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2048, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=2048).astype("int32")

    def build() -> Any:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1))
        h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
        h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(64, activation="relu")(h)
        return _compiled(keras.Model(inputs, keras.layers.Dense(10)(h)))

    return x, y, build


def _loss() -> Any:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _metrics() -> list[Any]:
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def _compiled(model: Any) -> Any:
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), loss=_loss(),
                  metrics=_metrics())
    return model


def fresh_process_state() -> None:
    """Start each measured run from the same state: no models left from earlier runs.

    As a tuner does before each trial; otherwise the garbage collector walks every earlier
    repeat's models during later runs.
    """
    keras.backend.clear_session()
    gc.collect()


def time_model_fit(x: Any, y: Any, build: Any) -> tuple[float, list[float]]:
    fresh_process_state()
    model = build()
    clock = EpochClock()
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[clock])
    return time.perf_counter() - start, clock.times[1:]


def time_train_loop(x: Any, y: Any, build: Any, *, diagnostics: bool
                    ) -> tuple[float, list[float]]:
    fresh_process_state()
    model = build()
    clock = EpochClock()
    start = time.perf_counter()
    loop = TrainLoop(model, loss=_loss(), metrics=_metrics(), diagnostics=diagnostics)
    loop.fit(x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[clock])
    return time.perf_counter() - start, clock.times[1:]


def bench(name: str, workload: Any, repeats: int) -> float:
    x, y, build = workload()
    methods = {
        "model.fit": lambda: time_model_fit(x, y, build),
        "TrainLoop": lambda: time_train_loop(x, y, build, diagnostics=True),
        "TrainLoop(no diagnostics)": lambda: time_train_loop(x, y, build, diagnostics=False),
    }
    total: dict[str, list[float]] = {m: [] for m in methods}
    steady: dict[str, list[float]] = {m: [] for m in methods}
    fastest: dict[str, float] = {m: math.inf for m in methods}
    for repeat in range(repeats):
        order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
        for method in order:
            seconds, epoch_times = methods[method]()
            total[method].append(seconds)
            steady[method].append(statistics.median(epoch_times) * EPOCHS)
            fastest[method] = min(fastest[method], min(epoch_times) * EPOCHS)

    def ratio(times: dict[str, list[float]], method: str) -> float:
        return statistics.median(f / t for f, t in zip(times["model.fit"], times[method],
                                                        strict=True))

    print(f"[{name}] {repeats} repeats, seconds per {EPOCHS} epochs (median over repeats); "
          "steady = tracing excluded, total = tracing included; ratios = median of per-repeat "
          "model.fit/method")
    for m in methods:
        print(f"  {m:<27} steady {statistics.median(steady[m]):6.3f}  "
              f"total {statistics.median(total[m]):6.3f}  fastest epoch x{EPOCHS} "
              f"{fastest[m]:6.3f}   ratio steady {ratio(steady, m):5.2f}x  "
              f"total {ratio(total, m):5.2f}x")
    overhead = statistics.median(
        d / n for d, n in zip(steady["TrainLoop"], steady["TrainLoop(no diagnostics)"],
                              strict=True)) - 1
    print(f"  gradient diagnostics overhead (steady, median per repeat): {overhead * 100:+.1f}%")
    return ratio(steady, "TrainLoop")


def main(argv: list[str] | None = None) -> int:
    global EPOCHS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6,
                        help="repeats of the MLP (the CNN, slower, runs 2/3 as many)")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help=f"epochs per measured run, at least 2 (default: {EPOCHS})")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 2:
        parser.error(f"expected --repeats >= 1 and --epochs >= 2, received --repeats "
                     f"{args.repeats} --epochs {args.epochs}")
    EPOCHS = args.epochs
    mlp = bench("mlp 784-128-64-10, 3840 samples", mlp_workload, args.repeats)
    cnn = bench("cnn 16/32 filters, 2048 samples", cnn_workload,
                max(1, round(args.repeats * 2 / 3)))
    # Not part of the goal line: what a default search's trials see (per-op overhead dominates).
    bench("mlp 64-128-64-10 on digits, 1797 samples", digits_workload, args.repeats)
    print(f"ratio_vs_model_fit={mlp:.2f} cnn_ratio_vs_model_fit={cnn:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
