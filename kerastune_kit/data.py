"""Dataset loading, train/validation splitting and feature scaling.

This module owns everything between "the user named some data" and "here are
float32 train/validation arrays ready for a model": resolving bundled
scikit-learn datasets or ``.npz``/``.csv`` files, validating them, inferring
the task (binary, multiclass or regression), encoding labels, making a seeded
(stratified) split and scaling features. Scalers are always fitted on the
training split only and then applied to the validation split, so no
information leaks from validation data into training.

It does not own models, search spaces or training; it imports neither
TensorFlow nor Keras (only numpy, plus scikit-learn lazily inside functions).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from kerastune_kit.errors import DataError

Task = Literal["binary", "multiclass", "regression"]

BUNDLED_DATASETS: dict[str, str] = {
    "digits": "8x8 handwritten digits, 1797 samples, 64 features, 10 classes (default)",
    "iris": "iris flowers, 150 samples, 4 features, 3 classes",
    "wine": "wine cultivars, 178 samples, 13 features, 3 classes",
    "breast_cancer": "breast cancer diagnosis, 569 samples, 30 features, 2 classes",
    "diabetes": "diabetes progression, 442 samples, 10 features, regression",
}
DEFAULT_DATASET = "digits"

_TASKS: tuple[str, ...] = get_args(Task)
_SUFFIXES = (".npz", ".csv")
_MAX_CLASSES_INFERRED = 20


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, split and scaled dataset.

    Attributes:
        name: Short name (bundled name or file stem).
        x_train: Training features, float32, shape ``(n, *input_shape)``.
        y_train: Training targets: int32 labels ``0..K-1`` for classification,
            float32 of shape ``(n,)`` for regression.
        x_val: Validation features, same layout as ``x_train``.
        y_val: Validation targets, same layout as ``y_train``.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        n_classes: Number of classes (2 for binary), ``None`` for regression.
        class_names: Original label of each class index, or ``None``.
        feature_names: Feature column names when known, else ``None``.
        image_shape: For flattened pixel vectors (the bundled digits), the image layout
            ``(H, W, C)`` they come from, so ``--model cnn`` can use them; else ``None``.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_val: np.ndarray = field(repr=False)
    y_val: np.ndarray = field(repr=False)
    task: Task
    n_classes: int | None
    class_names: tuple[str, ...] | None = field(default=None, repr=False)
    feature_names: tuple[str, ...] | None = field(default=None, repr=False)
    image_shape: tuple[int, ...] | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, i.e. ``x_train.shape[1:]``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def image_input_shape(self) -> tuple[int, ...] | None:
        """The ``(H, W, C)`` a CNN sees: the sample shape for image data (``(H, W)`` gains a
        channel), the known image layout of flattened pixels (digits: 8x8x1), else None."""
        if len(self.input_shape) == 3:
            return self.input_shape
        if len(self.input_shape) == 2:
            return (*self.input_shape, 1)
        return self.image_shape

    @property
    def is_image(self) -> bool:
        """Whether samples are images, ``(H, W)`` or ``(H, W, C)``."""
        return len(self.input_shape) in (2, 3)

    def fingerprint(self) -> str:
        """Return a short, stable hash of the four arrays (for resume checks).

        Returns:
            The first 16 hex characters of a sha256 over shapes, dtypes and bytes.
        """
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val):
            digest.update(f"{array.shape}|{array.dtype.str}|".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        """Return a one-line human description of the dataset."""
        if self.is_image:
            features = "x".join(str(d) for d in self.input_shape) + " images"
        else:
            n = int(np.prod(self.input_shape))
            features = f"{n} feature" + ("" if n == 1 else "s")
        task = self.task if self.n_classes is None else f"{self.task} ({self.n_classes} classes)"
        return f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val, {features}, {task}"


@dataclass
class _Raw:
    """Unvalidated arrays straight from a source, before encoding and splitting."""

    name: str
    x: Any
    y: Any
    x_val: Any = None
    y_val: Any = None
    feature_names: tuple[str, ...] | None = None
    target_names: tuple[str, ...] | None = None
    fixed_task: str | None = None
    image_shape: tuple[int, ...] | None = None


def list_datasets() -> list[tuple[str, str]]:
    """Return ``(name, description)`` for every bundled dataset."""
    return list(BUNDLED_DATASETS.items())


def load_dataset(
    spec: str,
    *,
    target: str | None = None,
    task: Task | None = None,
    validation_split: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
    max_samples: int | None = None,
) -> Dataset:
    """Load, validate, split and scale a dataset.

    Args:
        spec: A bundled dataset name (case-insensitive, see ``list_datasets``)
            or a path to a ``.npz`` (keys ``x``/``y`` or ``x_train``/``y_train``/
            ``x_val``/``y_val``) or ``.csv`` file (header row required).
        target: Target column name; required for ``.csv`` files.
        task: Force the task instead of inferring it.
        validation_split: Fraction held out for validation, ``0 < v < 1``.
            Ignored when the file already provides a validation split.
        seed: Seed for subsampling and splitting.
        standardize: Scale features: vector data gets a StandardScaler fitted on
            the training split only; images are divided by 255 when they look
            like raw pixels (uint8 or max > 1.5).
        max_samples: If given, keep a seeded (stratified where possible)
            subsample of at most this many samples before splitting.

    Returns:
        The loaded ``Dataset``.

    Raises:
        DataError: On any bad argument or unusable data (one-line message).
    """
    _check_args(spec, task, validation_split, seed, max_samples)
    raw = _read_source(spec, target)
    x, was_uint8 = _as_features(raw.x, raw.name, "x")
    y = _as_target(raw.y, len(x), raw.name, "y")
    presplit = raw.x_val is not None
    if presplit:
        x_val, val_uint8 = _as_features(raw.x_val, raw.name, "x_val")
        y_val = _as_target(raw.y_val, len(x_val), raw.name, "y_val")
        if x_val.shape[1:] != x.shape[1:]:
            raise DataError(
                f"data: '{raw.name}' has x_train samples of shape {x.shape[1:]} but x_val samples "
                f"of shape {x_val.shape[1:]}; both splits need the same sample shape"
            )
        was_uint8 = was_uint8 or val_uint8
        y_all = np.concatenate([y, y_val])
    else:
        x_val, y_val, y_all = None, None, y

    resolved = _resolve_task(y_all, task, raw.fixed_task, raw.name)
    n_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    if resolved == "regression":
        y_all = y_all.astype(np.float32)
    else:
        if y_all.dtype.kind in "fb":  # integer-valued (checked), so "1", not "1.0"
            y_all = y_all.astype(np.int64)
        classes, y_all = np.unique(y_all, return_inverse=True)
        y_all = y_all.astype(np.int32).reshape(-1)
        n_classes = len(classes)
        if raw.target_names is not None and np.issubdtype(classes.dtype, np.integer):
            class_names = tuple(raw.target_names[int(c)] for c in classes)
        else:
            class_names = tuple(str(c) for c in classes)

    classify = resolved != "regression"
    if presplit:
        y, y_val = y_all[: len(y)], y_all[len(y) :]
        if max_samples is not None and max_samples < len(y) + len(y_val):
            k_train = max(1, round(max_samples * len(y) / (len(y) + len(y_val))))
            k_val = max(1, max_samples - k_train)
            x, y = _subsample(x, y, k_train, seed, classify)
            x_val, y_val = _subsample(x_val, y_val, k_val, seed, classify)
    else:
        y = y_all
        if max_samples is not None:
            x, y = _subsample(x, y, max_samples, seed, classify)
        x, x_val, y, y_val = _split(x, y, validation_split, seed, classify)

    if standardize:
        x, x_val = _scale(x, x_val, was_uint8)
    return Dataset(
        name=raw.name,
        x_train=np.ascontiguousarray(x, dtype=np.float32),
        y_train=np.ascontiguousarray(y),
        x_val=np.ascontiguousarray(x_val, dtype=np.float32),
        y_val=np.ascontiguousarray(y_val),
        task=resolved,  # type: ignore[arg-type]
        n_classes=n_classes,
        class_names=class_names,
        feature_names=raw.feature_names,
        image_shape=raw.image_shape,
    )


def _check_args(spec: Any, task: Any, validation_split: Any, seed: Any, max_samples: Any) -> None:
    """Validate the scalar arguments of ``load_dataset``."""
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise DataError(
            f"data: got {spec!r}; pass a bundled dataset name ({', '.join(BUNDLED_DATASETS)}) "
            "or a path to a .npz/.csv file"
        )
    if task is not None and task not in _TASKS:
        raise DataError(f"task: got {task!r}; use one of {', '.join(_TASKS)} or omit it to infer")
    vs_ok = isinstance(validation_split, (int, float)) and not isinstance(validation_split, bool)
    if not vs_ok or not 0.0 < float(validation_split) < 1.0:
        raise DataError(
            f"validation_split: got {validation_split!r}; use a fraction strictly between 0 and 1, "
            "e.g. 0.2"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise DataError(f"seed: got {seed!r}; use a non-negative integer such as 0")
    if max_samples is not None and (
        not isinstance(max_samples, (int, np.integer))
        or isinstance(max_samples, bool)
        or max_samples < 2
    ):
        raise DataError(f"max_samples: got {max_samples!r}; use an integer >= 2 or omit it")


def _read_source(spec: str | os.PathLike[str], target: str | None) -> _Raw:
    """Resolve ``spec`` to a bundled dataset or a file and read raw arrays."""
    text = str(spec).strip()
    key = text.lower().replace("-", "_")
    if key in BUNDLED_DATASETS:
        return _read_bundled(key)
    path = Path(text).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return _read_npz(path)
        if suffix == ".csv":
            return _read_csv(path, target)
        raise DataError(
            f"data: file '{text}' has unsupported suffix {path.suffix!r}; only .npz and .csv "
            "files are supported (convert it, or pass a bundled dataset name)"
        )
    if path.is_dir():
        raise DataError(
            f"data: '{text}' is a directory; pass a path to a .npz/.csv file or a bundled "
            f"dataset name ({', '.join(BUNDLED_DATASETS)})"
        )
    if "/" in text or os.sep in text or path.suffix:
        raise DataError(
            f"data: file '{text}' does not exist; pass a bundled dataset name "
            f"({', '.join(BUNDLED_DATASETS)}) or a path to an existing .npz/.csv file"
        )
    close = difflib.get_close_matches(key, list(BUNDLED_DATASETS), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DataError(
        f"data: unknown dataset {text!r}; use a bundled name ({', '.join(BUNDLED_DATASETS)}) "
        f"or a path to a .npz/.csv file{hint}"
    )


def _read_bundled(name: str) -> _Raw:
    """Load a scikit-learn bundled dataset (no download needed)."""
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    bunch = loader()
    features = getattr(bunch, "feature_names", None)
    target_names = getattr(bunch, "target_names", None)
    if name == "diabetes":
        fixed = "regression"
    else:
        fixed = "binary" if name == "breast_cancer" else "multiclass"
    return _Raw(
        name=name,
        x=bunch.data,
        y=bunch.target,
        feature_names=tuple(str(f) for f in features) if features is not None else None,
        target_names=tuple(str(t) for t in target_names) if target_names is not None else None,
        fixed_task=fixed,
        image_shape=(8, 8, 1) if name == "digits" else None,
    )


def _read_npz(path: Path) -> _Raw:
    """Read a ``.npz`` archive with ``x``/``y`` or explicit train/val keys."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(
            f"data: cannot read '{path}' as .npz without pickle ({reason}); save plain numeric "
            "arrays with np.savez"
        ) from exc
    keys = set(arrays)
    split_keys = {"x_train", "y_train", "x_val", "y_val"}
    if split_keys <= keys:
        return _Raw(
            path.stem, arrays["x_train"], arrays["y_train"], arrays["x_val"], arrays["y_val"]
        )
    if {"x", "y"} <= keys:
        return _Raw(path.stem, arrays["x"], arrays["y"])
    raise DataError(
        f"data: '{path}' has keys {sorted(keys)}; expected 'x' and 'y', or 'x_train', "
        "'y_train', 'x_val' and 'y_val'"
    )


