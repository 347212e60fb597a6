"""Fixed cost per trial: what a search pays before a trial learns anything.

Runs trials in one process the way KerasTuner does (``keras.backend.clear_session()`` and
``gc.collect()``, then ``hypermodel.build(hp)``, then ``hypermodel.fit(hp, model, x, y,
validation_data=..., epochs=E, callbacks=[...])``; see ``keras_tuner``'s
``Tuner._try_build``/``_build_and_fit_model``) with :class:`MLPHyperModel` on the bundled digits
data (64 features, 10 classes), and prints per-phase medians, CPU time and wall time:

- ``clear_session``: ``keras.backend.clear_session()`` + ``gc.collect()``;
- ``build``: ``hypermodel.build(hp)`` in all, and its parts ``compile`` (``Model.compile``),
  ``optimizer build`` (``optimizer.build``) and ``network`` (the rest: resolving the
  hyperparameters and building the layers);
- ``loop set-up``: ``TrainLoop(...)`` (metrics, gradient-health variables, fused update);
- ``initial eval``: the validation pass before training (``history.initial_logs``, which
  traces the eval pass);
- ``first epoch``: the first epoch's training (tracing the train pass + running it);
- ``steady epoch``: the median of the later epochs;
- ``validation``: the median per-epoch validation pass after the first;
- ``diagnostics``: reading the gradient health per epoch (median);
- ``fit other``: the rest of ``hypermodel.fit`` (data conversion, callbacks);

and two totals: ``fixed (brief)`` = build + (first epoch - steady epoch), the issue's
definition, and ``fixed (all)`` = the whole trial minus E x (steady epoch + steady
validation + steady diagnostics): every cost that does not scale with the epochs.

Trials: ``default`` repeats the default hyperparameters; ``random`` draws them from the
default space as KerasTuner's random oracle does (seeded). The first trial of the process
pays one-off costs (AutoGraph conversion, first traces) and is reported apart.

Before/after: ``--root DIR`` imports ``kerastune_kit`` from ``DIR`` (e.g. a copy of the
package before a change) instead of this checkout. Run both and compare::

    python benchmarks/trial_overhead.py --root /tmp/before --label before
    python benchmarks/trial_overhead.py --label after

``--compare`` runs the two in subprocesses, alternating, and prints them side by side.
The last line is ``fixed_cost_cpu_s=<default fixed (brief), CPU> fixed_cost_wall_s=<wall>``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PHASES = ("clear_session", "build", "network", "compile", "optimizer build", "loop set-up",
          "initial eval", "first epoch", "steady epoch", "validation", "diagnostics",
          "fit other", "trial", "fixed (brief)", "fixed (all)")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per kind (default 10)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per trial (default 4)")
    parser.add_argument("--kinds", default="default,random",
                        help="comma-separated: default, random")
    parser.add_argument("--root", default=None,
                        help="import kerastune_kit from this folder (default: this checkout)")
    parser.add_argument("--label", default="", help="a name for this run's column")
    parser.add_argument("--json", default=None, help="also write the medians to this file")
    parser.add_argument("--compare", default=None, metavar="BEFORE_ROOT",
                        help="run with --root BEFORE_ROOT and with this checkout, alternating "
                             "--repeats times, and print both side by side")
    parser.add_argument("--repeats", type=int, default=2,
                        help="with --compare: processes per side (default 2)")
    parser.add_argument("--profile", default=None,
                        help="write a cProfile of the non-first default trials to this file")
    parser.add_argument("--freeze-heap", action="store_true",
                        help="gc.freeze() the heap before the trials (what a tuner could do): "
                             "shows what KerasTuner's per-trial gc.collect() calls cost")
    return parser.parse_args()


# ---------------------------------------------------------------------- timing

class Clock:
    """Accumulates CPU (process) and wall time per phase for the current trial."""

    def __init__(self) -> None:
        self.trial: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._depth: dict[str, int] = defaultdict(int)

    def new_trial(self) -> None:
        self.trial = defaultdict(list)

    def wrap(self, owner: Any, attr: str, phase: str) -> None:
        original = getattr(owner, attr)
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if clock._depth[phase]:  # count the outermost call only (super().build ...)
                return original(*args, **kwargs)
            clock._depth[phase] += 1
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.trial[phase].append((time.process_time() - cpu,
                                           time.perf_counter() - wall))
                clock._depth[phase] -= 1

        timed.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, attr, timed)

    def measure(self, phase: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.trial[phase].append((time.process_time() - cpu, time.perf_counter() - wall))


def _sum(values: list[tuple[float, float]]) -> tuple[float, float]:
    return (sum(v[0] for v in values), sum(v[1] for v in values))


def _median(values: list[tuple[float, float]]) -> tuple[float, float]:
    if not values:
        return (0.0, 0.0)
    return (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))


def _sub(a: tuple[float, float], *others: tuple[float, float]) -> tuple[float, float]:
    return (a[0] - sum(o[0] for o in others), a[1] - sum(o[1] for o in others))


def summarize(record: dict[str, list[tuple[float, float]]], epochs: int
              ) -> dict[str, tuple[float, float]]:
    """One trial's phases (CPU, wall) from the raw timings."""
    out: dict[str, tuple[float, float]] = {}
    out["clear_session"] = _sum(record["clear_session"])
    build = _sum(record["build"])
    out["build"] = build
    out["compile"] = _sum(record["compile"])
    out["optimizer build"] = _sum(record["optimizer build"])
    out["network"] = _sub(build, out["compile"], out["optimizer build"])
    out["loop set-up"] = _sum(record["loop set-up"])
    evaluations = record["evaluate"]
    out["initial eval"] = evaluations[0] if evaluations else (0.0, 0.0)
    validations = evaluations[1:]
    epoch_times = record["epoch"]
    out["first epoch"] = epoch_times[0]
    steady = _median(epoch_times[1:]) if len(epoch_times) > 1 else epoch_times[0]
    out["steady epoch"] = steady
    steady_val = _median(validations[1:] or validations)
    out["validation"] = steady_val
    steady_diag = _median(record["diagnostics"][1:] or record["diagnostics"])
    out["diagnostics"] = steady_diag
    fit = _sum(record["fit"])
    out["fit other"] = _sub(fit, out["loop set-up"], _sum(evaluations), _sum(epoch_times),
                            _sum(record["diagnostics"]))
    trial = _sum(record["trial"])
    out["trial"] = trial
    out["fixed (brief)"] = _sub(_sub(build, (-out["first epoch"][0], -out["first epoch"][1])),
                                steady)
    per_epoch = (steady[0] + steady_val[0] + steady_diag[0],
                 steady[1] + steady_val[1] + steady_diag[1])
    out["fixed (all)"] = (trial[0] - epochs * per_epoch[0], trial[1] - epochs * per_epoch[1])
    return out


