"""HyperModel factories: golden defaults, a contract over factory x normalization x task, heads."""

from __future__ import annotations

import numpy as np
import pytest

from kerastune_kit.errors import ConfigError
from kerastune_kit.space import SearchSpace

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")
from kerastune_kit.hypermodels import (  # noqa: E402
    CNNHyperModel,
    MLPHyperModel,
    available_objectives,
    factory_for,
    task_head,
)

SHARED_DEFAULTS = {
    "normalization": "none", "residual": False, "learning_rate": 0.001, "optimizer": "adam",
    "use_clipnorm": False, "activation": "relu", "kernel_initializer": "auto",
    "use_l2": False, "batch_size": 64,
}


def test_mlp_golden_default_values():
    hp = kt.HyperParameters()
    MLPHyperModel(input_shape=(64,), task="multiclass", n_classes=10).build(hp)
    assert hp.values == {
        "num_layers": 2, "units_0": 128, "dropout_0": 0.0, "units_1": 128, "dropout_1": 0.0,
        **SHARED_DEFAULTS,
    }


def test_cnn_golden_default_values():
    hp = kt.HyperParameters()
    CNNHyperModel(input_shape=(8, 8, 1), task="multiclass", n_classes=10).build(hp)
    assert hp.values == {
        "num_blocks": 2, "filters_0": 32, "dropout_0": 0.0, "filters_1": 64, "dropout_1": 0.0,
        **SHARED_DEFAULTS, "kernel_size": 3, "pooling": "max", "convs_per_block": 1,
        "head": "flatten", "dense_layers": 1, "dense_units": 128, "head_dropout": 0.3,
    }


def _layout(model) -> list[tuple[str, tuple]]:
    """(layer class, output shape without the batch axis) of every layer after the input."""
    return [(type(layer).__name__, tuple(layer.output.shape[1:])) for layer in model.layers[1:]]


def test_cnn_defaults_build_lenet():
    """The default CNN is LeNet-style: conv 32 -> pool -> conv 64 -> pool -> flatten ->
    dense 128 -> dropout 0.3 -> output (LeCun et al., 1998)."""
    model = CNNHyperModel(input_shape=(28, 28, 1), task="multiclass",
                          n_classes=10).build(kt.HyperParameters())
    assert _layout(model) == [
        ("Conv2D", (28, 28, 32)), ("Activation", (28, 28, 32)), ("MaxPooling2D", (14, 14, 32)),
        ("Conv2D", (14, 14, 64)), ("Activation", (14, 14, 64)), ("MaxPooling2D", (7, 7, 64)),
        ("Flatten", (3136,)), ("Dense", (128,)), ("Dropout", (128,)), ("Dense", (10,)),
    ]
    assert model.get_layer("head_dropout_0").rate == pytest.approx(0.3)
    assert model.get_layer("conv_0").kernel_initializer.__class__.__name__ == "HeNormal"
    assert model.count_params() == 320 + 18_496 + 401_536 + 1_290


