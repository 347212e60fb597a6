"""Tests for kerastune_kit.data: loading, splitting, scaling and error messages."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.data import (
    BUNDLED_DATASETS,
    DEFAULT_DATASET,
    Dataset,
    list_datasets,
)
from kerastune_kit.data import load_dataset as _load_dataset
from kerastune_kit.errors import DataError, KerastuneKitError

# --------------------------------------------------------------------------- helpers


def load_dataset(*args: object, **kwargs: object) -> Dataset:
    """``load_dataset`` without the held-out test split (``test_split=0`` unless a test says
    otherwise): these tests are about the train/validation split, scaling and messages, with
    sizes and tiny files made before the test split existed; tests/test_test_split.py covers it."""
    kwargs.setdefault("test_split", 0)
    return _load_dataset(*args, **kwargs)  # type: ignore[arg-type]



def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _raise_one_line(match: str, *args: object, **kwargs: object) -> str:
    """Call load_dataset expecting a DataError; check it is one line and matches."""
    with pytest.raises(DataError, match=match) as info:
        load_dataset(*args, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, KerastuneKitError)
    return message


@pytest.fixture
def blob_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, size=(60, 4))
    y = np.repeat([0, 1, 2], 20)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path


# --------------------------------------------------------------------------- bundled

BUNDLED_EXPECTED = [
    ("digits", "multiclass", 10, 1797, (64,)),
    ("iris", "multiclass", 3, 150, (4,)),
    ("wine", "multiclass", 3, 178, (13,)),
    ("breast_cancer", "binary", 2, 569, (30,)),
    ("diabetes", "regression", None, 442, (10,)),
]


@pytest.mark.parametrize(("name", "task", "n_classes", "n_total", "shape"), BUNDLED_EXPECTED)
def test_bundled_datasets_load(name, task, n_classes, n_total, shape):
    ds = load_dataset(name)
    assert isinstance(ds, Dataset)
    assert ds.name == name
    assert ds.task == task
    assert ds.n_classes == n_classes
    assert ds.input_shape == shape
    assert not ds.is_image
    assert len(ds.x_train) + len(ds.x_val) == n_total
    assert len(ds.x_val) == pytest.approx(0.2 * n_total, abs=1)
    assert ds.x_train.dtype == np.float32 and ds.x_val.dtype == np.float32
    assert ds.feature_names is not None and len(ds.feature_names) == shape[0]
    if task == "regression":
        assert ds.y_train.dtype == np.float32 and ds.y_train.ndim == 1
        assert ds.class_names is None
    else:
        assert ds.y_train.dtype == np.int32
        assert set(np.unique(ds.y_train)) == set(range(n_classes))
        assert ds.class_names is not None and len(ds.class_names) == n_classes


def test_bundled_name_case_insensitive_and_metadata():
    ds = load_dataset("IRIS")
    assert ds.name == "iris"
    assert ds.class_names == ("setosa", "versicolor", "virginica")
    assert load_dataset("breast_cancer").class_names == ("malignant", "benign")


def test_summary_line():
    ds = load_dataset("digits")
    assert ds.summary() == "digits: 1437 train / 360 val, 64 features, multiclass (10 classes)"
    assert load_dataset("diabetes").summary().endswith("10 features, regression")


def test_list_datasets_and_default():
    names = [name for name, _ in list_datasets()]
    assert names == ["digits", "iris", "wine", "breast_cancer", "diabetes"]
    assert set(names) == set(BUNDLED_DATASETS)
    assert DEFAULT_DATASET == "digits"
    assert all(isinstance(desc, str) and desc and "\n" not in desc for _, desc in list_datasets())


# --------------------------------------------------------------------------- splitting


def test_split_is_seeded():
    a = load_dataset("iris", seed=3, standardize=False)
    b = load_dataset("iris", seed=3, standardize=False)
    c = load_dataset("iris", seed=4, standardize=False)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, c.x_val)


def test_split_is_stratified():
    ds = load_dataset("wine", seed=7)
    full = np.concatenate([ds.y_train, ds.y_val])
    overall = np.bincount(full) / len(full)
    for part in (ds.y_train, ds.y_val):
        np.testing.assert_allclose(np.bincount(part, minlength=3) / len(part), overall, atol=0.03)


def test_validation_split_fraction_respected():
    ds = load_dataset("digits", validation_split=0.5)
    assert abs(len(ds.x_val) - len(ds.x_train)) <= 1


# --------------------------------------------------------------------------- scaling


def test_standardization_fitted_on_train_only():
    raw = load_dataset("wine", seed=2, standardize=False)
    scaled = load_dataset("wine", seed=2, standardize=True)
    np.testing.assert_array_equal(raw.y_val, scaled.y_val)  # same split either way
    mean = raw.x_train.astype(np.float64).mean(axis=0)
    std = raw.x_train.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(scaled.x_train.std(axis=0), 1.0, atol=1e-3)
    # Validation uses the *train* statistics, so it is not itself re-centred.
    np.testing.assert_allclose(scaled.x_val, (raw.x_val - mean) / std, rtol=1e-4, atol=1e-4)
    assert np.abs(scaled.x_val.mean(axis=0)).max() > 1e-3
    val_mean = raw.x_val.astype(np.float64).mean(axis=0)
    assert not np.allclose((raw.x_val - val_mean) / std, scaled.x_val, atol=1e-3)


def test_standardize_false_keeps_raw_values():
    from sklearn.datasets import load_iris

    ds = load_dataset("iris", standardize=False)
    raw = load_iris().data.astype(np.float32)
    stacked = np.concatenate([ds.x_train, ds.x_val])
    assert sorted(map(tuple, stacked)) == sorted(map(tuple, raw))


def test_regression_targets_not_scaled():
    from sklearn.datasets import load_diabetes

    ds = load_dataset("diabetes")
    full = np.sort(np.concatenate([ds.y_train, ds.y_val]))
    np.testing.assert_allclose(full, np.sort(load_diabetes().target.astype(np.float32)))


# --------------------------------------------------------------------------- npz


def test_npz_with_x_y(blob_npz: Path):
    ds = load_dataset(str(blob_npz), validation_split=0.25)
    assert ds.name == "blobs"
    assert ds.task == "multiclass" and ds.n_classes == 3
    assert ds.class_names == ("0", "1", "2")
    assert (len(ds.x_train), len(ds.x_val)) == (45, 15)
    assert ds.feature_names is None
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)


def test_npz_accepts_pathlike(blob_npz: Path):
    assert load_dataset(blob_npz).n_classes == 3


def test_npz_with_explicit_splits_used_as_given(tmp_path: Path):
    rng = np.random.default_rng(0)
    x_train, x_val = rng.normal(size=(30, 3)), rng.normal(size=(10, 3))
    y_train, y_val = np.array([5, 9] * 15), np.array([9, 5] * 5)
    path = tmp_path / "pre.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    ds = load_dataset(str(path), standardize=False)
    assert ds.task == "binary" and ds.class_names == ("5", "9")
    np.testing.assert_allclose(ds.x_train, x_train.astype(np.float32))
    np.testing.assert_allclose(ds.x_val, x_val.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, (y_train == 9).astype(np.int32))
    np.testing.assert_array_equal(ds.y_val, (y_val == 9).astype(np.int32))
    scaled = load_dataset(str(path))
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    np.testing.assert_allclose(scaled.x_val, (x_val - mean) / std, rtol=1e-4, atol=1e-4)


def test_npz_image_uint8_divided_by_255(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    y = np.arange(40) % 2
    path = tmp_path / "img.npz"
    np.savez(path, x=x, y=y)
    ds = load_dataset(str(path))
    assert ds.input_shape == (8, 8) and ds.is_image
    assert ds.x_train.dtype == np.float32
    assert ds.x_train.max() <= 1.0 and ds.x_train.min() >= 0.0
    raw = load_dataset(str(path), standardize=False)
    np.testing.assert_allclose(ds.x_train, raw.x_train / 255.0, rtol=1e-6)
    assert "8x8 images" in ds.summary()


def test_npz_image_with_channels_already_scaled_untouched(tmp_path: Path):
    x = np.random.default_rng(0).random((20, 4, 4, 3)).astype(np.float32)
    path = tmp_path / "rgb.npz"
    np.savez(path, x=x, y=np.arange(20) % 2)
    ds = load_dataset(str(path))
    assert ds.input_shape == (4, 4, 3) and ds.is_image
    stacked = np.concatenate([ds.x_train, ds.x_val])
    assert sorted(stacked.ravel().tolist()) == sorted(x.ravel().tolist())


def test_npz_one_dimensional_x_becomes_column(tmp_path: Path):
    path = tmp_path / "line.npz"
    x = np.linspace(0, 1, 50)
    np.savez(path, x=x, y=3.0 * x + 0.5)
    ds = load_dataset(str(path))
    assert ds.input_shape == (1,)
    assert ds.task == "regression" and ds.n_classes is None


# --------------------------------------------------------------------------- csv


def test_csv_with_string_labels(tmp_path: Path):
    rows = [[i, i * 0.5, "cat" if i % 2 else "dog"] for i in range(20)]
    path = _write_csv(tmp_path / "pets.csv", ["a", "b", "kind"], rows)
    ds = load_dataset(str(path), target="kind")
    assert ds.task == "binary" and ds.n_classes == 2
    assert ds.class_names == ("cat", "dog")
    assert ds.feature_names == ("a", "b")
    assert ds.input_shape == (2,)
    assert ds.y_train.dtype == np.int32


def test_csv_with_numeric_regression_target(tmp_path: Path):
    rng = np.random.default_rng(0)
    rows = [[f"{v:.4f}", f"{2 * v + 1:.4f}"] for v in rng.normal(size=40)]
    path = _write_csv(tmp_path / "reg.csv", ["x", "price"], rows)
    ds = load_dataset(str(path), target="price")
    assert ds.task == "regression" and ds.y_train.dtype == np.float32


def test_csv_integer_target_inferred_multiclass(tmp_path: Path):
    rows = [[i, i % 3] for i in range(30)]
    path = _write_csv(tmp_path / "mc.csv", ["f", "label"], rows)
    ds = load_dataset(str(path), target="label")
    assert ds.task == "multiclass" and ds.class_names == ("0", "1", "2")


# --------------------------------------------------------------------------- task override


def test_task_override_to_regression():
    ds = load_dataset("iris", task="regression")
    assert ds.task == "regression" and ds.n_classes is None
    assert ds.y_train.dtype == np.float32


def test_task_override_many_integer_values_to_multiclass(tmp_path: Path):
    path = tmp_path / "many.npz"
    np.savez(path, x=np.arange(100.0), y=np.arange(100) % 25)
    assert load_dataset(str(path)).task == "regression"
    ds = load_dataset(str(path), task="multiclass")
    assert ds.task == "multiclass" and ds.n_classes == 25


# --------------------------------------------------------------------------- max_samples


def test_max_samples_subsamples_before_split():
    ds = load_dataset("digits", max_samples=100, seed=1)
    assert len(ds.x_train) + len(ds.x_val) == 100
    assert ds.n_classes == 10
    again = load_dataset("digits", max_samples=100, seed=1)
    assert ds.fingerprint() == again.fingerprint()


def test_max_samples_with_presplit_npz(tmp_path: Path):
    path = tmp_path / "pre.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(80, 2)),
        y_train=np.arange(80) % 2,
        x_val=rng.normal(size=(20, 2)),
        y_val=np.arange(20) % 2,
    )
    ds = load_dataset(str(path), max_samples=10)
    assert (len(ds.x_train), len(ds.x_val)) == (8, 2)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_stable_and_seed_sensitive():
    a = load_dataset("iris", seed=0).fingerprint()
    assert a == load_dataset("iris", seed=0).fingerprint()
    assert a != load_dataset("iris", seed=1).fingerprint()
    assert len(a) == 16 and int(a, 16) >= 0


# --------------------------------------------------------------------------- errors


def test_unknown_name_suggests_closest():
    msg = _raise_one_line("did you mean 'digits'", "digts")
    assert "'digts'" in msg and "iris" in msg and msg.startswith("data:")


def test_missing_file(tmp_path: Path):
    missing = tmp_path / "nope.npz"
    msg = _raise_one_line("does not exist", str(missing))
    assert str(missing) in msg and ".npz/.csv" in msg


def test_wrong_suffix(tmp_path: Path):
    path = tmp_path / "data.txt"
    path.write_text("1,2\n", encoding="utf-8")
    msg = _raise_one_line(r"only \.npz and \.csv", str(path))
    assert "data.txt" in msg


def test_csv_without_target_lists_columns(tmp_path: Path):
    path = _write_csv(tmp_path / "t.csv", ["a", "b", "c"], [[1, 2, 3], [4, 5, 6]])
    msg = _raise_one_line("needs --target COLUMN", str(path))
    assert msg == "target: a .csv dataset needs --target COLUMN; columns are: a, b, c"


def test_csv_unknown_target_column(tmp_path: Path):
    path = _write_csv(tmp_path / "t.csv", ["alpha", "label"], [[1, 0], [2, 1]])
    msg = _raise_one_line("did you mean 'label'", str(path), target="lable")
    assert "'lable'" in msg and "alpha, label" in msg and msg.startswith("target:")


def test_csv_non_numeric_feature_column_is_categorical(tmp_path: Path):
    # A text cell used to be refused ("not numeric"); a string column is now a category.
    rows = [[1, "red", 0], [2, "blue", 1]]
    path = _write_csv(tmp_path / "t.csv", ["a", "color", "y"], rows)
    ds = load_dataset(str(path), target="y")
    kinds = {c["name"]: c["kind"] for c in ds.preprocessing.describe()["columns"]}
    assert kinds == {"a": "numeric", "color": "string_categorical"}
    assert ds.preprocessing.kind == "feature_space" and ds.x_train.dtype == np.float32
    assert set(ds.raw_x_val) == {"a", "color"}


def test_npz_wrong_keys(tmp_path: Path):
    path = tmp_path / "bad.npz"
    np.savez(path, features=np.zeros((4, 2)), labels=np.zeros(4))
    msg = _raise_one_line("expected 'x' and 'y'", str(path))
    assert "'features'" in msg and "'labels'" in msg and "x_train" in msg


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, 0.0])
def test_bad_validation_split(value):
    msg = _raise_one_line("validation_split", "iris", validation_split=value)
    assert repr(value) in msg and "between 0 and 1" in msg


def test_binary_override_with_three_classes():
    msg = _raise_one_line("'binary' needs exactly 2 classes", "iris", task="binary")
    assert "has 3" in msg and msg.startswith("task:")


def test_unknown_task_value():
    msg = _raise_one_line("task", "iris", task="clustering")
    assert "'clustering'" in msg and "multiclass" in msg


def test_classification_override_on_fractional_target(tmp_path: Path):
    path = tmp_path / "frac.npz"
    np.savez(path, x=np.arange(10.0), y=np.linspace(0, 1, 10))
    msg = _raise_one_line("non-integer", str(path), task="multiclass")
    assert "regression" in msg


def test_nan_in_features(tmp_path: Path):
    x = np.ones((10, 3))
    x[4, 1] = np.nan
    path = tmp_path / "holes.npz"
    np.savez(path, x=x, y=np.arange(10) % 2)
    msg = _raise_one_line("NaN", str(path))
    assert "row 4" in msg and "'holes'" in msg


def test_inf_in_csv_features(tmp_path: Path):
    path = _write_csv(tmp_path / "inf.csv", ["a", "y"], [[1, 0], ["inf", 1], [2, 0]])
    _raise_one_line("NaN/inf", str(path), target="y")


def test_length_mismatch(tmp_path: Path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, x=np.zeros((10, 2)), y=np.zeros(9))
    msg = _raise_one_line("lengths must match", str(path))
    assert "10" in msg and "9" in msg


def test_empty_data(tmp_path: Path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 2)), y=np.zeros(0))
    _raise_one_line("empty", str(path))


@pytest.mark.parametrize("value", [1, 0, -5, True])
def test_bad_max_samples(value):
    msg = _raise_one_line("max_samples", "iris", max_samples=value)
    assert repr(value) in msg


# --------------------------------------------------------------------------- messages that
# name the real cause (issue 13, item 10): missing cells, too few samples, files that are not what
# their suffix says. Each asserts the key phrases, the real line number and that it is one line.


def _write_text(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _message(*args: object, **kwargs: object) -> str:
    """The one-line DataError message ``load_dataset`` raises for these arguments."""
    with pytest.raises(DataError) as info:
        load_dataset(*args, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(("data: ", "target: ", "task: ", "validation_split: ",
                               "categorical_columns: ", "numeric_columns: ", "text_columns: "))
    assert isinstance(info.value, ValueError) and isinstance(info.value, KerastuneKitError)
    return message


def _column(ds: Dataset, name: str) -> dict:
    """The description of one raw column of a structured dataset."""
    return next(c for c in ds.preprocessing.describe()["columns"] if c["name"] == name)


def test_csv_empty_feature_cell_is_imputed_with_the_training_median(tmp_path: Path):
    # A missing feature value used to be refused; it is now imputed (training median).
    path = _write_text(tmp_path / "gaps.csv", "x,y\n1,0\n2,1\n\n3,0\n,1\n4,0\n")
    ds = load_dataset(str(path), target="y", standardize=False)
    x = _column(ds, "x")
    assert x["kind"] == "numeric" and x["imputation"]["rule"] == "training median"
    assert x["missing"]["train"] + x["missing"]["validation"] == 1
    train = ds.raw_x_train["x"]
    assert x["imputation"]["value"] == float(np.nanmedian(train))
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_val).all()
    assert np.isnan(np.concatenate([train, ds.raw_x_val["x"]])).sum() == 1


@pytest.mark.parametrize("marker", ["NA", "N/A", "NaN", "nan", "null", "None", "?", "", "  "])
def test_csv_missing_value_markers_are_not_called_non_numeric(tmp_path: Path, marker: str):
    # A marker is a missing number (imputed), never a text cell that makes 'x' a string column.
    path = _write_text(tmp_path / "m.csv", f"x,z,y\n1,2,0\n{marker},3,1\n4,5,0\n")
    ds = load_dataset(str(path), target="y")
    x = _column(ds, "x")
    assert x["kind"] == "numeric" and x["dtype"] == "float32"
    assert x["missing"]["train"] + x["missing"]["validation"] == 1


def test_csv_counts_the_missing_values_of_every_column(tmp_path: Path):
    text = "x,z,y\n1,2,0\n2,?,1\nnan,3,0\n4,null,1\n5,5,0\n"
    path = _write_text(tmp_path / "m3.csv", text)
    ds = load_dataset(str(path), target="y")
    for name, count in (("x", 1), ("z", 2)):
        missing = _column(ds, name)["missing"]
        assert missing["train"] + missing["validation"] == count


def test_csv_one_text_cell_makes_a_string_column_and_numeric_columns_says_where(tmp_path: Path):
    path = _write_text(tmp_path / "red.csv", "x,c,y\n1,1,0\n\n2,red,1\n3,2,0\n")
    ds = load_dataset(str(path), target="y")
    assert _column(ds, "c")["kind"] == "string_categorical"
    assert _column(ds, "c")["dtype"] == "string"
    # Forcing it numeric names the text cell and its real line (line 3 is blank).
    msg = _message(str(path), target="y", numeric_columns=["c"])
    assert msg.startswith("numeric_columns: column 'c'") and "is not numeric" in msg
    assert "(value 'red' on line 4)" in msg


@pytest.mark.parametrize(("cell", "shown"), [("", "empty cell"), ("NA", "value 'NA'")])
def test_csv_missing_target_value(tmp_path: Path, cell: str, shown: str):
    path = _write_text(tmp_path / "t.csv", f"x,y\n1,a\n2,b\n3,{cell}\n4,b\n")
    msg = _message(str(path), target="y")
    assert f"missing target value on line 4, column 'y' in '{path}' ({shown})" in msg
    assert "fill it or drop the row" in msg


def test_csv_na_in_string_target_is_no_longer_a_class(tmp_path: Path):
    # Before, 'NA' silently became a third class; now it is a missing target value.
    path = _write_text(tmp_path / "t.csv", "x,y\n1,cat\n2,dog\n3,NA\n4,dog\n5,cat\n")
    msg = _message(str(path), target="y")
    assert "missing target value on line 4" in msg
    assert "if 'NA' is a class name, rename it" in msg


def test_csv_nan_in_numeric_target_names_its_line(tmp_path: Path):
    path = _write_text(tmp_path / "t.csv", "x,y\n1,0.5\n2,1.5\n3,NaN\n4,1.0\n")
    msg = _message(str(path), target="y")
    assert "missing target value on line 4, column 'y'" in msg and "class name" not in msg


def test_csv_column_with_no_values_says_drop_the_column(tmp_path: Path):
    path = _write_text(tmp_path / "t.csv", "x,z,y\n1,NaN,0\n2,,1\n3,NA,0\n")
    msg = _message(str(path), target="y")
    assert "column 'z'" in msg and "has no values (all 3 data rows are missing" in msg
    assert "drop the column" in msg
    path = _write_text(tmp_path / "u.csv", "x,y\n1,\n2,NA\n3,\n")
    assert "pick another --target" in _message(str(path), target="y")


def test_csv_inf_names_its_line_and_column(tmp_path: Path):
    path = _write_text(tmp_path / "inf.csv", "a,y\n1,0\n\ninf,1\n2,0\n")
    msg = _message(str(path), target="y")
    assert "feature column 'a'" in msg and "value 'inf' on line 4" in msg
    assert "not a finite float32 number" in msg


@pytest.mark.parametrize(
    ("text", "target"),
    [("x,y\n1,0\n", "y"), ("x,y\n1,0.5\n", "y"), ("x,label\n\n3,cat\n", "label")],
)
def test_csv_one_data_row_names_the_row_count(tmp_path: Path, text: str, target: str):
    path = _write_text(tmp_path / "one.csv", text)
    msg = _message(str(path), target=target)
    assert f"'{path}' has 1 data row (line {text.count(chr(10))})" in msg
    assert "a search needs at least 2 (one to train on, one to validate" in msg
    assert "single" not in msg and "validation_split" not in msg


def test_csv_header_only_says_no_data_rows(tmp_path: Path):
    path = _write_text(tmp_path / "h.csv", "x,y\n")
    msg = _message(str(path), target="y")
    assert "has a header but no data rows" in msg and "at least 2" in msg


def test_npz_with_one_sample_names_the_sample_count(tmp_path: Path):
    for y in (np.array([1]), np.array([0.5])):  # classification-looking and regression
        path = tmp_path / "one.npz"
        np.savez(path, x=np.ones((1, 3)), y=y)
        msg = _message(str(path))
        assert f"'{path}' has 1 sample; a search needs at least 2" in msg
        assert "single" not in msg and "validation_split" not in msg
    np.savez(path, x=np.zeros((0, 2)), y=np.zeros(0))
    assert "has 0 samples (x and y are empty)" in _message(str(path))


def test_single_class_shows_the_value_as_written(tmp_path: Path):
    path = _write_text(tmp_path / "t.csv", "x,y\n1,0\n2,0\n3,0\n")
    msg = _message(str(path), target="y")
    assert "single distinct value '0' in all 3 samples" in msg and "'0.0'" not in msg
    assert "at least 2 classes" in msg


def test_split_fraction_too_large_names_the_counts(tmp_path: Path):
    path = tmp_path / "two.npz"
    np.savez(path, x=np.ones((2, 2)), y=np.array([0.5, 1.5]))
    msg = _message(str(path), validation_split=0.6)
    assert msg.startswith("validation_split: 0.6 of 2 samples puts 2 in validation")
    assert "leaves 0 to train on" in msg and "at most 0.5" in msg


def test_text_file_named_npz_is_not_about_pickle(tmp_path: Path):
    path = _write_text(tmp_path / "data.npz", "x,y\n1,0\n2,1\n")
    msg = _message(str(path))
    head = f"data: '{path}' is not a .npz archive (it is not a zip file; it looks like text/CSV"
    assert msg.startswith(head)
    assert f"np.savez('{path}', x=..., y=...)" in msg and "rename it to .csv" in msg
    assert "pickle" not in msg


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "is empty (0 bytes), not a .npz archive"),
        (bytes(range(256)), "is not a .npz archive (it is not a zip file; it starts with bytes"),
        (b"\x80\x04\x95", "it looks like a Python pickle"),
    ],
)
def test_non_zip_npz_files(tmp_path: Path, content: bytes, phrase: str):
    path = _write_text(tmp_path / "bad.npz", content)
    msg = _message(str(path))
    assert phrase in msg and "np.savez(" in msg and "allow_pickle" not in msg


def test_npy_file_named_npz(tmp_path: Path):
    np.save(tmp_path / "arr.npy", np.ones(3))
    path = (tmp_path / "arr.npy").rename(tmp_path / "arr.npz")
    assert "is a single .npy array, not a .npz archive" in _message(str(path))


def test_truncated_npz_is_damaged(tmp_path: Path):
    full = tmp_path / "full.npz"
    np.savez(full, x=np.ones((100, 3)), y=np.arange(100) % 2)
    path = _write_text(tmp_path / "cut.npz", full.read_bytes()[:600])
    msg = _message(str(path))
    assert "is a damaged or truncated .npz archive" in msg and "re-create it" in msg


def test_npz_with_object_arrays_is_about_python_objects(tmp_path: Path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([[1, "a"], [2, None]], dtype=object), y=np.array([0, 1]))
    msg = _message(str(path))
    assert "array 'x'" in msg and "holds Python objects (dtype=object)" in msg
    assert "save plain numeric arrays" in msg


@pytest.mark.parametrize(
    ("arrays", "phrase"),
    [
        ({}, "holds no arrays"),
        ({"x": np.ones((4, 2))}, "has 'x' but no 'y'"),
        ({"X": np.ones((4, 2)), "Y": np.ones(4)}, "keys are case-sensitive: save them as 'x'"),
        (
            {"x_train": np.ones((4, 2)), "y_train": np.ones(4)},
            "has 'x_train', 'y_train' but no 'x_val', 'y_val'",
        ),
    ],
)
def test_npz_keys_name_what_is_missing(tmp_path: Path, arrays: dict, phrase: str):
    path = tmp_path / "k.npz"
    np.savez(path, **arrays)
    assert phrase in _message(str(path))


@pytest.mark.parametrize(
    ("x", "y", "phrase"),
    [
        (np.array([["a", "b"]] * 4), np.arange(4) % 2, "holds strings (dtype <U1, e.g. 'a')"),
        (np.array(3.0), np.zeros(1), "is a single value (shape ())"),
        (np.zeros((0, 2)), np.zeros(5), "x in 'v' is empty (shape (0, 2))"),
        (np.r_[np.ones((5, 2)), [[1e300, 1]]], np.arange(6) % 2, "beyond the float32 range"),
        (np.c_[np.ones(6), np.full(6, np.nan)], np.arange(6) % 2, "column(s) 1 (0-based)"),
        (np.full((4, 2), np.nan), np.arange(4) % 2, "has no finite values (all 8 are NaN/inf"),
        (np.ones((6, 2)), np.eye(3)[[0, 1, 2, 0, 1, 2]], "looks one-hot encoded"),
        (np.ones((10, 2)), np.arange(9) % 2, "10 samples of features but 9 y values"),
    ],
)
def test_npz_array_problems(tmp_path: Path, x: np.ndarray, y: np.ndarray, phrase: str):
    path = tmp_path / "v.npz"
    np.savez(path, x=x, y=y)
    assert phrase in _message(str(path))


@pytest.mark.parametrize(
    ("content", "phrases"),
    [
        ("x,y\n1,0\n\n2,1,5\n3,0\n", ["line 4 has 3 fields but the header has 2"]),
        ("x,z,y\n1,0,1\n2\n3,0,1\n", ["line 3 has 1 field but the header has 3"]),
        ("x,y\n1,0\n2,1,\n3,0\n", ["line 3 has 3 fields", "(it ends with an extra comma)"]),
        ('x,y\n1,0\n"2,1\n3,0\n', ["quoted field opened on line 3 that is never closed"]),
        ("x;y\n1;0\n2;1\n", ["single column 'x;y' on line 1", "';'-separated"]),
        ("x\ty\n1\t0\n2\t1\n", ["tab-separated"]),
        ("x,y\n1,caf\xe9\n".encode("latin-1"), ["is not UTF-8 text (byte 0xe9 on line 2"]),
        (b"\xef\xbb\xbfx,y\n1,0\n2,\xe9\n", ["byte 0xe9 on line 3"]),
        ("x,y\n1,0\n2,1\n".encode("utf-16"), ["is UTF-16 encoded text; re-save it as UTF-8"]),
        (b"x,y\n1,0\n2\x00,1\n", ["is not a text file (it has a NUL byte on line 3)"]),
        (b"PK\x03\x04rest", ["is a zip archive", "not a text .csv"]),
        ("y,x,y\n1,2,0\n2,3,1\n", ["column 'y' appears 2 times", "(columns 1 and 3)"]),
    ],
)
def test_csv_structure_problems(tmp_path: Path, content: str | bytes, phrases: list[str]):
    path = _write_text(tmp_path / "s.csv", content)
    msg = _message(str(path), target="y")
    assert str(path) in msg
    for phrase in phrases:
        assert phrase in msg


def test_csv_without_header_row_says_so(tmp_path: Path):
    path = _write_text(tmp_path / "nh.csv", "1,0\n2,1\n3,0\n")
    for target in (None, "y"):
        msg = _message(str(path), target=target)
        assert "line 1 ('1,0') looks like data, not a header: add a header row" in msg


def test_regression_override_names_a_non_numeric_label(tmp_path: Path):
    path = _write_text(tmp_path / "r.csv", "x,y\n1,1.5\n2,abc\n3,2.5\n")
    msg = _message(str(path), target="y", task="regression")
    assert "string labels such as 'abc'" in msg


def test_readable_csv_edge_cases_still_load(tmp_path: Path):
    # A stray quote inside a field (readable in the lenient csv mode) and CRLF line ends.
    path = _write_text(tmp_path / "ok.csv", 'x,y\r\n1,"a"b\r\n2,c\r\n3,c\r\n\r\n4,"a"b\r\n')
    ds = load_dataset(str(path), target="y")
    assert ds.class_names == ("ab", "c")
    path = _write_text(tmp_path / "crlf.csv", b"x,y\r\n1,0\r\n\r\n2,1\r\nNA,0\r\n")
    missing = _column(load_dataset(str(path), target="y"), "x")["missing"]
    assert missing["train"] + missing["validation"] == 1  # the NA on line 5, imputed


# --------------------------------------------------------------------------- hygiene


def test_module_does_not_import_tensorflow_or_keras_or_eager_sklearn():
    # Importing kerastune_kit.data loads no TensorFlow/Keras; they are imported lazily, and only
    # by the two functions that fit or apply a FeatureSpace (structured CSVs).
    import kerastune_kit.data as data_module

    tree = ast.parse(Path(data_module.__file__).read_text(encoding="utf-8"))
    imported: list[tuple[str, str | None]] = []  # (module, enclosing top-level function)
    for top in tree.body:
        function = top.name if isinstance(top, ast.FunctionDef) else None
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                imported.extend((alias.name, function) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.append((node.module or "", function))
    heavy = {"tensorflow", "keras", "keras_tuner", "kerastune_kit._backend"}
    lazy_heavy = {function for name, function in imported
                  if name.split(".")[0] in heavy or name in heavy}
    assert lazy_heavy == {"_fit_feature_space", "_encode_with_feature_space"}
    assert not [name for name, function in imported if function is None
                and (name.split(".")[0] in heavy or name.startswith("sklearn"))]
