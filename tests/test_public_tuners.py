"""The public KerasTuner-style tuners: a user's model and data, with everything a CLI search has.

Real KerasTuner oracles, real training, event files read back with TensorBoard's readers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")
tf = pytest.importorskip("tensorflow")

import kerastune_kit as kk  # noqa: E402
from kerastune_kit.errors import ConfigError, RunDirError  # noqa: E402
from kerastune_kit.pruning import MedianPruner  # noqa: E402
from tests.helpers import assert_one_line  # noqa: E402
from tests.tb_read import session_hparams  # noqa: E402

pytestmark = pytest.mark.slow


def blobs(n: int = 240, features: int = 8, classes: int = 3, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Separable Gaussian blobs: features float32, labels int."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, features))
    return x.astype("float32"), y.astype("int64")


def build_mlp(hp: Any) -> Any:
    """KerasTuner's getting-started build function, on 8 features and 3 classes."""
    model = keras.Sequential([keras.Input((8,))])
    model.add(keras.layers.Dense(hp.Int("units", 16, 64, step=16),
                                 activation=hp.Choice("activation", ["relu", "tanh"])))
    if hp.Boolean("dropout"):
        model.add(keras.layers.Dropout(0.25))
    model.add(keras.layers.Dense(3, activation="softmax"))
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def leaderboard(run: Path) -> list[dict[str, str]]:
    from kerastune_kit.results import read_leaderboard

    return read_leaderboard(run)


def test_build_function_drop_in_writes_the_run_directory(tmp_path: Path) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=3,
                            executions_per_trial=2, directory=str(tmp_path),
                            project_name="helloworld", seed=1)
    assert isinstance(tuner, kt.RandomSearch)
    tuner.search(x[:180], y[:180], epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    run = tmp_path / "helloworld"
    for name in ("leaderboard.csv", "best_hyperparameters.json", "best_model.keras", "run.json",
                 "tensorboard", "tuner"):
        assert (run / name).exists(), name
    rows = leaderboard(run)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"COMPLETED"}
    assert {r["training"] for r in rows} == {"loop"}
    marker = json.loads((run / "run.json").read_text())
    assert marker["objective"] == "val_accuracy" and len(marker["data_fingerprint"]) == 16
    assert "(180, 8) float32" in marker["dataset"]
    # KerasTuner's own API still answers.
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best = tuner.get_best_models(1)[0]
    assert best_hp.values["units"] in (16, 32, 48, 64)
    accuracy = best.evaluate(x[180:], y[180:], verbose=0)[1]
    saved = json.loads((run / "best_hyperparameters.json").read_text())
    assert saved["hyperparameters"] == {k: v for k, v in best_hp.values.items()}
    assert saved["score"] == pytest.approx(float(rows[0]["score"]), rel=1e-5)
    assert accuracy == pytest.approx(saved["score"], abs=0.02)  # 2 executions averaged
    loaded = keras.saving.load_model(run / "best_model.keras")
    assert loaded.predict(x[:4], verbose=0).shape == (4, 3)
    # One HParams session per trial, carrying the trial's values.
    sessions = sorted(p for p in (run / "tensorboard").iterdir()
                      if p.is_dir() and p.name != "search")  # (the search-level panels)
    assert len(sessions) == 3
    values = session_hparams(sessions[0])
    assert {"units", "activation", "dropout", "lr"} <= set(values)
    # load_results and inspect read it.
    results = kk.load_results(run)
    assert len(results) == 3 and results.best.trial_id == saved["trial_id"]
    from kerastune_kit.report import text_table

    header = text_table(results.trials, results.hp_names)[0].split()
    assert "training" in header and "baseline" not in header and "parent" not in header
    assert saved["model_card"]["inputs"] == "(n, 8)"
    assert saved["model_card"]["outputs"] == "(n, 3)"


