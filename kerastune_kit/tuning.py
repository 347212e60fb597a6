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

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit import __version__
from kerastune_kit._backend import (  # noqa: F401 - warm_up_tensorflow: for the CLI
    quiet_tensorflow_start,
    warm_up_tensorflow,
)
from kerastune_kit._logging import get_logger
from kerastune_kit.config import BRACKET_TUNERS, SearchConfig, load_saved_config
from kerastune_kit.data import Dataset
from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.progress import EpochProgress, SearchStart
from kerastune_kit.results import (
    TrialRecord,
)
from kerastune_kit.rundir import RunDir, RunDirLock
from kerastune_kit.session import (  # noqa: F401 - prepare is re-exported (it lived here)
    check_resume_data,
    fingerprint,
    load_config_dataset,
    prepare,
    requeue_write_failures,
    search_in_process,
    write_errors,
)
from kerastune_kit.space import SearchSpace
from kerastune_kit.stopping import stop_on_signals
from kerastune_kit.trial_status import TrialStatus

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
        test: The best trial scored on the held-out test split
            (:class:`kerastune_kit.final.TestEvaluation`: ``score``, ``validation_score``,
            ``gap``, ``metrics``, ``refit_score``); None without a test split.
        refit: What ``--refit`` trained (epochs, samples, seed, the model files); None without.
    """

    run_dir: Path
    objective: str
    direction: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    wall_time_s: float
    stopped: str | None = None
    exhausted: int | None = None
    test: Any = None
    refit: dict[str, Any] | None = None

    @property
    def test_score(self) -> float | None:
        """The best trial's score on the held-out test split (``test_accuracy`` for a
        ``val_accuracy`` objective), None without a test split."""
        return None if self.test is None else self.test.score

    @property
    def test_metrics(self) -> dict[str, float]:
        """Every test metric of the best trial (``test_loss``, ``test_accuracy``...)."""
        return {} if self.test is None else dict(self.test.metrics)

    @property
    def best_score(self) -> float | None:
        """The best trial's score."""
        return self.best.score if self.best else None

    @property
    def best_hyperparameters(self) -> dict[str, Any]:
        """The best trial's hyperparameters (empty when no trial completed)."""
        return dict(self.best.hyperparameters) if self.best else {}


def _init_run_dir(config: SearchConfig, dataset: Dataset, space: SearchSpace,
                  objective: str) -> Path:
    """Create (or reuse, on resume) the run directory and write the configuration."""
    from kerastune_kit.rundir import empty_run_dir

    run_dir = config.effective_run_dir()
    if config.overwrite and run_dir.exists():
        empty_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(run_dir)
    effective = dataclasses.replace(config, objective=objective)  # the default, resolved
    run.write_text(run.config, effective.to_toml(fingerprint=fingerprint(dataset, space)))
    marker = run.read_marker() if config.resume else {}
    from kerastune_kit.hypermodels import objective_direction

    direction = objective_direction(objective)
    marker.update(version=__version__, dataset=dataset.summary(),
                  preprocessing=dataset.preprocessing.describe(),
                  data_fingerprint=dataset.fingerprint(), objective=objective,
                  direction=direction)
    run.write_json(run.marker, marker)
    from kerastune_kit.tensorboard import write_experiment_config_once

    write_experiment_config_once(run.tensorboard_dir, space.hparam_domains(),
                                 hypermodel_metrics(dataset), objective=objective,
                                 direction=direction,
                                 with_parent=config.tuner in BRACKET_TUNERS,
                                 with_baseline=config.baselines and config.tuner != "grid")
    return run_dir


