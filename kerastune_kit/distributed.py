"""Parallel and distributed search on KerasTuner's chief/worker engine.

Owns: serving the oracle to worker processes over gRPC (KerasTuner's own ``OracleServicer`` and
``OracleClient``, reached through ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT`` and
``KERASTUNER_TUNER_ID``), ``--workers N`` on one machine, ``--role chief|worker`` across
machines, and the gaps of KerasTuner's engine that we close:

- a thread pool instead of a single-threaded server;
- heartbeats: workers report after every epoch; a worker that dies (its process exits, or it
  stays silent past ``worker_timeout``) has its trial re-queued once, then recorded as FAILED,
  and the search still ends — KerasTuner's chief would wait forever on the dead worker;
- the chief ends as soon as the oracle is done and no trial runs (no 20-second polling);
- device pinning: with GPUs, one visible GPU per worker, round robin; on CPU, the cores are
  split between the workers' thread pools so they do not oversubscribe the machine.

Does not own: what a trial does (``tuners``) or the results files (``tuning``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._backend import native_stderr_silenced, warm_up_tensorflow
from kerastune_kit._logging import get_logger
from kerastune_kit.errors import ConfigError
from kerastune_kit.kt_patches import patch_keras_tuner_protos
from kerastune_kit.results import TrialRecord
from kerastune_kit.trial_status import TrialStatus

logger = get_logger("distributed")

#: A re-queued trial gets this many more attempts after its worker died.
MAX_REQUEUES = 1


def parse_oracle_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``.

    Raises:
        ConfigError: Not ``HOST:PORT`` with a port in 1..65535.
    """
    host, sep, port_text = str(text).rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 < port < 65536:
        raise ConfigError(
            f"oracle: expected HOST:PORT such as 127.0.0.1:8000, received {text!r}"
        )
    return host, port


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_chief(host: str, port: int, timeout: float) -> None:
    """Block until a chief answers at ``host:port``.

    Raises:
        ConfigError: Nothing answered within ``timeout`` seconds (one line, exit status 2).
    """
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ConfigError(
            f"oracle: no chief answers at {host}:{port} (waited {timeout:g}s); start "
            f"`search --role chief --oracle {host}:{port}` first or fix the address"
        ) from None
    finally:
        channel.close()


def worker_environment(tuner_id: str, host: str, port: int, *, index: int, n_workers: int,
                       n_gpus: int) -> dict[str, str]:
    """Environment of one worker: KerasTuner's variables, its GPU, its share of the cores."""
    env = {
        "KERASTUNER_ORACLE_IP": host,
        "KERASTUNER_ORACLE_PORT": str(port),
        "KERASTUNER_TUNER_ID": tuner_id,
    }
    if n_gpus > 0:
        env["CUDA_VISIBLE_DEVICES"] = str(index % n_gpus)
    else:
        threads = max(1, (os.cpu_count() or 1) // max(1, n_workers))
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1",
                   OMP_NUM_THREADS=str(threads))
    return env


