"""Model and weight files written in one piece: serialized in memory, then one atomic write.

Owns: :func:`save_weights_atomically` (what KerasTuner's per-trial checkpoint does) and
:func:`save_model_atomically` (``best_model.keras``). HDF5 writing straight to a full disk fails
half-way and leaves library state behind that crashed the interpreter at exit (a segmentation
fault after ``No space left on device``); here HDF5 only ever writes to memory, and the bytes
reach the disk through a plain Python write, whose failure is an ordinary ``OSError``
(``ENOSPC``) and leaves nothing half-written.
Does not own: where files go (``tuners``, ``tuning``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from kerastune_kit.results import atomic_path


def save_weights_atomically(model: Any, filepath: str | Path) -> None:
    """``model.save_weights(filepath)`` (a ``.weights.h5`` file), atomically.

    Raises:
        OSError: The file could not be written (``errno`` says why); ``filepath`` is unchanged.
    """
    try:
        from keras.src.saving.saving_lib import H5IOStore, _save_state
    except ImportError:  # another Keras layout: its own writer, straight to the file
        model.save_weights(str(filepath))
        return
    buffer = io.BytesIO()
    store = H5IOStore(buffer, mode="w")
    try:
        _save_state(model, weights_store=store, assets_store=None, inner_path="",
                    visited_saveables=set())
    finally:
        store.close()
    _write_bytes(filepath, buffer.getvalue())


def save_model_atomically(model: Any, filepath: str | Path) -> None:
    """``model.save(filepath)`` (a ``.keras`` archive), atomically.

    Raises:
        OSError: The file could not be written; ``filepath`` is unchanged.
    """
    try:
        from keras.src.saving.saving_lib import save_model
    except ImportError:
        with atomic_path(filepath) as tmp:
            model.save(tmp)
        return
    buffer = io.BytesIO()
    save_model(model, buffer)
    _write_bytes(filepath, buffer.getvalue())


def _write_bytes(filepath: str | Path, data: bytes) -> None:
    with atomic_path(filepath) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
