"""The held-out test split (issue 16, part 2): how ``load_dataset`` makes it, and the final
evaluation of a real search on it (``best_hyperparameters.json``, ``run.json``,
``load_results``, ``inspect``, TensorBoard) with and without ``--refit``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kerastune_kit.data import load_dataset
from kerastune_kit.errors import DataError
from kerastune_kit.final import TestEvaluation, final_lines, gap_and_threshold
from tests.conftest import run_cli


# ---------------------------------------------------------------------- load_dataset
def _ids_npz(path: Path, n: int = 120, classes: int = 3, **extra: np.ndarray) -> Path:
    """Rows whose first feature is their row number, so each split's rows can be named."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.arange(n, dtype=float), rng.normal(size=(n, 2))])
    np.savez(path, x=x, y=np.arange(n) % classes, **extra)
    return path


def test_iris_splits_sizes_and_stratification() -> None:
    ds = load_dataset("iris", test_split=0.2)
    # 30 of 150 held out (scikit-learn's ceil), then 20% of the 120 left for validation
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (96, 24, 30)
    assert np.bincount(ds.y_test).tolist() == [10, 10, 10]  # stratified: 1/3 of each class
    assert np.bincount(ds.y_train).tolist() == [32, 32, 32]
    assert ds.x_test.dtype == np.float32 and ds.y_test.dtype == ds.y_val.dtype
    assert ds.x_test.shape[1:] == ds.x_val.shape[1:] == (4,)
    assert ds.summary() == "iris: 96 train / 24 val / 30 test, 4 features, multiclass (3 classes)"


def test_default_test_split_is_015_and_stratified_on_digits() -> None:
    ds = load_dataset("digits")
    assert len(ds.x_test) == math.ceil(0.15 * 1797) == 270
    assert len(ds.x_train) + len(ds.x_val) == 1797 - 270
    shares = np.bincount(ds.y_test, minlength=10) / len(ds.y_test)
    everything = np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test]), minlength=10)
    # each class's share of the test split is its share of the data, to within one sample
    np.testing.assert_allclose(shares, everything / everything.sum(), atol=1.0 / 270)


def test_splits_do_not_share_rows_and_are_seeded(tmp_path: Path) -> None:
    path = _ids_npz(tmp_path / "ids.npz")
    ds = load_dataset(str(path), standardize=False, test_split=0.25)
    train, val, test = (set(a[:, 0].astype(int)) for a in (ds.x_train, ds.x_val, ds.x_test))
    assert len(test) == 30 and len(val) == 18 and len(train) == 72
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(120))
    again = load_dataset(str(path), standardize=False, test_split=0.25)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    other = load_dataset(str(path), standardize=False, test_split=0.25, seed=1)
    assert set(other.x_test[:, 0].astype(int)) != test


def test_scaler_is_fitted_on_the_training_rows_only(tmp_path: Path) -> None:
    path = _ids_npz(tmp_path / "ids.npz")
    raw = load_dataset(str(path), standardize=False)
    scaled = load_dataset(str(path))
    assert scaled.preprocessing.kind == "standardize"
    mean = raw.x_train.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(scaled.preprocessing.mean, mean, rtol=1e-6)
    with_test = np.concatenate([raw.x_train, raw.x_test]).astype(np.float64).mean(axis=0)
    assert abs(with_test[0] - mean[0]) > 0.1  # the test rows would have moved it
    std = raw.x_train.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(scaled.x_test, (raw.x_test - mean) / std, rtol=1e-4, atol=1e-4)