def test_hypermodel_subclass_with_validation_split(tmp_path: Path) -> None:
    class MyHyperModel(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            return build_mlp(hp)

    x, y = blobs()
    tuner = kk.BayesianOptimization(MyHyperModel(), objective="val_accuracy", max_trials=2,
                                    directory=str(tmp_path), project_name="sub", seed=2)
    tuner.search(x, y, epochs=2, validation_split=0.25, batch_size=32, verbose=0)
    rows = leaderboard(tmp_path / "sub")
    assert len(rows) == 2 and all(r["training"] == "loop" for r in rows)
    assert all(float(r["score"]) > 0 for r in rows)


def two_input_model(hp: Any) -> Any:
    numbers = keras.Input((6,), name="numbers")
    extra = keras.Input((2,), name="extra")
    h = keras.layers.Concatenate()([
        keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu")(numbers), extra])
    out = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model({"numbers": numbers, "extra": extra}, out)
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("lr", [1e-2, 1e-7])),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("tuner_class", ["RandomSearch", "BayesianOptimization"])
def test_dict_inputs_fall_back_to_fit_and_prune(tmp_path: Path, tuner_class: str) -> None:
    x, y = blobs(n=200)
    inputs = {"numbers": x[:, :6], "extra": x[:, 6:]}
    val = ({"numbers": x[160:, :6], "extra": x[160:, 6:]}, y[160:])
    train = {k: v[:160] for k, v in inputs.items()}
    pruner = MedianPruner("max", warmup_trials=1, min_epoch=1)
    extra = {"num_initial_points": 2} if tuner_class == "BayesianOptimization" else {}
    tuner = getattr(kk, tuner_class)(two_input_model, objective="val_accuracy", max_trials=6,
                                     directory=str(tmp_path), project_name="dict", seed=3,
                                     pruner=pruner, **extra)
    tuner.search(train, y[:160], epochs=4, validation_data=val, batch_size=32, verbose=0)
    rows = leaderboard(tmp_path / "dict")
    assert rows and {r["training"] for r in rows} == {"fit"}
    lrs = {r["trial_id"]: float(r["lr"]) for r in rows}
    pruned = [r for r in rows if r["status"] == "PRUNED"]
    assert pruned, [(r["trial_id"], r["status"], r["lr"], r["score"]) for r in rows]
    # The learning rate that cannot learn in 4 epochs is what stops early; the best trial
    # has the one that learns, trained to the end.
    assert any(lrs[r["trial_id"]] < 1e-3 for r in pruned)
    assert rows[0]["status"] == "COMPLETED" and lrs[rows[0]["trial_id"]] == 1e-2


def test_tf_data_trains_in_the_loop(tmp_path: Path) -> None:
    x, y = blobs()
    train = tf.data.Dataset.from_tensor_slices((x[:180], y[:180])).batch(32)
    val = tf.data.Dataset.from_tensor_slices((x[180:], y[180:])).batch(64)
    tuner = kk.Hyperband(build_mlp, objective="val_accuracy", max_epochs=3, factor=3,
                         directory=str(tmp_path), project_name="tfdata", seed=4)
    tuner.search(train, epochs=3, validation_data=val, verbose=0)
    rows = leaderboard(tmp_path / "tfdata")
    assert rows and {r["training"] for r in rows} == {"loop"}
    assert max(float(r["score"]) for r in rows if r["score"]) > 0.5


class CustomStep(keras.Model):
    """A model whose train_step is its own: the loop cannot run it."""

    def train_step(self, data: Any) -> Any:
        self.custom_steps = getattr(self, "custom_steps", 0) + 1
        return super().train_step(data)


def custom_model(hp: Any) -> Any:
    inputs = keras.Input((8,))
    h = keras.layers.Dense(hp.Choice("units", [8, 16]), activation="relu")(inputs)
    model = CustomStep(inputs, keras.layers.Dense(3, activation="softmax")(h))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_overridden_train_step_uses_model_fit(tmp_path: Path) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(custom_model, objective="val_accuracy", max_trials=2,
                            directory=str(tmp_path), project_name="custom", seed=5)
    tuner.search(x[:180], y[:180], epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    rows = leaderboard(tmp_path / "custom")
    assert len(rows) == 2 and {r["training"] for r in rows} == {"fit"}
    results = kk.load_results(tmp_path / "custom")
    assert {t.training for t in results} == {"fit"}


def test_training_loop_refuses_what_it_cannot_train(tmp_path: Path) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(custom_model, objective="val_accuracy", max_trials=1,
                            directory=str(tmp_path), project_name="forced", training="loop")
    with pytest.raises(kt.errors.FatalError, match="training: the loop cannot train"):
        tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0)


def test_py_dataset_and_generator(tmp_path: Path) -> None:
    x, y = blobs()

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            return x[index * 30:(index + 1) * 30], y[index * 30:(index + 1) * 30]

    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=2,
                            directory=str(tmp_path), project_name="pyds", seed=6)
    tuner.search(Batches(), epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    assert {r["training"] for r in leaderboard(tmp_path / "pyds")} == {"fit"}

    def batches() -> Any:
        for start in range(0, 180, 30):
            yield x[start:start + 30], y[start:start + 30]

    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=2,
                            directory=str(tmp_path), project_name="gen", seed=6)
    tuner.search(batches(), epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    rows = leaderboard(tmp_path / "gen")
    # Read into memory once, so the second trial trains on the same 180 samples.
    assert len(rows) == 2 and {r["training"] for r in rows} == {"loop"}
    assert all(float(r["score"]) > 0 for r in rows)


def test_resume_continues_and_refuses_other_data(tmp_path: Path) -> None:
    x, y = blobs()
    args = dict(objective="val_accuracy", directory=str(tmp_path), project_name="again", seed=7)
    tuner = kk.RandomSearch(build_mlp, max_trials=2, **args)
    tuner.search(x[:180], y[:180], epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    assert len(leaderboard(tmp_path / "again")) == 2
    tuner = kk.RandomSearch(build_mlp, max_trials=3, **args)  # overwrite=False: continue
    tuner.search(x[:180], y[:180], epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    rows = leaderboard(tmp_path / "again")
    assert sorted(r["trial_id"] for r in rows) == ["0", "1", "2"]
    tuner = kk.RandomSearch(build_mlp, max_trials=4, **args)
    with pytest.raises(RunDirError) as info:
        tuner.search(x[:150], y[:150], epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    assert_one_line(info.value, "data:", "overwrite=True", kind=RunDirError)
    tuner = kk.RandomSearch(build_mlp, max_trials=1, overwrite=True, **args)
    tuner.search(x[:150], y[:150], epochs=1, validation_data=(x[180:], y[180:]), verbose=0)
    assert len(leaderboard(tmp_path / "again")) == 1


@pytest.mark.parametrize(("option", "value", "fragment"), [
    ("training", "eager", "training: expected one of auto, loop, fit"),
    ("pruner", "sometimes", "pruner: expected one of"),
    ("max_time", -5, "max_time: expected seconds > 0"),
    ("workers", -1, "workers: expected an integer >= 0"),
    ("trials_per_worker", 0, "trials_per_worker: expected an integer >= 1"),
])
def test_bad_options_are_refused_in_one_line(tmp_path: Path, option: str, value: Any,
                                             fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        kk.RandomSearch(build_mlp, objective="val_accuracy", directory=str(tmp_path),
                        **{option: value})
    assert_one_line(info.value, fragment, repr(value))


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError) as info:
        kk.RandomSearch(build_mlp, objective="val_accuracy", directory=str(tmp_path),
                        project_name="mine", overwrite=True)
    assert_one_line(info.value, "not a kerastune_kit run directory", kind=RunDirError)
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_max_time_ends_the_search_with_results(tmp_path: Path) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=500,
                            directory=str(tmp_path), project_name="timed", max_time=4)
    tuner.search(x[:180], y[:180], epochs=3, validation_data=(x[180:], y[180:]), verbose=0)
    assert tuner.kit_stopped == "time budget"
    rows = leaderboard(tmp_path / "timed")
    assert 1 <= len(rows) < 500
    assert (tmp_path / "timed" / "best_model.keras").exists()


def two_output_model(hp: Any) -> Any:
    inputs = keras.Input((8,))
    h = keras.layers.Dense(hp.Choice("units", [8, 16]), activation="relu")(inputs)
    label = keras.layers.Dense(3, activation="softmax", name="label")(h)
    size = keras.layers.Dense(1, name="size")(h)
    model = keras.Model(inputs, [label, size])
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], []])
    return model


def test_several_outputs_as_a_list(tmp_path: Path) -> None:
    x, y = blobs()
    size = x.sum(axis=1, keepdims=True)
    tuner = kk.RandomSearch(two_output_model, max_trials=2,
                            objective=kt.Objective("val_label_accuracy", direction="max"),
                            directory=str(tmp_path), project_name="outputs", seed=8)
    tuner.search(x[:180], [y[:180], size[:180]], epochs=2,
                 validation_data=(x[180:], [y[180:], size[180:]]), verbose=0)
    rows = leaderboard(tmp_path / "outputs")
    assert len(rows) == 2 and {r["training"] for r in rows} == {"fit"}
    assert all(r["status"] == "COMPLETED" and float(r["score"]) > 0 for r in rows)


@pytest.mark.parametrize("processes", [{"workers": 2}, {"trials_per_worker": 1}])
def test_worker_processes_run_a_users_search(tmp_path: Path, processes: dict[str, int]) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=3,
                            directory=str(tmp_path), project_name="procs", seed=9, **processes)
    tuner.search(x[:180], y[:180], epochs=2, validation_data=(x[180:], y[180:]), verbose=0)
    rows = leaderboard(tmp_path / "procs")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"COMPLETED"}, rows
    assert {r["training"] for r in rows} == {"loop"}
    assert (tmp_path / "procs" / "best_model.keras").exists()
    assert len(tuner.oracle.trials) == 3  # the workers' trials, reloaded


