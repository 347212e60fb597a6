"""Import Keras on the TensorFlow backend, or fail with a clear message."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from kerastune_kit.errors import BackendError


def keras() -> Any:
    """Return the ``keras`` module, checked to run on TensorFlow.

    Raises:
        BackendError: ``KERAS_BACKEND`` (or ``~/.keras/keras.json``) names another backend.
    """
    requested = os.environ.get("KERAS_BACKEND")
    if requested and requested != "tensorflow":
        raise BackendError(
            f"KERAS_BACKEND: kerastune_kit runs on TensorFlow, received {requested!r}; "
            "unset KERAS_BACKEND or set KERAS_BACKEND=tensorflow"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras as keras_module

    backend = keras_module.backend.backend()
    if backend != "tensorflow":
        raise BackendError(
            f"keras backend: kerastune_kit runs on TensorFlow, but Keras is configured for "
            f"{backend!r} (see ~/.keras/keras.json); set KERAS_BACKEND=tensorflow"
        )
    return keras_module


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Silence what TensorFlow's C++ runtime prints to stderr while it starts up.

    TensorFlow writes start-up notices (oneDNN, CUDA probing) straight to file descriptor 2,
    bypassing Python's logging and ``TF_CPP_MIN_LOG_LEVEL``. Python exceptions are unaffected:
    they propagate and print after the descriptor is restored.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def warm_up_tensorflow() -> list[str]:
    """Import TensorFlow and initialise its devices now; returns the device names."""
    keras()
    import tensorflow as tf

    return [device.name for device in tf.config.list_logical_devices()]


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