def test_cnn_small_vgg_design_builds_vgg_blocks():
    """convs_per_block=2 with batch normalization: two 3x3 convolutions per block, pooled
    after each block (Simonyan & Zisserman, 2015)."""
    from kerastune_kit.designs import POPULAR_DESIGNS

    design = next(d for d in POPULAR_DESIGNS["cnn"] if d.name == "small_vgg")
    hp = kt.HyperParameters()
    hp.values = dict(design.values)
    model = CNNHyperModel(input_shape=(28, 28, 1), task="multiclass", n_classes=10).build(hp)
    convs = [(layer.name, tuple(layer.output.shape[1:])) for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [("conv_0", (28, 28, 16)), ("conv_0_1", (28, 28, 16)),
                     ("conv_1", (14, 14, 32)), ("conv_1_1", (14, 14, 32))]
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 4 and kinds.count("MaxPooling2D") == 2
    assert kinds[-4:] == ["Flatten", "Dense", "Dropout", "Dense"]


def test_cnn_global_average_head_without_dense_layers():
    hp = kt.HyperParameters()
    hp.values = {"head": "global_avg", "dense_layers": 0, "num_blocks": 3}
    model = CNNHyperModel(input_shape=(8, 8), task="binary").build(hp)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[-2:] == ["GlobalAveragePooling2D", "Dense"]
    assert kinds.count("MaxPooling2D") == 3  # 8 -> 4 -> 2 -> 1: pooled while the map allows
    assert "dense_units" not in hp.values and "head_dropout" not in hp.values


def _targets(task: str, n: int) -> np.ndarray:
    if task == "regression":
        return np.linspace(-1, 1, n).astype("float32")
    classes = 2 if task == "binary" else 3
    return (np.arange(n) % classes).astype("int32")


CASES = (
    [("mlp", norm, task) for norm in ("none", "batch", "layer", "group")
     for task in ("binary", "multiclass", "regression")]
    + [("cnn", norm, task) for norm in ("none", "batch", "layer", "group", "instance")
       for task in ("binary", "multiclass", "regression")]
)


@pytest.mark.parametrize(("family", "normalization", "task"), CASES)
def test_contract_build_and_one_training_step(family, normalization, task):
    """Every factory x normalization x task builds, trains one step on two samples, stays finite."""
    space = SearchSpace({"normalization": normalization, "residual": True,
                         "clipnorm": 1.0, "l2": 1e-4, "dropout": 0.1}, family=family)
    shape = (64,) if family == "mlp" else (6, 6, 2)
    n_classes = {"binary": 2, "multiclass": 3, "regression": None}[task]
    factory = MLPHyperModel if family == "mlp" else CNNHyperModel
    hypermodel = factory(space, input_shape=shape, task=task, n_classes=n_classes)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    out = model(x, training=False)
    assert tuple(out.shape) == (2, 3 if task == "multiclass" else 1)
    history = hypermodel.fit(hp, model, x, _targets(task, 2), epochs=1, batch_size=2)
    assert np.isfinite(history.history["loss"][0])
    assert int(model.optimizer.iterations.numpy()) == 1
    norm_layers = [layer for layer in model.layers if layer.name.startswith("norm_")]
    assert bool(norm_layers) == (normalization != "none")
    assert any(layer.name.startswith("skip_") for layer in model.layers)


def test_instance_and_group_normalization_divide_the_channels():
    space = SearchSpace({"normalization": "instance", "num_blocks": 1, "filters": 24},
                        family="cnn")
    model = CNNHyperModel(space, input_shape=(8, 8), task="binary").build(kt.HyperParameters())
    assert model.get_layer("norm_0").groups == 24
    space = SearchSpace({"normalization": "group", "num_blocks": 1, "filters": 20},
                        family="cnn")
    model = CNNHyperModel(space, input_shape=(8, 8), task="binary").build(kt.HyperParameters())
    assert 20 % model.get_layer("norm_0").groups == 0 and model.get_layer("norm_0").groups > 1


def test_residual_projection_when_widths_differ():
    space = SearchSpace({"residual": True, "num_layers": 2, "units_0": 32, "units_1": 32})
    model = MLPHyperModel(space, input_shape=(10,), task="binary").build(kt.HyperParameters())
    names = {layer.name for layer in model.layers}
    assert "projection_0" in names  # 10 -> 32 needs a projection
    assert "projection_1" not in names and "skip_1" in names  # 32 -> 32 adds the identity


def test_initializer_auto_follows_activation():
    for activation, expected in (("relu", "HeNormal"), ("tanh", "GlorotUniform")):
        space = SearchSpace({"activation": activation, "num_layers": 1})
        model = MLPHyperModel(space, input_shape=(4,), task="binary").build(kt.HyperParameters())
        assert type(model.get_layer("dense_0").kernel_initializer).__name__ == expected


def test_heads_and_objectives_follow_the_task():
    assert task_head("binary").metric_names == ("loss", "accuracy", "auc")
    assert task_head("multiclass", 4).units == 4
    assert task_head("regression").default_objective == "val_loss"
    assert "val_mae" in available_objectives("regression")
    assert "val_auc" not in available_objectives("multiclass")


def test_sgd_uses_nesterov_momentum_and_clipnorm_reaches_the_optimizer():
    space = SearchSpace({"optimizer": "sgd", "clipnorm": 0.5})
    model = MLPHyperModel(space, input_shape=(4,), task="binary").build(kt.HyperParameters())
    assert model.optimizer.nesterov and model.optimizer.momentum == pytest.approx(0.9)
    assert model.optimizer.clipnorm == pytest.approx(0.5)


def test_cnn_needs_image_shaped_input():
    with pytest.raises(ConfigError, match="--model mlp"):
        CNNHyperModel(input_shape=(13,), task="multiclass", n_classes=3)


def test_flattened_digits_reshape_for_the_cnn():
    from kerastune_kit.data import load_dataset

    digits = load_dataset("digits", max_samples=60, test_split=0)
    hypermodel = CNNHyperModel.for_dataset(digits)
    model = hypermodel.build(kt.HyperParameters())
    assert model.get_layer("to_image").output.shape[1:] == (8, 8, 1)
    assert factory_for("auto", digits) is MLPHyperModel


def test_auto_picks_the_cnn_for_images(tmp_path):
    from kerastune_kit.data import load_dataset

    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, x=rng.integers(0, 255, size=(40, 6, 6), dtype=np.uint8),
             y=np.arange(40) % 2)
    images = load_dataset(str(path))
    assert factory_for("auto", images) is CNNHyperModel
    model = CNNHyperModel.for_dataset(images).build(kt.HyperParameters())
    assert model.input_shape[1:] == (6, 6)


def test_space_of_the_other_family_is_refused():
    with pytest.raises(ConfigError, match="family='cnn'"):
        CNNHyperModel(SearchSpace(), input_shape=(8, 8, 1), task="binary")


