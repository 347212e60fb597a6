"""Dataset loading, train/validation/test splitting and feature scaling.

This module owns everything between "the user named some data" and "here are
float32 train/validation/test arrays ready for a model": resolving bundled
scikit-learn datasets or ``.npz``/``.csv`` files, validating them, inferring
the task (binary, multiclass or regression), encoding labels, holding out a
seeded (stratified) test split, making a seeded (stratified) train/validation
split and scaling features. Scalers are always fitted on the training split
only and then applied to the validation and test splits, so no information
leaks from validation or test data into training.

Structured CSVs (a string column, a missing cell, integer-coded categories) go through
``keras.utils.FeatureSpace``: each column gets a kind (numeric, integer categorical, string
categorical, free text) from the training split, missing cells are imputed by a recorded rule,
and the FeatureSpace adapted on the training split encodes both splits into float32 matrices
(see :class:`Preprocessing` and :class:`FeatureColumn` for the rules).

It does not own models, search spaces or training. Importing it loads neither TensorFlow nor
Keras (only numpy, plus scikit-learn lazily inside functions); Keras is imported, lazily, only
by the functions that fit or apply a FeatureSpace (``_fit_feature_space``,
``_encode_with_feature_space``), i.e. only for structured CSVs.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import itertools
import math
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from kerastune_kit._logging import get_logger
from kerastune_kit.errors import DataError

Task = Literal["binary", "multiclass", "regression"]
ColumnKind = Literal["numeric", "integer_categorical", "string_categorical", "text"]

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

# ---- the column-kind rule of structured CSVs (see FeatureColumn) ----
#: An integer column is integer-coded categorical when its training values are exactly the codes
#: 0..k-1 or 1..k with 3 <= k <= _MAX_CODES, seen at least _MIN_ROWS_PER_CODE times per code on
#: average. Two values (0/1) stay numeric: standardizing a binary column loses nothing.
_MIN_CODES, _MAX_CODES, _MIN_ROWS_PER_CODE = 3, 10, 5
#: A string column is free text when it has more than _TEXT_MIN_DISTINCT distinct training values
#: and more than _TEXT_MIN_UNIQUE_SHARE of its training values are distinct; else categorical.
_TEXT_MIN_DISTINCT, _TEXT_MIN_UNIQUE_SHARE = 20, 0.5
#: A categorical column one-hot encodes its _MAX_ONE_HOT most frequent training categories; rarer
#: (and unseen) values share one "other" column.
_MAX_ONE_HOT = 50
#: A kept text column is a bag of its _TEXT_VOCABULARY most frequent training words.
_TEXT_VOCABULARY = 100
#: An integer-coded category's code for "missing", and the IntegerLookup's out-of-vocabulary token:
#: the two lowest int32 values, which no accepted code may take.
MISSING_CODE, _UNSEEN_CODE = -(2**31), -(2**31) + 1
_CODE_LIMIT = 2**31 - 2
#: Layer names of an exported model (KitHyperModel.inference_model) that a column, an input of
#: that model, cannot take.
_RESERVED_INPUTS = frozenset({"feature_space", "mlp", "cnn", "probabilities"})

logger = get_logger("data")
#: (file, column) of the free-text columns already announced as dropped, so that a search that
#: loads its data more than once in a process says it once.
_ANNOUNCED: set[tuple[str, str]] = set()


def missing_spellings() -> tuple[str, ...]:
    """Every spelling of a missing cell that an exported model recognises in a string column:
    the markers of ``_MISSING_MARKERS`` in every upper/lower-case mix, plus ``+nan``/``-nan``
    (the training data's cells are compared case-insensitively after stripping; a model's input
    is compared as given, so surrounding spaces are not stripped)."""
    markers = sorted(_MISSING_MARKERS | {"+nan", "-nan"})
    spellings: list[str] = []
    for marker in markers:
        options = [(ch.lower(), ch.upper()) if ch.isalpha() else (ch,) for ch in marker]
        spellings.extend("".join(chars) for chars in itertools.product(*options))
    return tuple(dict.fromkeys(s for s in spellings if s))


@dataclass(frozen=True)
class FeatureColumn:
    """One raw CSV column as a structured dataset uses it, fitted on the training split.

    Kinds (the rule, applied to the training split; ``categorical_columns``,
    ``numeric_columns`` and ``text_columns`` force a kind):

    - ``numeric``: every cell is a number or missing, and it is not integer codes; standardized
      (``float_normalized``), a missing value becomes the training median.
    - ``integer_categorical``: integer codes ``0..k-1`` or ``1..k`` with ``3 <= k <= 10`` and
      at least 5 training rows per code on average (``origin`` coded 1/2/3; ``cylinders``
      4/6/8 is a count and stays numeric), or any integer column named in
      ``categorical_columns``; one-hot, a missing value is its own category.
    - ``string_categorical``: a column with a cell that is not a number, with at most 20
      distinct training values or at most half of its training values distinct; one-hot, a
      missing value is its own category.
    - ``text``: the other string columns (a car's ``name``): dropped with a notice unless
      named in ``text_columns``, then a bag of its 100 most frequent training words.

    A categorical column one-hot encodes its 50 most frequent training categories, plus one
    column for a missing value and one for every other value (rarer or unseen).

    Attributes:
        name: The column's header in the CSV.
        input_name: The exported model's input for it (``name`` with ``/`` as ``_``).
        kind: ``numeric``, ``integer_categorical``, ``string_categorical`` or ``text``.
        encoding: ``float_normalized`` (``float`` with ``standardize=False``), ``one_hot`` or
            ``bag_of_words``.
        reason: Why it got its kind, e.g. ``"integer codes 1..3"`` or ``"forced"``.
        fill: The imputed value: the training median (numeric), :data:`MISSING_CODE`
            (integer categorical), ``""`` (string categorical: the missing category; text:
            no words).
        missing: Missing cells in the training and the validation split.
        vocabulary: The encoded columns' labels in order (categorical: ``[missing]``,
            ``[other]``, then the categories; text: ``[other]`` then the words).
        width: Encoded features it contributes.
    """

    name: str
    input_name: str
    kind: ColumnKind
    encoding: str
    reason: str
    fill: float | int | str
    missing: tuple[int, int] = (0, 0)
    vocabulary: tuple[str, ...] = ()
    width: int = 1

    @property
    def input_dtype(self) -> str:
        """``float32`` for number columns, ``string`` for string and text columns."""
        return "float32" if self.kind in ("numeric", "integer_categorical") else "string"

    def describe(self) -> dict[str, Any]:
        """A JSON summary: kind, encoding, why, the imputation rule and value, the width."""
        if self.kind == "numeric":
            rule = "training median"
        elif self.kind == "text":
            rule = "empty text (no words)"
        else:
            rule = "own category"
        out: dict[str, Any] = {
            "name": self.name, "input": self.input_name, "dtype": self.input_dtype,
            "kind": self.kind, "encoding": self.encoding, "reason": self.reason,
            "imputation": {"rule": rule, "value": self.fill},
            "missing": {"train": self.missing[0], "validation": self.missing[1]},
            "width": self.width,
        }
        if self.kind != "numeric":
            out["vocabulary"] = list(self.vocabulary)
        return out


@dataclass(frozen=True)
class Preprocessing:
    """How raw features became the model's inputs, fitted on the training split only.

    ``standardize``: ``(x - mean) / scale`` per feature (scikit-learn's ``StandardScaler``;
    ``scale`` is 1 for a feature that is constant in training). ``rescale``: ``x * factor``
    (pixels / 255). ``feature_space``: a structured CSV's raw columns (:attr:`columns`),
    imputed and encoded by a fitted ``keras.utils.FeatureSpace``. ``none``: unchanged. An
    exported model starts with the same step as Keras layers
    (:meth:`kerastune_kit.hypermodels.KitHyperModel.inference_model`), so it takes raw inputs
    (for ``feature_space``: a dict of raw columns).

    Attributes:
        kind: ``standardize``, ``rescale``, ``feature_space`` or ``none``.
        mean: Per-feature means (``standardize``), length = number of features.
        scale: Per-feature standard deviations (``standardize``).
        factor: The multiplier (``rescale``).
        columns: The raw columns the FeatureSpace encodes (``feature_space``), in file order.
        dropped: ``(column, reason)`` of the free-text columns left out (``feature_space``).
        feature_space: The fitted ``keras.utils.FeatureSpace`` (``feature_space``).
    """

    kind: Literal["standardize", "rescale", "feature_space", "none"] = "none"
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    factor: float = 1.0
    columns: tuple[FeatureColumn, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()
    feature_space: Any = field(default=None, compare=False, repr=False)

    def apply(self, x: Any) -> np.ndarray:
        """The preprocessed features, float32: same shape as ``x``; for ``feature_space`` a
        ``(n, features)`` matrix from ``x``, a mapping of raw columns (input name -> ``n``
        values, as :attr:`Dataset.raw_x_val` holds them)."""
        if self.kind == "feature_space":
            return _encode_with_feature_space(self, x)
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "standardize":
            # In float32, as StandardScaler.transform computes for float32 features.
            mean = np.asarray(self.mean, dtype=np.float32)
            scale = np.asarray(self.scale, dtype=np.float32)
            return (x - mean) / scale
        if self.kind == "rescale":
            return x * np.float32(self.factor)
        return x

    @property
    def input_dtypes(self) -> dict[str, str]:
        """``feature_space``: the exported model's inputs, input name -> dtype."""
        return {column.input_name: column.input_dtype for column in self.columns}

    def describe(self) -> dict[str, Any]:
        """A JSON summary for sidecar files: the kind, and the feature count or factor; for
        ``feature_space`` also the model's raw inputs, every column's kind, encoding and
        imputation (rule and value), and the dropped columns."""
        if self.kind == "standardize":
            return {"kind": "standardize", "features": len(self.mean)}
        if self.kind == "rescale":
            return {"kind": "rescale", "factor": self.factor}
        if self.kind == "feature_space":
            return {
                "kind": "feature_space",
                "features": sum(column.width for column in self.columns),
                "inputs": self.input_dtypes,
                "columns": [column.describe() for column in self.columns],
                "dropped": [{"name": name, "kind": "text", "reason": reason}
                            for name, reason in self.dropped],
            }
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
        feature_names: Feature column names when known, else ``None`` (for a structured CSV,
            one per encoded feature: ``horsepower``, ``origin=2``, ``name:ford``).
        image_shape: For flattened pixel vectors (the bundled digits), the image layout
            ``(H, W, C)`` they come from, so ``--model cnn`` can use them; else ``None``.
        preprocessing: The scaling applied to ``x_train`` and ``x_val`` (see
            :class:`Preprocessing`); exported models include it.
        raw_x_train: Structured CSVs only: the training split's raw columns as the exported
            model takes them (input name -> 1-D array: float32 with NaN for a missing number,
            the cell's text for a string column); else None.
        raw_x_val: The same for the validation split.
        x_test: The held-out test split (same layout as ``x_val``, scaled with the training
            split's statistics), which the search never sees; None without a test split
            (``test_split=0``).
        y_test: Its targets, same layout as ``y_val``; None without a test split.
        raw_x_test: Structured CSVs only: the test split's raw columns (as ``raw_x_val``).
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
    raw_x_train: dict[str, np.ndarray] | None = field(default=None, repr=False)
    raw_x_val: dict[str, np.ndarray] | None = field(default=None, repr=False)
    x_test: np.ndarray | None = field(default=None, repr=False)
    y_test: np.ndarray | None = field(default=None, repr=False)
    raw_x_test: dict[str, np.ndarray] | None = field(default=None, repr=False)

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
        """Return a short, stable hash of the split arrays (for resume checks): train,
        validation and, when there is one, the test split.

        Returns:
            The first 16 hex characters of a sha256 over shapes, dtypes and bytes.
        """
        digest = hashlib.sha256()
        arrays = [self.x_train, self.y_train, self.x_val, self.y_val]
        if self.x_test is not None and self.y_test is not None:
            arrays += [self.x_test, self.y_test]
        for array in arrays:
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
            if self.preprocessing.kind == "feature_space":
                features = f"{_plural(len(self.preprocessing.columns), 'column')} as {features}"
        task = self.task if self.n_classes is None else f"{self.task} ({self.n_classes} classes)"
        test = "" if self.x_test is None else f" / {len(self.x_test)} test"
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val{test}, "
                f"{features}, {task}")


@dataclass
class _Column:
    """One feature column of a CSV file, every row, before any split."""

    name: str
    cells: list[str]  # each cell's text, stripped
    missing: np.ndarray  # bool per row
    values: np.ndarray | None  # float64 per row (NaN where missing) when every cell is a number
    first_text: tuple[int, str] | None = None  # (row, cell) of the first non-number cell


@dataclass
class _Table:
    """A CSV file's feature columns, for the structured path."""

    path: str
    target: str
    columns: list[_Column]
    lines: list[int]  # the file line of each row


@dataclass
class _Raw:
    """Unvalidated arrays straight from a source, before encoding and splitting."""

    name: str
    x: Any
    y: Any
    x_val: Any = None
    y_val: Any = None
    x_test: Any = None
    y_test: Any = None
    feature_names: tuple[str, ...] | None = None
    target_names: tuple[str, ...] | None = None
    fixed_task: str | None = None
    image_shape: tuple[int, ...] | None = None
    table: _Table | None = None


def list_datasets() -> list[tuple[str, str]]:
    """Return ``(name, description)`` for every bundled dataset."""
    return list(BUNDLED_DATASETS.items())


def load_dataset(
    spec: str,
    *,
    target: str | None = None,
    task: Task | None = None,
    validation_split: float = 0.2,
    test_split: float = 0.15,
    seed: int = 0,
    standardize: bool = True,
    max_samples: int | None = None,
    categorical_columns: Sequence[str] | None = None,
    numeric_columns: Sequence[str] | None = None,
    text_columns: Sequence[str] | None = None,
) -> Dataset:
    """Load, validate, split and scale a dataset.

    The splits, in order: an optional ``max_samples`` subsample; a held-out test split
    (``test_split`` of the data, stratified by class where every class has 2 samples or more,
    seeded), which the search never sees; then ``validation_split`` of what remains for
    validation (stratified the same way), the rest for training. Scalers (and a structured
    CSV's FeatureSpace) are fitted on the training split only, then applied to the validation
    and test splits.

    Data that comes with its own splits keeps them: an ``.npz`` with ``x_test``/``y_test``
    gives the test split (``test_split`` is then ignored); an ``.npz`` with ``x_val``/``y_val``
    but no test split keeps that validation split intact and carves the test split out of its
    training part (``test_split`` of ``x_train``).

    A ``.csv`` file whose feature columns are all numbers, none missing and none integer
    codes gets a float matrix scaled as for ``.npz`` data. Any other ``.csv`` (a string
    column, a missing cell, integer-coded categories, or a kind forced by the ``*_columns``
    arguments) is encoded by a ``keras.utils.FeatureSpace`` adapted on the training split
    (:class:`FeatureColumn` gives the rules); ``x_train``/``x_val``/``x_test`` are its float32
    output, ``raw_x_train``/``raw_x_val``/``raw_x_test`` the raw columns an exported model takes.

    Args:
        spec: A bundled dataset name (case-insensitive, see ``list_datasets``)
            or a path to a ``.npz`` (keys ``x``/``y``, or ``x_train``/``y_train``/
            ``x_val``/``y_val``, each optionally with ``x_test``/``y_test``; or
            ``x_train``/``y_train``/``x_test``/``y_test`` as ``keras.datasets`` save them) or
            ``.csv`` file (header row required).
        target: Target column name; required for ``.csv`` files.
        task: Force the task instead of inferring it.
        validation_split: Fraction of the data left after the test split that is held out
            for validation, ``0 < v < 1``. Ignored when the file already provides a
            validation split.
        test_split: Fraction of the data held out as a test split, ``0 <= t < 1``; 0 holds
            out none (``x_test`` is then None). Ignored when the file provides ``x_test``.
        seed: Seed for subsampling and splitting.
        standardize: Scale features: vector data gets a StandardScaler fitted on
            the training split only; images are divided by 255 when they look
            like raw pixels (uint8 or max > 1.5); a structured CSV's numeric columns
            are standardized (``float_normalized``; else passed as ``float``).
        max_samples: If given, keep a seeded (stratified where possible)
            subsample of at most this many samples before splitting (a file's own splits
            are each subsampled in proportion).
        categorical_columns: ``.csv`` columns to treat as categorical (integer or string
            values), whatever the rule says.
        numeric_columns: ``.csv`` columns of numbers to treat as numeric (e.g. integer codes
            that are really counts).
        text_columns: ``.csv`` columns to keep as free text (a bag of words) instead of
            dropping them.

    Returns:
        The loaded ``Dataset``.

    Raises:
        DataError: On any bad argument or unusable data (one-line message), e.g. a
            ``test_split`` that leaves fewer test samples than classes, or no training sample
            of a class.

    Example:
        >>> cars = load_dataset("cars.csv", target="mpg", text_columns=["name"])
        >>> cars.preprocessing.describe()["columns"][0]["kind"]
        'numeric'
        >>> iris = load_dataset("iris", test_split=0.2)
        >>> len(iris.x_train), len(iris.x_val), len(iris.x_test)
        (96, 24, 30)
    """
    _check_args(spec, task, validation_split, seed, max_samples)
    _check_test_split(test_split)
    forced = _check_column_options(categorical_columns, numeric_columns, text_columns)
    raw = _read_source(spec, target)
    if forced and raw.table is None:
        option = next(iter(forced.values()))
        raise DataError(
            f"{option}: only a .csv file has named columns, received data {raw.name!r}; "
            f"drop {option} or pass a .csv file"
        )
    if raw.table is not None:
        return _load_table(raw, task=task, validation_split=validation_split,
                           test_split=float(test_split), seed=seed, standardize=standardize,
                           max_samples=max_samples, forced=forced)
    x, was_uint8 = _as_features(raw.x, raw.name, "x")
    y = _as_target(raw.y, len(x), raw.name, "y")
    presplit = raw.x_val is not None
    parts = [y]
    if presplit:
        x_val, y_val, val_uint8 = _given_split(raw, "val", x.shape[1:])
        was_uint8 = was_uint8 or val_uint8
        parts.append(y_val)
    else:
        x_val, y_val = None, None
    given_test = raw.x_test is not None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    if given_test:
        x_test, y_test, _ = _given_split(raw, "test", x.shape[1:])
        parts.append(y_test)

    resolved, y_all, n_classes, class_names = _encode_targets(np.concatenate(parts), task, raw)
    classify = resolved != "regression"
    y = y_all[: len(y)]
    if presplit:
        y_val = y_all[len(y) : len(y) + len(y_val)]
    if given_test:
        y_test = y_all[len(y_all) - len(x_test) :]  # type: ignore[arg-type]
        if classify:
            _check_test_classes(y_all[: len(y_all) - len(y_test)], y_test, class_names, raw.name)
    budget = max_samples
    if max_samples is not None and given_test:
        total = len(y_all)
        if max_samples < total:
            k_test = max(1, round(max_samples * len(y_test) / total))  # type: ignore[arg-type]
            x_test, y_test = _subsample(x_test, y_test, k_test, seed, classify)  # type: ignore[arg-type]
            budget = max(_MIN_SAMPLES, max_samples - k_test)
    if presplit:
        if budget is not None and budget < len(y) + len(y_val):
            k_train = max(1, round(budget * len(y) / (len(y) + len(y_val))))
            k_val = max(1, budget - k_train)
            x, y = _subsample(x, y, k_train, seed, classify)
            x_val, y_val = _subsample(x_val, y_val, k_val, seed, classify)
        if not given_test and test_split > 0:  # carved out of the user's training split
            rest, test = _hold_out_test(y, test_split, seed, classify, class_names, min_rest=1,
                                        what="training sample")
            x, x_test, y, y_test = x[rest], x[test], y[rest], y[test]
    else:
        if budget is not None:
            x, y = _subsample(x, y, budget, seed, classify)
        if not given_test and test_split > 0:
            rest, test = _hold_out_test(y, test_split, seed, classify, class_names,
                                        min_rest=_MIN_SAMPLES, what="sample")
            x, x_test, y, y_test = x[rest], x[test], y[rest], y[test]
        x, x_val, y, y_val = _split(x, y, validation_split, seed, classify)

    if standardize:
        x, x_val, preprocessing = _scale(x, x_val, was_uint8)
    else:
        preprocessing = Preprocessing()
    if x_test is not None:
        x_test = np.ascontiguousarray(preprocessing.apply(x_test), dtype=np.float32)
        y_test = np.ascontiguousarray(y_test)
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
        x_test=x_test,
        y_test=y_test,
    )


