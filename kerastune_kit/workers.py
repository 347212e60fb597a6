"""Recycled worker processes: flat memory over long searches.

Owns: running a search as a chain of worker processes, each running at most
``config.trials_per_worker`` trials of the search saved in the run directory and exiting; the
next one reloads the oracle from disk (the same mechanism as ``--resume``) and continues. Each
TensorFlow process leaks a few MiB per trial (traced functions, graph caches) even with
``keras.backend.clear_session()``; a fresh process returns all of it. Trial records travel to the
parent over a pipe of its own, so progress lines and ``on_trial`` callbacks work as in one process.
Does not own: what a trial does (``tuners``) or the results files (``tuning``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._backend import native_stderr_silenced, warm_up_tensorflow
from kerastune_kit._logging import get_logger
from kerastune_kit.errors import ConfigError, KerastuneKitError, WriteError
from kerastune_kit.results import TrialRecord

logger = get_logger("workers")


def exit_with_parent(interval: float = 1.0) -> None:
    """End this worker process soon after its parent dies (even by SIGKILL).

    A worker left behind would otherwise wait on a dead chief (KerasTuner's gRPC client waits
    up to an hour) or train for nobody. A daemon thread checks the parent every ``interval``
    seconds and ends the process with ``os._exit(1)``.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="kerastune-kit-parent-watch", daemon=True).start()