def hypermodel_metrics(dataset: Dataset) -> tuple[str, ...]:
    """The metric names a model for ``dataset`` reports."""
    from kerastune_kit.hypermodels import task_head

    return task_head(dataset.task, dataset.n_classes).metric_names


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
    on_begin: Callable[[SearchStart], None] | None = None,
    on_epoch: Callable[[EpochProgress], None] | None = None,
) -> SearchResult:
    """Run a complete search and write the results into the run directory.

    Everything is validated before anything is written. Searches longer than
    ``config.trials_per_worker`` trials run in worker processes replaced every that many trials,
    so memory stays flat. SIGINT/SIGTERM and ``config.max_time`` stop the search after its
    bookkeeping; the results are written and the run can be continued with ``resume=True``.
    Results (``leaderboard.csv``, ``best_hyperparameters.json``, ``best_model.keras``) are
    written atomically.

    TensorFlow's C++ start-up lines (oneDNN, the CUDA probe's ``failed call to cuInit``) are
    kept off stderr, as in the CLI, and ``TF_CPP_MIN_LOG_LEVEL`` defaults to ``2``; set the
    environment variable ``KERASTUNE_KIT_TF_LOGS=1`` to see TensorFlow's logs
    (:func:`kerastune_kit._backend.quiet_tensorflow_start`).

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
            chooses its trials (for a Bayesian search: how many start random); with
            ``config.refine``, also with each stage's line (:mod:`kerastune_kit.refine`); with
            ``config.preflight``, also with the preflight's lines (:mod:`kerastune_kit.preflight`).
        deadline: ``time.time()`` at which ``config.max_time`` ends; None: ``max_time``
            seconds from this call (the CLI counts from the command's start).
        on_begin: Called once, before ``on_start``'s first line, with a
            :class:`~kerastune_kit.progress.SearchStart` (the data, model, tuner, budget, run
            directory: the CLI's header).
        on_epoch: Called at each trial's start and after each of its epochs with an
            :class:`~kerastune_kit.progress.EpochProgress` (trial id, epoch numbered from 1,
            the epoch it trains to, the objective's latest value); from worker processes too
            (the CLI's live display).

    Returns:
        The :class:`SearchResult`.
    """
    if role not in (None, "chief"):
        raise ConfigError(f"role: expected chief (or use run_worker), received {role!r}")
    if workers < 0:
        raise ConfigError(f"workers: expected 0 or more, received {workers!r}")
    if role == "chief" and not oracle:
        raise ConfigError("oracle: --role chief needs --oracle HOST:PORT to listen on")
    if role == "chief" and config.refine:
        raise ConfigError(f"refine: --role chief runs one stage (its workers read RUN/"
                          f"config.toml), received --refine {config.refine}; use --workers N "
                          "on one machine, or drop --refine")
    started = time.perf_counter()
    if deadline is None and config.max_time:
        deadline = time.time() + config.max_time
    quiet_tensorflow_start()  # TensorFlow's C++ start-up lines kept off stderr, as in the CLI
    dataset, space, hypermodel, objective = prepare(config)
    with RunDirLock(config.effective_run_dir(), action="search" if config.resume else "start"):
        # Checked again under the lock: a search that ended meanwhile may have filled it.
        check_resume_data(config, dataset, space, locked=True)
        with write_errors(config.effective_run_dir(),
                           action="search" if config.resume else "start"):
            run_dir = _init_run_dir(config, dataset, space, objective)
        logger.info("search: %s, %s tuner, objective %s, run directory %s",
                    dataset.summary(), config.tuner, objective, run_dir)
        from kerastune_kit.plan import search_plan

        if on_begin is not None:
            from kerastune_kit.progress import search_start

            on_begin(search_start(config, dataset, hypermodel, objective))
        if on_start is not None:
            on_start(search_plan(config, hypermodel))
        if config.preflight is not False and not config.resume:  # checks before the budget
            from kerastune_kit.preflight import preflight_search

            with write_errors(run_dir, action="search"):
                preflight_search(config, dataset, hypermodel, run_dir, deadline=deadline,
                                 say=on_start)

        with write_errors(run_dir, action="search"):
            run_trials = functools.partial(_run_trials, workers=workers, role=role,
                                           oracle=oracle, callbacks=callbacks,
                                           worker_timeout=worker_timeout, on_epoch=on_epoch)
            if config.refine:  # coarse to fine: stage 1 here, then RUN/stages/<k>
                from kerastune_kit.refine import run_stages

                reason = run_stages(config, hypermodel, objective, run_trials,
                                    init_run_dir=_init_run_dir, deadline=deadline,
                                    on_trial=on_trial, on_start=on_start, on_epoch=on_epoch)
            else:
                reason = run_trials(config, hypermodel, objective, deadline=deadline,
                                    on_trial=on_trial)
            return finish_search(config, hypermodel, objective, started=started,
                                 stopped=None if reason == "finished" else reason,
                                 dataset=dataset)


