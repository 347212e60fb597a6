"""Tests of kerastune_kit.config: defaults, validation messages, TOML, flag merging, round trips.

Pure tests: nothing here imports TensorFlow (tests/test_imports.py checks that in a subprocess).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from kerastune_kit.config import (
    RESUME_KEYS,
    SearchConfig,
    build_config,
    load_saved_config,
    load_toml,
    parse_set_flags,
)
from kerastune_kit.errors import ConfigError, KerastuneKitError
from tests.helpers import assert_one_line


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- defaults


def test_config_error_is_a_value_error_and_a_kit_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, KerastuneKitError)


def test_defaults_describe_a_quick_hyperband_search_on_digits() -> None:
    cfg = SearchConfig()
    assert dataclasses.asdict(cfg) == {
        "data": "digits",
        "target": None,
        "task": None,
        "model": "auto",
        "tuner": "hyperband",
        "max_trials": None,
        "max_epochs": 9,
        "objective": None,
        "run_dir": None,
        "seed": 0,
        "overwrite": False,
        "resume": False,
        "overrides": {},
        "validation_split": 0.2,
        "factor": 3,
        "max_consecutive_failures": 10,
        "max_retries": 0,
        "max_time": None,
        "pruner": "none",
        "pruner_warmup_trials": 3,
        "pruner_min_epoch": 1,
        "pruner_percentile": 25.0,
        "trials_per_worker": 20,
        "baselines": True,
        "min_steps_per_epoch": 50,
        "patience": None,
        "categorical_columns": None,
        "numeric_columns": None,
        "text_columns": None,
        "test_split": 0.15,
        "refit": False,
        "preflight": None,  # (only before a search of 20 trial-epochs or more)
        "explosion_factor": 3.0,
        "refine": 0,
        "refine_factor": 2.0,
    }


def test_default_overrides_are_not_shared_between_instances() -> None:
    first = SearchConfig()
    first.overrides["units"] = 64
    assert SearchConfig().overrides == {}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, Path("runs") / "digits-hyperband"),
        ({"data": "iris", "tuner": "random"}, Path("runs") / "iris-random"),
        ({"data": "IRIS", "tuner": "bayesian"}, Path("runs") / "iris-bayesian"),
        ({"data": "data/my_set.csv", "target": "y"}, Path("runs") / "my_set-hyperband"),
        ({"data": "/tmp/arrays.npz", "tuner": "grid"}, Path("runs") / "arrays-grid"),
        ({"data": "iris", "run_dir": "out/here"}, Path("out/here")),
        # The model family, when the user chose one, so `--model cnn` after the quick start
        # does not land in the quick start's directory.
        ({"model": "cnn"}, Path("runs") / "digits-cnn-hyperband"),
        ({"model": "mlp", "data": "wine", "tuner": "random"}, Path("runs") / "wine-mlp-random"),
        ({"model": "auto", "data": "wine"}, Path("runs") / "wine-hyperband"),
        ({"model": "cnn", "run_dir": "out/here"}, Path("out/here")),
    ],
)
def test_effective_run_dir(kwargs: dict[str, Any], expected: Path) -> None:
    assert SearchConfig(**kwargs).effective_run_dir() == expected


def test_default_run_dirs_differ_by_model_and_legacy_is_the_old_default() -> None:
    dirs = {SearchConfig(model=m).effective_run_dir() for m in ("auto", "mlp", "cnn")}
    assert len(dirs) == 3
    assert SearchConfig(model="cnn").legacy_run_dir() == Path("runs") / "digits-hyperband"
    assert SearchConfig(model="cnn", run_dir="x").default_run_dir() == Path(
        "runs") / "digits-cnn-hyperband"


def _saved_run(run_dir: Path, **fields: Any) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text(SearchConfig(**fields, run_dir=str(run_dir)).to_toml())
    return run_dir


def test_resume_base_finds_the_model_default(tmp_path: Path, monkeypatch) -> None:
    from kerastune_kit.config import resume_base

    monkeypatch.chdir(tmp_path)
    _saved_run(Path("runs/digits-hyperband"), max_epochs=3)
    _saved_run(Path("runs/digits-cnn-hyperband"), model="cnn", max_epochs=2)
    cnn = resume_base(None, run_dir=None, data=None, tuner=None, model="cnn")
    assert cnn["run_dir"] == str(Path("runs/digits-cnn-hyperband")) and cnn["max_epochs"] == 2
    auto = resume_base(None, run_dir=None, data=None, tuner=None)
    assert auto["run_dir"] == str(Path("runs/digits-hyperband")) and auto["max_epochs"] == 3
    # A --config file naming the model picks its directory the same way.
    from_file = resume_base({"model": "cnn"}, run_dir=None, data=None, tuner=None)
    assert from_file["run_dir"] == str(Path("runs/digits-cnn-hyperband"))
    # Built into a config, the resumed search runs where it was saved.
    assert build_config(cnn, resume=True, model="cnn").effective_run_dir() == Path(
        "runs/digits-cnn-hyperband")


def test_resume_base_finds_a_model_search_saved_under_the_old_default(tmp_path: Path,
                                                                       monkeypatch) -> None:
    from kerastune_kit.config import resume_base

    monkeypatch.chdir(tmp_path)
    _saved_run(Path("runs/digits-hyperband"), model="cnn", max_epochs=2)  # an older version's
    found = resume_base(None, run_dir=None, data=None, tuner=None, model="cnn")
    assert found["run_dir"] == str(Path("runs/digits-hyperband")) and found["model"] == "cnn"
    # ... but not a search of another model there: the new default, with nothing to resume.
    assert resume_base(None, run_dir=None, data=None, tuner=None, model="mlp") == {}


@pytest.mark.parametrize(
    ("tuner", "expected"),
    [("hyperband", None), ("grid", 10), ("bayesian", 10), ("random", 10)],
)
def test_effective_max_trials_defaults_per_tuner(tuner: str, expected: int | None) -> None:
    assert SearchConfig(tuner=tuner).effective_max_trials() == expected
    assert SearchConfig(tuner=tuner, max_trials=5).effective_max_trials() == 5


def test_to_dict_leaves_out_none_fields() -> None:
    out = SearchConfig(data="iris").to_dict()
    assert out["data"] == "iris"
    assert not {"target", "task", "max_trials", "objective", "run_dir"} & set(out)


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"tuner": "hyperbnd"}, ("tuner", "'hyperbnd'", "did you mean 'hyperband'")),
        ({"tuner": "optuna"},
         ("tuner", "'optuna'", "hyperband, bohb, bayesian, tpe, random, grid")),
        ({"model": "mlpp"}, ("model", "'mlpp'", "did you mean 'mlp'")),
        ({"task": "multi-class"}, ("task", "'multi-class'", "did you mean 'multiclass'")),
        ({"task": "regresion"}, ("task", "'regresion'", "did you mean 'regression'")),
        ({"max_trials": 0}, ("max_trials", "received 0", "--max-trials 1 or more")),
        ({"max_epochs": 0}, ("max_epochs", "received 0", "--max-epochs 1 or more")),
        ({"max_epochs": 2.5}, ("max_epochs", "received 2.5")),
        ({"max_epochs": True}, ("max_epochs", "received True")),
        ({"max_trials": True}, ("max_trials", "received True")),
        ({"seed": -1}, ("seed", "received -1", "non-negative")),
        ({"seed": True}, ("seed", "received True")),
        ({"seed": "7"}, ("seed", "received '7'")),
        ({"validation_split": 0}, ("validation_split", "received 0", "between 0 and 1")),
        ({"validation_split": 1}, ("validation_split", "received 1", "between 0 and 1")),
        ({"validation_split": 1.5}, ("validation_split", "received 1.5")),
        ({"validation_split": "x"}, ("validation_split", "received 'x'")),
        ({"validation_split": True}, ("validation_split", "received True")),
        ({"factor": 1}, ("factor", "received 1", "2 or more")),
        ({"max_consecutive_failures": 0}, ("max_consecutive_failures", "received 0")),
        ({"overwrite": True, "resume": True}, ("overwrite", "resume", "only one")),
        ({"data": ""}, ("data", "received ''", "datasets")),
        ({"data": "   "}, ("data", "received '   '")),
        ({"objective": ""}, ("objective", "received ''")),
        ({"overrides": ["units=64"]}, ("overrides", "['units=64']")),
    ],
)
def test_invalid_fields_raise_one_line_config_errors(
    kwargs: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        SearchConfig(**kwargs)
    message = assert_one_line(excinfo.value, *fragments)
    assert message.startswith(fragments[0])


def test_validate_catches_fields_changed_after_construction() -> None:
    cfg = SearchConfig()
    cfg.max_epochs = 0
    with pytest.raises(ConfigError) as excinfo:
        cfg.validate()
    assert_one_line(excinfo.value, "max_epochs", "received 0")


def test_valid_edge_values_are_accepted() -> None:
    cfg = SearchConfig(max_trials=1, max_epochs=1, seed=0, factor=2, validation_split=0.5,
                       task="binary", model="mlp", objective="val_loss")
    assert (cfg.max_trials, cfg.max_epochs, cfg.factor) == (1, 1, 2)


# ---------------------------------------------------------------------- TOML loading


def test_load_toml_reads_search_and_space_tables(tmp_path: Path) -> None:
    path = write(tmp_path, """
