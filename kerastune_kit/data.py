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
import io
import math
import os
import zipfile
from collections import Counter
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
# A search needs one sample to train on and one to validate (classification: of 2 classes).
_MIN_SAMPLES = 2
_NEED_SAMPLES = (
    f"a search needs at least {_MIN_SAMPLES} (one to train on, one to validate; for "
    "classification, of 2 different classes)"
)
# Cells read as missing (compared case-insensitively after stripping), as pandas and UCI files write
# them; anything float() parses to NaN ("nan", "-NaN") is missing too.
_MISSING_MARKERS = frozenset({"", "na", "n/a", "#n/a", "<na>", "nan", "null", "none", "?"})
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Preprocessing:
    """How raw features became the model's inputs, fitted on the training split only.

    ``standardize``: ``(x - mean) / scale`` per feature (scikit-learn's ``StandardScaler``;
    ``scale`` is 1 for a feature that is constant in training). ``rescale``: ``x * factor``
    (pixels / 255). ``none``: unchanged. An exported model starts with the same step as Keras
    layers (:func:`kerastune_kit.hypermodels.inference_model`), so it takes raw inputs.

    Attributes:
        kind: ``standardize``, ``rescale`` or ``none``.
        mean: Per-feature means (``standardize``), length = number of features.
        scale: Per-feature standard deviations (``standardize``).
        factor: The multiplier (``rescale``).
    """

    kind: Literal["standardize", "rescale", "none"] = "none"
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    factor: float = 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The preprocessed features, float32, same shape as ``x``."""
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "standardize":
            # In float32, as StandardScaler.transform computes for float32 features.
            mean = np.asarray(self.mean, dtype=np.float32)
            scale = np.asarray(self.scale, dtype=np.float32)
            return (x - mean) / scale
        if self.kind == "rescale":
            return x * np.float32(self.factor)
        return x

    def describe(self) -> dict[str, Any]:
        """A JSON summary for sidecar files: the kind, and the feature count or factor."""
        if self.kind == "standardize":
            return {"kind": "standardize", "features": len(self.mean)}
        if self.kind == "rescale":
            return {"kind": "rescale", "factor": self.factor}
        return {"kind": "none"}


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
        preprocessing: The scaling applied to ``x_train`` and ``x_val`` (see
            :class:`Preprocessing`); exported models include it.
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
    preprocessing: Preprocessing = field(default_factory=Preprocessing, repr=False)

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
        x, x_val, preprocessing = _scale(x, x_val, was_uint8)
    else:
        preprocessing = Preprocessing()
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
        preprocessing=preprocessing,
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
    fix = f"save arrays with np.savez('{path}', x=..., y=...)"
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise DataError(
            f"data: cannot read '{path}' ({exc.strerror or exc}); check that it is a readable file"
        ) from exc
    if not head:
        raise DataError(f"data: '{path}' is empty (0 bytes), not a .npz archive; {fix}")
    if head.startswith(b"\x93NUMPY"):
        raise DataError(
            f"data: '{path}' is a single .npy array, not a .npz archive of x and y; {fix}"
        )
    if not head.startswith(b"PK"):
        looks, csv_hint = _describe_bytes(head)
        hint = " (or, if it is a CSV file, rename it to .csv and pass --target)" if csv_hint else ""
        raise DataError(
            f"data: '{path}' is not a .npz archive (it is not a zip file; {looks}); {fix}{hint}"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except MemoryError:
        raise
    except Exception as exc:  # zipfile/zlib/numpy header errors all mean a damaged archive
        reason = (
            "its zip directory is missing or damaged"
            if isinstance(exc, zipfile.BadZipFile)
            else _one_line(exc)
        )
        raise DataError(
            f"data: '{path}' is a damaged or truncated .npz archive ({reason}); re-create it: {fix}"
        ) from exc
    arrays: dict[str, Any] = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "pickle" not in str(exc):
                    raise DataError(
                        f"data: array {key!r} in '{path}' cannot be read ({_one_line(exc)}); "
                        f"re-create it: {fix}"
                    ) from exc
                raise DataError(
                    f"data: array {key!r} in '{path}' holds Python objects (dtype=object), which "
                    "are not loaded because that would need pickle; save plain numeric arrays, "
                    f"e.g. np.savez('{path}', x=np.asarray(x, dtype=np.float32), y=np.asarray(y))"
                ) from exc
            except MemoryError:
                raise
            except Exception as exc:  # zlib.error, BadZipFile, EOFError, tokenize.TokenError...
                raise DataError(
                    f"data: '{path}' is a damaged .npz archive (array {key!r}: {_one_line(exc)}); "
                    f"re-create it: {fix}"
                ) from exc
    keys = set(arrays)
    split_keys = ("x_train", "y_train", "x_val", "y_val")
    if set(split_keys) <= keys:
        return _Raw(
            path.stem, arrays["x_train"], arrays["y_train"], arrays["x_val"], arrays["y_val"]
        )
    if {"x", "y"} <= keys:
        x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
        if x.ndim >= 1 and y.ndim >= 1 and len(x) == len(y) and len(x) < _MIN_SAMPLES:
            what = "0 samples (x and y are empty)" if len(x) == 0 else "1 sample"
            raise DataError(f"data: '{path}' has {what}; {_NEED_SAMPLES}; add samples")
        return _Raw(path.stem, x, y)
    raise DataError(_npz_keys_message(path, keys, split_keys))


def _npz_keys_message(path: Path, keys: set[str], split_keys: tuple[str, ...]) -> str:
    """Say which keys an ``.npz`` lacks, for the layout its keys come closest to."""
    if not keys:
        return f"data: '{path}' holds no arrays; save arrays with np.savez('{path}', x=..., y=...)"
    present = [k for k in split_keys if k in keys]
    if present:
        missing = [k for k in split_keys if k not in keys]
        return (
            f"data: '{path}' has {', '.join(map(repr, present))} but no "
            f"{', '.join(map(repr, missing))}; add them, or save all samples as 'x' and 'y' and "
            "let validation_split make the split"
        )
    if "x" in keys or "y" in keys:
        have, lack = ("x", "y") if "x" in keys else ("y", "x")
        return (
            f"data: '{path}' has {have!r} but no {lack!r}; save both: "
            f"np.savez('{path}', x=..., y=...)"
        )
    lowered = {k.lower(): k for k in keys}
    if {"x", "y"} <= set(lowered):
        return (
            f"data: '{path}' has keys {sorted(keys)}; keys are case-sensitive: save them as "
            f"'x' and 'y' (np.savez('{path}', x=..., y=...))"
        )
    return (
        f"data: '{path}' has keys {sorted(keys)}; expected 'x' and 'y', or 'x_train', "
        "'y_train', 'x_val' and 'y_val'"
    )


def _describe_bytes(head: bytes) -> tuple[str, bool]:
    """Describe what the first bytes of a file look like; also whether it looks like a CSV."""
    if b"\x00" not in head:
        text = head.decode("utf-8", errors="replace")
        if text.count("\ufffd") <= 1:
            first = text.lstrip("\ufeff").strip().splitlines()[0] if text.strip() else ""
            if len(first) > 40:
                first = first[:40] + "..."
            if "," in first:
                return f"it looks like text/CSV, starting {first!r}", True
            return f"it looks like text, starting {first!r}", False
    if head.startswith(b"\x80"):
        return "it looks like a Python pickle", False
    return f"it starts with bytes {head[:4].hex(' ')}", False


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_text(path: Path) -> str:
    """Read a ``.csv`` file as UTF-8 text, naming the real problem when it is not text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"data: cannot read '{path}' ({exc.strerror or exc}); check that it is a readable file"
        ) from exc
    export = "export the table as comma-separated UTF-8 text"
    if data.startswith(b"PK\x03\x04"):
        raise DataError(
            f"data: '{path}' is a zip archive (an .xlsx workbook or .npz archive?), not a text "
            f".csv; {export}, or give an .npz archive the .npz suffix"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"data: '{path}' is UTF-16 encoded text; re-save it as UTF-8")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(
            f"data: '{path}' is not a text file (it has a NUL byte on line {line}); {export}"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"data: '{path}' is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line} "
            "cannot be decoded); re-save it as UTF-8 (it may be Latin-1 or Windows-1252)"
        ) from None


