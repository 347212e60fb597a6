"""Structured CSVs: column kinds, imputation, the FeatureSpace, and models that take raw columns.

The data is a cars-like table generated here (mpg from weight, horsepower, origin and fuel, plus
noise), with missing horsepower ('?'), missing fuel (empty cells) and a free-text ``name``.
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit._logging import get_logger
from kerastune_kit.config import SearchConfig, load_toml
from kerastune_kit.data import MISSING_CODE, Dataset, _looks_like_codes, load_dataset
from kerastune_kit.errors import ConfigError, DataError, KerastuneKitError
from tests.conftest import REPO, error_lines, run_cli

COLUMNS = ["mpg", "cylinders", "displacement", "horsepower", "weight", "origin", "fuel", "name"]
MAKERS = {1: ["chevrolet", "ford", "plymouth", "dodge", "amc"],
          2: ["volkswagen", "peugeot", "fiat", "volvo"],
          3: ["toyota", "datsun", "honda", "mazda"]}
MODELS = ["malibu", "torino", "fury", "corolla", "civic", "rabbit", "pinto", "maverick",
          "wagon", "custom", "deluxe", "sedan"]


def write_cars(path: Path, n: int = 200, seed: int = 0) -> Path:
    """A cars-like CSV whose mpg is learnable from the other columns."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        origin = int(rng.choice([1, 2, 3], p=[0.6, 0.2, 0.2]))
        if origin == 1:
            cylinders = int(rng.choice([4, 6, 8], p=[0.5, 0.25, 0.25]))
        else:
            cylinders = int(rng.choice([3, 4, 5], p=[0.1, 0.8, 0.1])) if origin == 2 else 4
        displacement = cylinders * rng.normal(40, 5)
        horsepower = 0.35 * displacement + rng.normal(50, 8)
        weight = 1500 + 6 * displacement + rng.normal(0, 150)
        fuel = str(rng.choice(["gas", "diesel"], p=[0.85, 0.15]))
        mpg = (50 - 0.006 * weight - 0.05 * horsepower + 2.0 * (origin - 1)
               + (4.0 if fuel == "diesel" else 0.0) + rng.normal(0, 1.0))
        name = f"{rng.choice(MAKERS[origin])} {rng.choice(MODELS)} {i}"
        rows.append([f"{mpg:.1f}", cylinders, f"{displacement:.1f}",
                     "?" if i % 23 == 5 else f"{horsepower:.0f}", f"{weight:.0f}", origin,
                     "" if i % 31 == 7 else fuel, name])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


@pytest.fixture
def cars_csv(tmp_path: Path) -> Path:
    return write_cars(tmp_path / "cars.csv")