def test_tensorboard_outcome_says_how_each_trial_trained(tmp_path: Path) -> None:
    from tests.tb_read import _accumulator

    x, y = blobs()
    tuner = kk.RandomSearch(custom_model, objective="val_accuracy", max_trials=1,
                            directory=str(tmp_path), project_name="tb", seed=10)
    tuner.search(x[:180], y[:180], epochs=1, validation_data=(x[180:], y[180:]), verbose=0)
    session = next(p for p in (tmp_path / "tb" / "tensorboard").iterdir()
                   if p.is_dir() and p.name != "search")
    acc = _accumulator(session)
    text = acc.Tensors("trial/outcome")[-1].tensor_proto.string_val[0].decode()
    assert "trained with model.fit" in text


def test_an_objective_missing_from_the_logs_stops_at_once(tmp_path: Path) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(build_mlp, objective="val_acc", max_trials=5,
                            directory=str(tmp_path), project_name="typo")
    with pytest.raises(kt.errors.FatalError) as info:
        tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0)
    message = str(info.value)
    assert "objective: 'val_acc' is not in the trial's logs" in message
    assert "val_accuracy" in message and "\n" not in message
    assert len(tuner.oracle.trials) == 1


def test_keras_tuner_multi_objective(tmp_path: Path) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(build_mlp, objective=["val_loss", "val_accuracy"], max_trials=2,
                            directory=str(tmp_path), project_name="multi", seed=11)
    tuner.search(x, y, epochs=2, validation_split=0.2, verbose=0)
    rows = leaderboard(tmp_path / "multi")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"COMPLETED"}, rows
    assert all(r["best_epoch"] != "" for r in rows)