[search]
data = "iris"
tuner = "random"
max_trials = 4
max_epochs = 3
seed = 7

[space]
normalization = "batch"
optimizer = ["adam", "sgd"]
clipnorm = "off"
learning_rate = { min = 1e-4, max = 1e-2 }
""")
    values = load_toml(path)
    assert values == {
        "data": "iris",
        "tuner": "random",
        "max_trials": 4,
        "max_epochs": 3,
        "seed": 7,
        "overrides": {
            "normalization": "batch",
            "optimizer": ["adam", "sgd"],
            "clipnorm": "off",
            "learning_rate": {"min": 1e-4, "max": 1e-2},
        },
    }
    cfg = SearchConfig(**values)
    assert cfg.tuner == "random" and cfg.effective_max_trials() == 4
    assert cfg.overrides["optimizer"] == ["adam", "sgd"]


def test_load_toml_accepts_str_paths_and_partial_files(tmp_path: Path) -> None:
    assert load_toml(str(write(tmp_path, ""))) == {}
    only_space = write(tmp_path, "[space]\nunits = 64\n", name="space.toml")
    assert load_toml(only_space) == {"overrides": {"units": 64}}


def test_load_toml_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as excinfo:
        load_toml(missing)
    assert_one_line(excinfo.value, "config", str(missing), "does not exist")


def test_load_toml_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[search]\ndata = \nmax_epochs = [\n")
    with pytest.raises(ConfigError) as excinfo:
        load_toml(path)
    assert_one_line(excinfo.value, "config", str(path), "not valid TOML", "line 2")


def test_load_toml_unknown_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[serach]\ndata = "iris"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_toml(path)
    assert_one_line(excinfo.value, "[serach]", str(path), "[search] and [space]")


@pytest.mark.parametrize(
    ("field", "suggestion"),
    [("max_epoch", "max_epochs"), ("modle", "model"), ("sed", "seed")],
)
def test_load_toml_unknown_field_suggests_the_closest(
    tmp_path: Path, field: str, suggestion: str
) -> None:
    path = write(tmp_path, f"[search]\n{field} = 3\n")
    with pytest.raises(ConfigError) as excinfo:
        load_toml(path)
    message = assert_one_line(excinfo.value, field, "[search]", f"did you mean '{suggestion}'")
    assert message.startswith(f"{field}:")


def test_load_toml_unknown_field_without_a_close_match_lists_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "[search]\nzzzz = 3\n")
    with pytest.raises(ConfigError) as excinfo:
        load_toml(path)
    assert_one_line(excinfo.value, "zzzz", "known fields:", "max_epochs")


@pytest.mark.parametrize("text", ["search = 3\n", 'space = "batch"\n'])
def test_load_toml_rejects_non_table_sections(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_toml(path)
    assert_one_line(excinfo.value, text.split(" ")[0], str(path))


def test_load_saved_config_reads_run_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write(run, '[search]\ndata = "wine"\ntest_split = 0.1\n')
    assert load_saved_config(run) == {"data": "wine", "test_split": 0.1,
                                      "explosion_factor": 0.0}
    with pytest.raises(ConfigError):
        load_saved_config(tmp_path / "empty")


def test_a_run_saved_before_the_recipe_settings_resumes_as_it_ran(tmp_path: Path) -> None:
    """A config.toml without test_split / explosion_factor was saved by a version without a
    test split or the explosion rule: resuming it keeps both off, so its data fingerprint and
    its trials' rules stay the same."""
    run = tmp_path / "run"
    run.mkdir()
    write(run, '[search]\ndata = "wine"\ntuner = "random"\n')
    saved = SearchConfig(**load_saved_config(run))
    assert (saved.test_split, saved.explosion_factor) == (0.0, 0.0)
    assert (SearchConfig().test_split, SearchConfig().explosion_factor) == (0.15, 3.0)