def _run_trials(config: SearchConfig, hypermodel: Any, objective: str, *, workers: int,
                role: str | None, oracle: str | None, callbacks: Sequence[Any] | None,
                on_trial: Callable[[TrialRecord], None] | None, deadline: float | None,
                worker_timeout: float,
                on_epoch: Callable[[EpochProgress], None] | None = None) -> str:
    """The trials of one search (a chief's, in recycled worker processes, or in this process);
    returns why it ended (``finished``, ``time budget``, ``interrupted by SIGINT``)."""
    from kerastune_kit.plan import expected_trials

    if workers or role == "chief":
        return _search_as_chief(config, hypermodel, objective, workers=workers, oracle=oracle,
                                callbacks=callbacks, on_trial=on_trial, deadline=deadline,
                                worker_timeout=worker_timeout, on_epoch=on_epoch)
    if config.trials_per_worker and expected_trials(config) > config.trials_per_worker:
        from kerastune_kit.workers import search_in_workers

        resumed = dataclasses.replace(config, overwrite=False, resume=True)
        return search_in_workers(
            functools.partial(search_in_process, resumed),
            trials_per_worker=config.trials_per_worker, callbacks=callbacks,
            on_trial=on_trial, deadline=deadline, on_epoch=on_epoch)
    return search_in_process(config, callbacks=callbacks, on_trial=on_trial, deadline=deadline,
                             on_epoch=on_epoch)


def _search_as_chief(config: SearchConfig, hypermodel: Any, objective: str, *, workers: int,
                     oracle: str | None, callbacks: Sequence[Any] | None,
                     on_trial: Callable[[TrialRecord], None] | None, deadline: float | None,
                     worker_timeout: float,
                     on_epoch: Callable[[EpochProgress], None] | None = None) -> str:
    from kerastune_kit.distributed import free_port, parse_oracle_address, serve_and_wait
    from kerastune_kit.tuners import build_tuner

    host, port = parse_oracle_address(oracle) if oracle else ("127.0.0.1", free_port())
    tuner = build_tuner(config, hypermodel, objective=objective)
    if config.resume:
        requeue_write_failures(tuner)
    tuner.save()  # the chief's state on disk: finish_search and --resume reload it
    stop: list[str] = []
    with stop_on_signals(stop.append):
        resumed = dataclasses.replace(config, overwrite=False, resume=True,
                                      trials_per_worker=0)
        reason = serve_and_wait(tuner, host, port, n_workers=workers,
                                job=functools.partial(search_in_process, resumed),
                                callbacks=callbacks, on_trial=on_trial, deadline=deadline,
                                stop_requested=lambda: bool(stop),
                                worker_timeout=worker_timeout, on_epoch=on_epoch)
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
    if not RunDir(run_dir).config.is_file():
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
                  stopped: str | None, dataset: Dataset | None = None) -> SearchResult:
    """Write the leaderboard, the best configuration and the best model; build the result.

    ``dataset`` is the search's data, for the test evaluation and ``--refit``; None: loaded
    again from ``config`` when one of them needs it."""
    from kerastune_kit.tuners import build_tuner

    run_dir = config.effective_run_dir()
    tuner = build_tuner(config, hypermodel, objective=objective)
    records, best = tuner.kit_write_results()
    exhausted = None if stopped or config.refine else _exhausted(config, tuner, records)
    best_tuner, best_own = tuner, best  # the tuner of the best trial's stage, its own record
    if config.refine:  # coarse to fine: the results over every stage
        from kerastune_kit.refine import finish_stages

        records, best, best_tuner, best_own = finish_stages(config, tuner, records, objective)
    from kerastune_kit.final import evaluate_and_refit  # the test split, --refit

    final = evaluate_and_refit(config, best_tuner, best_own, stopped=stopped, step=len(records),
                               load_dataset=(functools.partial(load_config_dataset, config)
                                             if dataset is None else lambda: dataset),
                               trial_id=best.trial_id if best is not None else None)
    return SearchResult(run_dir=run_dir, objective=objective,
                        direction=tuner.oracle.objective.direction, trials=records, best=best,
                        wall_time_s=time.perf_counter() - started, stopped=stopped,
                        exhausted=exhausted, test=final.test, refit=final.refit)


def _exhausted(config: SearchConfig, tuner: Any, records: Sequence[TrialRecord]) -> int | None:
    """How many distinct configurations there are, when the oracle ran out of new ones."""
    distinct = len({json.dumps(r.hyperparameters, sort_keys=True, default=str) for r in records})
    if config.tuner in BRACKET_TUNERS:  # its budget is brackets, not trials: the oracle knows
        ran_out = bool(getattr(tuner.oracle, "kit_exhausted", False))
    else:
        budget = config.effective_max_trials()
        ran_out = bool(budget) and len(records) < int(budget) and bool(records) and all(
            r.status != TrialStatus.RUNNING for r in records)
    if ran_out:
        logger.info("the search space ran out: all %d distinct configurations were tried",
                    distinct)
    return distinct if ran_out else None
