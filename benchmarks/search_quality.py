"""Search quality under a wall-clock budget: our default search against the usual alternatives.

What it measures. For each case, on the same data, the same train/validation split and the same
wall-clock budget per contender, the best validation score found so far as a function of time
since the contender's process started (imports count for everyone), the time to reach each
target score, and the final best within the budget. Contenders:

- ``ours``: ``python -m kerastune_kit search --data CASE.npz --max-time BUDGET ...``, the default
  search (on ``digits`` also ``ours_mlp``, the same with ``--model mlp``). Counted per epoch,
  like the peers: every validation epoch of every trial, at the wall time TensorBoard's event
  file recorded it (read with TensorBoard's own reader). The printed trial lines are
  cross-checked against ``RUN/best_hyperparameters.json``. On a regression case the score is
  each epoch's val MAE (our default objective there is ``val_loss``).
- ``optuna_mlp``: Optuna TPE + MedianPruner (defaults) with ``model.fit`` over the MLP space
  (1-4 layers, units 16-512 log, dropout 0-0.5 per layer, learning rate 1e-5..1e-1 log, adam /
  sgd with Nesterov momentum 0.9 / rmsprop, batch 32-256), every epoch's val score reported to
  the pruner, at most 9 epochs per trial (ours' Hyperband maximum), until the budget.
- ``optuna_cnn`` (image cases): the same over a LeNet-style CNN (conv 16-64 and 32-128 filters
  with 2x2 max pooling while the map allows, dense 64-256, dropout 0-0.5, Adam 1e-4..1e-2 log,
  batch 32-128).
- ``kerastuner``: ``kt.Hyperband`` (max_epochs 9, factor 3) + ``model.fit`` over the MLP space,
  stopped at the budget (a callback raises ``keras_tuner.errors.FatalError``).
- ``popular``: the one design most people would write, trained with ``model.fit``, best so far
  after each epoch: images, a LeNet (conv32-pool-conv64-pool-dense128-dropout0.3, He init, Adam
  1e-3, batch 64, 30 epochs at most); vectors, an MLP 2x256 (dropout 0.2, Adam 1e-3, batch 64);
  regression, an MLP 64-64 on standardized targets, Adam 1e-3, about 1,000 optimizer steps.
- ``linear`` (regression cases): ``sklearn.linear_model.LinearRegression``.

Peers train on exactly what our loader gives our search: pixels / 255 for uint8 images, features
standardized with the training split's statistics (regression peers also standardize the
targets for training and report MAE in target units). Scores: val accuracy (higher is better)
for classification, val MAE in target units (lower is better) for regression.

Cases, all made here from scikit-learn's bundled data (nothing is downloaded) and written once
to ``WORK/CASE.npz`` with explicit ``x_train, y_train, x_val, y_val, x_test, y_test``. The test
split (15%, held out first; then 80/20 train/validation) is seen by no contender during the
search; ours evaluates its best trial on it afterwards, and the table notes the
validation-vs-test gap of ours' best trial.

- ``digits``: the 8x8 digits as uint8 images (values x 255/16), stratified splits (seed).
- ``digits28``: a 28x28 handwritten-digits stand-in (3,840 train / 1,160 val / 1,000 test images,
  the size of a held-back case): each 8x8 digit upsampled to 18-22 px, placed on a 28x28 canvas
  shifted by up to 3 px, Gaussian noise (sigma 16) added, clipped to uint8. The three splits
  come from disjoint source digits (a stratified split of the 1,797 digits), so no source digit
  appears in two splits.
- ``diabetes``: the 442 x 10 regression set, seeded splits.

Fairness. Contenders run one after another (``--parallel 2`` runs two at once, on different
cores), each in a fresh ``python -u`` process pinned to its own core(s) (``--cores 1``, the
default: ``os.sched_setaffinity`` in the child before exec) with ``TF_NUM_INTRAOP_THREADS``,
``TF_NUM_INTEROP_THREADS`` and ``OMP_NUM_THREADS`` set to the core count. The script checks
that they took effect: it samples every process of the contender's tree (affinity and
environment, from ``/proc``) and reports the process tree's CPU time / wall time, which cannot
exceed the core count (well below it: something else ran on that core; the 1-minute load
average at the end of each contender is printed too). A search still running at the budget
gets SIGTERM 20 s later; events after the budget never count.

Run: ``pip install -e ".[bench]"`` (Optuna), then ``python benchmarks/search_quality.py``
(about 30 minutes with the defaults: budgets 170 s for digits28 and 60 s for the others).
Quick: ``python benchmarks/search_quality.py --cases digits,diabetes --budget 20``. Options:
``--cases``, ``--budget``, ``--contenders``, ``--cores``, ``--parallel``, ``--targets``,
``--checkpoints``, ``--seed``, ``--out results.json`` (every raw event), ``--work-dir``.
The figures are measured, not asserted: this script checks nothing but the fairness conditions,
and the last line of each case says whether ours is at or above every peer at every checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()

CASES = ("digits", "digits28", "diabetes")
CONTENDERS = ("ours", "ours_recipe", "optuna_mlp", "optuna_cnn", "kerastuner", "popular", "linear")
IMAGE_CASES = {"digits", "digits28"}  # (--npz-case adds to these)
REGRESSION_CASES = {"diabetes"}
DEFAULT_BUDGET = {"digits28": 170.0}
FALLBACK_BUDGET = 60.0
DEFAULT_CHECKPOINTS = (10.0, 20.0, 30.0, 60.0, 120.0, 170.0)
DEFAULT_TARGETS = (0.94, 0.972)
#: The share of each case held out as a test split that no contender sees (ours evaluates its
#: best trial on it after the search: the ``x_test``/``y_test`` of the .npz).
TEST_SHARE = 0.15
MAX_EPOCHS = 9  # ours' default Hyperband max_epochs: the per-trial cap of every tuning peer
TERM_GRACE_S = 20.0  # a contender still running this long after its budget gets SIGTERM
KILL_GRACE_S = 60.0  # ... and SIGKILL this long after its budget
THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
TRIAL_LINE = re.compile(  # `trial 0012 completed 0.9806  epochs ...` (before issue 17: score=)
    r"^trial (?P<trial>\S+) (?P<status>completed|pruned|diverged|failed)\s+(?:score=)?"
    r"(?P<score>\S+)"
)


#: What ``ours_recipe`` adds to the default search: the recipe's knobs of issue 16 opened to
#: the tuner (learning-rate schedule and warm-up, momentum as 1 - beta on a log scale, AdamW's
#: weight decay; on images, augmentation). Filled from the README's "The training recipe":
#: ``recipe=true`` opens all of them, augmentation included when the model is the CNN.
RECIPE_FLAGS: tuple[str, ...] = ("--set", "recipe=true")
RECIPE_IMAGE_FLAGS: tuple[str, ...] = ()


def ours_command(npz: Path, budget: float, run_dir: Path, model: str | None,
                 seed: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The one place that spells our CLI: the default search, only data, budget and paths set
    (``extra``: the flags of a variant such as ``ours_recipe``)."""
    command = [sys.executable, "-u", "-m", "kerastune_kit", "search", "--data", str(npz),
               "--max-time", f"{int(math.ceil(budget))}s", "--run-dir", str(run_dir),
               "--overwrite", *extra]
    if model is not None:
        command += ["--model", model]
    if seed:
        command += ["--seed", str(seed)]
    return command


