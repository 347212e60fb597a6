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

import multiprocessing
import os
import queue as queue_module
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._backend import native_stderr_silenced, warm_up_tensorflow
from kerastune_kit._logging import get_logger
from kerastune_kit.config import SearchConfig
from kerastune_kit.errors import ConfigError
from kerastune_kit.results import TrialRecord

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
        server = self

        class Servicer(OracleServicer):
            """KerasTuner's servicer, serialized, recording who called and when."""

            def _call(self, name: str, request: Any, context: Any, tuner_id: str | None) -> Any:
                with server.lock:
                    if tuner_id:
                        server.last_seen[tuner_id] = time.time()
                    response = getattr(OracleServicer, name)(self, request, context)
                    if self.stop_triggered:
                        server.stop_triggered = True
                    return response

            def CreateTrial(self, request, context):  # noqa: N802 - gRPC method name
                return self._call("CreateTrial", request, context, request.tuner_id)

            def GetTrial(self, request, context):  # noqa: N802
                return self._call("GetTrial", request, context,
                                  server.tuner_of(request.trial_id))

            def EndTrial(self, request, context):  # noqa: N802
                response = self._call("EndTrial", request, context,
                                      server.tuner_of(request.trial.trial_id))
                with server.lock:  # KerasTuner saves before it forgets the ongoing trial
                    server.oracle.save()
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

    def tuner_of(self, trial_id: str) -> str | None:
        """The worker running ``trial_id``."""
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def done(self) -> bool:
        """The oracle has no more trials to hand out and none is running."""
        with self.lock:
            return self.stop_triggered and not self.oracle.ongoing_trials

    def release(self, tuner_id: str, reason: str) -> str | None:
        """A worker is gone: re-queue its trial once, then record it as FAILED.

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
            if attempts < MAX_REQUEUES:
                self.requeues[trial.trial_id] = attempts + 1
                self.oracle._retry_queue.append(trial.trial_id)
                self.oracle.save()
                logger.warning("trial %s: its worker %s %s; re-queued", trial.trial_id,
                               tuner_id, reason)
            else:
                trial.status = "FAILED"
                trial.message = f"its worker {tuner_id} {reason}, twice"
                self.oracle.ongoing_trials[tuner_id] = trial
                self.oracle.end_trial(trial)
                logger.warning("trial %s: its worker %s %s again; recorded as FAILED",
                               trial.trial_id, tuner_id, reason)
            return trial.trial_id

    def silent_workers(self) -> list[str]:
        """Workers running a trial that sent nothing for ``worker_timeout`` seconds."""
        now = time.time()
        with self.lock:
            return [tuner_id for tuner_id in list(self.oracle.ongoing_trials)
                    if now - self.last_seen.get(tuner_id, now) > self.worker_timeout]


def patch_keras_tuner_protos() -> None:
    """Fix two bugs of KerasTuner 1.4.8's gRPC messages, which the chief/worker engine uses.

    - ``conditions.Parent.to_proto`` prints its first value: every call that carries the search
      space printed lines like ``2`` and ``True``. The replacement builds the same message.
    - ``HyperParameters.from_proto`` registers the space before setting the values, so a
      conditional value whose parent's *default* satisfies the condition survives although the
      trial's real value does not (``units_1`` on a one-layer trial). The replacement drops
      inactive values and fills missing active ones, as KerasTuner does everywhere else.
    """
    from keras_tuner.src import protos
    from keras_tuner.src.engine import conditions
    from keras_tuner.src.engine.hyperparameters import HyperParameters

    if getattr(conditions.Parent.to_proto, "_kerastune_kit", False):
        return
    original_from_proto = HyperParameters.from_proto.__func__

    @classmethod  # type: ignore[misc]
    def from_proto(cls: Any, proto: Any) -> Any:
        hps = original_from_proto(cls, proto)
        hps.ensure_active_values()
        return hps

    HyperParameters.from_proto = from_proto

    def to_proto(self: Any) -> Any:
        proto = protos.get_proto()
        first = self.values[0]
        if isinstance(first, str):
            values = [proto.Value(string_value=v) for v in self.values]
        elif isinstance(first, bool):
            values = [proto.Value(boolean_value=v) for v in self.values]
        elif isinstance(first, int):
            values = [proto.Value(int_value=v) for v in self.values]
        else:
            values = [proto.Value(float_value=v) for v in self.values]
        return proto.Condition(parent=proto.Condition.Parent(name=self.name, values=values))

    to_proto._kerastune_kit = True  # type: ignore[attr-defined]
    conditions.Parent.to_proto = to_proto


def _worker_main(config: SearchConfig, env: dict[str, str], callbacks: Sequence[Any],
                 messages: Any, deadline: float | None) -> None:
    """Entry point of one local worker process."""
    os.environ.update(env)
    from kerastune_kit.tuning import search_in_process

    with native_stderr_silenced():
        warm_up_tensorflow()
    try:
        reason = search_in_process(
            config, callbacks=callbacks, deadline=deadline,
            on_trial=lambda record: messages.put(("trial", record.to_json())),
        )
        messages.put(("end", reason))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        messages.put(("error", f"{type(exc).__name__}: {exc}"))


def _gpu_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def serve_and_wait(
    tuner: Any,
    host: str,
    port: int,
    *,
    config: SearchConfig,
    n_workers: int = 0,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    deadline: float | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    worker_timeout: float = 600.0,
) -> str:
    """Serve ``tuner``'s oracle until the search ends; with ``n_workers``, run local workers.

    Returns:
        Why it ended: ``finished``, ``time budget`` or ``interrupted``.
    """
    tuner.oracle.verbose = 0
    server = ChiefServer(tuner.oracle, host, port, threads=max(4, 2 * n_workers + 2),
                         worker_timeout=worker_timeout)
    server.start()
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    processes: dict[str, Any] = {}
    n_gpus = _gpu_count() if n_workers else 0
    resumed = SearchConfig(**{**config.to_dict(), "overwrite": False, "resume": True,
                              "trials_per_worker": 0})
    spawned = 0

    def spawn(index: int) -> None:
        nonlocal spawned
        tuner_id = f"worker{spawned}"
        spawned += 1
        env = worker_environment(tuner_id, host if host != "0.0.0.0" else "127.0.0.1", port,
                                 index=index, n_workers=n_workers, n_gpus=n_gpus)
        process = context.Process(target=_worker_main, name=f"kerastune-kit-{tuner_id}",
                                  args=(resumed, env, list(callbacks or []), messages, deadline))
        process.start()
        processes[tuner_id] = process

    reason = "finished"
    signalled: set[str] = set()
    try:
        for index in range(n_workers):
            spawn(index)
        while True:
            _relay(messages, on_trial, timeout=0.2)
            if stop_requested():
                reason = "interrupted"
            if deadline is not None and time.time() >= deadline:
                reason = "time budget"
            for tuner_id, process in list(processes.items()):
                if not process.is_alive():
                    del processes[tuner_id]
                    if process.exitcode != 0 or not server.done():
                        trial_id = server.release(tuner_id, f"exited (code {process.exitcode})")
                        if trial_id is not None and reason == "finished" and not server.done():
                            spawn(len(processes))
            for tuner_id in server.silent_workers():
                server.release(tuner_id, f"sent nothing for {worker_timeout:g}s")
                if tuner_id in processes:
                    processes.pop(tuner_id).terminate()
            if server.done() and not processes:
                break
            if n_workers and not processes:
                break  # every local worker ended (the oracle may still hold failed trials)
            if reason != "finished" and not processes:
                break
            if reason != "finished":
                for tuner_id, process in processes.items():
                    if tuner_id not in signalled and process.is_alive() and process.pid:
                        os.kill(process.pid, signal.SIGTERM)
                        signalled.add(tuner_id)
    finally:
        for process in processes.values():
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        _relay(messages, on_trial, timeout=0.1)
        server.stop()
    return reason


def _relay(messages: Any, on_trial: Callable[[TrialRecord], None] | None, *,
           timeout: float) -> None:
    try:
        kind, payload = messages.get(timeout=timeout)
    except queue_module.Empty:
        return
    while True:
        if kind == "trial" and on_trial is not None:
            on_trial(TrialRecord.from_json(payload))
        elif kind == "error":
            logger.warning("a worker failed: %s", payload)
        try:
            kind, payload = messages.get_nowait()
        except queue_module.Empty:
            return
