"""Stopping a search on SIGINT/SIGTERM; keeping the garbage collector off start-up objects.

Owns: :func:`stop_on_signals`, :func:`startup_objects_frozen`. Imports no TensorFlow.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[None]:
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
def startup_objects_frozen() -> Iterator[None]:
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
