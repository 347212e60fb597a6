"""What a public tuner's ``search()`` receives: data as ``model.fit`` takes it, made reusable
across trials, and fingerprinted for the resume check.

Owns: :func:`reusable_data` (a finite generator is read once into arrays, since every trial
needs the data again) and :func:`data_fingerprint` (shapes, dtypes and a hash of a sample of
every array, dataset or ``PyDataset`` passed). Does not own: training (``fit_paths``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from kerastune_kit._logging import get_logger
from kerastune_kit.errors import DataError

logger = get_logger("search")

#: Rows hashed from each end of an array (and every k-th row between) for the fingerprint.
SAMPLE_ROWS = 256


def _is_generator(value: Any) -> bool:
    return inspect.isgenerator(value) or (
        isinstance(value, Iterator) and not hasattr(value, "shape")
        and type(value).__module__.split(".")[0] not in ("tensorflow", "keras"))


def reusable_data(args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``search()``'s arguments with a finite Python generator (``x`` or ``validation_data``)
    replaced by arrays.

    ``model.fit`` reads a generator once; a search trains many models on the same data, so the
    first trial would take it all and the next would find it empty. A generator with
    ``steps_per_epoch`` is taken as an endless stream and passed on as it is (each trial reads
    its steps from it, as each epoch of ``model.fit`` does); one without is read to its end
    here, once. Its batches must be ``(inputs, targets)`` or ``(inputs, targets, weights)``.

    Raises:
        DataError: The generator yields nothing, or something other than such tuples.
    """
    args = tuple(args)
    kwargs = dict(kwargs)
    if _is_generator(kwargs.get("validation_data")) \
            and kwargs.get("validation_steps") is None:
        arrays, _ = _read_generator(kwargs["validation_data"], "validation_data")
        kwargs["validation_data"] = tuple(arrays)
    x = args[0] if args else kwargs.get("x")
    if not _is_generator(x) or kwargs.get("steps_per_epoch") is not None:
        return args, kwargs
    arrays, batch_size = _read_generator(x, "x")
    rest = args[1:]
    kwargs.pop("x", None)
    kwargs.setdefault("batch_size", batch_size)
    if len(arrays) == 3:
        kwargs["sample_weight"] = arrays[2]
    return (arrays[0], arrays[1], *rest[1:]) if rest else (arrays[0], arrays[1]), kwargs


def _read_generator(generator: Any, field: str) -> tuple[list[Any], int]:
    """A finite generator's batches concatenated: ``([inputs, targets(, weights)], batch)``."""
    batches = list(generator)
    if not batches:
        raise DataError(f"{field}: the generator passed to search() yielded no batches; pass "
                        "a generator that yields (inputs, targets) batches, or arrays")
    if not all(isinstance(b, tuple) and len(b) in (2, 3) for b in batches):
        raise DataError(
            f"{field}: the generator passed to search() yielded "
            f"{type(batches[0]).__name__}, expected (inputs, targets) or (inputs, targets, "
            "sample_weight) tuples; change the generator, or pass arrays or a tf.data.Dataset")
    arrays = [_concatenate(column) for column in zip(*batches, strict=True)]
    logger.info("search: read the %s generator into memory once (%d batches): every trial "
                "needs the data again; pass a keras.utils.PyDataset or a tf.data.Dataset to "
                "stream instead", field, len(batches))
    return arrays, len(np.asarray(batches[0][1]))


def _concatenate(parts: tuple[Any, ...]) -> Any:
    first = parts[0]
    if isinstance(first, dict):
        return {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in first}
    if isinstance(first, (list, tuple)):
        return type(first)(np.concatenate([np.asarray(p[i]) for p in parts])
                           for i in range(len(first)))
    return np.concatenate([np.asarray(p) for p in parts])