@pytest.mark.parametrize(
    ("family", "overrides", "expected"),
    [
        ("mlp", {"normalization": "instance"}, "--model cnn"),
        ("mlp", {"filters": 32}, "use units"),
        ("cnn", {"num_layers": 2}, "use num_blocks"),
        ("cnn", {"kernel_size": "big"}, "kernel_size"),
        ("cnn", {"pooling": "min"}, "max, avg"),
    ],
)
def test_family_specific_override_errors(family, overrides, expected):
    with pytest.raises(ConfigError) as info:
        SearchSpace(overrides, family=family)
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_cnn_inactive_blocks_carry_no_values():
    hp = kt.HyperParameters()
    hp.values = {"num_blocks": 1}  # what the oracle hands a one-block trial
    model = CNNHyperModel(SearchSpace({"num_blocks": [1, 2]}, family="cnn"),
                          input_shape=(8, 8, 1), task="binary").build(hp)
    assert "filters_0" in hp.values and "filters_1" not in hp.values
    assert "dropout_1" not in hp.values
    assert [layer.name for layer in model.layers if layer.name.startswith("conv_")] == ["conv_0"]


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_build_is_seeded_and_leaves_the_global_random_state_alone(family):
    """Issue 13 item 6: ``build`` used to reseed Python's, NumPy's and TensorFlow's generators."""
    import random

    import tensorflow as tf

    factory = MLPHyperModel if family == "mlp" else CNNHyperModel
    overrides = {"dropout": 0.3}

    def weights(seed):
        hypermodel = factory(SearchSpace(overrides, family=family), input_shape=(8, 8, 1),
                             task="multiclass", n_classes=10, seed=seed)
        return [w.copy() for w in hypermodel.build(kt.HyperParameters()).get_weights()]

    random.seed(1234)
    np.random.seed(1234)
    tf.random.set_seed(1234)
    expected = (random.random(), float(np.random.rand()), float(tf.random.uniform([])))
    random.seed(1234)
    np.random.seed(1234)
    tf.random.set_seed(1234)
    first = weights(seed=7)
    after = (random.random(), float(np.random.rand()), float(tf.random.uniform([])))
    assert after == expected
    again, other = weights(seed=7), weights(seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_factory_in_a_users_keras_tuner_takes_model_fit_arguments(tmp_path):
    """Issue 13 item 5: ``validation_split``, ``class_weight`` and ``sample_weight`` used to fail
    every trial inside a plain ``kt.RandomSearch``; a keyword ``model.fit`` lacks stops it."""
    from sklearn.datasets import load_iris

    from kerastune_kit.hypermodels import UnsupportedFitArgument

    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype("float32"), y[order]
    space = SearchSpace({"num_layers": 1, "units": 16, "batch_size": 32}, family="mlp")
    hypermodel = MLPHyperModel(space, input_shape=(4,), task="multiclass", n_classes=3)
    for i, kwargs in enumerate([{"validation_split": 0.2},
                                {"validation_split": 0.2, "class_weight": {0: 2.0, 1: 1.0}},
                                {"validation_split": 0.2, "sample_weight": np.ones(len(y))}]):
        tuner = kt.RandomSearch(hypermodel, objective="val_accuracy", max_trials=1,
                                directory=str(tmp_path), project_name=f"p{i}")
        tuner.search(x, y, epochs=2, verbose=0, **kwargs)
        trials = tuner.oracle.get_best_trials(1)
        assert [t.status for t in trials] == ["COMPLETED"], kwargs
        assert trials[0].score is not None
    tuner = kt.RandomSearch(hypermodel, objective="val_accuracy", max_trials=3,
                            directory=str(tmp_path), project_name="bad")
    with pytest.raises(UnsupportedFitArgument, match="^fit: model.fit takes no argument "
                                                     "'workers'"):
        tuner.search(x, y, epochs=1, validation_split=0.2, workers=4, verbose=0)
    assert len(tuner.oracle.trials) == 1  # stopped at the first trial, no retries


def test_a_fit_argument_model_fit_refuses_stops_a_keras_tuner_search_in_one_line(tmp_path):
    from sklearn.datasets import load_iris

    from kerastune_kit.hypermodels import UnsupportedFitArgument

    x, y = load_iris(return_X_y=True)
    hypermodel = MLPHyperModel(SearchSpace({"num_layers": 1}, family="mlp"), input_shape=(4,),
                               task="multiclass", n_classes=3)
    for kwargs, fragment in (({"class_weight": {0: 2.0}, "sample_weight": np.ones(len(y))},
                              "^class_weight: .*not both"),
                             ({"sample_weight": np.ones(5)}, "^sample_weight: .*150")):
        tuner = kt.RandomSearch(hypermodel, objective="val_accuracy", max_trials=3,
                                directory=str(tmp_path), project_name=fragment[1:6])
        with pytest.raises(UnsupportedFitArgument, match=fragment):
            tuner.search(x.astype("float32"), y, epochs=1, validation_split=0.2, verbose=0,
                         **kwargs)
        assert len(tuner.oracle.trials) == 1