class ChiefServer:
    """Serves one oracle to workers, with heartbeats and re-queueing of dead workers' trials.

    Args:
        oracle: The chief's ``keras_tuner.Oracle``.
        host: Address to listen on (``127.0.0.1`` for ``--workers``; ``0.0.0.0`` to accept
            remote workers).
        port: Port to listen on.
        threads: gRPC server threads.
        worker_timeout: Seconds without a heartbeat after which a worker's trial is re-queued.
    """

    def __init__(self, oracle: Any, host: str, port: int, *, threads: int = 8,
                 worker_timeout: float = 600.0) -> None:
        from concurrent import futures

        import grpc
        from keras_tuner.src import protos
        from keras_tuner.src.distribute.oracle_chief import OracleServicer

        patch_keras_tuner_protos()
        self.oracle = oracle
        self.worker_timeout = worker_timeout
        self.lock = threading.RLock()
        self.last_seen: dict[str, float] = {}
        self.requeues: dict[str, int] = {}
        self.stop_triggered = False
        self.write_error: Exception | None = None
        server = self

        class Servicer(OracleServicer):
            """KerasTuner's servicer, serialized, recording who called and when."""

            def _call(self, name: str, request: Any, context: Any, tuner_id: str | None) -> Any:
                with server.lock:
                    if tuner_id:
                        server.last_seen[tuner_id] = time.time()
                    try:
                        response = getattr(OracleServicer, name)(self, request, context)
                    except Exception as exc:
                        _unlock_oracle(server.oracle)
                        server.note_write_error(exc)
                        raise
                    if self.stop_triggered:
                        server.stop_triggered = True
                    return response

            def CreateTrial(self, request, context):  # noqa: N802 - gRPC method name
                server.rescore_diverged()  # promotions and proposals see diverged trials last
                return self._call("CreateTrial", request, context, request.tuner_id)

            def GetTrial(self, request, context):  # noqa: N802
                return self._call("GetTrial", request, context,
                                  server.tuner_of(request.trial_id))

            def EndTrial(self, request, context):  # noqa: N802
                response = self._call("EndTrial", request, context,
                                      server.tuner_of(request.trial.trial_id))
                with server.lock:  # KerasTuner saves before it forgets the ongoing trial
                    try:
                        server.oracle.save()
                    except Exception as exc:
                        server.note_write_error(exc)
                        raise
                return response

            def UpdateTrial(self, request, context):  # noqa: N802
                return self._call("UpdateTrial", request, context,
                                  server.tuner_of(request.trial_id))

            def GetSpace(self, request, context):  # noqa: N802
                return self._call("GetSpace", request, context, None)

            def UpdateSpace(self, request, context):  # noqa: N802
                return self._call("UpdateSpace", request, context, None)

            def GetBestTrials(self, request, context):  # noqa: N802
                return self._call("GetBestTrials", request, context, None)

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
        protos.get_service_grpc().add_OracleServicer_to_server(Servicer(oracle), self._grpc)
        bound = self._grpc.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise ConfigError(
                f"oracle: cannot listen on {host}:{port}; pick a free port with --oracle"
            )
        self.address = (host, port)

    def start(self) -> None:
        """Start serving."""
        self._grpc.start()

    def stop(self) -> None:
        """Stop serving (waits up to a second for calls in flight)."""
        self._grpc.stop(grace=1.0)

    def rescore_diverged(self) -> None:
        """:func:`kerastune_kit.trial_report.rescore_diverged` on the chief's oracle."""
        from kerastune_kit.results import read_trial_records
        from kerastune_kit.trial_report import rescore_diverged

        with self.lock:
            try:
                rescore_diverged(self.oracle, read_trial_records(self.oracle._project_dir))
            except Exception as exc:
                _unlock_oracle(self.oracle)
                self.note_write_error(exc)
                raise

    def note_write_error(self, exc: BaseException) -> None:
        """Remember the first write error of a call (the chief then stops the search)."""
        from kerastune_kit.rundir import find_write_error, write_error

        error = find_write_error(exc)
        if error is not None and self.write_error is None:
            project_dir = getattr(self.oracle, "_project_dir", None)
            run_dir = os.path.dirname(project_dir) if project_dir else None
            self.write_error = write_error(error, run_dir, action="search")

    def tuner_of(self, trial_id: str) -> str | None:
        """The worker running ``trial_id``."""
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def done(self) -> bool:
        """The oracle has no more trials to hand out, none is running and none waits to be
        re-run (a re-queued trial of a dead worker)."""
        with self.lock:
            return (self.stop_triggered and not self.oracle.ongoing_trials
                    and not self.oracle._retry_queue)

    def release(self, tuner_id: str, reason: str, *, count: bool = True) -> str | None:
        """A worker is gone: re-queue its trial once, then record it as FAILED.

        Args:
            tuner_id: The worker.
            reason: What happened to it (``was killed by SIGKILL``), for the warning.
            count: Whether this counts as one of the trial's :data:`MAX_REQUEUES` (a stopped
                search re-queues without counting).

        Returns:
            The id of the trial it was running, if any.
        """
        with self.lock:
            self.oracle.tuner_ids.discard(tuner_id)
            self.last_seen.pop(tuner_id, None)
            trial = self.oracle.ongoing_trials.pop(tuner_id, None)
            if trial is None:
                return None
            attempts = self.requeues.get(trial.trial_id, 0)
            if attempts < MAX_REQUEUES or not count:
                self.requeues[trial.trial_id] = attempts + int(count)
                self.oracle._retry_queue.append(trial.trial_id)
                self.oracle.save()
                if count:
                    logger.warning("worker %s %s during trial %s; the trial is re-queued",
                                   tuner_id, reason, trial.trial_id)
            else:
                trial.status = TrialStatus.FAILED
                trial.message = f"its worker {tuner_id} {reason}, twice"
                self.oracle.ongoing_trials[tuner_id] = trial
                self.oracle.end_trial(trial)
                logger.warning("worker %s %s during trial %s, its second attempt; the trial "
                               "is recorded as FAILED", tuner_id, reason, trial.trial_id)
            return trial.trial_id

    def silent_workers(self) -> list[str]:
        """Workers running a trial that sent nothing for ``worker_timeout`` seconds."""
        now = time.time()
        with self.lock:
            return [tuner_id for tuner_id in list(self.oracle.ongoing_trials)
                    if now - self.last_seen.get(tuner_id, now) > self.worker_timeout]