@contextlib.contextmanager
def sigint_ignored() -> Any:
    """Ignore SIGINT while starting a worker process, which keeps ignoring it for life.

    A Ctrl-C in a terminal goes to the whole process group; workers must not see it (it broke
    their imports with KeyboardInterrupt tracebacks). The parent handles it and stops its
    workers with SIGTERM. A signal disposition of SIG_IGN survives ``exec`` and Python leaves an
    ignored SIGINT ignored; a blocked mask would not (multiprocessing resets it). Only the main
    thread can change dispositions; elsewhere this does nothing. The cost: a Ctrl-C that lands in
    the milliseconds of ``Process.start()`` is ignored by the parent too (press it again).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_main(job: Callable[..., str], trial_budget: int | None,
                 callbacks: Sequence[Any], conn: Any, deadline: float | None,
                 epochs: bool = False) -> None:
    """Entry point of one worker process; it reports to the parent over its own pipe
    (with ``epochs``, each trial's start and epochs too: ``job`` then takes ``on_epoch``)."""
    exit_with_parent()

    with native_stderr_silenced():
        warm_up_tensorflow()
    progress = {"on_epoch": lambda event: conn.send(("epoch", tuple(event)))} if epochs else {}
    try:
        reason = job(
            callbacks=callbacks, deadline=deadline, trial_budget=trial_budget,
            on_trial=lambda record: conn.send(("trial", record.to_json())), **progress,
        )
        message: tuple[str, str] = ("end", reason)
    except WriteError as exc:
        message = ("write_error", str(exc))
    except KerastuneKitError as exc:
        message = ("error", str(exc))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        message = ("error", f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
        conn.send(message)
        conn.close()


#: Seconds a worker may take to exit after it reported its end (or after SIGTERM, to finish
#: its epoch) before it is killed.
EXIT_GRACE_S = 30.0
STOP_GRACE_S = 120.0
#: A worker that dies this many times in a row without finishing a trial ends the search.
MAX_WORKER_DEATHS = 3


def search_in_workers(
    job: Callable[..., str],
    *,
    trials_per_worker: int,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    deadline: float | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> str:
    """Run the search in a chain of worker processes until it ends.

    Args:
        job: Runs (part of) the search in a worker process: called there as ``job(callbacks=,
            deadline=, trial_budget=, on_trial=)``, it returns why it ended (``finished``,
            ``worker budget``, ...). It must pickle (a ``functools.partial`` of
            :func:`kerastune_kit.session.search_in_process` with the saved configuration, or a
            public tuner's resumable job).
        trials_per_worker: Trials each process runs before a fresh one replaces it.
        on_epoch: Called with each trial's start and epochs
            (:class:`~kerastune_kit.progress.EpochProgress`); ``job`` must then take
            ``on_epoch=`` too.

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
    stop: list[str] = []
    current: list[Any] = []

    def forward(signum: int, frame: Any) -> None:
        stop.append(signal.Signals(signum).name)
        for process in current:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    deaths = 0
    progressed = [False]  # the current worker finished a trial

    def relay(record: TrialRecord) -> None:
        progressed[0] = True
        if on_trial is not None:
            on_trial(record)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            if stop:
                return f"interrupted by {stop[0]}"
            progressed[0] = False
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(target=_worker_main, name="kerastune-kit-worker",
                                      args=(job, trials_per_worker, callbacks, writer,
                                            deadline, on_epoch is not None), daemon=True)
            current[:] = [process]
            with sigint_ignored():  # Ctrl-C reaches this process, which forwards SIGTERM
                process.start()
            writer.close()  # the worker holds the only write end: its death is end of file
            try:
                reason = _drain(process, reader, relay, stopping=lambda: bool(stop),
                                on_epoch=on_epoch)
            finally:
                reader.close()
                _reap(process)
                current.clear()
            if stop:  # the worker stopped (or was stopped) because we were asked to
                return f"interrupted by {stop[0]}"
            if reason is None:
                deaths = deaths + 1 if not progressed[0] else 1
                if deaths > MAX_WORKER_DEATHS:
                    raise RuntimeError(
                        f"a worker process {exit_text(process.exitcode)} {deaths} times in a "
                        "row without finishing a trial; the search is saved, continue it with "
                        "--resume"
                    )
                logger.warning("the worker process %s; starting a fresh one, which runs its "
                               "unfinished trial again", exit_text(process.exitcode))
                continue
            deaths = 0
            if reason != "worker budget":
                return reason
            logger.info("worker finished its %d trials; starting a fresh one",
                        trials_per_worker)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _drain(process: Any, conn: Any, on_trial: Callable[[TrialRecord], None] | None, *,
           stopping: Callable[[], bool],
           on_epoch: Callable[[Any], None] | None = None) -> str | None:
    """Relay a worker's messages until it ends; return its reason (None if it died).

    Bounded: a worker still alive :data:`EXIT_GRACE_S` seconds after its last message, or
    :data:`STOP_GRACE_S` seconds after a stop was requested, is killed.
    """
    reason = None
    ended_at: float | None = None
    stop_at: float | None = None
    while True:
        try:
            ready = conn.poll(0.2)
            message = conn.recv() if ready else None
        except (EOFError, OSError):  # the worker exited (or died): nothing more will come
            process.join(EXIT_GRACE_S if reason is not None else 5.0)
            return reason
        now = time.monotonic()
        if message is not None:
            kind, payload = message
            if kind == "trial" and on_trial is not None:
                on_trial(TrialRecord.from_json(payload))
            elif kind == "epoch":
                if on_epoch is not None:
                    from kerastune_kit.progress import EpochProgress

                    on_epoch(EpochProgress(*payload))
            elif kind == "end":
                reason, ended_at = payload, now
            elif kind == "write_error":
                raise WriteError(payload)
            elif kind == "error":
                raise _WorkerError(f"a worker process failed: {payload}")
            continue
        if stopping() and stop_at is None:
            stop_at = now
        overdue = (ended_at is not None and now - ended_at > EXIT_GRACE_S) or (
            stop_at is not None and now - stop_at > STOP_GRACE_S)
        if overdue and process.is_alive():
            logger.warning("the worker process did not exit in time; killed")
            process.kill()
            process.join(5)
            return reason


def _reap(process: Any) -> None:
    """Make sure ``process`` is gone: SIGTERM, 10 s, SIGKILL."""
    if process.is_alive():
        process.terminate()
        process.join(10)
    if process.is_alive():
        process.kill()
        process.join(5)


def exit_text(code: int | None) -> str:
    """How a process ended: ``was killed by SIGKILL``, ``exited with code 1``."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _WorkerError(RuntimeError):
    """A worker process failed; the message is the worker's error."""