@pytest.fixture
def notices():
    """The records the package logger emits during the test (it does not propagate)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.INFO)
    logger = get_logger()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _columns(ds: Dataset) -> dict[str, dict]:
    return {c["name"]: c for c in ds.preprocessing.describe()["columns"]}


def _tensors(columns: dict[str, np.ndarray]) -> dict:
    """Raw columns as the exported model's predict takes them (Keras 3.15's predict refuses
    NumPy string arrays)."""
    import tensorflow as tf

    return {name: tf.constant(values) for name, values in columns.items()}


def _one_line_error(kind: type, *args: object, **kwargs: object) -> str:
    with pytest.raises(kind) as info:
        load_dataset(*args, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, KerastuneKitError)
    return message


# --------------------------------------------------------------------------- kinds


def test_column_kinds_are_inferred_and_the_text_column_dropped_with_one_notice(
        cars_csv, notices):
    ds = load_dataset(str(cars_csv), target="mpg", test_split=0)  # (the 160/40 split below)
    columns = _columns(ds)
    assert {name: c["kind"] for name, c in columns.items()} == {
        "cylinders": "numeric",  # 3/4/5/6/8: a count, not codes
        "displacement": "numeric", "horsepower": "numeric", "weight": "numeric",
        "origin": "integer_categorical", "fuel": "string_categorical",
    }
    assert columns["origin"]["reason"] == "integer codes 1..3"
    assert columns["origin"]["vocabulary"] == ["[missing]", "[other]", "1", "2", "3"]
    assert set(columns["fuel"]["vocabulary"]) == {"[missing]", "[other]", "gas", "diesel"}
    assert ds.preprocessing.describe()["inputs"] == {
        "cylinders": "float32", "displacement": "float32", "horsepower": "float32",
        "weight": "float32", "origin": "float32", "fuel": "string"}
    dropped = ds.preprocessing.describe()["dropped"]
    assert [d["name"] for d in dropped] == ["name"]
    assert "--text-columns name" in dropped[0]["reason"]

    lines = [r.getMessage() for r in notices if "free-text" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert notices[0].levelno == logging.WARNING
    assert "dropped the free-text column 'name'" in lines[0]
    assert "--text-columns name" in lines[0] and str(cars_csv) in lines[0]
    load_dataset(str(cars_csv), target="mpg")  # a search loads its data twice: said once
    assert len([r for r in notices if "free-text" in r.getMessage()]) == 1

    # The encoded matrices are what the rest of the package expects.
    assert ds.x_train.dtype == ds.x_val.dtype == np.float32
    assert ds.x_train.ndim == 2 and ds.input_shape == (sum(c["width"] for c in columns.values()),)
    assert len(ds.feature_names) == ds.input_shape[0]
    assert "origin=2" in ds.feature_names and "fuel=[missing]" in ds.feature_names
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_val).all()
    assert ds.summary() == "cars: 160 train / 40 val, 6 columns as 13 features, regression"


def test_kinds_can_be_forced_and_text_kept_as_a_bag_of_words(cars_csv, notices):
    ds = load_dataset(str(cars_csv), target="mpg", categorical_columns=["cylinders"],
                      numeric_columns=["origin"], text_columns=["name"])
    columns = _columns(ds)
    assert columns["cylinders"]["kind"] == "integer_categorical"
    assert columns["cylinders"]["reason"] == "forced by categorical_columns"
    assert columns["origin"]["kind"] == "numeric"
    name = columns["name"]
    assert name["kind"] == "text" and name["encoding"] == "bag_of_words"
    assert name["dtype"] == "string" and name["vocabulary"][0] == "[other]"
    assert {"ford", "toyota", "wagon"} <= set(name["vocabulary"])  # words shared across rows
    assert name["width"] == len(name["vocabulary"]) <= 101
    assert ds.preprocessing.describe()["dropped"] == []
    assert not [r for r in notices if "free-text" in r.getMessage()]
    names = list(ds.feature_names)
    ford = ["ford" in text.split() for text in ds.raw_x_train["name"]]
    np.testing.assert_array_equal(ds.x_train[:, names.index("name:ford")], np.float32(ford))


def test_the_integer_code_and_text_rules():
    codes = np.repeat([1.0, 2.0, 3.0], 5)
    assert _looks_like_codes(codes)
    assert _looks_like_codes(np.repeat(np.arange(10.0), 5))  # 0..9
    assert not _looks_like_codes(np.repeat([0.0, 1.0], 10))  # binary: numeric
    assert not _looks_like_codes(np.repeat([4.0, 6.0, 8.0], 10))  # a count
    assert not _looks_like_codes(np.repeat([1.0, 2.0, 4.0], 10))  # a gap
    assert not _looks_like_codes(np.repeat(np.arange(1.0, 12.0), 10))  # 11 codes
    assert not _looks_like_codes(np.array([1.0, 2.0, 3.0, 1.0]))  # under 5 rows a code
    assert not _looks_like_codes(np.repeat([1.5, 2.5, 3.5], 5))


def test_few_distinct_strings_are_categories_many_are_text(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[f"{v:.3f}", f"w{i}", f"c{i % 20}", str(i % 2)]
            for i, v in enumerate(rng.normal(size=60))]
    path = tmp_path / "t.csv"
    path.write_text("x,unique,twenty,y\n" + "\n".join(",".join(r) for r in rows) + "\n")
    ds = load_dataset(str(path), target="y")
    kinds = {name: c["kind"] for name, c in _columns(ds).items()}
    assert kinds == {"x": "numeric", "twenty": "string_categorical"}  # 20 distinct: categories
    assert [d["name"] for d in ds.preprocessing.describe()["dropped"]] == ["unique"]


def test_many_categories_are_capped_and_column_names_become_input_names(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["km/h,maker,y"] + [f"{rng.normal():.3f},m{rng.integers(0, 60)},{i % 2}"
                                for i in range(600)]
    path = tmp_path / "wide.csv"
    path.write_text("\n".join(lines) + "\n")
    ds = load_dataset(str(path), target="y", max_samples=500)
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 500
    maker = _columns(ds)["maker"]
    assert maker["kind"] == "string_categorical"  # 60 values, 1 in 7 rows distinct
    assert maker["width"] == 52 and maker["vocabulary"][:2] == ["[missing]", "[other]"]
    assert ds.preprocessing.describe()["inputs"] == {"km_h": "float32", "maker": "string"}
    assert set(ds.raw_x_train) == {"km_h", "maker"}

    for header, fragment in (("a,a,c,y", "column 'a' appears 2 times in the header"),
                             ("a/b,a_b,c,y", "are both the model input 'a_b'"),
                             ("mlp,b,c,y", "has the name of a layer of the exported model")):
        bad = tmp_path / "bad.csv"
        bad.write_text(f"{header}\n1,2,x,0\n2,3,y,1\n3,4,z,0\n")
        assert fragment in _one_line_error(DataError, str(bad), target="y", test_split=0)


# --------------------------------------------------------------------------- imputation


def test_imputation_is_recorded_and_uses_training_statistics_only(cars_csv):
    ds = load_dataset(str(cars_csv), target="mpg")
    description = ds.preprocessing.describe()
    assert json.loads(json.dumps(description)) == description  # JSON-able, as run.json needs
    columns = _columns(ds)
    hp_train, hp_val = ds.raw_x_train["horsepower"], ds.raw_x_val["horsepower"]
    horsepower = columns["horsepower"]
    assert horsepower["imputation"] == {"rule": "training median",
                                        "value": float(np.nanmedian(hp_train))}
    assert horsepower["missing"] == {"train": int(np.isnan(hp_train).sum()),
                                     "validation": int(np.isnan(hp_val).sum())}
    assert horsepower["missing"]["train"] > 0 and horsepower["missing"]["validation"] > 0
    assert columns["fuel"]["imputation"] == {"rule": "own category", "value": ""}
    assert columns["origin"]["imputation"] == {"rule": "own category", "value": MISSING_CODE}

    # The FeatureSpace was adapted on the (imputed) training split only.
    space = ds.preprocessing.feature_space
    for name in ("weight", "horsepower"):
        train = np.where(np.isnan(ds.raw_x_train[name]), np.nanmedian(ds.raw_x_train[name]),
                         ds.raw_x_train[name])
        mean = float(np.asarray(space.preprocessors[name].mean).ravel()[0])
        assert mean == pytest.approx(float(train.mean()), rel=1e-5)
        everything = np.concatenate([train, ds.raw_x_val[name]])
        assert mean != pytest.approx(float(np.nanmean(everything)), rel=1e-7)
        column = np.asarray(ds.x_train[:, list(ds.feature_names).index(name)])
        assert column.mean() == pytest.approx(0.0, abs=1e-5)  # standardized on training rows
    # A missing fuel is its own category in the encoding; a missing horsepower is the median.
    names = list(ds.feature_names)
    missing_fuel = ds.raw_x_train["fuel"] == ""
    assert missing_fuel.any()
    np.testing.assert_array_equal(ds.x_train[:, names.index("fuel=[missing]")],
                                  missing_fuel.astype(np.float32))
    hp = ds.x_train[:, names.index("horsepower")]
    assert len(set(hp[np.isnan(hp_train)].tolist())) == 1
    # apply() is the same encoding, from raw columns.
    np.testing.assert_array_equal(ds.preprocessing.apply(ds.raw_x_val), ds.x_val)


def test_fingerprint_is_stable_for_the_same_file_across_processes(cars_csv):
    first = load_dataset(str(cars_csv), target="mpg").fingerprint()
    assert first == load_dataset(str(cars_csv), target="mpg").fingerprint()
    code = ("from kerastune_kit.data import load_dataset; "
            f"print(load_dataset({str(cars_csv)!r}, target='mpg').fingerprint())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == first
    assert first != load_dataset(str(cars_csv), target="mpg", seed=1).fingerprint()
    assert first != load_dataset(str(cars_csv), target="mpg", text_columns=["name"]).fingerprint()


def test_a_numeric_csv_keeps_the_plain_path_without_tensorflow(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    path = tmp_path / "plain.csv"
    rows = [",".join(f"{v:.4f}" for v in row) + f",{i % 2}" for i, row in enumerate(x)]
    path.write_text("a,b,c,y\n" + "\n".join(rows) + "\n")
    code = ("import sys; from kerastune_kit.data import load_dataset; "
            f"ds = load_dataset({str(path)!r}, target='y'); "
            "print(ds.preprocessing.kind, ds.feature_names, ds.raw_x_train, "
            "'tensorflow' in sys.modules, 'keras' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["standardize", "('a',", "'b',", "'c')", "None", "False",
                                   "False"]


# --------------------------------------------------------------------------- bad input


def test_bad_column_input_is_one_line_naming_the_field(cars_csv, tmp_path):
    path = str(cars_csv)
    msg = _one_line_error(DataError, path, target="mpg", categorical_columns=["orign"])
    assert msg.startswith("categorical_columns: column 'orign' not found")
    assert "did you mean 'origin'?" in msg
    msg = _one_line_error(DataError, path, target="mpg", text_columns=["mpg"])
    assert msg.startswith("text_columns: column 'mpg' is the target")
    msg = _one_line_error(DataError, path, target="mpg", numeric_columns=["fuel"])
    assert msg.startswith("numeric_columns: column 'fuel'")
    assert "is not numeric (value 'diesel' on line 2)" in msg
    msg = _one_line_error(DataError, path, target="mpg", text_columns=["weight"])
    assert "text_columns: column 'weight'" in msg and "holds numbers, not text" in msg
    msg = _one_line_error(DataError, path, target="mpg", categorical_columns=["displacement"])
    assert "categorical_columns: column 'displacement'" in msg and "not an integer code" in msg
    msg = _one_line_error(DataError, path, target="mpg", categorical_columns=["origin"],
                          numeric_columns=["origin"])
    assert msg.startswith("numeric_columns: column 'origin' is also in categorical_columns")
    msg = _one_line_error(DataError, "iris", categorical_columns=["x"])
    assert msg.startswith("categorical_columns: only a .csv file has named columns")

    lines = cars_csv.read_text().splitlines()
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("\n".join([lines[0], lines[1], "?," + lines[2].split(",", 1)[1],
                               *lines[3:]]) + "\n")
    msg = _one_line_error(DataError, str(gaps), target="mpg")
    assert msg.startswith("data: missing target value on line 3, column 'mpg'")
    empty = tmp_path / "empty_column.csv"
    empty.write_text("\n".join([lines[0], *(line.rsplit(",", 1)[0] + ",NA" for line in lines[1:])])
                     + "\n")
    msg = _one_line_error(DataError, str(empty), target="mpg")
    assert msg.startswith("data: column 'name'") and "has no values" in msg
    assert "drop the column" in msg


def test_the_column_options_in_the_configuration(tmp_path):
    config = SearchConfig(data="data/cars.csv", target="mpg", categorical_columns="origin, cyl",
                          text_columns=["name"])
    assert config.categorical_columns == ["origin", "cyl"] and config.numeric_columns is None
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    loaded = SearchConfig(**load_toml(path))
    assert loaded.resume_fingerprint() == config.resume_fingerprint()
    assert loaded.text_columns == ["name"] and loaded.categorical_columns == ["origin", "cyl"]
    assert "text_columns" in config.resume_fingerprint()
    assert "columns" not in SearchConfig().to_toml()  # nothing new for other searches
    for kwargs, fragment in (
        ({"data": "iris", "text_columns": ["a"]}, "only a .csv dataset has named columns"),
        ({"data": "c.csv", "target": "y", "numeric_columns": ["y"]}, "is the --target column"),
        ({"data": "c.csv", "categorical_columns": ["a"], "text_columns": ["a"]},
         "is also in categorical_columns"),
        ({"data": "c.csv", "categorical_columns": [""]}, "expected a list of column names"),
        ({"data": "c.csv", "numeric_columns": 3}, "expected a list of column names"),
    ):
        with pytest.raises(ConfigError) as info:
            SearchConfig(**kwargs)
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_cli_refuses_column_flags_for_a_bundled_dataset(tmp_path, capsys):
    from kerastune_kit.cli import main

    code = main(["search", "--data", "iris", "--text-columns", "a,b", "--run-dir",
                 str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: text_columns: only a .csv dataset")
    assert "--text-columns" in err[0]
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- exported models


def _load_quietly(path: Path):
    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras's "Skipping variable loading"
        return keras.saving.load_model(path)


def _row_with_gaps(ds: Dataset) -> dict[str, np.ndarray]:
    """One raw row: every number missing (NaN), every string column empty or '?'."""
    row = {}
    for i, column in enumerate(ds.preprocessing.columns):
        if column.input_dtype == "float32":
            row[column.input_name] = np.array([np.nan], dtype=np.float32)
        else:
            row[column.input_name] = np.array(["" if i % 2 else "?"])
    return row


def test_inference_model_takes_raw_columns_and_round_trips_through_keras_files(cars_csv,
                                                                               tmp_path):
    import keras_tuner as kt

    from kerastune_kit.hypermodels import MLPHyperModel

    ds = load_dataset(str(cars_csv), target="mpg", text_columns=["name"])
    hypermodel = MLPHyperModel.for_dataset(ds)
    network = hypermodel.build(kt.HyperParameters())
    network.fit(ds.x_train, hypermodel.head.prepare_targets(ds.y_train), epochs=3,
                batch_size=32, verbose=0)
    model = hypermodel.inference_model(network)
    assert sorted(model.input) == sorted(ds.preprocessing.input_dtypes)
    raw_val = _tensors(ds.raw_x_val)
    expected = network.predict(ds.x_val, verbose=0)
    predictions = model.predict(raw_val, verbose=0)
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-4)

    path = tmp_path / "cars.keras"
    model.save(path)
    loaded = _load_quietly(path)
    np.testing.assert_allclose(loaded.predict(raw_val, verbose=0), predictions, rtol=1e-6,
                               atol=1e-5)
    scores = loaded.evaluate(raw_val, ds.y_val, verbose=0, return_dict=True)
    ours = network.evaluate(ds.x_val, hypermodel.head.prepare_targets(ds.y_val), verbose=0,
                            return_dict=True)
    assert scores["mae"] == pytest.approx(ours["mae"], rel=1e-5)

    row = _row_with_gaps(ds)
    prediction = loaded.predict(_tensors(row), verbose=0)
    assert prediction.shape == (1, 1) and np.isfinite(prediction).all()
    # The model imputes as the training data was: the same as the network on apply()'s row.
    np.testing.assert_allclose(prediction, network.predict(ds.preprocessing.apply(row),
                                                           verbose=0), rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_cli_search_and_export_of_a_structured_csv_end_to_end(cars_csv, tmp_path):
    run, output = tmp_path / "run", tmp_path / "out" / "cars.keras"
    proc = run_cli("search", "--data", str(cars_csv), "--target", "mpg", "--max-trials", "2",
                   "--max-epochs", "2", "--run-dir", str(run))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    notice = [line for line in error_lines(proc.stderr) if "free-text" in line]
    assert len(notice) == 1 and notice[0].startswith("warning: data: dropped the free-text "
                                                     "column 'name'")
    assert "search finished" in proc.stdout

    proc = run_cli("export", str(run), "--output", str(output))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sidecar = json.loads(output.with_suffix(".json").read_text())
    assert sidecar["model_card"]["preprocessing"]["kind"] == "feature_space"
    assert {c["name"] for c in sidecar["model_card"]["preprocessing"]["columns"]} == set(
        COLUMNS[1:-1])

    model = _load_quietly(output)
    ds = load_dataset(str(cars_csv), target="mpg")  # the search's split (seed 0)
    scores = model.evaluate(_tensors(ds.raw_x_val), ds.y_val, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(sidecar["score"], rel=1e-4, abs=1e-5)
    assert sidecar["score"] < 0.5  # mpg is learnable: well under the variance left by the mean
    prediction = model.predict(_tensors(_row_with_gaps(ds)), verbose=0)
    assert prediction.shape == (1, 1) and np.isfinite(prediction).all()
