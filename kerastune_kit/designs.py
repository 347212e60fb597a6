"""Popular designs: the known-good configurations every search tries first (its baselines).

Owns: :data:`POPULAR_DESIGNS` (per model family, in the order they run) and
:func:`design_values`, which turns a design into values of a KerasTuner search space with the
user's overrides applied (a fixed knob keeps its fixed value, a narrowed range clamps the
design's value into it). Does not own: running them (the oracles in ``tuners`` start every
search with them) or the search space itself (``space``). Imports no TensorFlow.

The course's recipe: start from popular designs (LeNet, VGG-style; Adam at 1e-3; ReLU with He
initialization), then tune around them. A search that runs them first never ends below the
network a user would have written by hand.

Example:
    >>> [d.name for d in POPULAR_DESIGNS["cnn"]]
    ['lenet', 'small_vgg']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

#: The key that marks a baseline trial in its KerasTuner hyperparameter values (like
#: KerasTuner's own ``tuner/*`` keys, it is not a hyperparameter of the space).
BASELINE_KEY = "kit/baseline"


@dataclasses.dataclass(frozen=True)
class Design:
    """One known-good configuration.

    Attributes:
        name: Short name shown in the leaderboard's ``baseline`` column and TensorBoard.
        description: One line: what the network is and where it comes from.
        values: Knob values (hyperparameter names as the space registers them); knobs it
            leaves out take the space's defaults.
    """

    name: str
    description: str
    values: Mapping[str, Any]


_ADAM = {"learning_rate": 1e-3, "optimizer": "adam", "use_clipnorm": False, "use_l2": False,
         "activation": "relu", "kernel_initializer": "auto", "residual": False,
         "batch_size": 64}

#: Per model family, the designs a search starts with, in order (cheapest first).
POPULAR_DESIGNS: dict[str, tuple[Design, ...]] = {
    "cnn": (
        Design("lenet", "LeNet-style: conv 32 -> pool -> conv 64 -> pool -> flatten -> dense 128 "
               "-> dropout 0.3; Adam 1e-3, ReLU/He, batch 64 (LeCun et al., 1998)",
               {**_ADAM, "num_blocks": 2, "filters_0": 32, "filters_1": 64,
                "dropout_0": 0.0, "dropout_1": 0.0, "convs_per_block": 1, "kernel_size": 3,
                "pooling": "max", "normalization": "none", "head": "flatten",
                "dense_layers": 1, "dense_units": 128, "head_dropout": 0.3}),
        Design("small_vgg", "small VGG: 2 blocks of two 3x3 convolutions (16, 32) with batch "
               "normalization and pooling -> flatten -> dense 128 -> dropout 0.5; Adam 1e-3; "
               "about LeNet's cost (Simonyan & Zisserman, 2015; Ioffe & Szegedy, 2015)",
               {**_ADAM, "num_blocks": 2, "filters_0": 16, "filters_1": 32,
                "dropout_0": 0.0, "dropout_1": 0.0, "convs_per_block": 2, "kernel_size": 3,
                "pooling": "max", "normalization": "batch", "head": "flatten",
                "dense_layers": 1, "dense_units": 128, "head_dropout": 0.5}),
    ),
    "mlp": (
        Design("mlp_2x256", "two hidden layers of 256 ReLU units, dropout 0.2; Adam 1e-3, "
               "He init, batch 64",
               {**_ADAM, "num_layers": 2, "units_0": 256, "units_1": 256,
                "width_profile": "constant", "base_units": 256,  # with width_profile set
                "dropout_0": 0.2, "dropout_1": 0.2, "normalization": "none"}),
        Design("mlp_2x64", "two hidden layers of 64 ReLU units, no dropout; Adam 1e-3, "
               "He init, batch 64 (small data, regression)",
               {**_ADAM, "num_layers": 2, "units_0": 64, "units_1": 64,
                "width_profile": "constant", "base_units": 64,
                "dropout_0": 0.0, "dropout_1": 0.0, "normalization": "none"}),
    ),
}


def designs_for(family: str) -> tuple[Design, ...]:
    """The popular designs of a model family (``mlp`` or ``cnn``); empty for others."""
    return POPULAR_DESIGNS.get(family, ())


def design_values(hyperparameters: Any, design: Design) -> dict[str, Any]:
    """The values of ``design`` in a registered KerasTuner search space.

    Walks ``hyperparameters.space`` in order, as KerasTuner's ``Oracle._random_values`` does,
    so only active hyperparameters get a value (``units_2`` only when ``num_layers`` > 2).
    A knob the user fixed keeps its fixed value; a design value outside a narrowed range is
    clamped into it; a choice the user
    removed falls back to the knob's default; a knob the design leaves out takes its default.

    Args:
        hyperparameters: A ``keras_tuner.HyperParameters`` with the search space registered
            (an oracle's ``hyperparameters``).
        design: The design.

    Returns:
        Hyperparameter name -> value, for the active hyperparameters only (without the
        :data:`BASELINE_KEY` marker, which the oracle adds).
    """
    from keras_tuner.src.engine import hyperparameters as hp_module

    chosen = hp_module.HyperParameters()
    for hp in hyperparameters.space:
        chosen.merge([hp])
        if chosen.is_active(hp):
            chosen.values[hp.name] = _fit_to(hp, design.values.get(hp.name))
    return dict(chosen.values)


def _fit_to(hp: Any, wanted: Any) -> Any:
    """``wanted`` made valid for the hyperparameter ``hp`` (its default when impossible)."""
    kind = type(hp).__name__
    if wanted is None:
        return hp.default
    if kind == "Fixed":
        return hp.value
    if kind == "Boolean":
        return bool(wanted) if isinstance(wanted, bool) else hp.default
    if kind == "Choice":
        return wanted if wanted in hp.values else hp.default
    if kind in ("Int", "Float"):
        if isinstance(wanted, bool) or not isinstance(wanted, (int, float)):
            return hp.default
        low, high = hp.min_value, hp.max_value
        value = min(max(float(wanted), low), high)
        if kind == "Int":
            step = hp.step or 1
            value = low + round((value - low) / step) * step if hp.sampling != "log" \
                else round(value)
            return int(min(max(value, low), high))
        if hp.step:
            value = low + round((value - low) / hp.step) * hp.step
        return float(min(max(value, low), high))
    return hp.default


def describe(designs: Sequence[Design]) -> str:
    """``lenet, small_vgg``: the names, for one printed line."""
    return ", ".join(d.name for d in designs)