# --------------------------------------------------------------------------------------------
# Data: every case written once to an .npz with an explicit split.


def _hold_out(index: np.ndarray, labels: np.ndarray | None, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a seeded 68/17/15 train/validation/test split: :data:`TEST_SHARE` held out
    first, then 80/20 of the rest (stratified by ``labels`` when given)."""
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(index, test_size=TEST_SHARE, random_state=seed,
                                  stratify=None if labels is None else labels[index])
    train, val = train_test_split(rest, test_size=0.2, random_state=seed,
                                  stratify=None if labels is None else labels[rest])
    return train, val, test


def make_digits(seed: int = 0) -> dict[str, np.ndarray]:
    """The bundled 8x8 digits as uint8 images (0..16 scaled to 0..255): 15% held out as a test
    split, then 80/20 stratified train/validation."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    target = bunch.target.astype(np.int64)
    parts = _hold_out(np.arange(len(target)), target, seed)
    return {f"{k}_{split}": (images if k == "x" else target)[part]
            for split, part in zip(("train", "val", "test"), parts, strict=True)
            for k in ("x", "y")}


def _render28(source: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """One 28x28 uint8 image from one 8x8 digit (0..16): upsample, place, shift, add noise."""
    from scipy.ndimage import zoom

    size = int(rng.integers(18, 23))
    glyph = zoom(source / 16.0, size / 8.0, order=1)[:size, :size] * 255.0
    canvas = np.zeros((28, 28), dtype=np.float64)
    base = (28 - size) // 2
    top = int(np.clip(base + rng.integers(-3, 4), 0, 28 - size))
    left = int(np.clip(base + rng.integers(-3, 4), 0, 28 - size))
    canvas[top:top + size, left:left + size] = glyph
    canvas += rng.normal(0.0, noise, canvas.shape)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def make_digits28(seed: int = 0, n_train: int = 3840, n_val: int = 1160, n_test: int = 1000,
                  noise: float = 16.0) -> dict[str, np.ndarray]:
    """28x28 augmented digits; train, validation and test images come from disjoint source
    digits (:func:`_hold_out` of the 1,797).

    Also returns ``src_train`` / ``src_val`` / ``src_test``: the index of each image's source
    digit in ``load_digits()`` (not written to the .npz).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    src_train, src_val, src_test = _hold_out(np.arange(len(bunch.target)), bunch.target, seed)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for split, sources, n in (("train", src_train, n_train), ("val", src_val, n_val),
                              ("test", src_test, n_test)):
        copies = int(math.ceil(n / len(sources)))
        drawn = rng.permutation(np.tile(sources, copies))[:n]
        out[f"x_{split}"] = np.stack([_render28(bunch.images[i], rng, noise) for i in drawn])
        out[f"y_{split}"] = bunch.target[drawn].astype(np.int64)
        out[f"src_{split}"] = drawn
    return out


def make_diabetes(seed: int = 0) -> dict[str, np.ndarray]:
    """The bundled diabetes regression set (raw features and targets): 15% held out as a test
    split, then 80/20 train/validation."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x, y = x.astype(np.float32), y.astype(np.float32)
    parts = _hold_out(np.arange(len(y)), None, seed)
    return {f"{k}_{split}": (x if k == "x" else y)[part]
            for split, part in zip(("train", "val", "test"), parts, strict=True)
            for k in ("x", "y")}


MAKERS = {"digits": make_digits, "digits28": make_digits28, "diabetes": make_diabetes}


def add_npz_case(spec: str) -> str:
    """Register ``NAME=PATH`` (an .npz with the four split arrays) as a case; return NAME."""
    name, _, path = spec.partition("=")
    if not name or not path or not Path(path).is_file():
        raise SystemExit(f"error: --npz-case expects NAME=PATH of an existing .npz, received "
                         f"{spec!r}")
    with np.load(path) as data:
        arrays = {k: np.asarray(data[k]) for k in SPLIT_KEYS if k in data.files}
    MAKERS[name] = lambda seed, arrays=arrays: arrays
    if arrays["x_train"].ndim >= 3:
        IMAGE_CASES.add(name)
    if arrays["y_train"].dtype.kind == "f" and not np.all(arrays["y_train"] % 1 == 0):
        REGRESSION_CASES.add(name)
    return name


SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def write_case(case: str, work: Path, seed: int) -> Path:
    """Write CASE.npz (the split arrays only: train, validation and, when the case has one,
    test) and return its path."""
    arrays = MAKERS[case](seed)
    path = work / f"{case}.npz"
    np.savez(path, **{k: arrays[k] for k in SPLIT_KEYS if k in arrays})
    return path


def scale_inputs(x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What our loader does to the inputs: images (uint8 pixels) / 255; vectors standardized
    with the training split's mean and standard deviation (StandardScaler)."""
    if x_train.ndim >= 3:
        return (x_train.astype(np.float32) / np.float32(255.0),
                x_val.astype(np.float32) / np.float32(255.0))
    x_train = np.asarray(x_train, dtype=np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return (((x_train - mean) / std).astype(np.float32),
            ((np.asarray(x_val, dtype=np.float64) - mean) / std).astype(np.float32))


def prepare(arrays: dict[str, np.ndarray], regression: bool) -> dict[str, Any]:
    """The peers' arrays: inputs as our loader scales them (:func:`scale_inputs`); regression
    targets standardized too (``y_mean``, ``y_std``), for training only: scores stay in target
    units."""
    x_train, x_val = scale_inputs(np.asarray(arrays["x_train"]), np.asarray(arrays["x_val"]))
    out = {"x_train": x_train, "x_val": x_val, "y_mean": 0.0, "y_std": 1.0}
    if regression:
        y_train = np.asarray(arrays["y_train"], dtype=np.float64)
        out["y_mean"], out["y_std"] = float(y_train.mean()), float(y_train.std())
        out["y_train"] = ((y_train - out["y_mean"]) / out["y_std"]).astype(np.float32)
        out["y_val"] = ((np.asarray(arrays["y_val"]) - out["y_mean"]) / out["y_std"]
                        ).astype(np.float32)
    else:
        out["y_train"] = np.asarray(arrays["y_train"]).astype(np.int32)
        out["y_val"] = np.asarray(arrays["y_val"]).astype(np.int32)
    return out


def linear_mae(arrays: dict[str, np.ndarray]) -> float:
    """Validation MAE of LinearRegression on standardized features (the regression target)."""
    from sklearn.linear_model import LinearRegression

    x_train, x_val = scale_inputs(arrays["x_train"], arrays["x_val"])
    fit = LinearRegression().fit(x_train, arrays["y_train"])
    return float(np.mean(np.abs(fit.predict(x_val) - arrays["y_val"])))


# --------------------------------------------------------------------------------------------
# Curves: best so far, checkpoints, time to target.


def best_so_far(events: list[dict[str, Any]], maximize: bool, budget: float | None = None
                ) -> list[tuple[float, float]]:
    """``(t, best)`` at each improvement, from events ``{"t", "score"}`` (None/NaN skipped)."""
    curve: list[tuple[float, float]] = []
    best: float | None = None
    for event in sorted(events, key=lambda e: e["t"]):
        score = event.get("score")
        if score is None or not math.isfinite(score):
            continue
        if budget is not None and event["t"] > budget:
            break
        if best is None or (score > best if maximize else score < best):
            best = score
            curve.append((float(event["t"]), float(score)))
    return curve


def best_at(curve: list[tuple[float, float]], t: float) -> float | None:
    """The best score reached by time ``t`` (None before the first)."""
    value = None
    for when, score in curve:
        if when > t:
            break
        value = score
    return value


def time_to_target(curve: list[tuple[float, float]], target: float, maximize: bool
                   ) -> float | None:
    """The first time the best so far reaches ``target`` (>= when maximizing, else <=)."""
    for when, score in curve:
        if (score >= target) if maximize else (score <= target):
            return when
    return None


def parse_trial_line(line: str) -> dict[str, Any] | None:
    """``{"trial", "status", "score"}`` from one of our trial lines (score None for ``-``)."""
    match = TRIAL_LINE.match(line.strip())
    if not match:
        return None
    text = match["score"]
    try:
        score: float | None = float(text)
    except ValueError:
        score = None
    return {"trial": match["trial"], "status": match["status"], "score": score}


def not_worse(ours: float | None, peer: float | None, maximize: bool) -> bool:
    """Whether ours is at or above the peer (a missing score is worse than any score)."""
    if peer is None:
        return True
    if ours is None:
        return False
    return ours >= peer if maximize else ours <= peer


# --------------------------------------------------------------------------------------------
# Running contenders.


@dataclass
class Job:
    case: str
    name: str  # row name: ours, ours_mlp, optuna_mlp, ...
    command: list[str]
    budget: float
    run_dir: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)


def thread_env(cores: int) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    if cores > 0:
        env.update({name: str(cores) for name in THREAD_VARS})
    return env


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(c) for c in handle.read().split())
        except OSError:
            continue
    return found


def _proc_facts(pid: int) -> dict[str, Any] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = dict(item.split(b"=", 1) for item in handle.read().split(b"\0")
                           if b"=" in item)
        with open(f"/proc/{pid}/status") as handle:
            status = dict(line.split(":\t", 1) for line in handle if ":\t" in line)
    except OSError:
        return None
    return {"env": {name: environ.get(name.encode(), b"").decode() for name in THREAD_VARS},
            "cpus": status.get("Cpus_allowed_list", "").strip(),
            "threads": int(status.get("Threads", "0") or 0)}


def run_job(job: Job, cpus: set[int] | None, cores: int) -> None:
    """Run one contender; timestamp its stdout lines; sample its process tree; fill job.result."""
    events: list[dict[str, Any]] = []
    lines: list[tuple[float, str]] = []
    info: list[dict[str, Any]] = []
    seen: dict[int, dict[str, Any]] = {}
    err_path = Path(tempfile.mkstemp(prefix=f"sq_{job.case}_{job.name}_", suffix=".err")[1])

    prefix: list[str] = []
    pin = None
    if cpus and shutil.which("taskset"):
        prefix = ["taskset", "-c", _cpu_list(sorted(cpus))]  # execs the command: same pid
    elif cpus:
        def pin() -> None:  # in the child, between fork and exec
            os.sched_setaffinity(0, cpus)

    t0 = time.time()
    with err_path.open("w") as err:
        extra = ["--t0", repr(t0)] if job.run_dir is None else []
        proc = subprocess.Popen([*prefix, *job.command, *extra], stdout=subprocess.PIPE,
                                stderr=err, text=True, bufsize=1, cwd=REPO,
                                env=thread_env(cores), preexec_fn=pin)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                now = time.time() - t0
                line = line.rstrip("\n")
                lines.append((now, line))
                if job.run_dir is not None:
                    parsed = parse_trial_line(line)
                    if parsed:
                        events.append({"t": now, **parsed})
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "info" in record:
                    info.append(record["info"])
                elif isinstance(record, dict) and "t" in record:
                    events.append({**record, "t_received": now})

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        usage = None
        status = None
        signalled = []
        while status is None:
            if time.time() - t0 > 1.0:  # past exec and taskset's own start-up
                for pid in _tree(proc.pid):
                    facts = _proc_facts(pid)
                    if facts and (pid not in seen or any(facts["env"].values())):
                        seen[pid] = facts  # the latest readable state of each process
            pid, raw, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = os.waitstatus_to_exitcode(raw), ru
                proc.returncode = status
                break
            elapsed = time.time() - t0
            if elapsed > job.budget + KILL_GRACE_S and "KILL" not in signalled:
                signalled.append("KILL")
                proc.kill()
            elif elapsed > job.budget + TERM_GRACE_S and not signalled:
                signalled.append("TERM")
                proc.send_signal(signal.SIGTERM)
            time.sleep(0.25)
        wall = time.time() - t0
        reader.join(timeout=10)
    stderr_tail = err_path.read_text(errors="replace").splitlines()[-8:]
    err_path.unlink(missing_ok=True)
    cpu = (usage.ru_utime + usage.ru_stime) if usage else None
    job.result = {
        "command": job.command, "exit": status, "wall_s": wall, "signals": signalled,
        "cpu_s": cpu, "cpu_per_wall": (cpu / wall) if cpu is not None and wall > 0 else None,
        "events": events, "info": info, "processes": list(seen.values()),
        "stdout_tail": [line for _, line in lines[-6:]], "stderr_tail": stderr_tail,
        "cpus_assigned": sorted(cpus) if cpus else None, "t0": t0,
        "loadavg_1min_at_end": os.getloadavg()[0],
    }


def fairness_problems(result: dict[str, Any], cores: int) -> list[str]:
    """What, if anything, shows that a contender was not held to its cores and threads."""
    problems = []
    if cores <= 0:
        return problems
    expected_cpus = result.get("cpus_assigned")
    for facts in result["processes"]:
        if any(facts["env"][name] != str(cores) for name in THREAD_VARS):
            problems.append(f"thread env {facts['env']}")
        if expected_cpus and facts["cpus"] != _cpu_list(expected_cpus):
            problems.append(f"affinity {facts['cpus']}")
    for record in result["info"]:
        if "intra_op" not in record:
            continue
        if record.get("affinity") and record["affinity"] != expected_cpus:
            problems.append(f"worker affinity {record['affinity']}")
        if record.get("intra_op") not in (0, cores) or record.get("inter_op") not in (0, cores):
            problems.append(f"worker threading {record.get('intra_op')}/{record.get('inter_op')}")
    ratio = result.get("cpu_per_wall")
    if ratio is not None and ratio > cores + 0.05:
        problems.append(f"cpu/wall {ratio:.2f} > {cores}")
    return sorted(set(problems))


def _cpu_list(cpus: list[int]) -> str:
    """The kernel's Cpus_allowed_list spelling of a set of cores (e.g. ``1`` or ``0-1``)."""
    parts, start = [], None
    for i, cpu in enumerate(cpus):
        if start is None:
            start = cpu
        if i + 1 == len(cpus) or cpus[i + 1] != cpu + 1:
            parts.append(str(start) if start == cpu else f"{start}-{cpu}")
            start = None
    return ",".join(parts)


def ours_extras(job: Job, regression: bool) -> None:
    """Read our run directory: every epoch's validation score with its wall time (from the
    TensorBoard event files, read with TensorBoard's own reader), so ours is counted per epoch
    like the peers, whose callbacks report every epoch; and the best_hyperparameters.json
    cross-check against the trial lines ours printed."""
    result, run = job.result, job.run_dir
    assert run is not None
    best_file = run / "best_hyperparameters.json"
    best = json.loads(best_file.read_text()) if best_file.exists() else None
    result["best_file"] = None if best is None else {
        "trial_id": best.get("trial_id"), "objective": best.get("objective"),
        "score": best.get("score")}
    result["objective"] = best.get("objective") if best else None
    objective = str(result["objective"] or ("val_loss" if regression else "val_accuracy"))
    obj_max = any(word in objective for word in ("accuracy", "auc"))
    trial_lines = result["events"]
    result["trial_lines"] = trial_lines
    # the reported score: val accuracy, or val MAE (target units) for regression
    result["events"] = _epoch_events(run, result["t0"], "mae" if regression else "accuracy")
    printed = [e["score"] for e in trial_lines if e["score"] is not None]
    overall = (max(printed) if obj_max else min(printed)) if printed else None
    if best is None or overall is None:
        result["cross_check"] = "no best_hyperparameters.json" if best is None else "no trial"
    elif abs(float(best["score"]) - overall) <= 5e-5 * max(1.0, abs(overall)):
        result["cross_check"] = "best file matches the printed trials"
    else:
        result["cross_check"] = (f"MISMATCH: file {best['score']:.4f} (trial "
                                 f"{best.get('trial_id')}) vs {overall:.4f} printed")
    result["late_trials"] = sum(1 for e in trial_lines if e["t"] > job.budget)
    result["trials"] = len(trial_lines)
    result["test"] = (best or {}).get("test")


def test_note(test: dict[str, Any] | None) -> str:
    """The validation-vs-test line of ours' best trial (``best_hyperparameters.json``'s
    ``test`` entry, written after the search from the case's held-out test split)."""
    if not isinstance(test, dict) or test.get("score") is None:
        return "no test score"
    validation, score = test.get("validation_score"), float(test["score"])
    gap = test.get("gap")
    text = (f"best trial {test.get('trial_id')}: {test.get('validation_metric')} "
            f"{'-' if validation is None else f'{validation:.4f}'} vs {test.get('metric')} "
            f"{score:.4f} on {test.get('samples')} samples"
            + ("" if gap is None else
               f" (gap {gap:+.4f}{', LARGE' if test.get('large_gap') else ''})"))
    mae = (test.get("metrics") or {}).get("test_mae")
    return text + ("" if mae is None else f", test MAE {mae:.2f}")


def _epoch_events(run: Path, t0: float, metric: str) -> list[dict[str, Any]]:
    """``{"t", "score", "trial", "epoch"}`` for every validation epoch of every trial of our
    run, ``t`` from the event's wall time relative to the command's start ``t0``."""
    from tensorboard.backend.event_processing import event_accumulator

    events = []
    for folder in sorted((run / "tensorboard").glob("*/validation")):
        acc = event_accumulator.EventAccumulator(
            str(folder), size_guidance={event_accumulator.TENSORS: 0})
        acc.Reload()
        tag = f"epoch_{metric}"
        if tag not in acc.Tags().get("tensors", []):
            continue
        for event in acc.Tensors(tag):
            value = float(np.asarray(tf_make_ndarray(event.tensor_proto)).reshape(-1)[0])
            if math.isfinite(value):
                events.append({"t": event.wall_time - t0, "score": value,
                               "trial": folder.parent.name, "epoch": event.step})
    return sorted(events, key=lambda e: e["t"])


def tf_make_ndarray(proto: Any) -> Any:
    """TensorBoard's own TensorProto decoder (no TensorFlow import needed)."""
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(proto)


# --------------------------------------------------------------------------------------------
# Workers: each peer in its own process, emitting {"t", "score"} JSON lines.


class Emitter:
    def __init__(self, t0: float, budget: float) -> None:
        self.t0, self.budget = t0, budget

    def elapsed(self) -> float:
        return time.time() - self.t0

    def over(self) -> bool:
        return self.elapsed() >= self.budget

    def emit(self, score: float | None, **extra: Any) -> None:
        value = None if score is None or not math.isfinite(score) else float(score)
        print(json.dumps({"t": round(self.elapsed(), 3), "score": value, **extra}), flush=True)


def _worker_setup(seed: int) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    print(json.dumps({"info": {
        "affinity": sorted(os.sched_getaffinity(0)),
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        "env": {name: os.environ.get(name) for name in THREAD_VARS}}}), flush=True)
    return keras


def _score_callback(keras: Any, emitter: Emitter, regression: bool, y_std: float,
                    on_score: Any = None, **extra: Any) -> Any:
    """Emit each epoch's val score; call ``on_score(epoch, score)``; stop at the budget."""

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            if regression:
                raw = logs.get("val_mae")
                score = None if raw is None else float(raw) * y_std
            else:
                raw = logs.get("val_accuracy")
                score = None if raw is None else float(raw)
            emitter.emit(score, epoch=epoch, **extra)
            if on_score is not None:
                on_score(epoch, score)
            if emitter.over():
                self.model.stop_training = True

    return Report()


def _optimizer(keras: Any, name: str, learning_rate: float) -> Any:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    return keras.optimizers.Adam(learning_rate)


def _compile(keras: Any, model: Any, optimizer: Any, regression: bool) -> Any:
    if regression:
        model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    else:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    return model


def _head(keras: Any, h: Any, regression: bool, n_classes: int) -> Any:
    if regression:
        return keras.layers.Dense(1)(h)
    return keras.layers.Dense(n_classes, activation="softmax")(h)


def build_mlp(keras: Any, input_shape: tuple[int, ...], n_classes: int, regression: bool,
              units: list[int], dropouts: list[float]) -> Any:
    inputs = keras.Input(input_shape)
    h = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for width, rate in zip(units, dropouts, strict=True):
        h = keras.layers.Dense(width, activation="relu", kernel_initializer="he_normal")(h)
        if rate > 0:
            h = keras.layers.Dropout(rate)(h)
    return keras.Model(inputs, _head(keras, h, regression, n_classes))


def build_lenet(keras: Any, input_shape: tuple[int, ...], n_classes: int, filters: tuple[int, int],
                dense: int, dropout: float) -> Any:
    """conv-pool-conv-pool-flatten-dense-dropout; 'same' padding, 2x2 pooling while the map
    is at least 2 pixels wide (8x8 inputs: 8 -> 4 -> 2)."""
    inputs = keras.Input(input_shape)
    h, side = inputs, min(input_shape[:2])
    for width in filters:
        h = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                kernel_initializer="he_normal")(h)
        if side >= 2:
            h = keras.layers.MaxPooling2D()(h)
            side //= 2
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(dense, activation="relu", kernel_initializer="he_normal")(h)
    if dropout > 0:
        h = keras.layers.Dropout(dropout)(h)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(h))