def test_a_validation_generator_is_read_once(tmp_path: Path) -> None:
    x, y = blobs()

    def val_batches() -> Any:
        for start in range(180, 240, 20):
            yield x[start:start + 20], y[start:start + 20]

    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=2,
                            directory=str(tmp_path), project_name="valgen", seed=12)
    tuner.search(x[:180], y[:180], epochs=1, validation_data=val_batches(), verbose=0)
    rows = leaderboard(tmp_path / "valgen")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"COMPLETED"}, rows


def conditional_model(low: float, high: float) -> Any:
    def build(hp: Any) -> Any:
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu")])
        if hp.Boolean("dropout"):
            model.add(keras.layers.Dropout(hp.Float("rate", low, high)))
        model.add(keras.layers.Dense(3, activation="softmax"))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    return build


def test_resume_refuses_a_changed_conditional_hyperparameter(tmp_path: Path) -> None:
    x, y = blobs()
    args = dict(objective="val_accuracy", directory=str(tmp_path), project_name="cond",
                seed=13)
    tuner = kk.RandomSearch(conditional_model(0.1, 0.2), max_trials=4, **args)
    tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0)
    assert any(r["rate"] for r in leaderboard(tmp_path / "cond"))  # the branch ran
    tuner = kk.RandomSearch(conditional_model(0.1, 0.2), max_trials=5, **args)
    tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0)  # the same: continues
    assert len(leaderboard(tmp_path / "cond")) == 5
    tuner = kk.RandomSearch(conditional_model(0.7, 0.9), max_trials=7, **args)
    with pytest.raises(RunDirError) as info:
        tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0)
    assert_one_line(info.value, "space: 'rate' was Float(", "0.7", "overwrite=True",
                    kind=RunDirError)


