"""Quick start from the command line: search, inspect the run, export the best model.

Runs the same commands you would type::

    python -m kerastune_kit search --run-dir runs/quickstart --overwrite
    python -m kerastune_kit inspect runs/quickstart --top 5
    python -m kerastune_kit export runs/quickstart --output runs/quickstart/export/best.keras

The full budget is the default search (Hyperband on the bundled digits dataset, about a minute
on two CPU cores). ``--smoke`` (or ``KERASTUNE_KIT_SMOKE=1``) runs three short trials on iris.

Usage:
    python examples/quickstart_cli.py [--smoke] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def kerastune_kit(*args: str) -> None:
    """Run ``python -m kerastune_kit ARGS``, echoing the command; stop if it fails."""
    command = [sys.executable, "-m", "kerastune_kit", *args]
    print("$ python -m kerastune_kit " + " ".join(args), flush=True)
    subprocess.run(command, check=True)
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        default=os.environ.get("KERASTUNE_KIT_SMOKE") == "1",
                        help="a tiny budget (three 2-epoch trials on iris)")
    parser.add_argument("--run-dir", default="runs/quickstart", help="results directory")
    args = parser.parse_args()

    run_dir = Path(args.run_dir)
    budget = (["--data", "iris", "--tuner", "random", "--max-trials", "3", "--max-epochs", "2"]
              if args.smoke else [])
    kerastune_kit("search", *budget, "--run-dir", str(run_dir), "--overwrite", "--quiet")
    kerastune_kit("inspect", str(run_dir), "--top", "5")
    kerastune_kit("export", str(run_dir), "--output", str(run_dir / "export" / "best.keras"))
    print(f"Open the HParams dashboard: tensorboard --logdir {run_dir / 'tensorboard'}")


if __name__ == "__main__":
    main()
