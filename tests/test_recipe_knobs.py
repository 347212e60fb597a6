"""The recipe's knobs (issue 16, part 1): learning-rate schedules with warm-up, momentum sampled
as 1 - beta on a log scale, AdamW's weight decay, MLP width profiles, CNN augmentation.

Registration runs on real ``keras_tuner.HyperParameters``; the schedule is checked as a pure
function, then through real fits (the optimizer's rate per epoch) and a real search (the
``epoch_learning_rate`` scalars TensorBoard's reader gets back, across Hyperband promotions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerastune_kit.config import parse_set_flags
from kerastune_kit.designs import Design, design_values
from kerastune_kit.errors import ConfigError
from kerastune_kit.space import (
    RECIPE_KNOBS,
    Choices,
    FloatRange,
    IntRange,
    ModelParams,
    SearchSpace,
    profile_widths,
)
from kerastune_kit.space import Fixed as FixedDomain
from tests.helpers import assert_one_line

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")
from kerastune_kit.hypermodels import CNNHyperModel, MLPHyperModel, make_optimizer  # noqa: E402
from kerastune_kit.schedules import EpochSchedule, EpochScheduleCallback, schedule_for  # noqa: E402

#: The hyperparameters of the default spaces before the recipe's knobs existed.
MLP_DEFAULT_NAMES = [
    "num_layers", "units_0", "units_1", "units_2", "units_3",
    "dropout_0", "dropout_1", "dropout_2", "dropout_3",
    "normalization", "residual", "learning_rate", "optimizer",
    "use_clipnorm", "clipnorm", "activation", "kernel_initializer", "use_l2", "l2", "batch_size",
]
CNN_DEFAULT_NAMES = [
    "num_blocks", "filters_0", "filters_1", "filters_2", "dropout_0", "dropout_1", "dropout_2",
    "convs_per_block", "kernel_size", "pooling", "head", "dense_layers", "dense_units",
    "head_dropout", "normalization", "residual", "learning_rate", "optimizer",
    "use_clipnorm", "clipnorm", "activation", "kernel_initializer", "use_l2", "l2", "batch_size",
]
SHARED_RECIPE = ["lr_schedule", "warmup_epochs", "one_minus_momentum", "weight_decay"]
AUGMENTATION = ["use_translation", "translation", "use_rotation", "rotation", "use_zoom", "zoom",
                "horizontal_flip"]


def resolved(space: SearchSpace, **values: Any) -> tuple[Any, ModelParams, dict[str, Any]]:
    """Register ``space`` on fresh hyperparameters, then, given ``values``, resolve again with
    them chosen as an oracle chooses (the active hyperparameters only, the others at their
    defaults); return hp, the params and the registered hps by name."""
    hp = kt.HyperParameters()
    params = space.resolve(hp)
    if values:
        chosen = hp.copy()
        chosen.values = design_values(hp, Design("test", "", values))
        params = space.resolve(chosen)
        hp = chosen
    return hp, params, {h.name: h for h in hp.space}


def _conditions(hp: Any) -> list[tuple[str, list[Any]]]:
    return [(c.name, list(c.values)) for c in hp.conditions]


# ---------------------------------------------------------------------- the default space


@pytest.mark.parametrize(("family", "names"), [("mlp", MLP_DEFAULT_NAMES),
                                                ("cnn", CNN_DEFAULT_NAMES)])
def test_default_space_is_unchanged(family: str, names: list[str]) -> None:
    space = SearchSpace(family=family)
    assert list(space.hparam_domains()) == names
    hp, params, registered = resolved(space)
    assert not set(registered) & {*SHARED_RECIPE, "width_profile", "base_units", *AUGMENTATION}
    assert (params.lr_schedule, params.warmup_epochs, params.one_minus_momentum,
            params.weight_decay, params.width_profile, params.augmented) == (
        "constant", 0, None, None, None, False)


def test_recipe_opens_the_recipe_knobs_of_each_family() -> None:
    mlp = SearchSpace(recipe=True).hparam_domains()
    assert list(mlp) == MLP_DEFAULT_NAMES + SHARED_RECIPE  # width_profile is the user's pick
    assert mlp["lr_schedule"] == Choices(("constant", "cosine", "exponential", "step"))
    assert mlp["warmup_epochs"] == IntRange(0, 5)
    assert mlp["one_minus_momentum"] == FloatRange(0.001, 0.1, log=True)
    assert mlp["weight_decay"] == FloatRange(1e-5, 1e-1, log=True)
    cnn = SearchSpace({"recipe": "true"}, family="cnn").hparam_domains()
    assert list(cnn) == CNN_DEFAULT_NAMES + SHARED_RECIPE + AUGMENTATION
    assert cnn["translation"] == FloatRange(0.02, 0.2)
    assert set(RECIPE_KNOBS) <= set(cnn)
    # recipe = true keeps the neutral start: a trial from the defaults trains as today.
    _, params, _ = resolved(SearchSpace(recipe=True, family="cnn"))
    assert (params.lr_schedule, params.warmup_epochs, params.augmented) == ("constant", 0, False)
    assert params.one_minus_momentum == pytest.approx(0.1)  # beta_1 = 0.9, Adam's own
    # without AdamW among the optimizers, recipe leaves weight_decay shut
    assert "weight_decay" not in SearchSpace(recipe=True, optimizer="adam").hparam_domains()


# ---------------------------------------------------------------------- registration


def test_schedule_knobs_register_only_when_set() -> None:
    space = SearchSpace(lr_schedule=["constant", "cosine"], warmup_epochs={"min": 0, "max": 5})
    hp, params, registered = resolved(space, lr_schedule="cosine", warmup_epochs=3)
    assert type(registered["lr_schedule"]).__name__ == "Choice"
    assert list(registered["lr_schedule"].values) == ["constant", "cosine"]
    assert (registered["warmup_epochs"].min_value, registered["warmup_epochs"].max_value) == (0, 5)
    assert not _conditions(registered["warmup_epochs"])  # warm-up helps every schedule
    assert (params.lr_schedule, params.warmup_epochs) == ("cosine", 3)
    assert "one_minus_momentum" not in registered and "weight_decay" not in registered


def test_weight_decay_is_registered_under_adamw_only() -> None:
    space = SearchSpace(weight_decay={"min": 1e-4, "max": 1e-2})
    hp, params, registered = resolved(space, optimizer="adamw")
    assert _conditions(registered["weight_decay"]) == [("optimizer", ["adamw"])]
    assert registered["weight_decay"].sampling == "log"
    assert params.weight_decay == pytest.approx(4e-3)  # starts at Keras's AdamW default
    hp, params, _ = resolved(space, optimizer="sgd")
    assert params.weight_decay is None and "weight_decay" not in hp.values
    # A fixed AdamW needs no condition.
    _, _, registered = resolved(SearchSpace(optimizer="adamw", weight_decay=0.01))
    assert not _conditions(registered["weight_decay"])


def test_momentum_is_sampled_as_one_minus_beta_on_a_log_scale() -> None:
    assert SearchSpace(momentum={"min": 0.9, "max": 0.999}).domain("one_minus_momentum") \
        == FloatRange(0.001, 0.1, log=True)
    assert SearchSpace(momentum=0.95).domain("one_minus_momentum") == FixedDomain(0.05)
    assert SearchSpace(momentum=[0.9, 0.99]).domain("one_minus_momentum") \
        == Choices((0.1, 0.01))
    flags = parse_set_flags(["momentum=0.9..0.999"])
    assert SearchSpace(flags).domain("one_minus_momentum") == FloatRange(0.001, 0.1, log=True)
    _, params, registered = resolved(SearchSpace(one_minus_momentum={"min": 0.001, "max": 0.1}))
    hp = registered["one_minus_momentum"]
    assert (hp.min_value, hp.max_value, hp.sampling) == (0.001, 0.1, "log")
    assert not _conditions(hp)  # all four optimizers have a momentum
    # What the oracle samples is 1 - beta, log-uniform: half the draws have beta > 0.99.
    oracle_hp = kt.HyperParameters()
    SearchSpace(recipe=True).resolve(oracle_hp)
    draws = [oracle_hp.space[[h.name for h in oracle_hp.space].index("one_minus_momentum")]
             .random_sample(seed) for seed in range(400)]
    assert 0.4 < np.mean([d < 0.01 for d in draws]) < 0.6


@pytest.mark.parametrize(("optimizer", "key", "value", "neutral"), [
    ("adam", "beta_1", 0.95, 0.9),
    ("adamw", "beta_1", 0.95, 0.9),
    ("sgd", "momentum", 0.95, 0.9),
    ("rmsprop", "momentum", 0.95, 0.0),
])
def test_momentum_and_weight_decay_reach_the_optimizer(optimizer: str, key: str, value: float,
                                                       neutral: float) -> None:
    _, params, _ = resolved(SearchSpace(optimizer=optimizer, momentum=value))
    config = make_optimizer(params).get_config()
    assert config[key] == pytest.approx(value)
    _, params, _ = resolved(SearchSpace(optimizer=optimizer))
    assert make_optimizer(params).get_config()[key] == pytest.approx(neutral)
    if optimizer == "sgd":
        assert config["nesterov"] is True
    if optimizer == "adamw":
        _, params, _ = resolved(SearchSpace(optimizer="adamw", weight_decay=0.03))
        assert make_optimizer(params).get_config()["weight_decay"] == pytest.approx(0.03)
        _, params, _ = resolved(SearchSpace(optimizer="adamw"))
        assert make_optimizer(params).get_config()["weight_decay"] == pytest.approx(0.004)


# ---------------------------------------------------------------------- width profiles


def test_profile_widths() -> None:
    assert profile_widths("constant", 64, 3) == (64, 64, 64)
    assert profile_widths("pyramid", 256, 4) == (256, 128, 64, 32)
    assert profile_widths("pyramid", 16, 4) == (16, 8, 8, 8)  # clipped to 8
    assert profile_widths("inverted_pyramid", 32, 3) == (32, 64, 128)
    assert profile_widths("diamond", 64, 4) == (64, 128, 128, 64)
    assert profile_widths("diamond", 64, 5) == (64, 128, 256, 128, 64)
    assert profile_widths("diamond", 64, 1) == (64,)


def test_width_profile_replaces_per_layer_units() -> None:
    space = SearchSpace(width_profile=["pyramid", "diamond"], num_layers=3)
    assert not any(n.startswith("units_") for n in space.hparam_domains())
    assert space.hparam_domains()["base_units"] == IntRange(16, 512, log=True)
    hp, params, registered = resolved(space, width_profile="pyramid", base_units=200)
    assert not any(n.startswith("units_") for n in registered)
    assert params.units == (200, 100, 50)
    hypermodel = MLPHyperModel(space, input_shape=(10,), task="multiclass", n_classes=3)
    model = hypermodel.build(hp)
    assert [model.get_layer(f"dense_{i}").units for i in range(3)] == [200, 100, 50]
    assert hypermodel.cost(hp.values) == 10 * 200 + 200 * 100 + 100 * 50 + 50 * 3


def test_popular_designs_keep_their_widths_under_a_width_profile() -> None:
    from kerastune_kit.designs import POPULAR_DESIGNS

    hp = kt.HyperParameters()
    SearchSpace(width_profile=["constant", "pyramid"]).resolve(hp)
    wide, narrow = (design_values(hp, design) for design in POPULAR_DESIGNS["mlp"])
    assert (wide["width_profile"], wide["base_units"], narrow["base_units"]) == (
        "constant", 256, 64)
    assert not any(name.startswith("units_") for name in wide)


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(("flags", "family", "name"), [
    (["lr_schedule=linear"], "mlp", "lr_schedule"),
    (["warmup_epochs=9"], "mlp", "warmup_epochs"),
    (["warmup_epochs=-1"], "mlp", "warmup_epochs"),
    (["momentum=1.5"], "mlp", "momentum"),
    (["momentum=0.9", "one_minus_momentum=0.1"], "mlp", "momentum"),
    (["one_minus_momentum=2"], "mlp", "one_minus_momentum"),
    (["weight_decay=0.01", "optimizer=adam,sgd"], "mlp", "weight_decay"),
    (["width_profile=hourglass"], "mlp", "width_profile"),
    (["width_profile=pyramid"], "cnn", "width_profile"),
    (["width_profile=pyramid", "units_1=64"], "mlp", "units_1"),
    (["base_units=64"], "mlp", "base_units"),
    (["translation=0.1"], "mlp", "translation"),
    (["rotation=0.9"], "cnn", "rotation"),
    (["horizontal_flip=maybe"], "cnn", "horizontal_flip"),
    (["recipe=maybe"], "mlp", "recipe"),
])
def test_bad_recipe_values_get_one_line(flags: list[str], family: str, name: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        SearchSpace(parse_set_flags(flags), family=family)
    assert assert_one_line(excinfo.value, name).startswith(name)


# ---------------------------------------------------------------------- schedules


def test_schedule_values_per_epoch() -> None:
    base = 0.1
    cosine = EpochSchedule(base, "cosine", warmup_epochs=0, total_epochs=4)
    assert [cosine.learning_rate(e) for e in range(4)] == pytest.approx(
        [base * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)])
    warm = EpochSchedule(base, "cosine", warmup_epochs=2, total_epochs=6)
    assert [warm.learning_rate(e) for e in range(6)] == pytest.approx(
        [base / 3, 2 * base / 3, base, base * 0.5 * (1 + math.cos(math.pi / 4)), base / 2,
         base * 0.5 * (1 + math.cos(3 * math.pi / 4))])
    exponential = EpochSchedule(base, "exponential", total_epochs=5)
    assert [exponential.learning_rate(e) for e in range(5)] == pytest.approx(
        [base * 0.01 ** (e / 5) for e in range(5)])
    step = EpochSchedule(base, "step", total_epochs=8)
    assert [step.learning_rate(e) for e in range(8)] == pytest.approx(
        [base] * 4 + [base / 10] * 2 + [base / 100] * 2)
    constant = EpochSchedule(base, "constant", warmup_epochs=1, total_epochs=3)
    assert [constant.learning_rate(e) for e in range(3)] == pytest.approx([base / 2, base, base])
    # Past the horizon the last value holds; epochs are absolute, so a continuation agrees.
    assert cosine.learning_rate(9) == cosine.learning_rate(3)
    assert cosine(2, 123.0) == cosine.learning_rate(2)  # LearningRateScheduler's signature


def test_schedule_for_reads_the_trial_values() -> None:
    assert schedule_for({"learning_rate": 0.1}, total_epochs=5) is None
    assert schedule_for({"lr_schedule": "constant", "warmup_epochs": 0,
                         "learning_rate": 0.1}, total_epochs=5) is None
    schedule = schedule_for({"lr_schedule": "step", "learning_rate": 0.1}, total_epochs=5)
    assert schedule == EpochSchedule(0.1, "step", 0, 5)
    with pytest.raises(ConfigError) as excinfo:
        EpochSchedule(0.1, "linear")
    assert_one_line(excinfo.value, "lr_schedule", "linear")


def _vectors(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n)


def test_fit_follows_the_schedule_and_continues_from_initial_epoch() -> None:
    x, y = _vectors()
    space = SearchSpace(lr_schedule="cosine", warmup_epochs=1, learning_rate=0.01,
                        num_layers=1, units=8, batch_size=16)
    hypermodel = MLPHyperModel(space, input_shape=(6,), task="multiclass", n_classes=3)
    hypermodel.schedule_epochs = 5
    expected = EpochSchedule(0.01, "cosine", 1, 5)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    first = hypermodel.fit(hp, model, x, y, validation_data=(x, y), epochs=2)
    # A promotion: the same model trained on from epoch 2, as Hyperband and resume do.
    later = hypermodel.fit(hp, model, x, y, validation_data=(x, y), epochs=5, initial_epoch=2)
    rates = first.history["learning_rate"] + later.history["learning_rate"]
    assert rates == pytest.approx([expected.learning_rate(e) for e in range(5)], rel=1e-6)
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(
        expected.learning_rate(4), rel=1e-6)
    # Without schedule_epochs the horizon is fit's epochs.
    hypermodel.schedule_epochs = None
    fresh = hypermodel.build(kt.HyperParameters())
    history = hypermodel.fit(hp, fresh, x, y, epochs=3)
    assert history.history["learning_rate"] == pytest.approx(
        [EpochSchedule(0.01, "cosine", 1, 3).learning_rate(e) for e in range(3)], rel=1e-6)


def test_the_schedule_callback_drives_model_fit_too() -> None:
    x, y = _vectors(32)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    schedule = EpochSchedule(0.5, "step", total_epochs=4)
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[EpochScheduleCallback(schedule)])
    assert history.history["learning_rate"] == pytest.approx([0.5, 0.5, 0.05, 0.005], rel=1e-6)


def test_constant_rate_adds_no_callback() -> None:
    other = keras.callbacks.Callback()
    hypermodel = MLPHyperModel(SearchSpace(num_layers=1, units=8), input_shape=(6,),
                               task="multiclass", n_classes=3)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert hypermodel._with_schedule(hp, model, [other], epochs=2) == [other]
    hypermodel = MLPHyperModel(SearchSpace(num_layers=1, units=8, lr_schedule="exponential"),
                               input_shape=(6,), task="multiclass", n_classes=3)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    first, *rest = hypermodel._with_schedule(hp, model, [other], epochs=2)
    assert isinstance(first, EpochScheduleCallback) and rest == [other]  # first: others see it


def test_a_search_sets_the_schedule_horizon_to_its_max_epochs(tmp_path: Path) -> None:
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuners import build_tuner
    from kerastune_kit.tuning import prepare

    config = SearchConfig(data="iris", tuner="hyperband", max_epochs=9, seed=3,
                          run_dir=str(tmp_path / "run"), overrides={"recipe": True})
    _, space, hypermodel, objective = prepare(config)
    assert space.recipe and "lr_schedule" in space.hparam_domains()
    assert hypermodel.schedule_epochs is None
    build_tuner(config, hypermodel, objective=objective)
    assert hypermodel.schedule_epochs == 9


# ---------------------------------------------------------------------- augmentation


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        out.extend(_all_layers(layer) if hasattr(layer, "layers") else [])
    return out


def test_augmentation_trains_and_is_absent_from_the_inference_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 40)
    space = SearchSpace(translation=0.2, rotation=0.1, zoom=0.2, horizontal_flip=True,
                        num_blocks=1, head_dropout=0.0, family="cnn")
    hypermodel = CNNHyperModel(space, input_shape=(8, 8, 1), task="multiclass", n_classes=3,
                               seed=4)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values["translation"] == 0.2 and hp.values["horizontal_flip"] is True
    block = model.get_layer("augmentation")
    assert [type(layer).__name__ for layer in block.layers] == [
        "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom"]
    # Active in training only.
    assert not np.allclose(block(x, training=True), x)
    np.testing.assert_array_equal(block(x, training=False), x)
    history = hypermodel.fit(hp, model, x, y, validation_data=(x, y), epochs=2)
    assert all(np.isfinite(history.history["loss"]))

    exported = hypermodel.inference_model(model)
    names = [type(layer).__name__ for layer in _all_layers(exported)]
    assert not any(name.startswith("Random") for name in names), names
    first, second = exported.predict(x, verbose=0), exported.predict(x, verbose=0)
    np.testing.assert_array_equal(first, second)
    reference = keras.ops.softmax(model(x, training=False)).numpy()
    np.testing.assert_allclose(first, reference, rtol=1e-5, atol=1e-6)
    path = tmp_path / "model.keras"
    exported.save(path)
    loaded = keras.saving.load_model(path)
    assert not any(type(layer).__name__.startswith("Random") for layer in _all_layers(loaded))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), first, rtol=1e-5, atol=1e-6)


def test_augmentation_off_builds_no_block() -> None:
    space = SearchSpace(translation="off", family="cnn")
    assert "translation" not in space.hparam_domains()
    model = CNNHyperModel(space, input_shape=(8, 8, 1), task="multiclass",
                          n_classes=3).build(kt.HyperParameters())
    assert "augmentation" not in [layer.name for layer in model.layers]
    recipe = SearchSpace(recipe=True, family="cnn")
    hp, params, registered = resolved(recipe, use_translation=True, translation=0.15)
    assert _conditions(registered["translation"]) == [("use_translation", [True])]
    assert params.translation == pytest.approx(0.15) and params.rotation is None


# ---------------------------------------------------------------------- a real search


@pytest.mark.slow
def test_search_logs_the_schedule_per_epoch_across_promotions(tmp_path: Path) -> None:
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.tuning import run_search
    from tests.tb_read import experiment_hparam_names, scalars, session_hparams

    overrides = {"learning_rate": 0.01, "lr_schedule": "cosine", "warmup_epochs": 1,
                 "momentum": 0.95, "num_layers": 1, "units": 16}
    config = SearchConfig(data="iris", tuner="hyperband", max_epochs=3, seed=1, baselines=False,
                          run_dir=str(tmp_path / "run"), overrides=overrides,
                          min_steps_per_epoch=4)
    result = run_search(config)
    expected = EpochSchedule(0.01, "cosine", warmup_epochs=1, total_epochs=3)
    tensorboard = result.run_dir / "tensorboard"
    assert {"lr_schedule", "warmup_epochs", "one_minus_momentum"} <= \
        experiment_hparam_names(tensorboard)
    promoted = 0
    for record in result.trials:
        if not record.epochs:
            continue
        assert record.hyperparameters["one_minus_momentum"] == pytest.approx(0.05)
        assert session_hparams(tensorboard / record.trial_id)["lr_schedule"] == "cosine"
        logged = scalars(tensorboard / record.trial_id / "train")["epoch_learning_rate"]
        steps = [step for step, _ in logged]  # epochs numbered from 1, the parent's axis on
        assert steps == list(range(record.initial_epoch + 1, record.epochs + 1))
        assert [v for _, v in logged] == pytest.approx(
            [expected.learning_rate(step - 1) for step in steps], rel=1e-6)
        promoted += record.initial_epoch > 0
    assert promoted, "no Hyperband promotion ran: the continuation went unchecked"
