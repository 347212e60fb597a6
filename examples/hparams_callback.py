"""Your own ``model.fit`` runs in the HParams dashboard, with ``kerastune_kit.HParamsCallback``.

Trains a small Keras MLP with plain ``model.fit`` at a few learning rates. The callback logs each
run's hyperparameters, epoch metrics (``train/`` and ``validation/``), learning rate, score and
status with the same tags as tuned trials, so the runs sit in one HParams table. Pass
``--beside RUN`` to log them into a search's ``RUN/tensorboard`` next to its trials.

The full budget is three learning rates of 15 epochs on digits (well under a minute);
``--smoke`` (or ``KERASTUNE_KIT_SMOKE=1``) trains one 2-epoch run on iris.

Usage:
    python examples/hparams_callback.py [--smoke] [--log-dir DIR | --beside RUN]
    tensorboard --logdir DIR        # then open the HPARAMS tab
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import keras

from kerastune_kit import HParamsCallback, load_dataset, load_results


def build_model(n_inputs: int, n_classes: int, units: int, learning_rate: float) -> keras.Model:
    """A one-hidden-layer MLP with logits, compiled for integer labels."""
    model = keras.Sequential([
        keras.Input((n_inputs,)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(n_classes),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        default=os.environ.get("KERASTUNE_KIT_SMOKE") == "1",
                        help="a tiny budget (one 2-epoch run on iris)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--log-dir", default="runs/hparams-callback",
                       help="TensorBoard log directory for the runs")
    where.add_argument("--beside", metavar="RUN",
                       help="log into RUN/tensorboard, next to a search's trials")
    args = parser.parse_args()

    data_name, learning_rates, epochs = (("iris", [1e-2], 2) if args.smoke
                                         else ("digits", [1e-3, 3e-3, 1e-2], 15))
    log_dir = Path(args.beside) / "tensorboard" if args.beside else Path(args.log_dir)
    data = load_dataset(data_name)
    keras.utils.set_random_seed(0)
    for learning_rate in learning_rates:
        hparams = {"learning_rate": learning_rate, "num_layers": 1, "units_0": 64,
                   "optimizer": "adam", "batch_size": 32}
        callback = HParamsCallback(log_dir / f"fit-lr{learning_rate:g}", hparams,
                                   objective="val_accuracy")
        model = build_model(data.x_train.shape[1], data.n_classes, 64, learning_rate)
        model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                  epochs=epochs, batch_size=32, verbose=0, callbacks=[callback])
        record = callback.record
        print(f"{record.trial_id}: val_accuracy={record.score:.4f} at epoch {record.best_epoch + 1}"
              f" ({record.wall_time_s:.1f}s)")

    results = load_results(args.beside or log_dir)
    print(f"{len(results)} run(s) in {log_dir}; best: {results.best.trial_id} "
          f"(score {results.best.score:.4f})")
    print(f"Open the HParams dashboard: tensorboard --logdir {log_dir}")


if __name__ == "__main__":
    main()
