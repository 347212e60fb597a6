"""Tests of kerastune_kit.space: default domains, overrides, KerasTuner registration, oracles.

The domain logic is pure; registration runs on real ``keras_tuner.HyperParameters`` and a real
``RandomSearchOracle`` driven directly (no model is built).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras_tuner as kt
import pytest
from keras_tuner.engine.hyperparameters import Boolean, Choice, Fixed, Float, Int

from kerastune_kit.config import parse_set_flags
from kerastune_kit.errors import ConfigError
from kerastune_kit.space import (
    KNOBS,
    Choices,
    FloatRange,
    IntRange,
    ModelParams,
    SearchSpace,
    describe_domain,
)
from kerastune_kit.space import Fixed as FixedDomain
from tests.helpers import assert_one_line


def registered(space: SearchSpace, hp: kt.HyperParameters | None = None
               ) -> tuple[kt.HyperParameters, ModelParams, dict[str, Any]]:
    """Resolve ``space`` on ``hp``; return hp, the params and the registered hps by name."""
    hp = hp if hp is not None else kt.HyperParameters()
    params = space.resolve(hp)
    return hp, params, {h.name: h for h in hp.space}


# ---------------------------------------------------------------------- default domains

DESIGN_DEFAULTS: dict[str, Any] = {
    "num_layers": IntRange(1, 4),
    "units": IntRange(16, 512, log=True),
    "dropout": FloatRange(0.0, 0.5),
    "normalization": Choices(("none", "batch", "layer", "group")),
    "residual": Choices((False, True)),
    "learning_rate": FloatRange(1e-5, 1e-1, log=True),
    "optimizer": Choices(("adam", "adamw", "rmsprop", "sgd")),
    "clipnorm": FloatRange(0.01, 10.0, log=True),
    "activation": Choices(("relu", "gelu", "elu", "tanh", "swish")),
    "kernel_initializer": Choices(("auto", "he_normal", "glorot_uniform")),
    "l2": FloatRange(1e-6, 1e-2, log=True),
    "batch_size": Choices((32, 64, 128, 256)),
}


def test_knob_catalogue_matches_design() -> None:
    # The recipe's opt-in knobs (tests/test_recipe_knobs.py) come after the design's own.
    assert [n for n, k in KNOBS.items() if not k.opt_in] == list(DESIGN_DEFAULTS)


@pytest.mark.parametrize(("name", "domain"), list(DESIGN_DEFAULTS.items()))
def test_default_domain_matches_design(name: str, domain: Any) -> None:
    assert KNOBS[name].default == domain
    assert SearchSpace().domain(name) == domain


def test_knob_flags() -> None:
    assert {n for n, k in KNOBS.items() if k.per_layer} == {"units", "dropout"}
    assert {n for n, k in KNOBS.items() if k.optional} == {"clipnorm", "l2"}
    assert KNOBS["residual"].kind == "bool"
    # Instance norm of a dense feature vector is degenerate: not in the dense vocabulary.
    assert "instance" not in KNOBS["normalization"].vocabulary
    for knob in KNOBS.values():
        if knob.kind == "choice":
            assert knob.default == Choices(knob.vocabulary)


def test_default_space_state() -> None:
    space = SearchSpace()
    assert space.overrides == {}
    assert space.max_layers() == 4
    assert space.enabled("clipnorm") is None and space.enabled("l2") is None
    assert space.domain("units_3") == IntRange(16, 512, log=True)
    assert space.domain("dropout_0") == FloatRange(0.0, 0.5)


# ---------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    ("overrides", "name", "expected"),
    [
        ({"normalization": "batch"}, "normalization", FixedDomain("batch")),
        ({"units": 64}, "units_2", FixedDomain(64)),
        ({"dropout": 0}, "dropout_0", FixedDomain(0.0)),
        ({"residual": True}, "residual", FixedDomain(True)),
        ({"residual": "true"}, "residual", FixedDomain(True)),
        ({"optimizer": ["adam", "sgd"]}, "optimizer", Choices(("adam", "sgd"))),
        ({"optimizer": ("sgd", "adam", "sgd")}, "optimizer", Choices(("sgd", "adam"))),
        ({"optimizer": ["adam"]}, "optimizer", FixedDomain("adam")),
        ({"batch_size": [16, 32]}, "batch_size", Choices((16, 32))),
        ({"num_layers": [1, 3]}, "num_layers", Choices((1, 3))),
        ({"learning_rate": {"min": 1e-4, "max": 1e-2}}, "learning_rate",
         FloatRange(1e-4, 1e-2, log=True)),
        ({"learning_rate": {"min": 1e-4, "max": 1e-2, "log": False}}, "learning_rate",
         FloatRange(1e-4, 1e-2, log=False)),
        ({"learning_rate": {"min": 1e-6, "max": 1.0}}, "learning_rate",
         FloatRange(1e-6, 1.0, log=True)),
        ({"units": {"min": 32, "max": 256}}, "units_0", IntRange(32, 256, log=True)),
        ({"dropout": {"min": 0.1, "max": 0.3}}, "dropout_1", FloatRange(0.1, 0.3)),
        ({"num_layers": {"min": 2, "max": 3}}, "num_layers", IntRange(2, 3)),
        ({"clipnorm": 1.0}, "clipnorm", FixedDomain(1.0)),
        ({"clipnorm": {"min": 0.1, "max": 5}}, "clipnorm", FloatRange(0.1, 5.0, log=True)),
    ],
)
def test_overrides_change_domains(overrides: dict[str, Any], name: str, expected: Any) -> None:
    assert SearchSpace(overrides).domain(name) == expected


def test_keyword_overrides_merge_over_the_mapping() -> None:
    space = SearchSpace({"units": 64, "optimizer": "sgd"}, optimizer=["adam", "sgd"], l2="off")
    assert space.overrides == {"units": 64, "optimizer": ["adam", "sgd"], "l2": "off"}
    assert space.domain("optimizer") == Choices(("adam", "sgd"))
    assert space.domain("units_0") == FixedDomain(64)
    assert space.enabled("l2") is False


def test_one_layer_override_leaves_other_layers_alone() -> None:
    space = SearchSpace(units_1=64)
    assert space.domain("units_1") == FixedDomain(64)
    for i in (0, 2, 3):
        assert space.domain(f"units_{i}") == IntRange(16, 512, log=True)
    both = SearchSpace(units=32, units_1=64)
    assert [both.domain(f"units_{i}") for i in range(4)] == [
        FixedDomain(32), FixedDomain(64), FixedDomain(32), FixedDomain(32)
    ]


@pytest.mark.parametrize("off", ["off", "OFF", "none", "false", False])
def test_off_turns_an_optional_knob_off(off: Any) -> None:
    space = SearchSpace(clipnorm=off, l2=off)
    assert space.enabled("clipnorm") is False and space.enabled("l2") is False


def test_optional_knob_given_values_is_forced_on() -> None:
    assert SearchSpace(clipnorm=0.5).enabled("clipnorm") is True
    assert SearchSpace(clipnorm=[0.5, 1.0]).enabled("clipnorm") is True
    assert SearchSpace(l2={"min": 1e-5, "max": 1e-3}).enabled("l2") is True


def test_max_layers_follows_num_layers() -> None:
    assert SearchSpace(num_layers=2).max_layers() == 2
    assert SearchSpace(num_layers=[1, 3]).max_layers() == 3
    assert SearchSpace(num_layers={"min": 1, "max": 2}).max_layers() == 2


def test_set_flags_feed_the_space() -> None:
    flags = parse_set_flags(["learning_rate=1e-4..1e-2", "optimizer=adam,sgd", "clipnorm=off",
                             "residual=true", "units=64", "normalization=batch"])
    space = SearchSpace(flags)
    assert space.domain("learning_rate") == FloatRange(1e-4, 1e-2, log=True)
    assert space.domain("optimizer") == Choices(("adam", "sgd"))
    assert space.enabled("clipnorm") is False
    assert space.domain("residual") == FixedDomain(True)
    assert space.domain("units_3") == FixedDomain(64)
    assert space.domain("normalization") == FixedDomain("batch")


def test_half_open_set_range_is_rejected_by_the_space() -> None:
    with pytest.raises(ConfigError) as excinfo:
        SearchSpace(parse_set_flags(["learning_rate=1e-4.."]))
    assert_one_line(excinfo.value, "learning_rate", "received ''")


def test_describe_domain() -> None:
    assert describe_domain(FixedDomain("batch")) == "fixed 'batch'"
    assert describe_domain(Choices((False, True))) == "false | true"
    assert describe_domain(IntRange(16, 512, log=True)) == "int 16..512 (log)"
    assert describe_domain(FloatRange(0.0, 0.5)) == "float 0..0.5"


# ---------------------------------------------------------------------- bad overrides


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"learning_rat": 1e-3}, ("learning_rat", "unknown knob", "did you mean 'learning_rate'")),
        ({"optimiser": "adam"}, ("optimiser", "unknown knob", "did you mean 'optimizer'")),
        ({"zzzz": 1}, ("zzzz", "unknown knob", "num_layers", "batch_size")),
        ({"learning_rate": {"min": 1e-2, "max": 1e-4}},
         ("learning_rate", "min <= max", "min=0.01", "max=0.0001")),
        ({"units": {"min": 256, "max": 32}}, ("units", "min <= max", "min=256", "max=32")),
        ({"dropout": {"min": 0.0, "max": 0.5, "log": True}},
         ("dropout", "log-scale range needs min > 0", "min=0.0", "set log = false")),
        ({"optimizer": "adagrad"},
         ("optimizer", "'adagrad'", "adam, adamw, rmsprop, sgd")),
        ({"optimizer": ["adam", "adagrad"]}, ("optimizer", "'adagrad'")),
        ({"activation": "rellu"}, ("activation", "'rellu'", "did you mean 'relu'")),
        ({"normalization": "batchnorm"}, ("normalization", "'batchnorm'", "did you mean 'batch'")),
        ({"optimizer": {"min": 1, "max": 2}},
         ("optimizer", "not a range", "adam, adamw, rmsprop, sgd", "{'min': 1, 'max': 2}")),
        ({"residual": {"min": 0, "max": 1}}, ("residual", "not a range", "true or false")),
        ({"learning_rate": {"min": 1e-4, "max": 1e-2, "step": 2}},
         ("learning_rate", "min and max", "'step': 2")),
        ({"learning_rate": {"min": 1e-4}}, ("learning_rate", "min and max", "{'min': 0.0001}")),
        ({"learning_rate": {"min": "a", "max": 1e-2}}, ("learning_rate", "received 'a'")),
        ({"units": []}, ("units", "empty list")),
        ({"units_9": 64}, ("units_9", "layer 9 never exists", "at most 4", "layers 0..3")),
        ({"num_layers": 2, "dropout_2": 0.1},
         ("dropout_2", "layer 2 never exists", "at most 2", "layers 0..1")),
        ({"learning_rate": "fast"}, ("learning_rate", "expected a number", "'fast'")),
        ({"learning_rate": True}, ("learning_rate", "expected a number", "True")),
        ({"learning_rate": -1e-3}, ("learning_rate", "positive", "-0.001")),
        ({"clipnorm": "on"}, ("clipnorm", "a number or 'off'", "'on'")),
        ({"clipnorm": ["off", 1.0]}, ("clipnorm", "'off' cannot be mixed", "['off', 1.0]")),
        ({"dropout": 1.5}, ("dropout", "[0, 1)", "1.5")),
        ({"dropout_1": -0.1}, ("dropout", "[0, 1)", "-0.1")),
        ({"units": 64.5}, ("units", "integer", "64.5")),
        ({"num_layers": 0}, ("num_layers", "integer >= 1", "received 0")),
        ({"residual": "maybe"}, ("residual", "true or false", "'maybe'")),
    ],
)
def test_bad_overrides_raise_one_line_config_errors(
    overrides: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        SearchSpace(overrides)
    message = assert_one_line(excinfo.value, *fragments)
    assert message.startswith(fragments[0])


def test_instance_normalization_is_rejected_for_dense_models() -> None:
    with pytest.raises(ConfigError) as excinfo:
        SearchSpace(normalization="instance")
    assert_one_line(excinfo.value, "normalization", "'instance'", "none, batch, layer, group")
    with pytest.raises(ConfigError):
        SearchSpace(normalization=["batch", "instance"])


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"dropout": {"min": 0.0, "max": 1.5}}, "dropout"),
        ({"units": {"min": 0, "max": 64}}, "units"),
        ({"units": {"min": 16.5, "max": 64}}, "units"),
        ({"num_layers": {"min": 0, "max": 3}}, "num_layers"),
        ({"learning_rate": {"min": 0, "max": 1e-2}}, "learning_rate"),
        ({"learning_rate": {"min": -1e-3, "max": 1e-2}}, "learning_rate"),
    ],
)
def test_range_bounds_follow_the_knob_value_rules(overrides: dict[str, Any], name: str) -> None:
    # The same values are rejected as fixed overrides (dropout 1.5, units 0, learning_rate 0).
    with pytest.raises(ConfigError) as excinfo:
        SearchSpace(overrides)
    assert_one_line(excinfo.value, name)


# ---------------------------------------------------------------------- hparam_domains


def test_hparam_domains_of_default_space() -> None:
    domains = SearchSpace().hparam_domains()
    assert list(domains) == [
        "num_layers", "units_0", "units_1", "units_2", "units_3",
        "dropout_0", "dropout_1", "dropout_2", "dropout_3",
        "normalization", "residual", "learning_rate", "optimizer",
        "use_clipnorm", "clipnorm", "activation", "kernel_initializer",
        "use_l2", "l2", "batch_size",
    ]
    assert domains["use_clipnorm"] == Choices((False, True))
    assert domains["clipnorm"] == FloatRange(0.01, 10.0, log=True)
    assert domains["units_3"] == IntRange(16, 512, log=True)


def test_hparam_domains_follow_overrides() -> None:
    forced = SearchSpace(clipnorm=1.0, num_layers=2, units_1=64).hparam_domains()
    assert "use_clipnorm" not in forced and forced["clipnorm"] == FixedDomain(1.0)
    assert [k for k in forced if k.startswith("units_")] == ["units_0", "units_1"]
    assert forced["units_1"] == FixedDomain(64)
    off = SearchSpace(clipnorm="off", l2="off").hparam_domains()
    assert not {"use_clipnorm", "clipnorm", "use_l2", "l2"} & set(off)


# ---------------------------------------------------------------------- registration

GOLDEN_VALUES: dict[str, Any] = {
    "num_layers": 2,
    "units_0": 128,
    "dropout_0": 0.0,
    "units_1": 128,
    "dropout_1": 0.0,
    "normalization": "none",
    "residual": False,
    "learning_rate": 0.001,
    "optimizer": "adam",
    "use_clipnorm": False,
    "activation": "relu",
    "kernel_initializer": "auto",
    "use_l2": False,
    "batch_size": 64,
}


def test_golden_default_values() -> None:
    hp, params, _ = registered(SearchSpace())
    assert hp.values == GOLDEN_VALUES
    assert params == ModelParams(
        num_layers=2, units=(128, 128), dropout=(0.0, 0.0), normalization="none",
        residual=False, learning_rate=0.001, optimizer="adam", clipnorm=None,
        activation="relu", kernel_initializer="auto", l2=None, batch_size=64,
    )


def test_resolve_twice_on_the_same_hp_is_stable() -> None:
    space = SearchSpace()
    hp, first, by_name = registered(space)
    assert space.resolve(hp) == first
    assert len(hp.space) == len(by_name)


def test_default_registration_types_and_conditions() -> None:
    _, _, by_name = registered(SearchSpace())
    assert isinstance(by_name["num_layers"], Int)
    assert (by_name["num_layers"].min_value, by_name["num_layers"].max_value) == (1, 4)
    assert isinstance(by_name["units_0"], Int) and by_name["units_0"].sampling == "log"
    assert isinstance(by_name["dropout_0"], Float)
    assert isinstance(by_name["residual"], Boolean)
    assert isinstance(by_name["normalization"], Choice)
    assert by_name["normalization"].values == ["none", "batch", "layer", "group"]
    lr = by_name["learning_rate"]
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-5, 1e-1, "log")
    assert by_name["units_0"].conditions == []

    def parent_values(name: str) -> list[Any]:
        (condition,) = by_name[name].conditions
        config = condition.get_config()
        assert config["name"] == "num_layers"
        return config["values"]

    assert parent_values("units_1") == [2, 3, 4]
    assert parent_values("dropout_2") == [3, 4]
    assert parent_values("units_3") == [4]
    (clip_condition,) = by_name["clipnorm"].conditions
    assert clip_condition.get_config() == {"name": "use_clipnorm", "values": [True]}


def test_overrides_change_registered_domains() -> None:
    space = SearchSpace(learning_rate={"min": 1e-4, "max": 1e-2}, optimizer=["adam", "sgd"],
                        normalization="batch", units=64, batch_size=128)
    hp, params, by_name = registered(space)
    lr = by_name["learning_rate"]
    assert isinstance(lr, Float)
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")
    assert isinstance(by_name["optimizer"], Choice)
    assert by_name["optimizer"].values == ["adam", "sgd"]
    for name, value in (("normalization", "batch"), ("units_0", 64), ("units_3", 64),
                        ("batch_size", 128)):
        assert isinstance(by_name[name], Fixed), name
        assert by_name[name].value == value
    assert hp.values["normalization"] == "batch" and params.normalization == "batch"
    assert params.units == (64,) * params.num_layers and params.batch_size == 128
    assert 1e-4 <= params.learning_rate <= 1e-2


def test_single_point_range_registers_as_fixed() -> None:
    _, params, by_name = registered(SearchSpace(learning_rate={"min": 3e-3, "max": 3e-3}))
    assert isinstance(by_name["learning_rate"], Fixed)
    assert params.learning_rate == 3e-3


def test_default_outside_a_narrowed_domain_falls_back_to_its_start() -> None:
    _, params, _ = registered(SearchSpace(units={"min": 16, "max": 64},
                                          optimizer=["sgd", "rmsprop"], batch_size=[128, 256]))
    assert params.units == (16, 16)
    assert params.optimizer == "sgd" and params.batch_size == 128


# ---------------------------------------------------------------------- inactive knobs


def test_single_layer_registers_no_deeper_layers() -> None:
    hp, params, by_name = registered(SearchSpace(num_layers=1))
    assert isinstance(by_name["num_layers"], Fixed)
    assert {"units_0", "dropout_0"} <= set(hp.values)
    assert not {"units_1", "dropout_1"} & set(by_name)
    assert params.units == (128,) and params.dropout == (0.0,)


def test_deeper_layers_are_registered_but_inactive_below_their_depth() -> None:
    hp, params, by_name = registered(SearchSpace())
    assert {"units_2", "units_3", "dropout_3"} <= set(by_name)
    assert not {"units_2", "units_3", "dropout_2", "dropout_3"} & set(hp.values)
    assert len(params.units) == len(params.dropout) == hp.values["num_layers"] == 2


def test_preset_layer_count_activates_every_layer() -> None:
    hp = kt.HyperParameters()
    hp.values["num_layers"] = 4
    hp, params, _ = registered(SearchSpace(), hp)
    assert {f"units_{i}" for i in range(4)} <= set(hp.values)
    assert params.units == (128,) * 4


def test_clipnorm_off_registers_nothing() -> None:
    hp, params, by_name = registered(SearchSpace(clipnorm="off", l2="off"))
    assert not {"use_clipnorm", "clipnorm", "use_l2", "l2"} & (set(hp.values) | set(by_name))
    assert params.clipnorm is None and params.l2 is None


def test_tuned_clipnorm_defaults_to_off_without_a_value() -> None:
    hp, params, by_name = registered(SearchSpace())
    assert hp.values["use_clipnorm"] is False and "clipnorm" not in hp.values
    assert "clipnorm" in by_name  # declared, so the oracle knows the space
    assert params.clipnorm is None


def test_tuned_clipnorm_switched_on_carries_a_value() -> None:
    hp = kt.HyperParameters()
    hp.values["use_clipnorm"] = True
    hp, params, _ = registered(SearchSpace(), hp)
    assert hp.values["use_clipnorm"] is True
    assert hp.values["clipnorm"] == 1.0 and params.clipnorm == 1.0
    assert "l2" not in hp.values and params.l2 is None


def test_values_set_after_registration_are_read_back() -> None:
    # What a Tuner does: the oracle fills values for a registered space, build() resolves again.
    space = SearchSpace()
    hp, _, _ = registered(space)
    hp.values.update({"use_clipnorm": True, "clipnorm": 0.5, "num_layers": 3,
                      "units_2": 32, "dropout_2": 0.25})
    params = space.resolve(hp)
    assert params.clipnorm == 0.5
    assert params.units == (128, 128, 32) and params.dropout == (0.0, 0.0, 0.25)


def test_forced_clipnorm_is_fixed_without_a_switch() -> None:
    hp, params, by_name = registered(SearchSpace(clipnorm=0.5))
    assert "use_clipnorm" not in by_name
    assert isinstance(by_name["clipnorm"], Fixed) and by_name["clipnorm"].conditions == []
    assert hp.values["clipnorm"] == 0.5 and params.clipnorm == 0.5


# ---------------------------------------------------------------------- a real oracle


def test_random_oracle_respects_overrides_and_conditions(tmp_path: Path) -> None:
    space = SearchSpace(learning_rate={"min": 1e-4, "max": 1e-2}, optimizer=["adam", "sgd"],
                        dropout=0.1, normalization=["batch", "layer"])
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"), max_trials=8, seed=1
    )
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.verbose = 0
    hp = kt.HyperParameters()
    space.resolve(hp)
    oracle.update_space(hp)

    seen_layers, seen_clip = set(), set()
    for _ in range(8):
        trial = oracle.create_trial("t")
        assert trial.status == "RUNNING"
        values = trial.hyperparameters.values
        params = space.resolve(trial.hyperparameters)
        n = values["num_layers"]
        seen_layers.add(n)
        assert 1 <= n <= 4
        assert {k for k in values if k.startswith("units_")} == {f"units_{i}" for i in range(n)}
        assert {k for k in values if k.startswith("dropout_")} == {
            f"dropout_{i}" for i in range(n)
        }
        assert all(values[f"dropout_{i}"] == 0.1 for i in range(n))
        assert all(16 <= values[f"units_{i}"] <= 512 for i in range(n))
        assert 1e-4 <= values["learning_rate"] <= 1e-2
        assert values["optimizer"] in ("adam", "sgd")
        assert values["normalization"] in ("batch", "layer")
        seen_clip.add(values["use_clipnorm"])
        assert ("clipnorm" in values) == values["use_clipnorm"]
        if values["use_clipnorm"]:
            assert 0.01 <= values["clipnorm"] <= 10.0
        assert ("l2" in values) == values["use_l2"]
        # The hypermodel's view agrees with what the oracle chose.
        assert params.num_layers == n and len(params.units) == n
        assert params.learning_rate == values["learning_rate"]
        assert (params.clipnorm is not None) == values["use_clipnorm"]

        oracle.update_trial(trial.trial_id, {"score": 1.0})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)

    # The seeded oracle explores: several depths, clipping both on and off.
    assert len(seen_layers) > 1 and seen_clip == {False, True}
    assert oracle.create_trial("t").status == "STOPPED"
    assert all(math.isfinite(t.score) for t in oracle.trials.values())
