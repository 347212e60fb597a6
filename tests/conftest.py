"""Shared fixtures: quiet TensorFlow, a seeded run per test, tiny datasets, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state."""
    np.random.seed(0)
    if "keras" in sys.modules:
        import keras

        keras.utils.set_random_seed(0)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kerastune_kit ARGS`` as a subprocess and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "kerastune_kit", *args], cwd=cwd or REPO, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    """stderr lines that are ours (TensorFlow's C++ start-up chatter filtered out)."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(("I0000", "E0000", "W0000", "WARNING: All"))
            and "cuda" not in line.lower() and "oneDNN" not in line
            and "rebuild TensorFlow" not in line]
