"""Trials per minute with 1 and 2 workers on the same search, measured side by side in one run.

Both runs are the same seeded random search (same trials, same epochs) served by KerasTuner's
chief/worker engine on 127.0.0.1 (``run_search(..., workers=N)``); on CPU each of N workers gets
cores/N threads. Wall time includes starting the worker processes, as a user sees it; the
trials-per-minute figures also show the steady state (first trial excluded).

    python benchmarks/parallel.py                   # 12 trials of an MLP on digits
    python benchmarks/parallel.py --trials 6        # quicker

The last line is ``workers2_speedup=<x>`` (trials per minute with 2 workers / with 1).
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


def measure(workers: int, trials: int, epochs: int, root: Path) -> tuple[float, float]:
    """(trials per minute overall, trials per minute after the first trial finished)."""
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search

    finished: list[float] = []
    config = SearchConfig(data="digits", tuner="random", max_trials=trials, max_epochs=epochs,
                          seed=3, run_dir=str(root / f"workers{workers}"),
                          overrides={"num_layers": [1, 2], "batch_size": [32, 64]})
    started = time.perf_counter()
    run_search(config, workers=workers, on_trial=lambda r: finished.append(time.perf_counter()))
    total = time.perf_counter() - started
    overall = 60.0 * trials / total
    steady = 60.0 * (len(finished) - 1) / max(1e-9, finished[-1] - finished[0])
    return overall, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    from kerastune_kit._backend import native_stderr_silenced, warm_up_tensorflow

    with native_stderr_silenced():  # TensorFlow's C++ start-up notices
        warm_up_tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one = measure(1, args.trials, args.epochs, root)
        two = measure(2, args.trials, args.epochs, root)
    print(f"cores: {os.cpu_count()}, {args.trials} trials x {args.epochs} epochs (digits MLP)")
    print(f"1 worker : {one[0]:6.1f} trials/min overall, {one[1]:6.1f} steady")
    print(f"2 workers: {two[0]:6.1f} trials/min overall, {two[1]:6.1f} steady")
    print(f"workers2_speedup={two[0] / one[0]:.2f}")


if __name__ == "__main__":
    main()