# ---------------------------------------------------------------------- merging flags


def test_build_config_flags_override_file_values() -> None:
    file_values = {"data": "iris", "max_epochs": 3, "tuner": "random", "seed": 4}
    cfg = build_config(file_values, max_epochs=5, tuner=None, seed=None, data=None)
    assert (cfg.data, cfg.max_epochs, cfg.tuner, cfg.seed) == ("iris", 5, "random", 4)
    assert file_values == {"data": "iris", "max_epochs": 3, "tuner": "random", "seed": 4}


def test_build_config_none_flags_keep_file_booleans() -> None:
    cfg = build_config({"resume": True}, overwrite=None, resume=None)
    assert cfg.resume is True and cfg.overwrite is False


def test_build_config_without_a_file_gives_defaults() -> None:
    assert build_config() == SearchConfig()
    assert build_config(None, max_trials=None).max_trials is None


def test_build_config_set_flags_merge_over_space_table() -> None:
    file_values = {"overrides": {"optimizer": ["adam", "sgd"], "units": 64}}
    cfg = build_config(file_values, overrides={"units": 32, "clipnorm": "off"})
    assert cfg.overrides == {"optimizer": ["adam", "sgd"], "units": 32, "clipnorm": "off"}
    assert build_config(file_values, overrides=None).overrides == file_values["overrides"]


