"""One search process: a configuration becomes its inputs, its tuner and a KerasTuner search.

Owns: :func:`prepare` (config -> dataset, space, factory, objective; validated, nothing
written), the resume checks against the run's fingerprints, :func:`search_in_process` (what the
CLI's process, a recycled worker process and a chief's local worker run). Does not own: the run
directory's first writes or the results files (``tuning``), processes (``workers``,
``distributed``), the tuner classes (``tuners``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._logging import get_logger
from kerastune_kit.config import SearchConfig, load_saved_fingerprint
from kerastune_kit.data import Dataset, load_dataset
from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.results import TrialRecord
from kerastune_kit.rundir import (  # noqa: F401 - write_errors is re-exported
    check_run_dir_for_search,
    find_write_error,
    write_error,
    write_errors,
)
from kerastune_kit.space import SearchSpace
from kerastune_kit.stopping import startup_objects_frozen, stop_on_signals

logger = get_logger("tuning")


def load_config_dataset(config: SearchConfig) -> Dataset:
    """The search's data: loaded, split (test, validation, train) and scaled as ``config``
    says; the same arrays every time (the splits are seeded)."""
    return load_dataset(config.data, target=config.target, task=config.task,
                        validation_split=config.validation_split,
                        test_split=config.test_split, seed=config.seed,
                        categorical_columns=config.categorical_columns,
                        numeric_columns=config.numeric_columns,
                        text_columns=config.text_columns)


def prepare(config: SearchConfig, *, check_run_dir: bool = True
            ) -> tuple[Dataset, SearchSpace, Any, str]:
    """Load and validate everything a search needs, writing nothing.

    Returns:
        ``(dataset, space, hypermodel, objective)``.

    Raises:
        ConfigError, DataError, RunDirError: Bad input, with a one-line message.
    """
    dataset = load_config_dataset(config)
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
        check_resume_data(config, dataset, space)
    return dataset, space, hypermodel, objective


def check_resume_data(config: SearchConfig, dataset: Dataset, space: SearchSpace, *,
                      locked: bool = False) -> None:
    if not check_run_dir_for_search(config, locked=locked) or not config.resume:
        return
    run_dir = config.effective_run_dir()
    saved_print = load_saved_fingerprint(run_dir)
    current = fingerprint(dataset, space)
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


def fingerprint(dataset: Dataset, space: SearchSpace) -> dict[str, str]:
    domains = {name: repr(domain) for name, domain in space.hparam_domains().items()}
    digest = hashlib.sha256(json.dumps(domains, sort_keys=True).encode()).hexdigest()[:16]
    return {"data": dataset.fingerprint(), "space": digest}


def requeue_write_failures(tuner: Any) -> None:
    requeued = tuner.kit_requeue_write_failures()
    if requeued:
        logger.warning("%s %s failed only because files could not be written; running %s again",
                       "trial" if len(requeued) == 1 else "trials", ", ".join(requeued),
                       "it" if len(requeued) == 1 else "them")


def search_in_process(
    config: SearchConfig,
    *,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    deadline: float | None = None,
    trial_budget: int | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> str:
    """Run (part of) the search saved in the run directory, in this process.

    ``on_epoch`` is called at each trial's start and after each of its epochs with a
    :class:`~kerastune_kit.progress.EpochProgress`.

    Returns:
        Why it ended: ``finished``, ``time budget``, ``worker budget`` or ``interrupted by …``.
    """
    from kerastune_kit.tuners import SearchStopped, build_tuner

    dataset, _, hypermodel, objective = prepare(config, check_run_dir=False)
    tuner = build_tuner(config, hypermodel, objective=objective, on_trial=on_trial,
                        deadline=deadline, trial_budget=trial_budget, on_epoch=on_epoch)
    if config.resume and not tuner._is_worker():
        requeue_write_failures(tuner)
    run_dir = config.effective_run_dir()
    with startup_objects_frozen(), stop_on_signals(tuner.kit_request_stop):
        try:
            tuner.search(
                dataset.x_train, dataset.y_train,
                validation_data=(dataset.x_val, dataset.y_val),
                epochs=config.max_epochs, callbacks=list(callbacks or []), verbose=0,
            )
        except SearchStopped as exc:
            if exc.write_error is None:
                with write_errors(run_dir, action="search"):
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
