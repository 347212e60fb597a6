"""Running a search: validation, the run directory, processes, signals, the results.

Owns: :func:`run_search` (config -> validated inputs -> the run directory -> a KerasTuner search
in this process or in recycled worker processes -> results files), the run-directory checks
(``--overwrite``, ``--resume`` fingerprints) and stopping on SIGINT/SIGTERM. Does not own: the
tuner classes (``tuners``), the training loop (``training``) or reading results back
(``results``).

Example:
    >>> from kerastune_kit import SearchConfig, run_search
    >>> result = run_search(SearchConfig(data="iris", tuner="random", max_trials=3, max_epochs=3,
    ...                                  run_dir="runs/iris-demo", overwrite=True))
    >>> result.best_score
    0.96...
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit import __version__
from kerastune_kit._backend import warm_up_tensorflow  # noqa: F401 - re-exported for the CLI
from kerastune_kit._logging import get_logger
from kerastune_kit.config import (
    BRACKET_TUNERS,
    SearchConfig,
    load_saved_config,
    load_saved_fingerprint,
)
from kerastune_kit.data import Dataset, load_dataset
from kerastune_kit.errors import ConfigError, RunDirError, WriteError
from kerastune_kit.results import (
    BEST_HYPERPARAMETERS,
    BEST_MODEL,
    RUN_MARKER,
    TENSORBOARD_DIR,
    TrialRecord,
    write_json_atomic,
    write_text_atomic,
)
from kerastune_kit.rundir import (
    RunDirLock,
    check_run_dir_for_search,
    find_write_error,
    write_error,
)
from kerastune_kit.space import SearchSpace

logger = get_logger("tuning")



@dataclasses.dataclass
class SearchResult:
    """What a finished search produced.

    Attributes:
        run_dir: The run directory.
        objective: The objective's name; ``direction`` is ``min`` or ``max``.
        trials: Every trial, best first.
        best: The best completed (or pruned) trial, None when no trial completed.
        wall_time_s: Seconds the search took.
        stopped: Why the search stopped before its end (``time budget``,
            ``interrupted by SIGINT``), None when it ran to completion.
        exhausted: The number of distinct configurations when the oracle ran out of new
            ones before its budget (every point of the space was tried; Hyperband then
            still trains the best to ``max_epochs``); None otherwise.
    """

    run_dir: Path
    objective: str
    direction: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    wall_time_s: float
    stopped: str | None = None
    exhausted: int | None = None

    @property
    def best_score(self) -> float | None:
        """The best trial's score."""
        return self.best.score if self.best else None

    @property
    def best_hyperparameters(self) -> dict[str, Any]:
        """The best trial's hyperparameters (empty when no trial completed)."""
        return dict(self.best.hyperparameters) if self.best else {}


# ---------------------------------------------------------------------- run_search
def prepare(config: SearchConfig, *, check_run_dir: bool = True
            ) -> tuple[Dataset, SearchSpace, Any, str]:
    """Load and validate everything a search needs, writing nothing.

    Returns:
        ``(dataset, space, hypermodel, objective)``.

    Raises:
        ConfigError, DataError, RunDirError: Bad input, with a one-line message.
    """
    dataset = load_dataset(config.data, target=config.target, task=config.task,
                           validation_split=config.validation_split, seed=config.seed)
    from kerastune_kit.hypermodels import available_objectives, factory_for, task_head

    factory = factory_for(config.model, dataset)
    space = SearchSpace(config.overrides, family=factory.family)
    head = task_head(dataset.task, dataset.n_classes)
    saved = None
    if config.resume and not config.objective:  # the objective the run started with
        from kerastune_kit.runs import saved_objective

        saved = saved_objective(config.effective_run_dir())
    objective = config.objective or saved or head.default_objective
    choices = available_objectives(dataset.task)
    if objective not in choices:
        raise ConfigError(
            f"objective: {dataset.task} models report {', '.join(choices)}; received "
            f"{objective!r}; pass one of those to --objective"
        )
    hypermodel = factory.for_dataset(dataset, space, seed=config.seed)
    if check_run_dir:
        _check_run_dir(config, dataset, space)
    return dataset, space, hypermodel, objective