def test_build_config_rejects_unknown_flags_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_config({}, max_epoch=3)
    assert_one_line(excinfo.value, "max_epoch", "did you mean 'max_epochs'")


def test_build_config_validates_the_merged_result() -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_config({"max_epochs": 3}, max_epochs=0)
    assert_one_line(excinfo.value, "max_epochs", "received 0")
    with pytest.raises(ConfigError) as excinfo:
        build_config({"overwrite": True}, resume=True)
    assert_one_line(excinfo.value, "overwrite", "resume")


# ---------------------------------------------------------------------- --set flags


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("normalization=batch", {"normalization": "batch"}),
        ("units=64", {"units": 64}),
        ("dropout=0.25", {"dropout": 0.25}),
        ("learning_rate=1e-4..1e-2", {"learning_rate": {"min": 1e-4, "max": 1e-2}}),
        ("units=32..256", {"units": {"min": 32, "max": 256}}),
        ("optimizer=adam,sgd", {"optimizer": ["adam", "sgd"]}),
        ("batch_size=32,64", {"batch_size": [32, 64]}),
        ("clipnorm=off", {"clipnorm": "off"}),
        ("residual=true", {"residual": True}),
        ("residual=False", {"residual": False}),
        (" units_0 = 128 ", {"units_0": 128}),
    ],
)
def test_parse_set_flags_values(flag: str, expected: dict[str, Any]) -> None:
    parsed = parse_set_flags([flag])
    assert parsed == expected
    for key, value in expected.items():
        assert type(parsed[key]) is type(value)


