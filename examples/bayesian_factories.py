"""kerastune_kit's MLP factory inside your own KerasTuner tuner (Bayesian optimization).

``MLPHyperModel`` is an ordinary ``keras_tuner.HyperModel``: KerasTuner's oracle picks the
hyperparameters, our GradientTape loop trains each trial (the batch size is a hyperparameter
too). Here the search space is narrowed first: batch normalization fixed, two optimizers,
a learning-rate range.

The full budget is 10 trials of 10 epochs on the bundled digits dataset (well under two minutes
on two CPU cores); ``--smoke`` (or ``KERASTUNE_KIT_SMOKE=1``) runs two 2-epoch trials on iris.

Usage:
    python examples/bayesian_factories.py [--smoke] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import os

import keras_tuner as kt

from kerastune_kit import MLPHyperModel, SearchSpace, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        default=os.environ.get("KERASTUNE_KIT_SMOKE") == "1",
                        help="a tiny budget (two 2-epoch trials on iris)")
    parser.add_argument("--run-dir", default="runs", help="KerasTuner's directory")
    args = parser.parse_args()
    data_name, max_trials, epochs = ("iris", 2, 2) if args.smoke else ("digits", 10, 10)

    data = load_dataset(data_name)
    space = SearchSpace({"normalization": "batch", "optimizer": ["adam", "adamw"],
                         "learning_rate": {"min": 1e-4, "max": 1e-2, "log": True}})
    hypermodel = MLPHyperModel.for_dataset(data, space)
    tuner = kt.BayesianOptimization(hypermodel, objective="val_accuracy",
                                    max_trials=max_trials, seed=1, directory=args.run_dir,
                                    project_name=f"bayesian-{data_name}", overwrite=True)
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                 epochs=epochs, verbose=0)

    best_trial = tuner.oracle.get_best_trials(1)[0]
    print(f"{len(tuner.oracle.trials)} trials on {data.summary()}")
    print(f"best trial {best_trial.trial_id}: val_accuracy={best_trial.score:.4f}")
    for name, value in best_trial.hyperparameters.values.items():
        print(f"  {name} = {value:.4g}" if isinstance(value, float) else f"  {name} = {value}")
    model = tuner.get_best_models(1)[0]
    loss, accuracy = model.evaluate(data.x_val, data.y_val, verbose=0)
    print(f"best model on the validation split: loss={loss:.4f} accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main()