def _read_csv(path: Path, target: str | None) -> _Raw:
    """Read a ``.csv`` file with a header row; numeric features, any target."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"data: cannot read '{path}' as UTF-8 csv ({exc}); check the file") from exc
    if not rows:
        raise DataError(f"data: '{path}' is empty; it needs a header row and data rows")
    header = [name.strip() for name in rows[0]]
    columns = ", ".join(header)
    if target is None:
        raise DataError(f"target: a .csv dataset needs --target COLUMN; columns are: {columns}")
    if target not in header:
        close = difflib.get_close_matches(target, header, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise DataError(
            f"target: column {target!r} not found in '{path}'; columns are: {columns}{hint}"
        )
    if len(header) < 2:
        raise DataError(
            f"data: '{path}' has only the target column {target!r}; add feature columns"
        )
    body = rows[1:]
    if not body:
        raise DataError(f"data: '{path}' has a header but no data rows")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(
                f"data: '{path}' line {line} has {len(row)} fields but the header has "
                f"{len(header)}; fix the row"
            )
    t_idx = header.index(target)
    feature_idx = [i for i in range(len(header)) if i != t_idx]
    x = np.empty((len(body), len(feature_idx)), dtype=np.float64)
    for j, col in enumerate(feature_idx):
        for i, row in enumerate(body):
            try:
                x[i, j] = float(row[col])
            except ValueError:
                raise DataError(
                    f"data: feature column {header[col]!r} in '{path}' is not numeric (value "
                    f"{row[col].strip()!r} on line {i + 2}); encode or drop it"
                ) from None
    labels = [row[t_idx].strip() for row in body]
    if any(label == "" for label in labels):
        raise DataError(
            f"target: column {target!r} in '{path}' has empty values; fill or drop those rows"
        )
    try:
        y: np.ndarray = np.array([float(label) for label in labels])
    except ValueError:
        y = np.array(labels)
    return _Raw(path.stem, x, y, feature_names=tuple(header[i] for i in feature_idx))


def _as_features(x: Any, name: str, key: str) -> tuple[np.ndarray, bool]:
    """Convert raw features to float32, checking emptiness, rank and finiteness."""
    x = np.asarray(x)
    was_uint8 = x.dtype == np.uint8
    if x.dtype.kind not in "biuf":
        raise DataError(f"data: {key} in '{name}' has dtype {x.dtype}; features must be numeric")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"data: {key} in '{name}' is empty; it needs at least one sample")
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim > 4:
        raise DataError(
            f"data: {key} in '{name}' has shape {x.shape}; use (n, features), (n, H, W) "
            "or (n, H, W, C)"
        )
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"data: {key} in '{name}' contains {int(bad.sum())} NaN/inf value(s) (first in row "
            f"{row}); clean or impute them before tuning"
        )
    return x, bool(was_uint8)


def _as_target(y: Any, n: int, name: str, key: str) -> np.ndarray:
    """Flatten targets to shape ``(n,)`` and check length and finiteness."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise DataError(
            f"data: {key} in '{name}' has shape {y.shape}; targets must have shape (n,)"
        )
    if len(y) != n:
        raise DataError(
            f"data: '{name}' has {n} samples of features but {len(y)} {key} values; "
            "lengths must match"
        )
    if y.dtype.kind not in "biufUS":
        raise DataError(f"data: {key} in '{name}' has dtype {y.dtype}; use numbers or strings")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"data: {key} in '{name}' contains NaN/inf targets; drop or fix those rows")
    return y