def test_parse_set_flags_merges_several_flags_later_wins() -> None:
    assert parse_set_flags(["units=64", "optimizer=adam,sgd", "units=32"]) == {
        "units": 32, "optimizer": ["adam", "sgd"],
    }
    assert parse_set_flags(None) == {}
    assert parse_set_flags([]) == {}


@pytest.mark.parametrize("flag", ["normalization", "=x", "x=", "x=  ", "="])
def test_parse_set_flags_malformed(flag: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_set_flags([flag])
    assert_one_line(excinfo.value, "--set", repr(flag), "KNOB=VALUE", "normalization=batch")


# ---------------------------------------------------------------------- round trip


def round_trip(cfg: SearchConfig, tmp_path: Path) -> SearchConfig:
    path = write(tmp_path, cfg.to_toml())
    return SearchConfig(**load_toml(path))


def test_to_toml_round_trip_keeps_resume_fingerprint(tmp_path: Path) -> None:
    overrides = {
        "learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},
        "optimizer": ["adam", "sgd"],
        "clipnorm": "off",
        "units_1": 64,
        "residual": True,
        "dropout": 0.125,
    }
    cfg = SearchConfig(
        data="data/my set.csv", target="label", task="multiclass", model="mlp", tuner="random",
        max_trials=6, max_epochs=4, objective="val_accuracy", seed=7, overwrite=True,
        overrides=overrides, validation_split=0.25, factor=4, max_consecutive_failures=2,
    )
    saved = load_toml(write(tmp_path, cfg.to_toml()))
    loaded = SearchConfig(**saved)
    assert loaded.resume_fingerprint() == cfg.resume_fingerprint()
    assert loaded.overrides == overrides
    assert loaded.max_trials == 6 and loaded.max_consecutive_failures == 2
    assert loaded.run_dir == str(Path("runs") / "my set-mlp-random")
    # overwrite/resume are per-invocation, never saved.
    assert loaded.overwrite is False and loaded.resume is False
    assert {"overwrite", "resume"}.isdisjoint(saved)


def test_to_toml_of_defaults_has_no_space_table(tmp_path: Path) -> None:
    assert "[space]" not in SearchConfig().to_toml()
    saved = load_toml(write(tmp_path, SearchConfig().to_toml()))
    assert "overrides" not in saved
    assert saved["run_dir"] == str(Path("runs") / "digits-hyperband")
    loaded = SearchConfig(**saved)
    assert loaded.resume_fingerprint() == SearchConfig().resume_fingerprint()


def test_round_trip_of_tuple_overrides_keeps_fingerprint(tmp_path: Path) -> None:
    cfg = SearchConfig(overrides={"optimizer": ("adam", "sgd")})
    assert round_trip(cfg, tmp_path).resume_fingerprint() == cfg.resume_fingerprint()


def test_resume_fingerprint_covers_what_changes_the_search() -> None:
    base = SearchConfig()
    assert tuple(base.resume_fingerprint()) == RESUME_KEYS
    assert SearchConfig(max_epochs=4).resume_fingerprint() != base.resume_fingerprint()
    assert SearchConfig(overrides={"units": 64}).resume_fingerprint() != base.resume_fingerprint()
    # Budget and location may change between invocations of one search.
    same = SearchConfig(max_trials=50, run_dir="elsewhere", overwrite=True)
    assert same.resume_fingerprint() == base.resume_fingerprint()