def _load_worker_data(npz: Path, regression: bool, images: bool) -> tuple[dict[str, Any], int]:
    with np.load(npz) as archive:
        arrays = {k: archive[k] for k in archive.files}
    data = prepare(arrays, regression)
    if images and data["x_train"].ndim == 3:
        data["x_train"] = data["x_train"][..., None]
        data["x_val"] = data["x_val"][..., None]
    n_classes = 0 if regression else int(max(arrays["y_train"].max(), arrays["y_val"].max()) + 1)
    return data, n_classes


def _mlp_space(trial: Any) -> dict[str, Any]:
    """Optuna's spelling of the course's MLP space."""
    n = trial.suggest_int("num_layers", 1, 4)
    return {
        "units": [trial.suggest_int(f"units_{i}", 16, 512, log=True) for i in range(n)],
        "dropouts": [trial.suggest_float(f"dropout_{i}", 0.0, 0.5) for i in range(n)],
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
    }


def worker_optuna(args: argparse.Namespace, family: str) -> None:
    import optuna

    keras = _worker_setup(args.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    regression = args.regression
    data, n_classes = _load_worker_data(args.data, regression, images=family == "cnn")
    emitter = Emitter(args.t0, args.budget)
    maximize = not regression

    def objective(trial: Any) -> float:
        keras.backend.clear_session()
        keras.utils.set_random_seed(args.seed + trial.number)
        shape = data["x_train"].shape[1:]
        if family == "mlp":
            hp = _mlp_space(trial)
            model = build_mlp(keras, shape, n_classes, regression, hp["units"], hp["dropouts"])
            optimizer = _optimizer(keras, hp["optimizer"], hp["learning_rate"])
        else:
            filters = (trial.suggest_int("filters_0", 16, 64, log=True),
                       trial.suggest_int("filters_1", 32, 128, log=True))
            dense = trial.suggest_int("dense_units", 64, 256, log=True)
            dropout = trial.suggest_float("dropout", 0.0, 0.5)
            learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
            hp = {"batch_size": trial.suggest_categorical("batch_size", [32, 64, 128])}
            model = build_lenet(keras, shape, n_classes, filters, dense, dropout)
            optimizer = keras.optimizers.Adam(learning_rate)
        _compile(keras, model, optimizer, regression)
        scores: list[float] = []

        def report(epoch: int, score: float | None) -> None:
            if score is None or not math.isfinite(score):
                raise optuna.TrialPruned("non-finite score")
            scores.append(score)
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        callbacks = [keras.callbacks.TerminateOnNaN(),
                     _score_callback(keras, emitter, regression, data["y_std"], report,
                                     trial=trial.number)]
        model.fit(data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]),
                  batch_size=hp["batch_size"], epochs=MAX_EPOCHS, callbacks=callbacks, verbose=0)
        if emitter.over():
            trial.study.stop()
        if not scores:
            raise optuna.TrialPruned("no epoch finished")
        return max(scores) if maximize else min(scores)

    study = optuna.create_study(direction="maximize" if maximize else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.MedianPruner())
    remaining = args.budget - emitter.elapsed()
    if remaining > 0:
        study.optimize(objective, timeout=remaining)
    print(json.dumps({"info": {"trials": len(study.trials)}}), flush=True)