def _resolve_task(y: np.ndarray, task: str | None, fixed: str | None, name: str) -> str:
    """Infer the task from targets, or validate an explicit ``task``."""
    is_str = y.dtype.kind in "US"
    integral = is_str or bool(np.all(np.asarray(y, dtype=np.float64) % 1 == 0))
    n_unique = len(np.unique(y))
    if task is None:
        if fixed is not None:
            return fixed
        if not is_str and (not integral or n_unique > _MAX_CLASSES_INFERRED):
            return "regression"
        if n_unique < 2:
            raise DataError(
                f"data: target of '{name}' has a single distinct value {str(y[0])!r}; "
                "classification needs at least 2 classes"
            )
        return "binary" if n_unique == 2 else "multiclass"
    if task == "regression":
        if is_str:
            raise DataError(
                f"task: 'regression' needs a numeric target, but '{name}' has string labels such "
                f"as {str(y[0])!r}; use --task multiclass/binary or omit --task"
            )
        return task
    if not integral:
        example = next(v for v in y if v % 1 != 0)
        raise DataError(
            f"task: {task!r} needs integer or string labels, but '{name}' has non-integer target "
            f"values such as {float(example)!r}; use --task regression or omit --task"
        )
    if task == "binary" and n_unique != 2:
        raise DataError(
            f"task: 'binary' needs exactly 2 classes, but '{name}' has {n_unique}; use --task "
            "multiclass or omit --task"
        )
    if n_unique < 2:
        raise DataError(f"task: {task!r} needs at least 2 classes, but '{name}' has {n_unique}")
    return task