def _check_run_dir(config: SearchConfig, dataset: Dataset, space: SearchSpace, *,
                   locked: bool = False) -> None:
    if not check_run_dir_for_search(config, locked=locked) or not config.resume:
        return
    run_dir = config.effective_run_dir()
    saved_print = load_saved_fingerprint(run_dir)
    current = _fingerprint(dataset, space)
    if saved_print.get("data", current["data"]) != current["data"]:
        raise RunDirError(
            f"data: the data behind '{config.data}' changed since the search in '{run_dir}' "
            "started; resume with the same data or pass --overwrite"
        )
    if saved_print.get("space", current["space"]) != current["space"]:
        raise RunDirError(
            f"space: the search space changed since the search in '{run_dir}' started "
            "(another kerastune_kit version?); resume with the same space or pass --overwrite"
        )


def _read_marker(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _init_run_dir(config: SearchConfig, dataset: Dataset, space: SearchSpace,
                  objective: str) -> Path:
    """Create (or reuse, on resume) the run directory and write the configuration."""
    from kerastune_kit.rundir import empty_run_dir

    run_dir = config.effective_run_dir()
    if config.overwrite and run_dir.exists():
        empty_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    effective = dataclasses.replace(config, objective=objective)  # the default, resolved
    write_text_atomic(run_dir / "config.toml",
                      effective.to_toml(fingerprint=_fingerprint(dataset, space)))
    marker = _read_marker(run_dir) if config.resume else {}
    from kerastune_kit.hypermodels import objective_direction

    direction = objective_direction(objective)
    marker.update(version=__version__, dataset=dataset.summary(),
                  data_fingerprint=dataset.fingerprint(), objective=objective,
                  direction=direction)
    write_json_atomic(run_dir / RUN_MARKER, marker)
    _write_experiment_once(run_dir, space, hypermodel_metrics(dataset), objective=objective,
                           direction=direction, with_parent=config.tuner in BRACKET_TUNERS,
                           with_baseline=config.baselines and config.tuner != "grid")
    return run_dir


def hypermodel_metrics(dataset: Dataset) -> tuple[str, ...]:
    """The metric names a model for ``dataset`` reports."""
    from kerastune_kit.hypermodels import task_head

    return task_head(dataset.task, dataset.n_classes).metric_names


def _write_experiment_once(run_dir: Path, space: SearchSpace, metrics: Sequence[str], *,
                           objective: str, direction: str, with_parent: bool,
                           with_baseline: bool = False) -> None:
    """The HParams experiment config, written once per run directory (not per worker)."""
    from kerastune_kit.tensorboard import write_experiment_config

    root = run_dir / TENSORBOARD_DIR
    if not any(root.glob("events.out.tfevents.*")):
        write_experiment_config(root, space.hparam_domains(), metrics, objective=objective,
                                direction=direction, with_parent=with_parent,
                                with_baseline=with_baseline)


def _fingerprint(dataset: Dataset, space: SearchSpace) -> dict[str, str]:
    domains = {name: repr(domain) for name, domain in space.hparam_domains().items()}
    digest = hashlib.sha256(json.dumps(domains, sort_keys=True).encode()).hexdigest()[:16]
    return {"data": dataset.fingerprint(), "space": digest}


@contextlib.contextmanager
def _stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[None]:
    """SIGINT/SIGTERM ask the search to stop after its bookkeeping; a second SIGINT aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and signal.SIGINT in received:
            raise KeyboardInterrupt
        received.append(signum)
        request_stop("interrupted by " + signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _startup_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off the objects that outlive the search's trials.

    KerasTuner calls ``keras.backend.clear_session()`` before every trial, which runs a full
    ``gc.collect()``; with TensorFlow and Keras loaded that walked millions of objects, about a
    quarter of a second per trial (an eighth of a default search). Frozen objects (modules, the
    dataset, the tuner) are skipped; each trial's own garbage is still collected. They are
    unfrozen afterwards, for a search run from a user's own long-lived process.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def search_in_process(
    config: SearchConfig,
    *,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    deadline: float | None = None,
    trial_budget: int | None = None,
) -> str:
    """Run (part of) the search saved in the run directory, in this process.

    Returns:
        Why it ended: ``finished``, ``time budget``, ``worker budget`` or ``interrupted by …``.
    """
    from kerastune_kit.tuners import build_tuner, tuner_class

    dataset, _, hypermodel, objective = prepare(config, check_run_dir=False)
    tuner = build_tuner(config, hypermodel, objective=objective, on_trial=on_trial,
                        deadline=deadline, trial_budget=trial_budget)
    if config.resume and not tuner._is_worker():
        _requeue_write_failures(tuner)
    stopped = tuner_class("stopped")
    run_dir = config.effective_run_dir()
    with _startup_objects_frozen(), _stop_on_signals(tuner.kit_request_stop):
        try:
            tuner.search(
                dataset.x_train, dataset.y_train,
                validation_data=(dataset.x_val, dataset.y_val),
                epochs=config.max_epochs, callbacks=list(callbacks or []), verbose=0,
            )
        except stopped as exc:
            if exc.write_error is None:
                with _write_errors(run_dir, action="search"):
                    tuner.kit_abandon_running()
                    tuner.kit_write_leaderboard()
                return str(exc.reason)
            error = exc.write_error
        except Exception as exc:
            error = find_write_error(exc)
            if error is None:
                raise
        else:
            return "finished"
        # A write failed: the running trial stays unfinished (--resume runs it again); write
        # what still fits, then stop with the one-line error.
        with contextlib.suppress(Exception):
            tuner.kit_abandon_running()
        with contextlib.suppress(Exception):
            tuner.kit_write_leaderboard()
        raise write_error(error, run_dir, action="search")


def run_search(
    config: SearchConfig,
    *,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    workers: int = 0,
    role: str | None = None,
    oracle: str | None = None,
    worker_timeout: float = 600.0,
    on_start: Callable[[str], None] | None = None,
    deadline: float | None = None,
) -> SearchResult:
    """Run a complete search and write the results into the run directory.

    Everything is validated before anything is written. Searches longer than
    ``config.trials_per_worker`` trials run in worker processes replaced every that many trials,
    so memory stays flat. SIGINT/SIGTERM and ``config.max_time`` stop the search after its
    bookkeeping; the results are written and the run can be continued with ``resume=True``.
    Results (``leaderboard.csv``, ``best_hyperparameters.json``, ``best_model.keras``) are
    written atomically.

    Args:
        config: The search configuration.
        callbacks: Keras callbacks added to every trial (deep-copied per trial by KerasTuner;
            pickled when the trials run in worker processes).
        on_trial: Called with each finished trial's record (the CLI prints progress with it).
        workers: Run this many trials at once in worker processes on this machine, served by
            KerasTuner's chief/worker engine on 127.0.0.1.
        role: ``chief`` to serve the oracle at ``oracle`` to workers on other machines (the
            run directory must be on a file system they share); ``worker`` is
            :func:`run_worker`.
        oracle: ``HOST:PORT`` the chief listens on.
        worker_timeout: Seconds without a heartbeat after which a worker's trial is re-queued.
        on_start: Called once, before the first trial, with one line saying how the search
            chooses its trials (for a Bayesian search: how many start random).
        deadline: ``time.time()`` at which ``config.max_time`` ends; None: ``max_time``
            seconds from this call (the CLI counts from the command's start).

    Returns:
        The :class:`SearchResult`.
    """
    if role not in (None, "chief"):
        raise ConfigError(f"role: expected chief (or use run_worker), received {role!r}")
    if workers < 0:
        raise ConfigError(f"workers: expected 0 or more, received {workers!r}")
    if role == "chief" and not oracle:
        raise ConfigError("oracle: --role chief needs --oracle HOST:PORT to listen on")
    started = time.perf_counter()
    if deadline is None and config.max_time:
        deadline = time.time() + config.max_time
    dataset, space, hypermodel, objective = prepare(config)
    with RunDirLock(config.effective_run_dir(), action="search" if config.resume else "start"):
        # Checked again under the lock: a search that ended meanwhile may have filled it.
        _check_run_dir(config, dataset, space, locked=True)
        with _write_errors(config.effective_run_dir(),
                           action="search" if config.resume else "start"):
            run_dir = _init_run_dir(config, dataset, space, objective)
        logger.info("search: %s, %s tuner, objective %s, run directory %s",
                    dataset.summary(), config.tuner, objective, run_dir)
        from kerastune_kit.tuners import expected_trials, search_plan

        if on_start is not None:
            on_start(search_plan(config, hypermodel))

        with _write_errors(run_dir, action="search"):
            if workers or role == "chief":
                reason = _search_as_chief(config, hypermodel, objective, workers=workers,
                                          oracle=oracle, callbacks=callbacks, on_trial=on_trial,
                                          deadline=deadline, worker_timeout=worker_timeout)
            elif config.trials_per_worker and \
                    expected_trials(config) > config.trials_per_worker:
                from kerastune_kit.workers import search_in_workers

                reason = search_in_workers(config, callbacks=callbacks, on_trial=on_trial,
                                           deadline=deadline)
            else:
                reason = search_in_process(config, callbacks=callbacks, on_trial=on_trial,
                                           deadline=deadline)
            return finish_search(config, hypermodel, objective, started=started,
                                 stopped=None if reason == "finished" else reason)


def _requeue_write_failures(tuner: Any) -> None:
    requeued = tuner.kit_requeue_write_failures()
    if requeued:
        logger.warning("%s %s failed only because files could not be written; running %s again",
                       "trial" if len(requeued) == 1 else "trials", ", ".join(requeued),
                       "it" if len(requeued) == 1 else "them")


@contextlib.contextmanager
def _write_errors(path: Path, *, action: str) -> Iterator[None]:
    """Turn a failed write (no space, read-only, no permission) into a one-line WriteError."""
    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        error = find_write_error(exc)
        if error is None:
            raise
        raise write_error(error, path, action=action) from exc


def _search_as_chief(config: SearchConfig, hypermodel: Any, objective: str, *, workers: int,
                     oracle: str | None, callbacks: Sequence[Any] | None,
                     on_trial: Callable[[TrialRecord], None] | None, deadline: float | None,
                     worker_timeout: float) -> str:
    from kerastune_kit.distributed import free_port, parse_oracle_address, serve_and_wait
    from kerastune_kit.tuners import build_tuner

    host, port = parse_oracle_address(oracle) if oracle else ("127.0.0.1", free_port())
    tuner = build_tuner(config, hypermodel, objective=objective)
    if config.resume:
        _requeue_write_failures(tuner)
    tuner.save()  # the chief's state on disk: finish_search and --resume reload it
    stop: list[str] = []
    with _stop_on_signals(stop.append):
        reason = serve_and_wait(tuner, host, port, config=config, n_workers=workers,
                                callbacks=callbacks, on_trial=on_trial, deadline=deadline,
                                stop_requested=lambda: bool(stop),
                                worker_timeout=worker_timeout)
    tuner.save()
    return stop[0] if stop else reason


def run_worker(run_dir: str | Path, oracle: str, *, worker_id: str,
               on_trial: Callable[[TrialRecord], None] | None = None,
               connect_timeout: float = 30.0) -> list[TrialRecord]:
    """Run trials for the chief at ``oracle`` until it has none left (``--role worker``).

    The search settings come from ``RUN/config.toml``, written by the chief; the run directory
    must be the chief's, on a shared file system.

    Returns:
        The records of the trials this worker ran.

    Raises:
        ConfigError: No chief answers at ``oracle`` within ``connect_timeout`` seconds.
        RunDirError: ``run_dir`` holds no search started by a chief.
    """
    import os

    from kerastune_kit.distributed import parse_oracle_address, wait_for_chief, worker_environment

    host, port = parse_oracle_address(oracle)
    if not worker_id or not str(worker_id).replace("-", "").replace("_", "").isalnum():
        raise ConfigError(
            f"worker_id: expected letters, digits, - or _, received {worker_id!r}"
        )
    wait_for_chief(host, port, connect_timeout)
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise RunDirError(
            f"run_dir: '{run_dir}' holds no search; give the chief's --run-dir (it must be on "
            "a file system the workers share)"
        )
    saved = load_saved_config(run_dir)
    config = SearchConfig(**{**saved, "run_dir": str(run_dir), "overwrite": False,
                             "resume": True, "trials_per_worker": 0})
    os.environ.update(worker_environment(f"worker-{worker_id}", host, port, index=0,
                                         n_workers=1, n_gpus=0))
    mine: list[TrialRecord] = []

    def collect(record: TrialRecord) -> None:
        mine.append(record)
        if on_trial is not None:
            on_trial(record)

    search_in_process(config, on_trial=collect)
    return mine


def finish_search(config: SearchConfig, hypermodel: Any, objective: str, *, started: float,
                  stopped: str | None) -> SearchResult:
    """Write the leaderboard, the best configuration and the best model; build the result."""
    from kerastune_kit.tuners import build_tuner

    run_dir = config.effective_run_dir()
    tuner = build_tuner(config, hypermodel, objective=objective)
    records = tuner.kit_write_final_summary()
    best = next((r for r in records if r.has_model), None)
    if best is not None:
        write_json_atomic(run_dir / BEST_HYPERPARAMETERS, {
            "trial_id": best.trial_id, "objective": objective, "score": best.score,
            "best_epoch": best.best_epoch, "status": best.status,
            "hyperparameters": best.hyperparameters,
            "model_card": _model_card(hypermodel),
        })
        _save_best_model(tuner, hypermodel, best.trial_id, run_dir / BEST_MODEL)
    return SearchResult(run_dir=run_dir, objective=objective,
                        direction=tuner.oracle.objective.direction, trials=records, best=best,
                        wall_time_s=time.perf_counter() - started, stopped=stopped,
                        exhausted=None if stopped else _exhausted(config, tuner, records))


def _exhausted(config: SearchConfig, tuner: Any, records: Sequence[TrialRecord]) -> int | None:
    """How many distinct configurations there are, when the oracle ran out of new ones."""
    distinct = len({json.dumps(r.hyperparameters, sort_keys=True, default=str) for r in records})
    if config.tuner in BRACKET_TUNERS:  # its budget is brackets, not trials: the oracle knows
        ran_out = bool(getattr(tuner.oracle, "kit_exhausted", False))
    else:
        budget = config.effective_max_trials()
        ran_out = bool(budget) and len(records) < int(budget) and bool(records) and all(
            r.status != "RUNNING" for r in records)
    if ran_out:
        logger.info("the search space ran out: all %d distinct configurations were tried",
                    distinct)
    return distinct if ran_out else None


def _model_card(hypermodel: Any) -> dict[str, Any]:
    """What ``best_model.keras`` takes and returns, for ``best_hyperparameters.json``."""
    step = hypermodel.preprocessing
    head = hypermodel.head
    outputs = {"multiclass": f"class probabilities, shape (n, {head.units})",
               "binary": "probability of class 1, shape (n, 1)",
               "regression": "predicted values, shape (n, 1)"}[head.task]
    shape = ", ".join(map(str, hypermodel.input_shape))
    card: dict[str, Any] = {
        "inputs": f"raw features as in the data, shape (n, {shape})",
        "preprocessing": step.describe() if step is not None else {"kind": "none"},
        "outputs": outputs,
    }
    if getattr(hypermodel, "class_names", None):
        card["class_names"] = list(hypermodel.class_names)
    return card


def _save_best_model(tuner: Any, hypermodel: Any, trial_id: str, path: Path) -> None:
    """The best trial's network behind the data's preprocessing: it takes raw inputs."""
    from kerastune_kit._saving import save_model_atomically

    model = tuner.load_model(tuner.oracle.get_trial(trial_id))
    save_model_atomically(hypermodel.inference_model(model), path)