def worker_kerastuner(args: argparse.Namespace) -> None:
    import keras_tuner as kt

    keras = _worker_setup(args.seed)
    regression = args.regression
    data, n_classes = _load_worker_data(args.data, regression, images=False)
    emitter = Emitter(args.t0, args.budget)
    shape = data["x_train"].shape[1:]

    class Budget(kt.errors.FatalError):
        pass

    class Stop(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            if emitter.over():
                raise Budget("time budget spent")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if emitter.over():
                raise Budget("time budget spent")

    class MLP(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            n = hp.Int("num_layers", 1, 4)
            units = [hp.Int(f"units_{i}", 16, 512, sampling="log") for i in range(n)]
            dropouts = [hp.Float(f"dropout_{i}", 0.0, 0.5) for i in range(n)]
            learning_rate = hp.Float("learning_rate", 1e-5, 1e-1, sampling="log")
            name = hp.Choice("optimizer", ["adam", "sgd", "rmsprop"])
            hp.Choice("batch_size", [32, 64, 128, 256])
            model = build_mlp(keras, shape, n_classes, regression, units, dropouts)
            return _compile(keras, model, _optimizer(keras, name, learning_rate), regression)

        def fit(self, hp: Any, model: Any, *fit_args: Any, **kwargs: Any) -> Any:
            return model.fit(*fit_args, batch_size=hp.get("batch_size"), **kwargs)

    objective = kt.Objective("val_mae" if regression else "val_accuracy",
                             "min" if regression else "max")
    tuner = kt.Hyperband(MLP(), objective=objective, max_epochs=MAX_EPOCHS, factor=3,
                         seed=args.seed, directory=str(args.scratch), project_name="hyperband",
                         overwrite=True)
    callbacks = [keras.callbacks.TerminateOnNaN(),
                 _score_callback(keras, emitter, regression, data["y_std"]), Stop()]
    try:
        tuner.search(data["x_train"], data["y_train"], validation_data=(data["x_val"],
                     data["y_val"]), callbacks=callbacks, verbose=0)
    except Budget:
        pass
    print(json.dumps({"info": {"trials": len(tuner.oracle.trials)}}), flush=True)


def worker_popular(args: argparse.Namespace) -> None:
    keras = _worker_setup(args.seed)
    regression = args.regression
    images = np.load(args.data)["x_train"].ndim >= 3
    data, n_classes = _load_worker_data(args.data, regression, images=images)
    emitter = Emitter(args.t0, args.budget)
    shape = data["x_train"].shape[1:]
    batch = 64
    if images:
        model = build_lenet(keras, shape, n_classes, (32, 64), 128, 0.3)
        epochs = 30
    elif regression:
        model = build_mlp(keras, shape, 1, True, [64, 64], [0.0, 0.0])
        epochs = int(math.ceil(1000 / math.ceil(len(data["x_train"]) / batch)))
    else:
        model = build_mlp(keras, shape, n_classes, False, [256, 256], [0.2, 0.2])
        epochs = 30
    _compile(keras, model, keras.optimizers.Adam(1e-3), regression)
    model.fit(data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]),
              batch_size=batch, epochs=epochs, verbose=0,
              callbacks=[_score_callback(keras, emitter, regression, data["y_std"])])