def _unlock_oracle(oracle: Any) -> None:
    """Release KerasTuner's per-oracle lock left held by a call that raised.

    ``keras_tuner.synchronized`` acquires a module-level lock and sets the owning thread but
    releases neither when the wrapped method raises; the next call from another gRPC thread
    would then wait forever. Calls are serialized by :attr:`ChiefServer.lock`, so a lock owned
    by this thread after a failed call is a leak.
    """
    from keras_tuner.src.engine import oracle as oracle_module

    if oracle_module.THREADS.get(oracle) == threading.current_thread().name:
        oracle_module.THREADS[oracle] = None
        lock = oracle_module.LOCKS[oracle]
        if lock.locked():
            lock.release()


def _worker_main(job: Callable[..., str], env: dict[str, str], callbacks: Sequence[Any],
                 conn: Any, deadline: float | None, epochs: bool = False) -> None:
    """Entry point of one local worker process; it talks to the chief over its own pipe."""
    os.environ.update(env)
    from kerastune_kit.errors import WriteError
    from kerastune_kit.workers import exit_with_parent

    exit_with_parent()

    with native_stderr_silenced():
        warm_up_tensorflow()
    progress = {"on_epoch": lambda event: conn.send(("epoch", tuple(event)))} if epochs else {}
    try:
        reason = job(
            callbacks=callbacks, deadline=deadline,
            on_trial=lambda record: conn.send(("trial", record.to_json())), **progress,
        )
        message: tuple[str, str] = ("end", reason)
    except WriteError as exc:
        message = ("write_error", str(exc))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        message = ("error", f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):  # the chief is gone: nobody to tell
        conn.send(message)
        conn.close()


def _gpu_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


class _LocalWorker:
    """A worker process on this machine and the read end of its own pipe.

    One pipe per worker: a worker killed mid-message can only break its own pipe, never a lock
    that other workers need (a shared ``multiprocessing.Queue`` has one write lock for all
    writers, and a writer SIGKILLed while holding it hangs every other writer on exit).
    """

    def __init__(self, tuner_id: str, process: Any, conn: Any) -> None:
        self.tuner_id = tuner_id
        self.process = process
        self.conn: Any = conn
        self.ended_at: float | None = None  # when it said it finished
        self.signalled_at: float | None = None  # when it was asked to stop
        self.killed = False  # by the chief, which already said why

    def receive(self) -> list[tuple[str, Any]]:
        """Every message waiting in the pipe (no wait); closes the pipe at end of file."""
        messages = []
        while self.conn is not None:
            try:
                if not self.conn.poll(0):
                    break
                messages.append(self.conn.recv())
            except Exception:  # noqa: BLE001 - end of file, or a message cut by its death
                self.conn.close()
                self.conn = None
        return messages