@pytest.mark.parametrize(("case", "fragment"), [
    ("lengths", "y: 100 samples, but x has 240"),
    ("split", "validation_split: not available for a"),
])
def test_data_that_would_fail_every_trial_is_refused_once(tmp_path: Path, case: str,
                                                          fragment: str) -> None:
    from kerastune_kit.errors import DataError

    x, y = blobs()
    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=3,
                            directory=str(tmp_path), project_name=case)
    with pytest.raises(DataError) as info:
        if case == "lengths":
            tuner.search(x, y[:100], epochs=1, validation_split=0.2, verbose=0)
        else:
            data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
            tuner.search(data, epochs=1, validation_split=0.2, verbose=0)
    assert_one_line(info.value, fragment, kind=DataError)
    assert not tuner.oracle.trials


def test_a_time_budget_too_short_for_one_epoch_says_so(tmp_path: Path) -> None:
    x, y = blobs()
    tuner = kk.RandomSearch(build_mlp, objective="val_accuracy", max_trials=3,
                            directory=str(tmp_path), project_name="short", max_time=0.01)
    with pytest.raises(ConfigError) as info:
        tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0)
    assert_one_line(info.value, "max_time: the budget of 0.01s ran out before the first epoch")


def test_hyperband_takes_no_pruner(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        kk.Hyperband(build_mlp, objective="val_accuracy", max_epochs=3,
                     directory=str(tmp_path), pruner="median")
    assert_one_line(info.value, "pruner: Hyperband prunes through its own brackets")


def test_workers_refuse_a_script_without_a_main_guard(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np, keras\n"
        "import kerastune_kit as kk\n"
        "x = np.random.rand(60, 4).astype('float32'); y = (x.sum(1) > 2).astype('int64')\n"
        "def build(hp):\n"
        "    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, 'softmax')])\n"
        "    m.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
        "    return m\n"
        "t = kk.RandomSearch(build, objective='val_accuracy', max_trials=2, workers=2,\n"
        "                    directory='runs')\n"
        "t.search(x, y, epochs=1, validation_split=0.2, verbose=0)\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240, env={**__import__("os").environ,
                                                       "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0
    assert ("ConfigError: workers: unguarded.py runs its search at import time (line 10)"
            in proc.stderr), proc.stderr[-2000:]
    assert "if __name__ == \"__main__\":" in proc.stderr


def test_a_second_search_call_has_a_new_budget_and_one_best(tmp_path: Path) -> None:
    x, y = blobs(n=300)
    y = (y > 0).astype("int64")  # an easy binary task: ties at the top are likely

    def build(hp: Any) -> Any:
        model = keras.Sequential([keras.Input((8,)),
                                  keras.layers.Dense(hp.Int("units", 4, 32, sampling="log"),
                                                     activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1,
                                                               sampling="log")),
                      loss="binary_crossentropy", metrics=["accuracy"])
        return model

    tuner = kk.Hyperband(build, objective="val_accuracy", max_epochs=4, factor=2, seed=14,
                         directory=str(tmp_path), project_name="twice", max_time=5)
    tuner.search(x, y, validation_split=0.25, verbose=0)
    first = len(tuner.oracle.trials)
    assert tuner.kit_stopped == "time budget" and first >= 1
    tuner.search(x, y, validation_split=0.25, verbose=0)
    assert len(tuner.oracle.trials) > first  # the second call had a budget of its own
    best = kk.load_results(tmp_path / "twice").best
    assert tuner.kit_best_trials(1)[0].trial_id == best.trial_id
    values = {k: v for k, v in tuner.get_best_hyperparameters()[0].values.items()
              if not k.startswith("tuner/")}
    assert values == best.hyperparameters
    saved = json.loads((tmp_path / "twice" / "best_hyperparameters.json").read_text())
    assert saved["trial_id"] == best.trial_id