def worker_linear(args: argparse.Namespace) -> None:
    emitter = Emitter(args.t0, args.budget)
    with np.load(args.data) as archive:
        arrays = {k: archive[k] for k in archive.files}
    emitter.emit(linear_mae(arrays))


WORKERS = {
    "optuna_mlp": lambda a: worker_optuna(a, "mlp"),
    "optuna_cnn": lambda a: worker_optuna(a, "cnn"),
    "kerastuner": worker_kerastuner,
    "popular": worker_popular,
    "linear": worker_linear,
}


# --------------------------------------------------------------------------------------------
# The orchestration and the tables.


def jobs_for(case: str, contenders: list[str], npz: Path, work: Path, budget: float,
             seed: int) -> list[Job]:
    regression = case in REGRESSION_CASES
    jobs = []
    for name in contenders:
        if name == "ours":
            variants = [("ours", None)] + ([("ours_mlp", "mlp")] if case == "digits" else [])
            for row, model in variants:
                run_dir = work / f"{case}-{row}"
                jobs.append(Job(case, row, ours_command(npz, budget, run_dir, model, seed),
                                budget, run_dir=run_dir))
            continue
        if name == "ours_recipe":
            run_dir = work / f"{case}-{name}"
            extra = RECIPE_FLAGS + (RECIPE_IMAGE_FLAGS if case in IMAGE_CASES else ())
            jobs.append(Job(case, name, ours_command(npz, budget, run_dir, None, seed, extra),
                            budget, run_dir=run_dir))
            continue
        if name == "optuna_cnn" and case not in IMAGE_CASES:
            continue
        if name == "linear" and not regression:
            continue
        command = [sys.executable, "-u", str(SCRIPT), "--worker", name, "--data", str(npz),
                   "--budget", str(budget), "--seed", str(seed),
                   "--scratch", str(work / f"{case}-{name}")]
        if regression:
            command.append("--regression")
        jobs.append(Job(case, name, command, budget))
    return jobs