#: Seconds a local worker may take to exit after it finished (or after the search ended)
#: before it is killed.
WORKER_EXIT_GRACE_S = 30.0
#: Seconds a local worker may take to stop after SIGTERM (it finishes its epoch) before it is
#: killed.
WORKER_STOP_GRACE_S = 120.0
#: Seconds past the time budget a worker may take to end its running trial at an epoch end
#: before it is asked to stop (and the trial is left for ``--resume``).
TIME_BUDGET_GRACE_S = 60.0


def serve_and_wait(
    tuner: Any,
    host: str,
    port: int,
    *,
    job: Callable[..., str],
    n_workers: int = 0,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    deadline: float | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    worker_timeout: float = 600.0,
    on_epoch: Callable[[Any], None] | None = None,
) -> str:
    """Serve ``tuner``'s oracle until the search ends; with ``n_workers``, run local workers.

    Every wait is bounded: a worker that dies has its trial re-queued (and is replaced); one
    silent for ``worker_timeout`` seconds during a trial is killed and its trial re-queued; one
    still alive :data:`WORKER_EXIT_GRACE_S` seconds after it finished or after the search ended,
    or :data:`WORKER_STOP_GRACE_S` seconds after it was asked to stop, is killed. Each of these
    is reported as a warning on the ``kerastune_kit`` logger (the CLI prints it).

    Args:
        job: What a local worker process runs: ``job(callbacks=, deadline=, on_trial=)``
            continues the search as a client of this chief (see
            :func:`kerastune_kit.workers.search_in_workers`); it must pickle.
        on_epoch: Called with each local worker's trial starts and epochs
            (:class:`~kerastune_kit.progress.EpochProgress`); ``job`` must then take
            ``on_epoch=`` too.

    Returns:
        Why it ended: ``finished``, ``time budget`` or ``interrupted``.

    Raises:
        WriteError: A worker or the chief could not write to the run directory (no space,
            read-only, no permission); the search is saved and ``--resume`` continues it.
    """
    from multiprocessing.connection import wait

    from kerastune_kit.errors import WriteError
    from kerastune_kit.workers import sigint_ignored

    tuner.oracle.verbose = 0
    server = ChiefServer(tuner.oracle, host, port, threads=max(4, 2 * n_workers + 2),
                         worker_timeout=worker_timeout)
    server.start()
    context = multiprocessing.get_context("spawn")
    workers: dict[str, _LocalWorker] = {}
    n_gpus = _gpu_count() if n_workers else 0
    spawned = 0
    respawns_left = n_workers  # replacements for workers that died while idle
    write_errors: list[str] = []

    def spawn(index: int) -> None:
        nonlocal spawned
        tuner_id = f"worker{spawned}"
        spawned += 1
        env = worker_environment(tuner_id, host if host != "0.0.0.0" else "127.0.0.1", port,
                                 index=index, n_workers=n_workers, n_gpus=n_gpus)
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_worker_main, name=f"kerastune-kit-{tuner_id}",
                                  args=(job, env, list(callbacks or []), writer, deadline,
                                        on_epoch is not None), daemon=True)
        with sigint_ignored():  # Ctrl-C reaches the chief, which stops its workers
            process.start()
        writer.close()  # the worker holds the only write end: its death is end of file here
        workers[tuner_id] = _LocalWorker(tuner_id, process, reader)

    def handle(worker: _LocalWorker) -> None:
        for kind, payload in worker.receive():
            if kind == "trial" and on_trial is not None:
                on_trial(TrialRecord.from_json(payload))
            elif kind == "epoch":
                if on_epoch is not None:
                    from kerastune_kit.progress import EpochProgress

                    on_epoch(EpochProgress(*payload))
            elif kind == "end":
                worker.ended_at = time.monotonic()
            elif kind == "write_error":
                write_errors.append(payload)
            elif kind == "error":
                logger.warning("worker %s failed: %s", worker.tuner_id, payload)

    reason = "finished"
    done_since: float | None = None
    try:
        for index in range(n_workers):
            spawn(index)
        while True:
            conns = [w.conn for w in workers.values() if w.conn is not None]
            if conns:
                wait(conns, timeout=0.2)
            else:
                time.sleep(0.2)
            for worker in list(workers.values()):
                handle(worker)
            if write_errors or server.write_error is not None:
                reason = "write error"
            elif stop_requested():
                reason = "interrupted"
            elif deadline is not None and time.time() >= deadline and reason == "finished":
                reason = "time budget"
            now = time.monotonic()
            for worker in list(workers.values()):
                if worker.process.is_alive():
                    continue
                handle(worker)
                worker.process.join(1)
                del workers[worker.tuner_id]
                code = worker.process.exitcode
                if code == 0 and server.done():
                    continue
                how = _describe_exit(code)
                # A stop leaves trials unfinished on purpose: re-queue without counting.
                trial_id = server.release(worker.tuner_id, how, count=reason == "finished")
                if code != 0 and trial_id is None and not worker.killed \
                        and worker.signalled_at is None:
                    logger.warning("worker %s %s while idle", worker.tuner_id, how)
                if reason == "finished" and not server.done() and (
                        trial_id is not None or (code != 0 and respawns_left > 0)):
                    if trial_id is None:
                        respawns_left -= 1
                    spawn(len(workers))
            for tuner_id in server.silent_workers():
                server.release(tuner_id, f"sent nothing for {worker_timeout:g}s; killed")
                if tuner_id in workers:
                    workers[tuner_id].killed = True
                    workers[tuner_id].process.kill()
            if server.done() and done_since is None:
                done_since = now
            # At the time budget, workers end their running trial at its next epoch end by
            # themselves (it counts); they are signalled only if one overstays that.
            patient = reason == "time budget" and deadline is not None \
                and time.time() < deadline + TIME_BUDGET_GRACE_S
            if reason != "finished" and not patient:
                for worker in workers.values():
                    if worker.signalled_at is None and worker.process.pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.process.pid, signal.SIGTERM)
                        worker.signalled_at = now
            for worker in workers.values():
                overdue = _overdue(worker, now, done_since)
                if overdue and worker.process.is_alive():
                    logger.warning("worker %s %s; killed", worker.tuner_id, overdue)
                    worker.killed = True
                    worker.process.kill()
            if not workers and (server.done() or n_workers or reason != "finished"):
                break  # (with local workers all gone, the oracle may still hold failed trials)
    finally:
        _end_all(list(workers.values()), handle)
        server.stop()
    if write_errors or server.write_error is not None:
        message = write_errors[0] if write_errors else server.write_error
        raise WriteError(str(message), getattr(message, "os_error", None))
    return reason