def _csv_records(text: str, path: Path) -> list[tuple[int, list[str]]]:
    """Parse CSV text into ``(line, row)`` pairs, ``line`` as an editor numbers it (1-based,
    where the record starts); blank rows are skipped but still counted."""

    def parse(strict: bool) -> list[tuple[int, list[str]]]:
        reader = csv.reader(io.StringIO(text, newline=""), strict=strict)
        records: list[tuple[int, list[str]]] = []
        for row in reader:
            if any(cell.strip() for cell in row):
                records.append((state["next"], row))
            state["next"] = reader.line_num + 1
        return records

    state = {"next": 1}
    try:
        return parse(strict=True)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DataError(
                f"data: '{path}' has a quoted field opened on line {state['next']} that is never "
                'closed; add the closing " or remove the stray one'
            ) from None
    state["next"] = 1
    try:  # strict mode also refuses odd but readable quoting such as 1,"a"b: accept it as before
        return parse(strict=False)
    except csv.Error as exc:
        raise DataError(
            f"data: '{path}' is not valid CSV near line {state['next']} ({_one_line(exc)}); "
            "fix the quoting there"
        ) from None


def _is_missing(cell: str) -> bool:
    """Whether a CSV cell is empty or a missing-value marker (NA, N/A, NaN, null, None, ?)."""
    text = cell.strip()
    if text.lower() in _MISSING_MARKERS:
        return True
    try:
        return math.isnan(float(text))
    except ValueError:
        return False


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _short(cell: str) -> str:
    """A cell's text, stripped and cut to 40 characters, for a message."""
    text = cell.strip()
    return text if len(text) <= 40 else text[:40] + "..."