def _fmt(value: float | None, regression: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if regression else f"{value:.4f}"


def case_table(case: str, jobs: list[Job], checkpoints: list[float], targets: list[float],
               regression: bool, cores: int) -> tuple[list[str], dict[str, Any]]:
    """The printed table of one case, and its summary for the JSON output."""
    maximize = not regression
    rows: dict[str, list[tuple[float, float]]] = {}
    notes: dict[str, str] = {}
    for job in jobs:
        res = job.result
        rows[job.name] = best_so_far(res["events"], maximize, job.budget)
        note = [f"exit {res['exit']}"]
        if res.get("signals"):
            note.append("sent " + "+".join(res["signals"]))
        if job.run_dir is not None:
            note.append(f"{res.get('trials', 0)} trials, {len(res['events'])} epochs "
                        f"({res.get('late_trials', 0)} trials ended after the budget)")
            note.append(f"objective {res.get('objective')}, {res.get('cross_check')}")
            note.append(test_note(res.get("test")))
        else:
            trials = [i["trials"] for i in res["info"] if "trials" in i]
            unit = "fit" if job.name == "linear" else "epochs"
            note.append(f"{len(res['events'])} {unit}" + (f", {trials[-1]} trials"
                                                         if trials else ""))
        ratio = res.get("cpu_per_wall")
        note.append(f"cpu/wall {ratio:.2f}" if ratio is not None else "cpu/wall ?")
        note.append(f"load {res['loadavg_1min_at_end']:.1f}")
        problems = fairness_problems(res, cores)
        if problems:
            note.append("UNFAIR: " + "; ".join(problems))
        if res["exit"] not in (0, 130) or not res["events"]:
            note.append("stderr: " + " | ".join(res["stderr_tail"][-2:]))
        notes[job.name] = ", ".join(note)
    budget = max(job.budget for job in jobs)
    marks = [c for c in checkpoints if c < budget] + [budget]
    header = (["contender"] + [f"@{c:g}s" for c in marks[:-1]] + [f"final@{budget:g}s"]
              + [f"t{'<=' if regression else '>='}{_fmt(t, regression)}" for t in targets])
    table = []
    for name, curve in rows.items():
        cells = [name] + [_fmt(best_at(curve, c), regression) for c in marks]
        for target in targets:
            hit = time_to_target(curve, target, maximize)
            cells.append("-" if hit is None else f"{hit:.1f}s")
        table.append(cells)
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    metric = ("val MAE (target units), lower is better" if regression
              else "val accuracy, higher is better")
    out = [f"== {case}: {metric}; budget {budget:g}s per contender"]
    for cells in [header, *table]:
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    for name, note in notes.items():
        out.append(f"  {name}: {note}")
    ours_rows = [j.name for j in jobs if j.run_dir is not None]
    peers = [j.name for j in jobs if j.run_dir is None]
    verdicts = {}
    for mine in ours_rows:
        losses = []
        for peer in peers:
            for mark in marks:
                a, b = best_at(rows[mine], mark), best_at(rows[peer], mark)
                if not not_worse(a, b, maximize):
                    losses.append(f"{peer}@{mark:g}s ({_fmt(a, regression)} vs "
                                  f"{_fmt(b, regression)})")
        verdicts[mine] = losses
        verdict = "YES" if not losses else f"NO, behind {len(losses)}x: " + ", ".join(losses[:6])
        more = f" (+{len(losses) - 6} more)" if len(losses) > 6 else ""
        out.append(f"summary {case}: {mine} at or above every peer at every checkpoint: "
                   f"{verdict}{more}")
    summary = {"checkpoints": marks, "targets": targets,
               "rows": {n: {"curve": c, "at": [best_at(c, m) for m in marks],
                            "time_to_target": [time_to_target(c, t, maximize) for t in targets]}
                        for n, c in rows.items()},
               "behind": verdicts}
    return out, summary


def run_jobs(jobs: list[Job], cpu_sets: list[set[int] | None], cores: int) -> None:
    """Run the jobs, ``len(cpu_sets)`` at a time, each on a free core set."""
    free = list(cpu_sets)
    lock = threading.Condition()
    threads = []

    def go(job: Job, cpus: set[int] | None) -> None:
        try:
            run_job(job, cpus, cores)
        finally:
            with lock:
                free.append(cpus)
                lock.notify_all()

    for job in jobs:
        with lock:
            while not free:
                lock.wait()
            cpus = free.pop(0)
        print(f"  running {job.case}/{job.name} on cpus {sorted(cpus) if cpus else 'all'} "
              f"for {job.budget:g}s ...", flush=True)
        thread = threading.Thread(target=go, args=(job, cpus))
        thread.start()
        threads.append(thread)
        if len(cpu_sets) == 1:
            thread.join()
    for thread in threads:
        thread.join()


def orchestrate(args: argparse.Namespace) -> int:
    started = time.time()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for spec in args.npz_case or []:
        cases.append(add_npz_case(spec))
    for name in cases:
        if name not in CASES and name not in MAKERS:
            raise SystemExit(f"error: unknown case {name!r}; choose from {', '.join(CASES)}")
    for name in contenders:
        if name not in CONTENDERS:
            raise SystemExit(f"error: unknown contender {name!r}; choose from "
                             f"{', '.join(CONTENDERS)}")
    checkpoints = [float(c) for c in args.checkpoints.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="search_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    available = sorted(os.sched_getaffinity(0))
    if args.cores > 0:
        need = args.cores * args.parallel
        if need > len(available):
            raise SystemExit(f"error: --cores {args.cores} x --parallel {args.parallel} needs "
                             f"{need} cores; this process may use {len(available)}")
        chosen = available[-need:]  # the last cores: core 0 usually carries the system's load
        cpu_sets: list[set[int] | None] = [set(chosen[i * args.cores:(i + 1) * args.cores])
                                           for i in range(args.parallel)]
    else:
        cpu_sets = [None] * args.parallel
    print(f"search_quality: cases {', '.join(cases)}; contenders {', '.join(contenders)}; "
          f"{args.cores or 'all'} core(s) each, {args.parallel} at a time; seed {args.seed}; "
          f"work dir {work}", flush=True)
    report: dict[str, Any] = {"args": vars(args), "cases": {}}
    printed: list[str] = []
    for case in cases:
        budget = args.budget if args.budget else DEFAULT_BUDGET.get(case, FALLBACK_BUDGET)
        regression = case in REGRESSION_CASES
        npz = write_case(case, work, args.seed)
        with np.load(npz) as archive:
            arrays = {k: archive[k] for k in archive.files}
            shapes = {k: list(v.shape) for k, v in arrays.items()}
        case_targets = [linear_mae(arrays)] if regression else targets
        print(f"{case}: {npz} {shapes}", flush=True)
        jobs = jobs_for(case, contenders, npz, work, budget, args.seed)
        run_jobs(jobs, cpu_sets, args.cores)
        for job in jobs:
            if job.run_dir is not None:
                ours_extras(job, regression)
        lines, summary = case_table(case, jobs, checkpoints, case_targets, regression,
                                    args.cores)
        if regression:
            lines.insert(1, f"  target: LinearRegression val MAE {case_targets[0]:.2f}")
        print("\n".join(lines), flush=True)
        printed.extend(lines)
        report["cases"][case] = {"npz": str(npz), "shapes": shapes, "budget": budget,
                                 "summary": summary,
                                 "contenders": {job.name: job.result for job in jobs}}
    total = time.time() - started
    report["total_s"] = total
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
        print(f"raw events: {args.out}")
    print(f"total run time {total:.0f}s")
    print("\n".join(line for line in printed if line.startswith("summary ")))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--npz-case", action="append", metavar="NAME=PATH",
                        help="one more case from your own .npz with x_train, y_train, x_val, "
                        "y_val (images: x of shape (n, H, W[, C]); a float y: regression); "
                        "repeatable, e.g. a held-back set")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per contender (default: 170 for digits28, 60 otherwise)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--cores", type=int, default=1,
                        help="cores per contender (0: no pinning, no thread limits)")
    parser.add_argument("--parallel", type=int, default=1, choices=(1, 2),
                        help="contenders run at once, on separate cores")
    parser.add_argument("--targets", default=",".join(f"{t:g}" for t in DEFAULT_TARGETS),
                        help="classification targets (regression: the LinearRegression MAE)")
    parser.add_argument("--checkpoints", default=",".join(f"{c:g}" for c in DEFAULT_CHECKPOINTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write every raw event to this JSON file")
    parser.add_argument("--work-dir", default=None, help="datasets and run dirs (default: tmp)")
    # worker mode (internal)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--regression", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.t0 is None:
            args.t0 = time.time()
        if args.budget is None:
            args.budget = FALLBACK_BUDGET
        WORKERS[args.worker](args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
