"""Resident memory over a long search: kerastune_kit (recycled workers) vs plain KerasTuner.

Runs the same 100-trial random search of a tiny MLP on iris (1 epoch per trial) twice, side by
side in one run:

- kerastune_kit's ``run_search`` (trials in worker processes replaced every
  ``--trials-per-worker`` trials); memory is the parent's RSS plus its live workers' RSS;
- plain KerasTuner ``RandomSearch`` with ``model.fit`` in one process (KerasTuner already calls
  ``keras.backend.clear_session()`` before every trial).

Prints RSS after 10, 50 and 100 trials for both and, as its last line,
``rss_growth_mib_per_100_trials=<x> kerastuner_rss_growth_mib_per_100_trials=<y>`` where growth
is RSS after the last trial minus RSS after trial 10, scaled to 100 trials.

    python benchmarks/memory.py                 # 100 trials each (about 5 minutes on 2 cores)
    python benchmarks/memory.py --trials 30     # quicker
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHECKPOINTS = (10, 50, 100)


def rss_mib(pid: int) -> float:
    """Resident set size of one process, in MiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def tree_rss_mib(pid: int) -> float:
    """RSS of a process and all its descendants."""
    total = rss_mib(pid)
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                for child in handle.read().split():
                    total += tree_rss_mib(int(child))
    except OSError:
        pass
    return total


def run_ours(trials: int, per_worker: int, root: Path) -> dict[int, float]:
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    samples: dict[int, float] = {}

    def on_trial(record) -> None:
        samples[len(samples) + 1] = tree_rss_mib(os.getpid())

    config = SearchConfig(data="iris", tuner="random", max_trials=trials, max_epochs=1,
                          run_dir=str(root / "ours"), trials_per_worker=per_worker,
                          overrides={"num_layers": 1, "units": [16, 32]})
    run_search(config, on_trial=on_trial)
    return samples


def run_keras_tuner(trials: int, root: Path) -> dict[int, float]:
    import keras
    import keras_tuner as kt

    from kerastune_kit.data import load_dataset

    data = load_dataset("iris")
    samples: dict[int, float] = {}

    def build(hp):
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(hp.Choice("units", [16, 32]), activation="relu"),
            keras.layers.Dense(3),
        ])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-1, sampling="log")),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    class Measured(kt.RandomSearch):
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            samples[len(samples) + 1] = rss_mib(os.getpid())

    tuner = Measured(build, objective="val_accuracy", max_trials=trials, seed=1,
                     directory=str(root), project_name="kerastuner", overwrite=True)
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                 epochs=1, verbose=0)
    return samples


def growth_per_100(samples: dict[int, float]) -> float:
    last = max(samples)
    return (samples[last] - samples[10]) * 100.0 / max(1, last - 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    from kerastune_kit.config import SearchConfig

    parser.add_argument("--trials-per-worker", type=int,
                        default=SearchConfig().trials_per_worker)
    args = parser.parse_args()
    if args.trials <= 10:
        parser.error("--trials must be above 10")
    from kerastune_kit._backend import native_stderr_silenced, warm_up_tensorflow

    with native_stderr_silenced():  # TensorFlow's C++ start-up notices
        warm_up_tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        ours = run_ours(args.trials, args.trials_per_worker, root)
        ours_time = time.perf_counter() - started
        started = time.perf_counter()
        theirs = run_keras_tuner(args.trials, root)
        theirs_time = time.perf_counter() - started
    print(f"{'trials':>8} {'kerastune_kit MiB':>18} {'KerasTuner MiB':>15}")
    for n in (*CHECKPOINTS[:-1], args.trials):
        if n in ours and n in theirs:
            print(f"{n:>8} {ours[n]:>18.1f} {theirs[n]:>15.1f}")
    print(f"wall time: kerastune_kit {ours_time:.1f}s (workers of {args.trials_per_worker} "
          f"trials), KerasTuner {theirs_time:.1f}s")
    print(f"rss_growth_mib_per_100_trials={growth_per_100(ours):.1f} "
          f"kerastuner_rss_growth_mib_per_100_trials={growth_per_100(theirs):.1f}")


if __name__ == "__main__":
    main()
