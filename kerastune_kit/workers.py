"""Recycled worker processes: flat memory over long searches.

Owns: running a search as a chain of worker processes, each running at most
``config.trials_per_worker`` trials of the search saved in the run directory and exiting; the
next one reloads the oracle from disk (the same mechanism as ``--resume``) and continues. Each
TensorFlow process leaks a few MiB per trial (traced functions, graph caches) even with
``keras.backend.clear_session()``; a fresh process returns all of it. Trial records travel to the
parent over a queue, so progress lines and ``on_trial`` callbacks work as in one process.
Does not own: what a trial does (``tuners``) or the results files (``tuning``).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queue_module
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._backend import native_stderr_silenced, warm_up_tensorflow
from kerastune_kit._logging import get_logger
from kerastune_kit.config import SearchConfig
from kerastune_kit.errors import ConfigError, KerastuneKitError
from kerastune_kit.results import TrialRecord

logger = get_logger("workers")


def _worker_main(config: SearchConfig, callbacks: Sequence[Any], messages: Any,
                 deadline: float | None) -> None:
    """Entry point of one worker process."""
    from kerastune_kit.tuning import search_in_process

    with native_stderr_silenced():
        warm_up_tensorflow()
    try:
        reason = search_in_process(
            config, callbacks=callbacks, deadline=deadline,
            trial_budget=config.trials_per_worker,
            on_trial=lambda record: messages.put(("trial", record.to_json())),
        )
        messages.put(("end", reason))
    except KerastuneKitError as exc:
        messages.put(("error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        messages.put(("error", f"{type(exc).__name__}: {exc}"))


def search_in_workers(
    config: SearchConfig,
    *,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    deadline: float | None = None,
) -> str:
    """Run the search in a chain of worker processes until it ends.

    Returns:
        Why it ended: ``finished``, ``time budget`` or ``interrupted by …``.

    Raises:
        ConfigError: The callbacks cannot be sent to a worker process.
        RuntimeError: A worker died; the search is saved and ``--resume`` continues it.
    """
    callbacks = list(callbacks or [])
    try:
        pickle.dumps(callbacks)
    except Exception as exc:  # noqa: BLE001 - any pickling failure
        raise ConfigError(
            f"callbacks: cannot be sent to a worker process ({exc}); pass callbacks that "
            "pickle, or trials_per_worker=0 to run every trial in this process"
        ) from None
    context = multiprocessing.get_context("spawn")
    resumed = SearchConfig(**{**config.to_dict(), "overwrite": False, "resume": True})
    stop: list[str] = []
    current: list[Any] = []

    def forward(signum: int, frame: Any) -> None:
        stop.append(signal.Signals(signum).name)
        for process in current:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            if stop:
                return f"interrupted by {stop[0]}"
            messages = context.Queue()
            process = context.Process(target=_worker_main, name="kerastune-kit-worker",
                                      args=(resumed, callbacks, messages, deadline))
            current[:] = [process]
            process.start()
            reason = _drain(process, messages, on_trial)
            process.join()
            current.clear()
            if reason is None:
                raise RuntimeError(
                    f"a worker process exited with code {process.exitcode} before finishing "
                    "its trials; the search is saved, continue it with --resume"
                )
            if reason != "worker budget":
                return reason
            logger.info("worker finished its %d trials; starting a fresh one",
                        config.trials_per_worker)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _drain(process: Any, messages: Any, on_trial: Callable[[TrialRecord], None] | None
           ) -> str | None:
    """Relay a worker's messages until it ends; return its reason (None if it died)."""
    reason = None
    while True:
        try:
            kind, payload = messages.get(timeout=0.2)
        except queue_module.Empty:
            if not process.is_alive():
                try:  # messages sent just before exiting
                    kind, payload = messages.get(timeout=0.5)
                except queue_module.Empty:
                    return reason
            else:
                continue
        if kind == "trial" and on_trial is not None:
            on_trial(TrialRecord.from_json(payload))
        elif kind == "end":
            reason = payload
        elif kind == "error":
            process.join()
            raise _WorkerError(f"a worker process failed: {payload}")


class _WorkerError(RuntimeError):
    """A worker process failed; the message is the worker's error."""