# ---------------------------------------------------------------------- the trials

def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root).resolve() if args.root else Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    import kerastune_kit

    if Path(kerastune_kit.__file__).resolve().parents[1] != root:
        raise SystemExit(f"imported kerastune_kit from {kerastune_kit.__file__}, not {root}")
    from kerastune_kit._backend import native_stderr_silenced

    with native_stderr_silenced():
        from kerastune_kit._backend import keras as _keras
        from kerastune_kit._backend import warm_up_tensorflow

        warm_up_tensorflow()
        keras = _keras()
    import keras_tuner as kt

    from kerastune_kit import diagnostics, training
    from kerastune_kit.data import load_dataset
    from kerastune_kit.hypermodels import MLPHyperModel

    clock = Clock()
    clock.wrap(keras.Model, "compile", "compile")
    for cls in {keras.optimizers.Adam, keras.optimizers.AdamW, keras.optimizers.RMSprop,
                keras.optimizers.SGD, keras.optimizers.Optimizer}:
        clock.wrap(cls, "build", "optimizer build")
    clock.wrap(training.TrainLoop, "__init__", "loop set-up")
    clock.wrap(training.TrainLoop, "_evaluate", "evaluate")
    clock.wrap(training.TrainLoop, "_array_epoch", "epoch")
    clock.wrap(diagnostics.GradientHealth, "to_python", "diagnostics")

    data = load_dataset("digits")
    hypermodel = MLPHyperModel.for_dataset(data)
    space_hp = kt.HyperParameters()
    hypermodel.build(space_hp)  # registers the whole default space

    class EpochLogs(keras.callbacks.Callback):  # epoch hooks only, as KerasTuner's callbacks
        def __init__(self) -> None:
            super().__init__()
            self.logs: list[dict[str, float]] = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.logs.append(dict(logs or {}))

    seed_state = [1234]

    def random_hp() -> Any:
        hps = kt.HyperParameters()
        for hp in space_hp.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.random_sample(seed_state[0])
                seed_state[0] += 1
        return hps

    def trial(hp: Any) -> dict[str, tuple[float, float]]:
        clock.new_trial()
        cpu, wall = time.process_time(), time.perf_counter()
        clock.measure("clear_session", lambda: (keras.backend.clear_session(), gc.collect()))
        model = clock.measure("build", hypermodel.build, hp)
        clock.measure("fit", hypermodel.fit, hp, model, data.x_train, data.y_train,
                      validation_data=(data.x_val, data.y_val), epochs=args.epochs,
                      callbacks=[EpochLogs()])
        clock.trial["trial"].append((time.process_time() - cpu, time.perf_counter() - wall))
        return summarize(clock.trial, args.epochs)

    if args.freeze_heap:
        gc.collect()
        gc.freeze()
    results: dict[str, Any] = {"label": args.label or str(root), "kinds": {}}
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        per_trial = []
        for i in range(args.trials):
            hp = kt.HyperParameters() if kind == "default" else random_hp()
            if profiler is not None and kind == "default" and i > 0:
                profiler.enable()
            per_trial.append(trial(hp))
            if profiler is not None:
                profiler.disable()
        results["kinds"][kind] = {
            "first": per_trial[0],
            "median": {phase: _median([t[phase] for t in per_trial[1:] or per_trial])
                       for phase in PHASES},
        }
    if profiler is not None:
        profiler.dump_stats(args.profile)
    return results