def _cell(cell: str) -> str:
    """Describe a cell for a message: ``empty cell`` or ``value 'NA'``."""
    return "empty cell" if not cell.strip() else f"value {_short(cell)!r}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _read_csv(path: Path, target: str | None) -> _Raw:
    """Read a ``.csv`` file with a header row; numeric features, any target.

    Blank lines are skipped; messages give line numbers as an editor shows them. Empty cells and
    missing-value markers (``_MISSING_MARKERS``) are reported as missing values, not as text.
    """
    records = _csv_records(_read_text(path), path)
    if not records:
        raise DataError(f"data: '{path}' is empty; it needs a header row and data rows")
    header_line, header_row = records[0]
    header = [name.strip() for name in header_row]
    columns = ", ".join(header)
    if len(header) == 1:
        for sep, label in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
            if sep in header[0]:
                raise DataError(
                    f"data: '{path}' has a single column {header[0]!r} on line {header_line}; it "
                    f"looks {label}-separated, but a .csv must be comma-separated: re-save it "
                    "with commas"
                )
    no_header = ""
    if all(_is_number(name) for name in header):
        no_header = (
            f"; line {header_line} ({','.join(header)[:40]!r}) looks like data, not a header: "
            "add a header row naming the columns"
        )
    if target is None:
        raise DataError(
            f"target: a .csv dataset needs --target COLUMN; columns are: {columns}{no_header}"
        )
    if target not in header:
        close = difflib.get_close_matches(target, header, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise DataError(
            f"target: column {target!r} not found in '{path}'; columns are: {columns}"
            f"{no_header or hint}"
        )
    if header.count(target) > 1:
        where = " and ".join(str(i + 1) for i, name in enumerate(header) if name == target)
        raise DataError(
            f"target: column {target!r} appears {header.count(target)} times in the header of "
            f"'{path}' (columns {where}); rename the duplicates"
        )
    if len(header) < 2:
        raise DataError(
            f"data: '{path}' has only the target column {target!r}; add feature columns"
        )
    body = records[1:]
    if not body:
        raise DataError(
            f"data: '{path}' has a header but no data rows; {_NEED_SAMPLES}; add data rows"
        )
    for line, row in body:
        if len(row) != len(header):
            extra = ""
            if len(row) == len(header) + 1 and not row[-1].strip():
                extra = " (it ends with an extra comma)"
            raise DataError(
                f"data: '{path}' line {line} has {_plural(len(row), 'field')} but the header has "
                f"{len(header)}{extra}; fix the row"
            )
    if len(body) < _MIN_SAMPLES:
        raise DataError(
            f"data: '{path}' has 1 data row (line {body[0][0]}); {_NEED_SAMPLES}; add data rows"
        )
    t_idx = header.index(target)
    feature_idx = [i for i in range(len(header)) if i != t_idx]
    x = np.empty((len(body), len(feature_idx)), dtype=np.float64)
    texts: dict[tuple[int, int], str] = {}  # (line, column index) -> non-numeric feature cell
    for i, (line, row) in enumerate(body):
        try:
            x[i] = [float(row[col]) for col in feature_idx]
        except ValueError:  # slow path: a missing-value marker (-> NaN) or text in this row
            for j, col in enumerate(feature_idx):
                try:
                    x[i, j] = float(row[col])
                except ValueError:
                    x[i, j] = np.nan
                    if row[col].strip().lower() not in _MISSING_MARKERS:
                        texts[(line, col)] = row[col]
    labels = [row[t_idx].strip() for _, row in body]
    # (line, column index, cell) of every missing cell, in file order
    missing = [
        (body[i][0], feature_idx[j], body[i][1][feature_idx[j]])
        for i, j in np.argwhere(np.isnan(x))
        if (body[i][0], feature_idx[j]) not in texts
    ]
    target_missing = [i for i, label in enumerate(labels) if _is_missing(label)]
    missing.extend((body[i][0], t_idx, body[i][1][t_idx]) for i in target_missing)
    missing.sort(key=lambda m: (m[0], m[1]))
    first_text = (*min(texts), texts[min(texts)]) if texts else None
    huge = ~np.isnan(x) & ~(np.abs(x) <= _FLOAT32_MAX)
    first_huge: tuple[int, int, str] | None = None  # inf, or beyond float32
    if huge.any():
        i, j = (int(v) for v in np.argwhere(huge)[0])
        first_huge = (body[i][0], feature_idx[j], body[i][1][feature_idx[j]])
    if missing:
        for col, count in Counter(col for _, col, _ in missing).items():
            if count == len(body):
                line, _, cell = next(m for m in missing if m[1] == col)
                if col == t_idx:
                    raise DataError(
                        f"target: column {target!r} in '{path}' has no values (all "
                        f"{len(body)} data rows are missing, e.g. {_cell(cell)} on line {line}); "
                        "pick another --target"
                    )
                raise DataError(
                    f"data: column {header[col]!r} in '{path}' has no values (all {len(body)} "
                    f"data rows are missing, e.g. {_cell(cell)} on line {line}); drop the column"
                )
    problems = [p for p in (first_text, first_huge, missing[0] if missing else None) if p]
    first = min(problems, default=None, key=lambda p: (p[0], p[1]))
    if first is not None and first is first_text:
        line, col, cell = first
        raise DataError(
            f"data: feature column {header[col]!r} in '{path}' is not numeric (value "
            f"{_short(cell)!r} on line {line}); encode or drop it"
        )
    if first is not None and first is first_huge:
        line, col, cell = first
        raise DataError(
            f"data: feature column {header[col]!r} in '{path}' has value {_short(cell)!r} on line "
            f"{line}, which is not a finite float32 number (NaN/inf, or beyond +-3.4e38); "
            "replace it or drop the row"
        )
    if first is not None:
        line, col, cell = first
        kind = "missing target value" if col == t_idx else "missing value"
        where = f"line {line}, column {header[col]!r} in '{path}' ({_cell(cell)})"
        if len(missing) == 1 and col == t_idx:
            label = ""
            if cell.strip() and not _is_number(cell):  # 'NA'/'None' may be a real class
                label = f" (or, if {_short(cell)!r} is a class name, rename it)"
            raise DataError(f"data: {kind} on {where}; fill it or drop the row{label}")
        if len(missing) == 1:
            raise DataError(f"data: {kind} on {where}; fill it (impute) or drop the row")
        n_rows = len({m[0] for m in missing})
        first_is = "first on" if col != t_idx else f"first is a {kind} on"
        rows = "the row" if n_rows == 1 else f"the {n_rows} rows"
        raise DataError(
            f"data: {len(missing)} missing values; {first_is} {where}; fill them (impute) or "
            f"drop {rows} that have them"
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
    if x.dtype.kind in "US":
        example = str(x.reshape(-1)[0]) if x.size else ""
        raise DataError(
            f"data: {key} in '{name}' holds strings (dtype {x.dtype}, e.g. {example!r}); features "
            "must be numbers: encode them (e.g. one-hot) before saving"
        )
    if x.dtype.kind == "c":
        raise DataError(
            f"data: {key} in '{name}' holds complex numbers (dtype {x.dtype}); features must be "
            "real numbers: save the real and imaginary parts as separate features"
        )
    if x.dtype.kind not in "biuf":
        raise DataError(f"data: {key} in '{name}' has dtype {x.dtype}; features must be numeric")
    if x.ndim == 0:
        raise DataError(
            f"data: {key} in '{name}' is a single value (shape ()), not an array of samples; "
            "save one row per sample, shape (n, features)"
        )
    if len(x) == 0:
        raise DataError(
            f"data: {key} in '{name}' is empty (shape {x.shape}); it needs at least one sample"
        )
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim > 4:
        raise DataError(
            f"data: {key} in '{name}' has shape {x.shape}; use (n, features), (n, H, W) "
            "or (n, H, W, C)"
        )
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
            kinds = " and ".join(
                f"{n} {label}" for n, label in ((n_nan, "NaN"), (n_inf, "inf")) if n
            )
            if bad.all():
                raise DataError(
                    f"data: {key} in '{name}' has no finite values (all {x.size} are NaN/inf: "
                    f"{kinds}); check how the array was made"
                )
            flat = bad.reshape(len(x), -1)
            dead = np.flatnonzero(flat.all(axis=0)) if x.ndim == 2 else np.array([], int)
            if dead.size:
                cols = ", ".join(str(int(c)) for c in dead[:5]) + (", ..." if dead.size > 5 else "")
                raise DataError(
                    f"data: {key} in '{name}' has feature column(s) {cols} (0-based) that are "
                    "NaN/inf in every row; drop those columns"
                )
            row, col = (int(v) for v in np.argwhere(flat)[0])
            at = f"row {row}, column {col}" if x.ndim == 2 else f"row {row}"
            raise DataError(
                f"data: {key} in '{name}' contains {kinds} value(s) (first in {at}, 0-based); "
                "impute them or drop those rows before tuning"
            )
        huge = np.abs(x) > _FLOAT32_MAX
        if huge.any():
            row = int(np.argwhere(huge.reshape(len(x), -1))[0][0])
            raise DataError(
                f"data: {key} in '{name}' has {int(huge.sum())} value(s) beyond the float32 range "
                f"+-3.4e38 (first in row {row}, 0-based: {float(x[row][huge[row]].flat[0])!r}); "
                "rescale them"
            )
    return x.astype(np.float32), bool(was_uint8)


def _as_target(y: Any, n: int, name: str, key: str) -> np.ndarray:
    """Flatten targets to shape ``(n,)`` and check length and finiteness."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        hint = ""
        if (
            y.ndim == 2
            and y.dtype.kind in "biuf"
            and y.size
            and np.isin(y, (0, 1)).all()
            and (y.sum(axis=1) == 1).all()
        ):
            hint = f" ({key} looks one-hot encoded: save class indices, {key}.argmax(axis=1))"
        raise DataError(
            f"data: {key} in '{name}' has shape {y.shape}; targets must have shape (n,){hint}"
        )
    if len(y) != n:
        raise DataError(
            f"data: '{name}' has {n} samples of features but {len(y)} {key} values; "
            "lengths must match"
        )
    if y.dtype.kind not in "biufUS":
        raise DataError(f"data: {key} in '{name}' has dtype {y.dtype}; use numbers or strings")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = ~np.isfinite(y)
        raise DataError(
            f"data: {key} in '{name}' contains {int(bad.sum())} NaN/inf target value(s) (first "
            f"in row {int(np.argmax(bad))}, 0-based); drop or fix those rows"
        )
    return y


def _label(value: Any) -> str:
    """A target value as the user wrote it: ``0``, not ``0.0``."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


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
                f"data: target of '{name}' has a single distinct value {_label(y[0])!r} in all "
                f"{len(y)} samples; classification needs at least 2 classes: check the target, "
                "or add samples of another class"
            )
        return "binary" if n_unique == 2 else "multiclass"
    if task == "regression":
        if is_str:
            example = next((v for v in y if not _is_number(str(v))), y[0])
            raise DataError(
                f"task: 'regression' needs a numeric target, but '{name}' has string labels such "
                f"as {str(example)!r}; use --task multiclass/binary or omit --task"
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
        raise DataError(
            f"task: {task!r} needs at least 2 classes, but '{name}' has 1 (every target is "
            f"{_label(y[0])!r}); check the target, or add samples of another class"
        )
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
        n = len(y)
        n_val = math.ceil(fraction * n)  # how scikit-learn sizes the validation part
        most = math.floor((n - 1) / n * 100) / 100
        fix = f"use a validation_split of at most {most:g} or more data"
        if most <= 0:
            fix = "use more data"
        raise DataError(
            f"validation_split: {fraction!r} of {_plural(n, 'sample')} puts {n_val} in validation "
            f"and leaves {n - n_val} to train on, so it cannot make non-empty train and "
            f"validation sets; {fix}"
        ) from exc
    x_train, x_val, y_train, y_val = parts
    return x_train, x_val, y_train, y_val


def _scale(
    x_train: np.ndarray, x_val: np.ndarray, was_uint8: bool
) -> tuple[np.ndarray, np.ndarray, Preprocessing]:
    """Scale features; statistics come from the training split only."""
    if x_train.ndim in (3, 4):
        peak = max(float(np.abs(x_train).max()), float(np.abs(x_val).max()))
        if was_uint8 or peak > 1.5:
            step = Preprocessing("rescale", factor=1.0 / 255.0)
            return step.apply(x_train), step.apply(x_val), step
        return x_train, x_val, Preprocessing()
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    step = Preprocessing("standardize", mean=tuple(float(m) for m in scaler.mean_),
                         scale=tuple(float(v) for v in scaler.scale_))
    return step.apply(x_train), step.apply(x_val), step