def _subsample(
    x: np.ndarray, y: np.ndarray, k: int, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Keep a seeded subsample of ``k`` rows, stratified by ``y`` where possible."""
    if k >= len(y):
        return x, y
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    try:
        keep = train_test_split(
            idx, train_size=k, random_state=seed, stratify=y if stratify else None
        )[0]
    except ValueError:
        keep = train_test_split(idx, train_size=k, random_state=seed)[0]
    keep = np.sort(keep)
    return x[keep], y[keep]


def _split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/validation split, stratified for classification when possible."""
    from sklearn.model_selection import train_test_split

    strat = None
    if stratify and np.bincount(y).min() >= 2:
        strat = y
    try:
        try:
            parts = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=strat)
        except ValueError:
            if strat is None:
                raise
            parts = train_test_split(x, y, test_size=fraction, random_state=seed)
    except ValueError as exc:
        raise DataError(
            f"validation_split: {fraction!r} cannot split {len(y)} sample(s) into non-empty train "
            "and validation sets; use more data or a different fraction"
        ) from exc
    x_train, x_val, y_train, y_val = parts
    return x_train, x_val, y_train, y_val


def _scale(
    x_train: np.ndarray, x_val: np.ndarray, was_uint8: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Scale features; statistics come from the training split only."""
    if x_train.ndim in (3, 4):
        peak = max(float(np.abs(x_train).max()), float(np.abs(x_val).max()))
        if was_uint8 or peak > 1.5:
            return x_train / np.float32(255.0), x_val / np.float32(255.0)
        return x_train, x_val
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    return (
        scaler.transform(x_train).astype(np.float32),
        scaler.transform(x_val).astype(np.float32),
    )