def _overdue(worker: _LocalWorker, now: float, done_since: float | None) -> str | None:
    """Why ``worker`` should have exited by ``now``, or None."""
    if worker.signalled_at is not None and now - worker.signalled_at > WORKER_STOP_GRACE_S:
        return f"did not stop {WORKER_STOP_GRACE_S:g}s after it was asked to"
    if worker.ended_at is not None and now - worker.ended_at > WORKER_EXIT_GRACE_S:
        return f"did not exit {WORKER_EXIT_GRACE_S:g}s after its last trial"
    if done_since is not None and now - done_since > WORKER_EXIT_GRACE_S:
        return f"did not exit {WORKER_EXIT_GRACE_S:g}s after the search ended"
    return None


def _end_all(workers: Sequence[_LocalWorker], handle: Callable[[_LocalWorker], None]) -> None:
    """Stop what is left: SIGTERM, up to 10 s together, then SIGKILL; never waits longer."""
    alive = [w for w in workers if w.process.is_alive()]
    for worker in alive:
        if worker.signalled_at is None:
            worker.process.terminate()
    ends = time.monotonic() + 10.0
    for worker in alive:
        worker.process.join(max(0.0, ends - time.monotonic()))
    for worker in workers:
        if worker.process.is_alive():
            logger.warning("worker %s did not stop; killed", worker.tuner_id)
            worker.process.kill()
            worker.process.join(5)
        handle(worker)
        if worker.conn is not None:
            worker.conn.close()


def _describe_exit(code: int | None) -> str:
    from kerastune_kit.workers import exit_text

    return "stopped answering" if code is None else exit_text(code)