def test_npz_x_test_is_honoured_and_test_split_ignored(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, x_test = rng.normal(size=(40, 3)), rng.normal(size=(10, 3)) + 5.0
    y = np.array(["cat", "dog"] * 20)
    y_test = np.array(["dog"] * 6 + ["cat"] * 4)
    path = tmp_path / "given.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    ds = load_dataset(str(path), test_split=0.5)
    assert len(ds.x_train) + len(ds.x_val) == 40 and len(ds.x_test) == 10
    assert ds.class_names == ("cat", "dog")
    np.testing.assert_array_equal(ds.y_test, [1] * 6 + [0] * 4)  # the training classes' codes
    mean, scale = (np.asarray(v) for v in (ds.preprocessing.mean, ds.preprocessing.scale))
    np.testing.assert_allclose(ds.x_test, (x_test - mean) / scale, rtol=1e-4, atol=1e-4)
    assert np.abs(ds.x_test.mean(axis=0)).min() > 1.0  # scaled with the training statistics

    np.savez(path, x=x, y=y, x_test=x_test, y_test=np.array(["dog"] * 9 + ["owl"]))
    with pytest.raises(DataError, match=r"y_test in 'given' has the class 'owl'"):
        load_dataset(str(path))
    np.savez(path, x=x, y=y, x_test=x_test)
    with pytest.raises(DataError, match="has 'x_test' but no 'y_test'"):
        load_dataset(str(path))
    np.savez(path, x=x, y=y, x_test=x_test[:, :2], y_test=y_test)
    with pytest.raises(DataError, match=r"x_test samples of shape \(2,\)"):
        load_dataset(str(path))


def test_keras_datasets_layout_splits_validation_from_x_train(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "kd.npz"
    np.savez(path, x_train=rng.integers(0, 255, size=(50, 4, 4)).astype(np.uint8),
             y_train=np.arange(50) % 2, x_test=rng.integers(0, 255, size=(12, 4, 4)).astype(
                 np.uint8), y_test=np.arange(12) % 2)
    ds = load_dataset(str(path))
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (40, 10, 12)
    assert ds.preprocessing.kind == "rescale" and float(ds.x_test.max()) <= 1.0


def test_test_split_is_carved_out_of_the_training_part_of_a_presplit_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x_train = np.column_stack([np.arange(40.0), rng.normal(size=40)])
    x_val = np.column_stack([100 + np.arange(10.0), rng.normal(size=10)])
    path = tmp_path / "pre.npz"
    np.savez(path, x_train=x_train, y_train=np.arange(40) % 2, x_val=x_val,
             y_val=np.arange(10) % 2)
    ds = load_dataset(str(path), standardize=False)
    np.testing.assert_array_equal(ds.x_val, x_val.astype(np.float32))  # intact
    assert len(ds.x_test) == math.ceil(0.15 * 40) == 6 and len(ds.x_train) == 34
    test_ids = set(ds.x_test[:, 0].astype(int))
    assert test_ids <= set(range(40)) and not test_ids & set(ds.x_train[:, 0].astype(int))
    assert np.bincount(ds.y_test).tolist() == [3, 3]


@pytest.mark.parametrize("value", [1.0, -0.1, True, "0.2", 1.5])
def test_bad_test_split_values(value: object) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("iris", test_split=value)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"test_split: got {value!r}") and "\n" not in message
    assert "0 to hold out no test split" in message


def test_tiny_data_is_refused_in_one_line(tmp_path: Path) -> None:
    path = _ids_npz(tmp_path / "tiny.npz", n=10, classes=5)
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert message.startswith("test_split: 0.15 of 10 samples puts 2 in the test split, "
                              "fewer than the 5 classes") and "\n" not in message
    assert "--test-split 0" in message
    with pytest.raises(DataError, match=r"test_split: 0\.9 of 10 samples puts 9 in the test "
                                        r"split and leaves 1 to train on and validate"):
        load_dataset(str(path), test_split=0.9)
    # a class with a single sample that lands in the test split: none left to train on
    x = np.arange(12.0).reshape(-1, 1)
    y = np.array([0] * 6 + [1] * 5 + [2])
    for seed in range(30):
        np.savez(tmp_path / "rare.npz", x=x, y=y)
        try:
            load_dataset(str(tmp_path / "rare.npz"), test_split=0.25, seed=seed)
        except DataError as exc:
            assert str(exc).startswith("test_split: 0.25 of 12 samples puts every sample of "
                                       "the class '2' (1 in all) in the test split")
            break
    else:
        pytest.fail("no seed put the single sample of class 2 in the test split")
    assert load_dataset(str(path), test_split=0).x_test is None  # 0: no test split


def test_test_split_zero_means_none_and_changes_the_fingerprint() -> None:
    none = load_dataset("wine", test_split=0)
    assert none.x_test is None and none.y_test is None and none.raw_x_test is None
    assert "test" not in none.summary()
    held = load_dataset("wine")
    assert held.fingerprint() != none.fingerprint()
    assert held.fingerprint() == load_dataset("wine").fingerprint()
    assert held.fingerprint() != load_dataset("wine", test_split=0.2).fingerprint()


def test_max_samples_still_bounds_all_splits() -> None:
    ds = load_dataset("digits", max_samples=100)
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 100
    assert len(ds.x_test) == 15


def test_max_samples_with_a_given_test_split(tmp_path: Path) -> None:
    path = _ids_npz(tmp_path / "ids.npz", n=80, classes=2,
                    x_test=np.zeros((20, 3)), y_test=np.arange(20) % 2)
    ds = load_dataset(str(path), max_samples=50)
    assert len(ds.x_test) == 10 and len(ds.x_train) + len(ds.x_val) == 40


def test_structured_csv_gets_raw_test_columns_and_a_train_only_vocabulary(tmp_path: Path
                                                                          ) -> None:
    rng = np.random.default_rng(4)
    rows = ["size,color,label"]
    for i in range(80):  # 40 colors seen twice each: some only in the test rows
        rows.append(f"{rng.normal():.3f},c{i % 40},{i % 2}")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    ds = load_dataset(str(path), target="label", categorical_columns=["color"])
    assert ds.preprocessing.kind == "feature_space"
    assert ds.raw_x_test is not None and set(ds.raw_x_test) == {"size", "color"}
    assert len(ds.raw_x_test["color"]) == len(ds.x_test) == 12
    np.testing.assert_allclose(ds.x_test, ds.preprocessing.apply(ds.raw_x_test), atol=1e-6)
    color = next(c for c in ds.preprocessing.columns if c.name == "color")
    seen = set(ds.raw_x_train["color"])
    assert set(color.vocabulary[2:]) <= seen  # adapted on the training rows only
    assert set(ds.raw_x_test["color"]) - seen  # ...though the test rows have other colors
    # the same rows as the array path would hold out
    numeric = tmp_path / "n.csv"
    numeric.write_text("a,b,label\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(60)))
    by_csv = load_dataset(str(numeric), target="label", standardize=False)
    assert sorted(by_csv.x_test[:, 0].astype(int).tolist()) == sorted(
        set(range(60)) - set(by_csv.x_train[:, 0].astype(int)) - set(by_csv.x_val[:, 0]
                                                                     .astype(int)))
    assert by_csv.raw_x_test is None and len(by_csv.x_test) == 9


# ---------------------------------------------------------------------- the gap rule
def test_gap_rule_for_scores_and_losses() -> None:
    gap, threshold = gap_and_threshold("test_accuracy", 0.97, 0.91, 270)
    assert gap == pytest.approx(0.06)
    assert threshold == pytest.approx(max(0.02, 2 * math.sqrt(0.91 * 0.09 / 270)))
    assert gap_and_threshold("test_accuracy", 0.97, 0.96, 20000)[1] == pytest.approx(0.02)
    gap, threshold = gap_and_threshold("test_loss", 0.40, 0.50, 100, per_sample_std=0.1)
    assert (gap, threshold) == (pytest.approx(0.10), pytest.approx(0.04))
    assert gap_and_threshold("test_loss", 0.40, 0.50, 100, per_sample_std=1.0)[1] == \
        pytest.approx(0.2)
    evaluation = TestEvaluation(trial_id="0003", metric="test_accuracy", score=0.91,
                                validation_metric="val_accuracy", validation_score=0.97,
                                gap=0.06, threshold=0.035, samples=270,
                                metrics={"test_accuracy": 0.91, "test_loss": 0.3})
    lines = final_lines(evaluation, None)
    assert lines[0] == "test accuracy 0.910 (validation 0.970) on 270 held-out samples"
    assert lines[-1].startswith("validation 0.970 vs test 0.910: the search may have overfit "
                                "the validation split")
    assert "a larger validation split or fewer trials would help" in lines[-1]
    assert TestEvaluation.from_json(evaluation.to_json()) == evaluation
    evaluation.gap = 0.01
    assert not any("overfit" in line for line in final_lines(evaluation, None))


# ---------------------------------------------------------------------- a real search
@pytest.fixture(scope="module")
def refit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from kerastune_kit import SearchConfig, run_search

    run = tmp_path_factory.mktemp("test-split") / "run"
    config = SearchConfig(data="iris", tuner="random", max_trials=2, max_epochs=2,
                          run_dir=str(run), baselines=False, preflight=False,
                          min_steps_per_epoch=5, refit=True, seed=0)
    return run, run_search(config)


def _accuracy(model_path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import keras

    model = keras.saving.load_model(model_path)
    probabilities = model.predict(x, verbose=0)
    return float((probabilities.argmax(axis=1) == y).mean())


@pytest.mark.slow
def test_search_records_the_test_score_everywhere(refit_run: tuple[Path, object]) -> None:
    from kerastune_kit import load_results

    run, result = refit_run
    raw = load_dataset("iris", standardize=False)  # the search's split, unscaled
    assert result.best is not None and result.test is not None
    assert result.test.metric == "test_accuracy" and result.test.samples == 23
    # the search's best model (kept as best_model_search.keras) scores that on the test rows
    search_accuracy = _accuracy(run / "best_model_search.keras", raw.x_test, raw.y_test)
    assert result.test_score == pytest.approx(search_accuracy, abs=1e-6)
    assert result.test.validation_score == result.best.score
    assert set(result.test_metrics) == {"test_loss", "test_accuracy"}

    best = json.loads((run / "best_hyperparameters.json").read_text())
    assert best["test"]["metric"] == "test_accuracy"
    assert best["test"]["score"] == pytest.approx(result.test_score)
    assert best["test"]["validation_score"] == pytest.approx(result.best.score)
    assert best["test"]["gap"] == pytest.approx(result.best.score - result.test_score)
    assert isinstance(best["test"]["large_gap"], bool)
    marker = json.loads((run / "run.json").read_text())
    assert marker["test"]["score"] == pytest.approx(result.test_score)
    assert "/ 23 test" in marker["dataset"]

    loaded = load_results(run)
    assert loaded.test_score == pytest.approx(result.test_score)
    assert loaded.test.validation_score == pytest.approx(result.best.score)

    from tests.tb_read import scalars, texts

    tb = scalars(run / "tensorboard" / "search")
    assert tb["search/test_score"][-1][1] == pytest.approx(result.test_score, abs=1e-6)
    assert tb["search/validation_score"][-1][1] == pytest.approx(result.best.score, abs=1e-6)
    panel = texts(run / "tensorboard" / "search")["search/test_evaluation"][-1][1]
    assert f"test accuracy {result.test_score:.3f} (validation {result.best.score:.3f})" in panel

    shown = run_cli("inspect", str(run), timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert (f"test accuracy {result.test_score:.3f} (validation {result.best.score:.3f}) on 23 "
            "held-out samples") in shown.stdout
    as_json = json.loads(run_cli("inspect", str(run), "--format", "json", timeout=300).stdout)
    assert as_json["test"]["score"] == pytest.approx(result.test_score)


@pytest.mark.slow
def test_refit_exports_a_model_whose_test_score_is_recorded(refit_run: tuple[Path, object]
                                                            ) -> None:
    from kerastune_kit import load_results

    run, result = refit_run
    raw = load_dataset("iris", standardize=False)
    assert result.refit is not None and result.best is not None
    assert result.refit["epochs"] == result.best.best_epoch + 1  # best_epoch is 0-based
    assert result.refit["samples"] == 127  # train + validation
    assert result.refit["seed"] == result.best.seed
    refit_accuracy = _accuracy(run / "best_model.keras", raw.x_test, raw.y_test)
    assert result.test.refit_score == pytest.approx(refit_accuracy, abs=1e-6)
    best = json.loads((run / "best_hyperparameters.json").read_text())
    assert best["refit"] is True
    assert best["test"]["refit_score"] == pytest.approx(refit_accuracy, abs=1e-6)
    assert best["test"]["score"] == pytest.approx(result.test_score)  # next to the unrefit one
    assert best["refit_details"]["search_model"] == "best_model_search.keras"
    assert load_results(run).refit["epochs"] == result.refit["epochs"]
    from tests.tb_read import scalars

    tb = scalars(run / "tensorboard" / "search")
    assert tb["search/refit_test_score"][-1][1] == pytest.approx(refit_accuracy, abs=1e-6)
