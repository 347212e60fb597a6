"""Import Keras on the TensorFlow backend, or fail with a clear message."""

from __future__ import annotations

import os
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