def _sample_hash(array: np.ndarray) -> str:
    rows = len(array) if array.ndim else 0
    if rows > 3 * SAMPLE_ROWS:
        step = max(1, rows // SAMPLE_ROWS)
        picked = np.concatenate([array[:SAMPLE_ROWS], array[SAMPLE_ROWS:-SAMPLE_ROWS:step],
                                 array[-SAMPLE_ROWS:]])
    else:
        picked = array
    if picked.dtype.kind == "O":  # (strings in a DataFrame): the values, not their pointers
        picked = picked.astype(str)
    return hashlib.sha256(np.ascontiguousarray(picked).tobytes()).hexdigest()[:12]


def describe(value: Any) -> Any:
    """A JSON-able description of one data argument: shapes, dtypes and a sample hash."""
    import tensorflow as tf

    from kerastune_kit._backend import keras as _keras

    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, tf.data.Dataset):
        first = next(iter(value.take(1)), None)
        return {"dataset": str(value.element_spec),
                "cardinality": int(value.cardinality().numpy()),
                "first": describe(tf.nest.map_structure(lambda t: t.numpy(), first))
                if first is not None else None}
    if isinstance(value, _keras().utils.PyDataset):
        first = value[0] if len(value) else None
        return {"py_dataset": type(value).__name__, "batches": len(value),
                "first": describe(first)}
    if hasattr(value, "__array__") or isinstance(value, (int, float, np.generic)):
        array = np.asarray(value)
        return {"shape": list(array.shape), "dtype": array.dtype.str,
                "sample": _sample_hash(array)}
    return {"type": type(value).__name__}


def data_fingerprint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint of ``search()``'s data: ``{"digest": 16 hex, "summary": one line}``.

    The digest covers the shapes and dtypes of ``x``, ``y``, ``validation_data``,
    ``sample_weight`` and ``class_weight`` and a hash of a sample of each array (its first and
    last :data:`SAMPLE_ROWS` rows and every k-th between; a dataset's first batch), so a resumed
    search refuses other data without hashing gigabytes.
    """
    names = ("x", "y")
    parts: dict[str, Any] = {}
    for i, value in enumerate(args[:2]):
        parts[names[i]] = describe(value)
    for key in ("x", "y", "validation_data", "validation_split", "sample_weight",
                "class_weight"):
        if key in kwargs and key not in parts:
            value = kwargs[key]
            parts[key] = (value if key in ("validation_split", "class_weight")
                          else describe(value))
    text = json.dumps(parts, sort_keys=True, default=str)
    return {"digest": hashlib.sha256(text.encode()).hexdigest()[:16], "summary": summary(parts)}


def summary(parts: dict[str, Any]) -> str:
    """One line: ``x (1000, 28, 28) float32, y (1000,) int64, validation_data ...``."""
    def one(value: Any) -> str:
        if isinstance(value, dict) and "shape" in value:
            return f"{tuple(value['shape'])} {np.dtype(value['dtype']).name}"
        if isinstance(value, dict) and "dataset" in value:
            return "a tf.data.Dataset"
        if isinstance(value, dict) and "py_dataset" in value:
            return f"a {value['py_dataset']} of {value['batches']} batches"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {one(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(one(v) for v in value) + "]"
        return str(value)

    return ", ".join(f"{key} {one(value)}" for key, value in parts.items()
                     if value is not None and key != "class_weight")


def _rows(value: Any) -> int | None:
    """Samples in an array, or in each member of a dict/list of arrays (None: not arrays,
    or members of different lengths, which Keras reports itself)."""
    if isinstance(value, dict):
        counts = {_rows(v) for v in value.values()}
        return counts.pop() if len(counts) == 1 else None
    if isinstance(value, (list, tuple)):
        counts = {_rows(v) for v in value}
        return counts.pop() if len(counts) == 1 else None
    if hasattr(value, "shape") and hasattr(value, "__array__") and len(value.shape):
        return int(value.shape[0])
    return None


def check_search_data(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse, once and in one line, data that would fail every trial the same way.

    Raises:
        DataError: ``x`` and ``y`` (or ``validation_data``'s, or ``sample_weight``) hold
            different numbers of samples; ``validation_split`` with data that is not arrays.
    """
    x = args[0] if args else kwargs.get("x")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    split = kwargs.get("validation_split")
    if split and kwargs.get("validation_data") is None and _rows(x) is None:
        raise DataError(
            f"validation_split: not available for a {type(x).__name__} x (as in model.fit); "
            "pass validation_data")
    pairs = [("y", "x", y, x), ("sample_weight", "x", kwargs.get("sample_weight"), x)]
    val = kwargs.get("validation_data")
    if isinstance(val, (tuple, list)) and len(val) in (2, 3):
        pairs.append(("validation_data's targets", "its inputs", val[1], val[0]))
    for name, other, value, reference in pairs:
        n, m = _rows(value), _rows(reference)
        if value is not None and n is not None and m is not None and n != m:
            raise DataError(
                f"{name}: {n} samples, but {other} has {m}; pass one per sample")
