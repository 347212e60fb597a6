"""Import Keras on the TensorFlow backend, or fail with a clear message; keep TensorFlow's
C++ start-up notices off the terminal.

Owns: :func:`keras` (the checked import) and :func:`tensorflow`, both of which import
TensorFlow and initialise its devices with its C++ log lines filtered out of stderr the first
time (:func:`quiet_tensorflow_start` does the same for callers that want no module back),
:func:`native_stderr_silenced` (that filter around any block) and :data:`TF_LOGS_ENV`, the
switch that shows TensorFlow's logs again.

TensorFlow 2.16+ writes its start-up notices (``oneDNN custom operations are on``, ``Could not
find cuda drivers``, ``failed call to cuInit``, ``This TensorFlow binary is optimized``) through
absl logging straight to file descriptor 2, before ``absl::InitializeLog()``, so
``TF_CPP_MIN_LOG_LEVEL`` does not hide all of them; and each of its two native libraries
(``libtensorflow_framework.so.2`` and ``libtensorflow_cc.so.2``) carries its own copy, so one
``import tensorflow`` prints them twice. Only a redirect of descriptor 2 catches them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from kerastune_kit.errors import BackendError

#: Set to ``1`` to see TensorFlow's own logs: kerastune_kit then neither filters TensorFlow's
#: C++ lines from stderr nor defaults ``TF_CPP_MIN_LOG_LEVEL`` to ``2``, and TensorFlow logs
#: as it would on its own. (The CLI's ``--debug`` lifts the filter for one command.)
TF_LOGS_ENV = "KERASTUNE_KIT_TF_LOGS"

#: A line TensorFlow's C++ runtime logs: absl/glog's ``I0000 00:00:1796061908.585 29259
#: port.cc:153] ...`` (and ``W``, ``E``, ``F``), TensorFlow < 2.16's ``2024-05-01
#: 12:00:00.123456: I tensorflow/...``, absl's notice before ``InitializeLog`` and the second
#: line of ``cpu_feature_guard``'s notice.
TF_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate "
    r"compiler flags)")


def tensorflow_logs_shown() -> bool:
    """Whether :data:`TF_LOGS_ENV` asks for TensorFlow's own logs (``1``, ``true``, ``yes``)."""
    return os.environ.get(TF_LOGS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def keras() -> Any:
    """Return the ``keras`` module, checked to run on TensorFlow.

    The first call imports Keras and TensorFlow and initialises TensorFlow's devices with
    TensorFlow's C++ log lines filtered out of stderr (:func:`native_stderr_silenced`), so every
    part of kerastune_kit that needs Keras starts TensorFlow quietly through here.

    Raises:
        BackendError: ``KERAS_BACKEND`` (or ``~/.keras/keras.json``) names another backend.
    """
    global _KERAS_STARTED
    requested = os.environ.get("KERAS_BACKEND")
    if requested and requested != "tensorflow":
        raise BackendError(
            f"KERAS_BACKEND: kerastune_kit runs on TensorFlow, received {requested!r}; "
            "unset KERAS_BACKEND or set KERAS_BACKEND=tensorflow"
        )
    if not tensorflow_logs_shown():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if _KERAS_STARTED:  # (checked and started already: no filter, nothing to print)
        import keras as keras_module

        return keras_module
    with native_stderr_silenced():
        import keras as keras_module

        backend = keras_module.backend.backend()
        if backend != "tensorflow":
            raise BackendError(
                f"keras backend: kerastune_kit runs on TensorFlow, but Keras is configured for "
                f"{backend!r} (see ~/.keras/keras.json); set KERAS_BACKEND=tensorflow"
            )
        tensorflow()  # the device probe (``failed call to cuInit`` without a GPU), filtered
    _KERAS_STARTED = True
    return keras_module


def tensorflow() -> Any:
    """Return the ``tensorflow`` module; the first call imports it and initialises its devices
    with its C++ log lines filtered out of stderr (:func:`native_stderr_silenced`).

    What code that needs TensorFlow but not Keras calls first, TensorBoard's event-file
    readers included (they load TensorFlow for its file system when it is installed).
    """
    global _TF_STARTED
    if not _TF_STARTED:
        if not tensorflow_logs_shown():
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with native_stderr_silenced():
            import tensorflow as tf

            tf.config.list_logical_devices()
        _TF_STARTED = True
    import tensorflow as tf

    return tf


_TF_STARTED = False
_KERAS_STARTED = False


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Keep TensorFlow's C++ log lines off stderr while the block runs (its start-up).

    TensorFlow writes start-up notices (oneDNN, CUDA probing) straight to file descriptor 2,
    bypassing Python's logging and ``TF_CPP_MIN_LOG_LEVEL``. For the block, descriptor 2 goes
    to a temporary file; afterwards every line that is not one of TensorFlow's
    (:data:`TF_LOG_LINE`) is written back to stderr, in order, and the dropped ones go to the
    ``kerastune_kit`` logger at DEBUG. Python exceptions propagate unchanged (their traceback
    prints after the descriptor is restored), and warnings or prints to stderr inside the
    block are kept.

    Args:
        enabled: False (the CLI's ``--debug``), or :data:`TF_LOGS_ENV` set: no filtering, in
            filters nested inside the block (:func:`keras`'s own) too.
    """
    global _UNFILTERED
    if not enabled:
        _UNFILTERED += 1
        try:
            yield
        finally:
            _UNFILTERED -= 1
        return
    if _UNFILTERED or tensorflow_logs_shown():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no stderr at all (pythonw, closed fd 2)
        yield
        return
    capture = tempfile.TemporaryFile()
    try:
        os.dup2(capture.fileno(), 2)
        yield
    finally:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        kept = _drop_tensorflow_lines(capture.read())
        capture.close()
        if kept:
            os.write(2, kept)


_UNFILTERED = 0  # depth of ``native_stderr_silenced(enabled=False)`` blocks now running


def _drop_tensorflow_lines(data: bytes) -> bytes:
    """``data`` without TensorFlow's C++ log lines (logged at DEBUG instead)."""
    if not data:
        return b""
    from kerastune_kit._logging import get_logger

    kept, dropped = [], []
    for line in data.splitlines(keepends=True):
        text = line.decode("utf-8", errors="replace")
        (dropped if TF_LOG_LINE.match(text) else kept).append(line)
    if dropped:
        logger = get_logger("tensorflow")
        for line in dropped:
            logger.debug("%s", line.decode("utf-8", errors="replace").rstrip())
    return b"".join(kept)


def quiet_tensorflow_start() -> None:
    """Import Keras and TensorFlow and initialise TensorFlow's devices with its C++ log lines
    filtered out of stderr (:func:`native_stderr_silenced`); the same as the first
    :func:`keras` call, which every entry point of the Python API makes before it uses
    TensorFlow.

    When kerastune_kit imports TensorFlow first, nothing of TensorFlow's start-up reaches
    stderr. When the program imported TensorFlow (or Keras) itself before, that import has
    printed its notices already and ``TF_CPP_MIN_LOG_LEVEL`` was read then; this still hides
    the device probe (``failed call to cuInit`` on a machine without a GPU) unless the program
    already ran a TensorFlow op or listed its devices. With :data:`TF_LOGS_ENV` set,
    TensorFlow starts as it would on its own (no filter, no default ``TF_CPP_MIN_LOG_LEVEL``).

    Raises:
        BackendError: Keras is configured for another backend (:func:`keras`).
    """
    keras()


def warm_up_tensorflow() -> list[str]:
    """Import TensorFlow and initialise its devices now; returns the device names."""
    keras()
    return [device.name for device in tensorflow().config.list_logical_devices()]


def plain_tf(fn: Any) -> Any:
    """Mark ``fn`` as plain TensorFlow code that AutoGraph must not convert.

    The compiled loops (``steps``) need AutoGraph for their Python ``for``/``while``/``if`` over
    tensors; the methods they call use ``tf.cond`` explicitly. AutoGraph's cache misses on
    bound methods of new objects, so without this mark every trial re-converted those methods
    and everything below them (~45 functions, about 0.2 s of each trial's start-up). Marking
    the methods the loops call directly is enough: what an unconverted function calls runs
    as plain Python.
    """
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)