def _check_test_split(test_split: Any) -> None:
    """``test_split`` must be a share in ``[0, 1)``."""
    ok = isinstance(test_split, (int, float)) and not isinstance(test_split, bool)
    if not ok or not 0.0 <= float(test_split) < 1.0:
        raise DataError(
            f"test_split: got {test_split!r}; use a share in [0, 1), e.g. 0.15, or 0 to hold "
            "out no test split"
        )


def _check_test_classes(y_train: np.ndarray, y_test: np.ndarray,
                        class_names: tuple[str, ...] | None, name: str) -> None:
    """A given test split may only hold classes that the training data has."""
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if unseen.size:
        label = class_names[int(unseen[0])] if class_names else str(int(unseen[0]))
        raise DataError(
            f"data: y_test in '{name}' has the class {label!r}, which no training or "
            f"validation sample has, so no model can predict it; drop those "
            f"{int(np.isin(y_test, unseen).sum())} test rows or add training samples of it"
        )


def _hold_out_test(
    y: np.ndarray, fraction: float, seed: int, stratify: bool,
    class_names: tuple[str, ...] | None, *, min_rest: int, what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices ``(rest, test)`` of a seeded test split of ``ceil(fraction * n)``
    rows (scikit-learn's ``train_test_split``), stratified by class when every class has 2
    rows or more, else plain.

    Raises:
        DataError: The test split would hold fewer rows than there are classes (or none), leave
            fewer than ``min_rest`` rows, or take every row of a class.
    """
    from sklearn.model_selection import train_test_split

    n = len(y)
    n_test = math.ceil(fraction * n)  # how scikit-learn sizes it
    n_rest = n - n_test
    classes, counts = np.unique(y, return_counts=True) if stratify else (None, None)
    need = len(classes) if classes is not None else 1
    lead = f"test_split: {fraction!r} of {_plural(n, what)}"
    if n_test < need:
        least = math.ceil(need / n * 100) / 100
        raise DataError(
            f"{lead} puts {n_test} in the test split, fewer than the {need} classes (a test "
            f"split needs one sample of each at least); use a test_split of {least:g} or more, 0 "
            "for no test split (--test-split 0), or more data"
        )
    if n_rest < min_rest:
        use = "train on" if min_rest == 1 else "train on and validate"
        raise DataError(
            f"{lead} puts {n_test} in the test split and leaves {n_rest} to {use} (at least "
            f"{min_rest} needed); use a smaller test_split, 0 for no test split "
            "(--test-split 0), or more data"
        )
    idx = np.arange(n)
    strat = y if counts is not None and counts.min() >= 2 else None
    try:
        rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat)
    except ValueError:  # too few rows per class for a stratified split: a plain one
        rest, test = train_test_split(idx, test_size=n_test, random_state=seed)
    if classes is not None:
        lost = np.setdiff1d(classes, y[rest])
        if lost.size:
            label = class_names[int(lost[0])] if class_names else str(int(lost[0]))
            count = int((y == lost[0]).sum())
            raise DataError(
                f"{lead} puts every sample of the class {label!r} ({count} in all) in the test "
                "split, leaving none to train on; use test_split 0 for no test split "
                "(--test-split 0) or add samples of that class"
            )
    return np.sort(rest), np.sort(test)


def _given_split(raw: _Raw, split: str, sample_shape: tuple[int, ...]
                 ) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ``x_<split>``/``y_<split>`` arrays a file brings (``val`` or ``test``), checked like
    the training split's and against its sample shape: ``(x, y, was_uint8)``.

    Raises:
        DataError: A bad array, or samples shaped unlike the training split's.
    """
    x, was_uint8 = _as_features(getattr(raw, f"x_{split}"), raw.name, f"x_{split}")
    y = _as_target(getattr(raw, f"y_{split}"), len(x), raw.name, f"y_{split}")
    if x.shape[1:] != sample_shape:
        raise DataError(
            f"data: '{raw.name}' has training samples of shape {sample_shape} but x_{split} "
            f"samples of shape {x.shape[1:]}; both splits need the same sample shape"
        )
    return x, y, was_uint8


def _encode_targets(
    y_all: np.ndarray, task: str | None, raw: _Raw
) -> tuple[str, np.ndarray, int | None, tuple[str, ...] | None]:
    """The task, and the targets encoded for it: ``(task, y, n_classes, class_names)``."""
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
    return resolved, y_all, n_classes, class_names


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
    if ("x_test" in keys) != ("y_test" in keys):
        have, lack = ("x_test", "y_test") if "x_test" in keys else ("y_test", "x_test")
        raise DataError(
            f"data: '{path}' has {have!r} but no {lack!r}; save both as the test split "
            f"(np.savez('{path}', ..., x_test=..., y_test=...)) or neither"
        )
    test = {"x_test": arrays.get("x_test"), "y_test": arrays.get("y_test")}
    split_keys = ("x_train", "y_train", "x_val", "y_val")
    if set(split_keys) <= keys:
        return _Raw(
            path.stem, arrays["x_train"], arrays["y_train"], arrays["x_val"], arrays["y_val"],
            **test,
        )
    if {"x", "y"} <= keys or ({"x_train", "y_train", "x_test"} <= keys
                              and not {"x_val", "y_val"} & keys):
        # x/y, or keras.datasets' layout (x_train/y_train/x_test/y_test): validation_split
        # makes the validation split.
        xk, yk = ("x", "y") if {"x", "y"} <= keys else ("x_train", "y_train")
        x, y = np.asarray(arrays[xk]), np.asarray(arrays[yk])
        if x.ndim >= 1 and y.ndim >= 1 and len(x) == len(y) and len(x) < _MIN_SAMPLES:
            what = f"0 samples ({xk} and {yk} are empty)" if len(x) == 0 else "1 sample"
            raise DataError(f"data: '{path}' has {what}; {_NEED_SAMPLES}; add samples")
        return _Raw(path.stem, x, y, **test)
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
    """Read a ``.csv`` file with a header row: its feature columns (numbers or strings) and target.

    Blank lines are skipped; messages give line numbers as an editor shows them. Empty cells and
    missing-value markers (``_MISSING_MARKERS``) are missing values, not text: a missing target
    value is refused, a missing feature value is imputed later (:func:`_fit_columns`). The
    float matrix ``x`` is set only when every feature cell is a number.
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
    n = len(body)
    lines = [line for line, _ in body]
    for col in range(len(header)):  # a column with no values at all, in header order
        if all(_is_missing(row[col]) for _, row in body):
            line, cell = body[0][0], body[0][1][col]
            if col == t_idx:
                raise DataError(
                    f"target: column {target!r} in '{path}' has no values (all {n} data rows "
                    f"are missing, e.g. {_cell(cell)} on line {line}); pick another --target"
                )
            raise DataError(
                f"data: column {header[col]!r} in '{path}' has no values (all {n} data rows are "
                f"missing, e.g. {_cell(cell)} on line {line}); drop the column"
            )
    columns: list[_Column] = []
    first_huge: tuple[int, int, str] | None = None  # inf, or beyond float32, in a number column
    for col in feature_idx:
        cells = [row[col].strip() for _, row in body]
        missing = np.fromiter((_is_missing(cell) for cell in cells), dtype=bool, count=n)
        values: np.ndarray | None = np.full(n, np.nan)
        first_text: tuple[int, str] | None = None
        for i, cell in enumerate(cells):
            if not missing[i]:
                try:
                    values[i] = float(cell)  # type: ignore[index]
                except ValueError:  # a string column: a categorical or text feature
                    values, first_text = None, (i, cell)
                    break
        if values is not None:
            huge = ~missing & ~(np.abs(values) <= _FLOAT32_MAX)
            if huge.any():
                i = int(np.argmax(huge))
                if first_huge is None or (lines[i], col) < first_huge[:2]:
                    first_huge = (lines[i], col, body[i][1][col])
        columns.append(_Column(header[col], cells, missing, values, first_text))
    labels = [row[t_idx].strip() for _, row in body]
    target_missing = [i for i, label in enumerate(labels) if _is_missing(label)]
    first_target = None
    if target_missing:
        first_target = (lines[target_missing[0]], t_idx, body[target_missing[0]][1][t_idx])
    problems = [p for p in (first_huge, first_target) if p is not None]
    first = min(problems, default=None, key=lambda p: (p[0], p[1]))
    if first is not None and first is first_huge:
        line, col, cell = first
        raise DataError(
            f"data: feature column {header[col]!r} in '{path}' has value {_short(cell)!r} on line "
            f"{line}, which is not a finite float32 number (NaN/inf, or beyond +-3.4e38); "
            "replace it or drop the row"
        )
    if first is not None:
        line, col, cell = first
        where = f"line {line}, column {header[col]!r} in '{path}' ({_cell(cell)})"
        label = ""
        if cell.strip() and not _is_number(cell):  # 'NA'/'None' may be a real class
            label = f" (or, if {_short(cell)!r} is a class name, rename it)"
        if len(target_missing) == 1:
            raise DataError(
                f"data: missing target value on {where}; fill it or drop the row{label}"
            )
        raise DataError(
            f"data: {len(target_missing)} missing target values; first on {where}; fill them or "
            f"drop the {len(target_missing)} rows that have them{label}"
        )
    try:
        y: np.ndarray = np.array([float(label) for label in labels])
    except ValueError:
        y = np.array(labels)
    x = None  # a float matrix only when every feature is a number and none is missing
    if all(column.values is not None and not column.missing.any() for column in columns):
        x = np.column_stack([column.values for column in columns])
    return _Raw(path.stem, x, y, feature_names=tuple(header[i] for i in feature_idx),
                table=_Table(str(path), target, columns, lines))


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


# ---------------------------------------------------------------------- structured CSVs
_OPTIONS = ("categorical_columns", "numeric_columns", "text_columns")
_SPELLINGS = frozenset(missing_spellings())


def _check_column_options(categorical: Any, numeric: Any, text: Any) -> dict[str, str]:
    """Validate the ``*_columns`` arguments; returns column name -> the option naming it."""
    forced: dict[str, str] = {}
    for option, names in zip(_OPTIONS, (categorical, numeric, text), strict=True):
        if names is None:
            continue
        if isinstance(names, str):
            names = names.split(",")
        if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
            raise DataError(
                f"{option}: expected a list of column names, received {names!r}; pass for "
                f"example {option}=['origin']"
            )
        for name in names:
            name = name.strip()
            if not name:
                raise DataError(f"{option}: received an empty column name in {names!r}; "
                                "pass the columns' header names")
            if forced.get(name, option) != option:
                raise DataError(f"{option}: column {name!r} is also in {forced[name]}; name "
                                "each column in one of categorical_columns, numeric_columns "
                                "and text_columns")
            forced[name] = option
    return forced


def _load_table(raw: _Raw, *, task: str | None, validation_split: float, test_split: float,
                seed: int, standardize: bool, max_samples: int | None,
                forced: dict[str, str]) -> Dataset:
    """Split a CSV's rows (test, then validation), give every column its kind (from the
    training split) and encode."""
    table = raw.table
    assert table is not None
    y = _as_target(raw.y, len(table.lines), raw.name, "y")
    resolved, y, n_classes, class_names = _encode_targets(y, task, raw)
    classify = resolved != "regression"
    rows = np.arange(len(table.lines))
    if max_samples is not None:
        rows, y = _subsample(rows, y, max_samples, seed, classify)
    # The same splits as the arrays' own would be: scikit-learn's depend on the count and y only.
    rows_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    if test_split > 0:
        rest, test = _hold_out_test(y, test_split, seed, classify, class_names,
                                    min_rest=_MIN_SAMPLES, what="sample")
        rows, rows_test, y, y_test = rows[rest], rows[test], y[rest], y[test]
    rows, rows_val, y, y_val = _split(rows, y, validation_split, seed, classify)
    kinds = _column_kinds(table, rows, forced)
    common = dict(name=raw.name, y_train=np.ascontiguousarray(y),
                  y_val=np.ascontiguousarray(y_val), task=resolved, n_classes=n_classes,
                  class_names=class_names,
                  y_test=None if y_test is None else np.ascontiguousarray(y_test))
    if raw.x is not None and all(kind == "numeric" for _, kind, _ in kinds):
        # Numbers only, none missing, no codes: a plain matrix, scaled as any other.
        x_all, _ = _as_features(raw.x, raw.name, "x")
        x, x_val = x_all[rows], x_all[rows_val]
        preprocessing = Preprocessing()
        if standardize:
            x, x_val, preprocessing = _scale(x, x_val, False)
        x_test = None if rows_test is None else np.ascontiguousarray(
            preprocessing.apply(x_all[rows_test]), dtype=np.float32)
        return Dataset(x_train=np.ascontiguousarray(x, dtype=np.float32),
                       x_val=np.ascontiguousarray(x_val, dtype=np.float32),
                       feature_names=raw.feature_names, preprocessing=preprocessing,
                       x_test=x_test, **common)  # type: ignore[arg-type]
    preprocessing, raw_train, raw_val = _fit_columns(table, kinds, rows, rows_val,
                                                     standardize=standardize)
    x, x_val = preprocessing.apply(raw_train), preprocessing.apply(raw_val)
    raw_test = x_test = None
    if rows_test is not None:
        by_name = {column.name: column for column in table.columns}
        raw_test = {spec.input_name: _raw_values(by_name[spec.name], spec, rows_test)
                    for spec in preprocessing.columns}
        x_test = np.ascontiguousarray(preprocessing.apply(raw_test))
    return Dataset(x_train=np.ascontiguousarray(x), x_val=np.ascontiguousarray(x_val),
                   feature_names=_encoded_names(preprocessing.columns),
                   preprocessing=preprocessing, raw_x_train=raw_train, raw_x_val=raw_val,
                   x_test=x_test, raw_x_test=raw_test, **common)  # type: ignore[arg-type]


def _column_kinds(table: _Table, rows: np.ndarray, forced: dict[str, str]
                  ) -> list[tuple[_Column, str, str]]:
    """``(column, kind, reason)`` of every feature column, by the rule of
    :class:`FeatureColumn` applied to the training ``rows``, or as ``forced``."""
    names = [column.name for column in table.columns]
    for name, option in forced.items():
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            if name == table.target:
                raise DataError(
                    f"{option}: column {name!r} is the target (--target) of '{table.path}'; "
                    "name feature columns only"
                )
            raise DataError(
                f"{option}: column {name!r} not found in '{table.path}'; feature columns are: "
                f"{', '.join(names)}{hint}"
            )
    kinds = []
    for column in table.columns:
        option = forced.get(column.name)
        present = rows[~column.missing[rows]]
        if column.values is None:
            i, cell = column.first_text  # type: ignore[misc]
            if option == "numeric_columns":
                raise DataError(
                    f"numeric_columns: column {column.name!r} in '{table.path}' is not numeric "
                    f"(value {_short(cell)!r} on line {table.lines[i]}); drop it from "
                    "numeric_columns (--numeric)"
                )
            distinct = len({column.cells[i] for i in present})
            if option is not None:
                kind = "text" if option == "text_columns" else "string_categorical"
                kinds.append((column, kind, f"forced by {option}"))
            elif distinct > _TEXT_MIN_DISTINCT and distinct > _TEXT_MIN_UNIQUE_SHARE * len(present):
                kinds.append((column, "text", f"free text: {distinct} distinct values in "
                                              f"{len(present)} training rows"))
            else:
                kinds.append((column, "string_categorical",
                              f"{_plural(distinct, 'distinct string')}"))
            continue
        if option == "text_columns":
            raise DataError(
                f"text_columns: column {column.name!r} in '{table.path}' holds numbers, not text; "
                "drop it from text_columns (--text-columns), or name it in categorical_columns"
            )
        if option == "categorical_columns":
            _check_codes(table, column)
            kinds.append((column, "integer_categorical", f"forced by {option}"))
        elif option == "numeric_columns":
            kinds.append((column, "numeric", f"forced by {option}"))
        elif _looks_like_codes(column.values[present]):  # type: ignore[index]
            codes = np.unique(column.values[present])  # type: ignore[index]
            kinds.append((column, "integer_categorical",
                          f"integer codes {int(codes[0])}..{int(codes[-1])}"))
        else:
            kinds.append((column, "numeric", "numbers"))
    return kinds


def _looks_like_codes(values: np.ndarray) -> bool:
    """The integer-coded categorical rule: exactly the codes 0..k-1 or 1..k, 3 <= k <= 10,
    at least 5 rows per code on average."""
    distinct = np.unique(values)
    k = len(distinct)
    return bool(
        _MIN_CODES <= k <= _MAX_CODES
        and len(values) >= _MIN_ROWS_PER_CODE * k
        and distinct[0] in (0.0, 1.0)
        and np.array_equal(distinct, np.arange(distinct[0], distinct[0] + k))
    )


def _check_codes(table: _Table, column: _Column) -> None:
    """A numeric column named in ``categorical_columns`` must hold integer codes (int32)."""
    values = column.values
    assert values is not None
    bad = ~column.missing & ((values % 1 != 0) | (np.abs(values) > _CODE_LIMIT))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"categorical_columns: column {column.name!r} in '{table.path}' has value "
            f"{_short(column.cells[i])!r} on line {table.lines[i]}, not an integer code (below "
            f"{_CODE_LIMIT + 1} in size); only integer codes or strings are categories: drop it "
            "from categorical_columns (--categorical)"
        )


def _fit_columns(
    table: _Table, kinds: list[tuple[_Column, str, str]], rows: np.ndarray,
    rows_val: np.ndarray, *, standardize: bool,
) -> tuple[Preprocessing, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Impute and fit the FeatureSpace on the training rows: ``(preprocessing, raw_train,
    raw_val)``; drops the free-text columns not asked for, with a notice."""
    specs: list[FeatureColumn] = []
    dropped: list[tuple[str, str]] = []
    raw_train: dict[str, np.ndarray] = {}
    raw_val: dict[str, np.ndarray] = {}
    for column, kind, reason in kinds:
        if kind == "text" and not reason.startswith("forced"):
            present = rows[~column.missing[rows]]
            example = _short(column.cells[int(present[0])]) if len(present) else ""
            flag = f"--text-columns {column.name}"
            if (table.path, column.name) not in _ANNOUNCED:
                _ANNOUNCED.add((table.path, column.name))
                logger.warning(
                    "data: dropped the free-text column %r of '%s' (%s, e.g. %r); keep it as a "
                    "bag of words with %s (text_columns=[%r])", column.name, table.path,
                    reason.removeprefix("free text: "), example, flag, column.name)
            dropped.append((column.name, f"{reason}; keep it with {flag}"))
            continue
        present = rows[~column.missing[rows]]
        if not len(present):
            n_values = int((~column.missing).sum())
            raise DataError(
                f"data: column {column.name!r} in '{table.path}' has no values in the training "
                f"split (its {n_values} values are all in validation or test rows); drop the "
                "column or add rows"
            )
        input_name = column.name.replace("/", "_")
        if input_name in raw_train:
            same = [c.name for c, _, _ in kinds if c.name.replace("/", "_") == input_name]
            if len(set(same)) == 1:
                raise DataError(
                    f"data: column {column.name!r} appears {len(same)} times in the header of "
                    f"'{table.path}'; rename the duplicates"
                )
            raise DataError(
                f"data: columns {' and '.join(map(repr, dict.fromkeys(same)))} in '{table.path}' "
                f"are both the model input {input_name!r} ('/' becomes '_'); rename one of them"
            )
        if input_name in _RESERVED_INPUTS or input_name.startswith("missing_spellings_"):
            raise DataError(
                f"data: column {column.name!r} in '{table.path}' has the name of a layer of the "
                f"exported model ({', '.join(sorted(_RESERVED_INPUTS))}, missing_spellings_*); "
                "rename the column"
            )
        fill: float | int | str = ""
        if kind == "numeric":
            fill = float(np.median(column.values[present]))  # type: ignore[index]
        elif kind == "integer_categorical":
            fill = MISSING_CODE
        encoding = {"numeric": "float_normalized" if standardize else "float",
                    "text": "bag_of_words"}.get(kind, "one_hot")
        spec = FeatureColumn(
            name=column.name, input_name=input_name, kind=kind,  # type: ignore[arg-type]
            encoding=encoding, reason=reason, fill=fill,
            missing=(int(column.missing[rows].sum()), int(column.missing[rows_val].sum())))
        specs.append(spec)
        raw_train[input_name] = _raw_values(column, spec, rows)
        raw_val[input_name] = _raw_values(column, spec, rows_val)
    if not specs:
        names = ", ".join(name for name, _ in dropped)
        raise DataError(
            f"data: every feature column of '{table.path}' is free text ({names}); keep some "
            f"with --text-columns COLUMN (text_columns=[...]) or add feature columns"
        )
    space, vocabularies = _fit_feature_space(
        specs, {spec.input_name: _impute(spec, raw_train[spec.input_name]) for spec in specs})
    columns = []
    for spec in specs:
        vocabulary = vocabularies.get(spec.input_name, ())
        width = len(vocabulary) if spec.kind != "numeric" else 1
        columns.append(replace(spec, vocabulary=tuple(vocabulary), width=width))
    step = Preprocessing("feature_space", columns=tuple(columns), dropped=tuple(dropped),
                         feature_space=space)
    return step, raw_train, raw_val


def _raw_values(column: _Column, spec: FeatureColumn, rows: np.ndarray) -> np.ndarray:
    """A column's raw values on ``rows``, as the exported model takes them: float32 with NaN
    for a missing number, the cell's (stripped) text for a string column."""
    if spec.input_dtype == "float32":
        return column.values[rows].astype(np.float32)  # type: ignore[index]
    return np.array([column.cells[i] for i in rows], dtype=str)


def _impute(spec: FeatureColumn, values: Any) -> np.ndarray:
    """Raw values with the missing ones replaced by the column's fill, in the dtype the
    FeatureSpace takes: float32 (numeric), int32 (integer codes) or strings.

    The same rule as the exported model's (:meth:`KitHyperModel.inference_model`): NaN is a
    missing number; a string is missing when it is one of :func:`missing_spellings` or empty,
    compared as given."""
    values = np.asarray(values)
    if spec.kind == "numeric":
        numbers = values.astype(np.float32)
        return np.where(np.isnan(numbers), np.float32(spec.fill), numbers)
    if spec.kind == "integer_categorical":
        numbers = values.astype(np.float64)
        numbers = np.where(np.isnan(numbers), float(MISSING_CODE), numbers)
        return np.clip(numbers, MISSING_CODE, 2**31 - 1).astype(np.int32)
    texts = values.astype(str)
    return np.array(["" if text in _SPELLINGS else text for text in texts.reshape(-1)],
                    dtype=str).reshape(texts.shape)


def _fit_feature_space(specs: Sequence[FeatureColumn], train: dict[str, np.ndarray]
                       ) -> tuple[Any, dict[str, list[str]]]:
    """A ``keras.utils.FeatureSpace`` adapted on the imputed training columns ``train``, and
    the label of each encoded feature of every non-numeric column.

    Numeric: ``FeatureSpace.float_normalized`` (or ``float``). Categorical: a
    ``StringLookup``/``IntegerLookup`` whose mask token is the missing value (its own category,
    kept out of the adapted vocabulary) with one out-of-vocabulary index and at most
    ``_MAX_ONE_HOT`` categories, one-hot encoded by the FeatureSpace. Text: a
    ``TextVectorization`` bag of words (``multi_hot``), adapted here on the training column and
    wrapped in a small functional model that states its output width (Keras 3.15 infers
    ``(None, 1, words)`` for it on a ``(None, 1)`` input, which the FeatureSpace cannot
    concatenate).
    """
    from kerastune_kit._backend import keras as _keras

    keras = _keras()
    import tensorflow as tf

    space_type, layers = keras.utils.FeatureSpace, keras.layers
    features: dict[str, Any] = {}
    words: dict[str, Any] = {}
    used: set[str] = set()
    for spec in specs:
        key, base = spec.input_name, _layer_name(spec.input_name, used)
        if spec.kind == "numeric":
            features[key] = (space_type.float_normalized(name=base)
                             if spec.encoding == "float_normalized"
                             else space_type.float(name=base))
        elif spec.kind == "integer_categorical":
            lookup = layers.IntegerLookup(
                max_tokens=_MAX_ONE_HOT + 2, num_oov_indices=1, mask_token=MISSING_CODE,
                oov_token=_UNSEEN_CODE, name=f"{base}_lookup")
            features[key] = space_type.feature(dtype="int32", preprocessor=lookup,
                                               output_mode="one_hot")
        elif spec.kind == "string_categorical":
            lookup = layers.StringLookup(max_tokens=_MAX_ONE_HOT + 2, num_oov_indices=1,
                                         mask_token="", name=f"{base}_lookup")
            features[key] = space_type.feature(dtype="string", preprocessor=lookup,
                                               output_mode="one_hot")
        else:
            vectorizer = layers.TextVectorization(
                max_tokens=_TEXT_VOCABULARY + 1, output_mode="multi_hot",
                standardize="lower_and_strip_punctuation", split="whitespace",
                name=f"{base}_words")
            vectorizer.adapt(tf.constant(train[key]), batch_size=1024)
            width = int(vectorizer.vocabulary_size())
            text = keras.Input(shape=(1,), dtype="string", name=f"{base}_text")
            bag = layers.Reshape((width,), name=f"{base}_bag")(vectorizer(text))
            features[key] = space_type.feature(
                dtype="string", output_mode="float",
                preprocessor=keras.Model(text, bag, name=f"{base}_bag_of_words"))
            words[key] = vectorizer
    space = space_type(features, output_mode="concat", name="feature_space")
    space.adapt(tf.data.Dataset.from_tensor_slices(
        {key: tf.constant(values) for key, values in train.items()}).batch(1024))
    vocabularies: dict[str, list[str]] = {}
    for spec in specs:
        key = spec.input_name
        if spec.kind == "text":
            vocabularies[key] = ["[other]", *map(str, words[key].get_vocabulary()[1:])]
        elif spec.kind != "numeric":
            tokens = space.preprocessors[key].get_vocabulary()
            labels = [str(int(t)) if spec.kind == "integer_categorical" else str(t)
                      for t in tokens[2:]]
            vocabularies[key] = ["[missing]", "[other]", *labels]
    return space, vocabularies


def _layer_name(name: str, used: set[str]) -> str:
    """A Keras layer-name stem for a column, unique within ``used``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "column"
    candidate, i = stem, 1
    while candidate in used:
        i += 1
        candidate = f"{stem}_{i}"
    used.add(candidate)
    return candidate


def _encode_with_feature_space(step: Preprocessing, x: Any) -> np.ndarray:
    """Impute raw columns and encode them with the fitted FeatureSpace: ``(n, features)``."""
    if not isinstance(x, Mapping):
        raise DataError(
            f"x: a feature_space preprocessing takes a dict of raw columns "
            f"({', '.join(step.input_dtypes)}), received {type(x).__name__}"
        )
    absent = [column.input_name for column in step.columns if column.input_name not in x]
    if absent:
        raise DataError(
            f"x: the raw columns {', '.join(map(repr, absent))} are missing; pass every one of "
            f"{', '.join(step.input_dtypes)}"
        )
    from kerastune_kit._backend import keras as _keras

    _keras()
    import tensorflow as tf

    inputs = {column.input_name: tf.constant(_impute(column, x[column.input_name]))
              for column in step.columns}
    return np.asarray(step.feature_space(inputs), dtype=np.float32)


def _encoded_names(columns: Sequence[FeatureColumn]) -> tuple[str, ...]:
    """One name per encoded feature, in the FeatureSpace's order (its inputs sorted by name):
    ``weight``, ``origin=2``, ``origin=[missing]``, ``name:ford``."""
    names: list[str] = []
    for column in sorted(columns, key=lambda c: c.input_name):
        if column.kind == "numeric":
            names.append(column.name)
        else:
            sep = ":" if column.kind == "text" else "="
            names.extend(f"{column.name}{sep}{label}" for label in column.vocabulary)
    return tuple(names)