# ---------------------------------------------------------------------- printing

def _table(columns: list[tuple[str, dict[str, tuple[float, float]]]]) -> str:
    head = f"{'phase (ms)':<17}" + "".join(f"{name:>22}" for name, _ in columns)
    sub = f"{'':<17}" + "".join(f"{'cpu':>11}{'wall':>11}" for _ in columns)
    lines = [head, sub]
    for phase in PHASES:
        row = f"{phase:<17}"
        for _, values in columns:
            cpu, wall = values.get(phase, (float("nan"), float("nan")))
            row += f"{cpu * 1e3:>11.1f}{wall * 1e3:>11.1f}"
        lines.append(row)
    return "\n".join(lines)


def print_results(all_results: list[dict[str, Any]]) -> None:
    kinds = list(all_results[0]["kinds"])
    for kind in kinds:
        print(f"\n== {kind} hyperparameters: median over trials 2..N (CPU and wall, ms)")
        print(_table([(r["label"], r["kinds"][kind]["median"]) for r in all_results]))
        print(f"-- {kind}: the process's first trial")
        print(_table([(r["label"], r["kinds"][kind]["first"]) for r in all_results]))


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over several processes of the same side."""
    merged: dict[str, Any] = {"label": runs[0]["label"], "kinds": {}}
    for kind in runs[0]["kinds"]:
        merged["kinds"][kind] = {
            part: {phase: _median([tuple(r["kinds"][kind][part][phase]) for r in runs])
                   for phase in PHASES}
            for part in ("first", "median")
        }
    return merged


def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    sides: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for _ in range(args.repeats):
        for label, root in (("before", args.compare), ("after", None)):
            out = Path(f"/tmp/trial_overhead_{os.getpid()}_{label}.json")
            command = [sys.executable, __file__, "--trials", str(args.trials), "--epochs",
                       str(args.epochs), "--kinds", args.kinds, "--label", label,
                       "--json", str(out), *(["--freeze-heap"] if args.freeze_heap else [])]
            if root:
                command += ["--root", root]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            sides[label].append(json.loads(out.read_text()))
            out.unlink()
    return [_merge(sides["before"]), _merge(sides["after"])]


def main() -> None:
    args = _parse()
    if args.compare:
        results = compare(args)
    else:
        results = [run(args)]
        if args.json:
            Path(args.json).write_text(json.dumps(results[0]))
    print_results(results)
    last = results[-1]["kinds"].get("default") or next(iter(results[-1]["kinds"].values()))
    cpu, wall = last["median"]["fixed (brief)"]
    print(f"fixed_cost_cpu_s={cpu:.3f} fixed_cost_wall_s={wall:.3f}")


if __name__ == "__main__":
    main()
