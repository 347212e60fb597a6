"""The search space: knobs, their default domains, user overrides, registration on KerasTuner.

Owns: the catalogues of knobs (:data:`KNOBS` for the MLP, :data:`CNN_KNOBS`), validated
domains (:class:`IntRange`, :class:`FloatRange`, :class:`Choices`, :class:`Fixed`), turning
overrides (``--set`` flags, the ``[space]`` table of a TOML config, keyword arguments) into
domains, and registering them on a ``keras_tuner.HyperParameters`` with the right conditions so
that only knobs that take effect carry a value. The training recipe's knobs (learning-rate
schedule and warm-up, momentum as 1 - beta, AdamW's weight decay, the MLP's width profile, CNN
augmentation) are opt-in (:attr:`Knob.opt_in`): registered only once set or opened by
``recipe = true``, so the default space stays as it was. Does not own: building layers
(``layers``, ``hypermodels``) or applying a schedule (``schedules``).

The domain logic imports no TensorFlow; only :meth:`SearchSpace.resolve` touches ``keras_tuner``
(through the ``hp`` object it is given).

Example:
    >>> space = SearchSpace({"normalization": "batch", "learning_rate": {"min": 1e-4, "max": 1e-2}})
    >>> space.domain("normalization")
    Fixed(value='batch')
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
from collections.abc import Mapping
from typing import Any

from kerastune_kit.errors import ConfigError

# ---------------------------------------------------------------------- domains


@dataclasses.dataclass(frozen=True)
class IntRange:
    """Integers in ``[min, max]``; ``log`` samples on a log scale."""

    min: int
    max: int
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, self.log)


@dataclasses.dataclass(frozen=True)
class FloatRange:
    """Floats in ``[min, max]``; ``log`` samples on a log scale (use it for learning rates)."""

    min: float
    max: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, self.log)


@dataclasses.dataclass(frozen=True)
class Choices:
    """One of a fixed list of values."""

    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A single value: the knob is not tuned."""

    value: Any


Domain = IntRange | FloatRange | Choices | Fixed

#: The value of an optional knob (``clipnorm``, ``l2``) that turns it off.
OFF = "off"


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ConfigError(f"range: expected min <= max, but got (min={low}, max={high})")
    if log and low <= 0:
        raise ConfigError(
            f"range: a log-scale range needs min > 0, but got (min={low}, max={high}); "
            "raise min or set log = false"
        )


# ---------------------------------------------------------------------- knobs


@dataclasses.dataclass(frozen=True)
class Knob:
    """One tunable aspect of a model.

    Attributes:
        name: The knob's name, as used in overrides.
        kind: ``int``, ``float``, ``choice`` or ``bool``: what values it takes.
        default: Its default domain.
        help: One line for the README and ``--help``.
        per_layer: Registered once per layer as ``<name>_<i>``, active only while ``i`` is
            below the layer count.
        optional: Can be turned off (``clipnorm = "off"``); tuned as an on/off switch
            ``use_<name>`` with the value conditional on it.
        vocabulary: For ``choice`` knobs, every value the factories understand.
        initial: The value a trial starts from when the oracle has not chosen one (KerasTuner's
            ``default``), used when it lies in the domain.
        opt_in: Registered only when the user overrides it (or turns ``recipe`` on, for the
            knobs in :data:`RECIPE_KNOBS`); until then a trial builds with the knob's neutral
            value (today's behaviour) and the default search space does not change.
            ``default`` is then the domain the knob gets when opted into without a range.
        limit: The largest value an override may give a number knob (inclusive), or None.
    """

    name: str
    kind: str
    default: Domain
    help: str
    per_layer: bool = False
    optional: bool = False
    vocabulary: tuple[Any, ...] = ()
    initial: Any = None
    opt_in: bool = False
    limit: float | None = None


def _catalogue(*knobs: Knob) -> dict[str, Knob]:
    return {k.name: k for k in knobs}


_DENSE_NORMS = ("none", "batch", "layer", "group")
_CONV_NORMS = ("none", "batch", "layer", "group", "instance")

_SHARED = (
    Knob("residual", "bool", Choices((False, True)),
         "skip connections around each layer/block (projection when widths differ)",
         initial=False),
    Knob("learning_rate", "float", FloatRange(1e-5, 1e-1, log=True),
         "optimizer learning rate (log scale)", initial=1e-3),
    Knob("optimizer", "choice", Choices(("adam", "adamw", "rmsprop", "sgd")),
         "optimizer (sgd uses Nesterov momentum 0.9)",
         vocabulary=("adam", "adamw", "rmsprop", "sgd"), initial="adam"),
    Knob("clipnorm", "float", FloatRange(0.01, 10.0, log=True),
         "gradient clipping by norm, or off", optional=True, initial=1.0),
    Knob("activation", "choice", Choices(("relu", "gelu", "elu", "tanh", "swish")),
         "hidden activation", vocabulary=("relu", "gelu", "elu", "tanh", "swish"),
         initial="relu"),
    Knob("kernel_initializer", "choice", Choices(("auto", "he_normal", "glorot_uniform")),
         "weight init; auto = He for ReLU-like, Glorot for tanh",
         vocabulary=("auto", "he_normal", "glorot_uniform"), initial="auto"),
    Knob("l2", "float", FloatRange(1e-6, 1e-2, log=True),
         "L2 weight penalty, or off", optional=True, initial=1e-4),
    Knob("batch_size", "int", Choices((32, 64, 128, 256)), "training batch size", initial=64),
)

#: Learning-rate schedules (per epoch; see :mod:`kerastune_kit.schedules`).
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "exponential", "step")
#: Shapes of the MLP's hidden widths derived from ``base_units`` (:func:`profile_widths`).
WIDTH_PROFILES: tuple[str, ...] = ("constant", "pyramid", "inverted_pyramid", "diamond")
#: The optimizer setting ``one_minus_momentum`` sets: ``beta_1 = 1 - value`` of Adam and
#: AdamW, ``momentum = 1 - value`` of SGD (Nesterov) and RMSprop.
MOMENTUM_OPTIMIZERS: dict[str, str] = {"adam": "beta_1", "adamw": "beta_1",
                                       "rmsprop": "momentum", "sgd": "momentum"}
#: The override ``recipe = true`` (``--set recipe=true``, ``SearchSpace(recipe=True)``): opens
#: every knob of :data:`RECIPE_KNOBS` the model family has, with its default domain.
RECIPE = "recipe"
#: The knobs ``recipe = true`` opens (``width_profile`` is not one: it replaces ``units_i``,
#: a choice of parametrization the user makes).
RECIPE_KNOBS: tuple[str, ...] = ("lr_schedule", "warmup_epochs", "one_minus_momentum",
                                 "weight_decay", "translation", "rotation", "zoom",
                                 "horizontal_flip")
#: Keras 3's default weight decay of AdamW: what an AdamW trial uses while ``weight_decay`` is
#: not opened, and where an opened one starts.
NEUTRAL_WEIGHT_DECAY = 0.004

#: Opt-in knobs of the training recipe shared by both families: registered only when set (see
#: :attr:`Knob.opt_in`).
_RECIPE_SHARED = (
    Knob("lr_schedule", "choice", Choices(LR_SCHEDULES),
         "per-epoch learning-rate decay over the search's max epochs (constant: none)",
         vocabulary=LR_SCHEDULES, initial="constant", opt_in=True),
    Knob("warmup_epochs", "int", IntRange(0, 5),
         "epochs of linear learning-rate warm-up before the schedule (0: none)", initial=0,
         opt_in=True, limit=5),
    Knob("one_minus_momentum", "float", FloatRange(0.001, 0.1, log=True),
         "1 - beta: Adam/AdamW beta_1, SGD/RMSprop momentum (write momentum = beta to set it "
         "in beta terms)", initial=0.1, opt_in=True, limit=1.0),
    Knob("weight_decay", "float", FloatRange(1e-5, 1e-1, log=True),
         "AdamW's decoupled weight decay (only when optimizer is adamw)",
         initial=NEUTRAL_WEIGHT_DECAY, opt_in=True),
)

#: The knobs of the MLP factory (``--model mlp``).
KNOBS: dict[str, Knob] = _catalogue(
    Knob("num_layers", "int", IntRange(1, 4), "number of hidden layers", initial=2),
    Knob("units", "int", IntRange(16, 512, log=True), "width of hidden layer i",
         per_layer=True, initial=128),
    Knob("dropout", "float", FloatRange(0.0, 0.5), "dropout rate after layer/block i",
         per_layer=True, initial=0.0),
    Knob("normalization", "choice", Choices(_DENSE_NORMS),
         "normalization after each hidden layer", vocabulary=_DENSE_NORMS, initial="none"),
    *_SHARED,
    *_RECIPE_SHARED,
    Knob("width_profile", "choice", Choices(WIDTH_PROFILES),
         "hidden widths shaped from base_units, instead of units_i", vocabulary=WIDTH_PROFILES,
         initial="constant", opt_in=True),
    Knob("base_units", "int", IntRange(16, 512, log=True),
         "width of the first hidden layer under width_profile", initial=128, opt_in=True),
)

_HEADS = ("flatten", "global_avg")

#: The knobs of the CNN factory (``--model cnn``): VGG-style blocks of 1-3 convolutions, each
#: followed by 2x2 pooling while the map allows it, then a flatten or global-average head with
#: 0-2 dense layers. The defaults build a LeNet-style network (Simonyan & Zisserman 2015 for
#: the blocks; LeCun et al. 1998 for the flatten-and-dense head).
CNN_KNOBS: dict[str, Knob] = _catalogue(
    Knob("num_blocks", "int", IntRange(1, 3), "number of conv blocks", initial=2),
    Knob("filters", "int", IntRange(16, 128, log=True), "filters of conv block i",
         per_layer=True, initial=32),
    Knob("dropout", "float", FloatRange(0.0, 0.5), "dropout rate after layer/block i",
         per_layer=True, initial=0.0),
    Knob("convs_per_block", "int", IntRange(1, 3),
         "convolutions per block (VGG-style stacks of 3x3 convolutions)", initial=1),
    Knob("kernel_size", "int", Choices((3, 5)), "convolution kernel size", initial=3),
    Knob("pooling", "choice", Choices(("max", "avg")), "2x2 pooling after each block",
         vocabulary=("max", "avg"), initial="max"),
    Knob("head", "choice", Choices(_HEADS),
         "flatten the feature map (LeNet/VGG) or average it globally", vocabulary=_HEADS,
         initial="flatten"),
    Knob("dense_layers", "int", IntRange(0, 2), "dense layers between the conv blocks and the "
         "output", initial=1),
    Knob("dense_units", "int", IntRange(32, 512, log=True), "width of the dense layers",
         initial=128),
    Knob("head_dropout", "float", FloatRange(0.0, 0.5), "dropout rate after each dense layer",
         initial=0.3),
    Knob("normalization", "choice", Choices(_CONV_NORMS),
         "normalization after each convolution", vocabulary=_CONV_NORMS, initial="none"),
    *_SHARED,
    *_RECIPE_SHARED,
    Knob("translation", "float", FloatRange(0.02, 0.2),
         "random shift in training, fraction of height and width, or off", optional=True,
         initial=0.1, opt_in=True, limit=0.5),
    Knob("rotation", "float", FloatRange(0.01, 0.1),
         "random rotation in training, fraction of a full turn, or off", optional=True,
         initial=0.05, opt_in=True, limit=0.5),
    Knob("zoom", "float", FloatRange(0.02, 0.2),
         "random zoom in or out in training, fraction of the size, or off", optional=True,
         initial=0.1, opt_in=True, limit=0.5),
    Knob("horizontal_flip", "bool", Choices((False, True)),
         "random left-right flip in training", initial=False, opt_in=True),
)

FAMILIES: dict[str, dict[str, Knob]] = {"mlp": KNOBS, "cnn": CNN_KNOBS}
_DEPTH_KNOB = {"mlp": "num_layers", "cnn": "num_blocks"}
_WIDTH_KNOB = {"mlp": "units", "cnn": "filters"}


def knobs_for(family: str) -> dict[str, Knob]:
    """The knob catalogue of a model family (``mlp`` or ``cnn``).

    Raises:
        ConfigError: Unknown family.
    """
    if family not in FAMILIES:
        raise ConfigError(
            f"model: expected one of {', '.join(FAMILIES)}, received {family!r}"
        )
    return FAMILIES[family]


def parse_domain(knob: Knob, spec: Any) -> tuple[Domain, bool | None]:
    """Turn one override into a domain for ``knob``.

    Returns:
        ``(domain, enabled)``: ``enabled`` is None when an optional knob stays tuned on/off,
        True when the override forces it on, False when it turns it off.

    Raises:
        ConfigError: The override does not fit the knob.
    """
    name = knob.name
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"min", "max", "log"}
        if unknown or not {"min", "max"} <= set(spec):
            raise ConfigError(
                f"{name}: a range needs keys min and max (and optionally log), received "
                f"{dict(spec)!r}; write for example {{min = 1e-4, max = 1e-2, log = true}}"
            )
        if knob.kind not in ("int", "float"):
            raise ConfigError(
                f"{name}: takes one of {_vocab_text(knob)}, not a range; received {dict(spec)!r}"
            )
        low = _value(knob, _number(knob, spec["min"]))
        high = _value(knob, _number(knob, spec["max"]))
        log = bool(spec.get("log", getattr(knob.default, "log", False)))
        try:
            if knob.kind == "int":
                return IntRange(int(low), int(high), log=log), (True if knob.optional else None)
            return FloatRange(float(low), float(high), log=log), (True if knob.optional else None)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{name}: received an empty list of choices; give at least one")
        values = tuple(_value(knob, v) for v in spec)
        if knob.optional and any(v == OFF for v in values):
            raise ConfigError(
                f"{name}: 'off' cannot be mixed with values in a list, received {list(spec)!r}; "
                f"use {name} = \"off\", a value, or a range"
            )
        if len(set(values)) == 1:
            return Fixed(values[0]), (True if knob.optional else None)
        return Choices(tuple(dict.fromkeys(values))), (True if knob.optional else None)
    value = _value(knob, spec)
    if knob.optional and value == OFF:
        return knob.default, False
    return Fixed(value), (True if knob.optional else None)


_ZERO_OK = ("dense_layers", "warmup_epochs")  # integer knobs for which 0 is a value
_RATES = ("dropout", "head_dropout")  # float knobs in [0, 1)


def _vocab_text(knob: Knob) -> str:
    if knob.vocabulary:
        return ", ".join(map(str, knob.vocabulary))
    return "true or false" if knob.kind == "bool" else f"a {knob.kind}"


def _number(knob: Knob, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ConfigError(f"{knob.name}: expected a number for the range, received {raw!r}")
    return raw


def _value(knob: Knob, raw: Any) -> Any:
    name = knob.name
    if knob.optional and isinstance(raw, str) and raw.lower() in (OFF, "none", "false"):
        return OFF
    if knob.optional and raw is False:
        return OFF
    if knob.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ConfigError(f"{name}: expected true or false, received {raw!r}")
    if knob.kind == "choice":
        if raw not in knob.vocabulary:
            close = difflib.get_close_matches(str(raw), [str(v) for v in knob.vocabulary], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{name}: expected one of {_vocab_text(knob)}, received {raw!r}{hint}"
            )
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        extra = " or 'off'" if knob.optional else ""
        raise ConfigError(f"{name}: expected a number{extra}, received {raw!r}")
    if knob.kind == "int":
        if float(raw) != int(raw):
            raise ConfigError(f"{name}: expected an integer, received {raw!r}")
        raw = int(raw)
        lowest = 0 if name in _ZERO_OK else 1
        if knob.limit is not None and not lowest <= raw <= knob.limit:
            raise ConfigError(f"{name}: expected an integer in {lowest}..{knob.limit:g}, "
                              f"received {raw!r}")
        if raw < lowest:
            raise ConfigError(f"{name}: expected an integer >= {lowest}, received {raw!r}")
        return raw
    raw = float(raw)
    if knob.name in _RATES and not 0.0 <= raw < 1.0:
        raise ConfigError(f"{name}: expected a rate in [0, 1), received {raw!r}")
    if knob.name not in _RATES and raw <= 0:
        raise ConfigError(f"{name}: expected a positive number, received {raw!r}")
    if knob.limit is not None and raw > knob.limit:
        off = " (or 'off')" if knob.optional else ""
        raise ConfigError(f"{name}: expected a number in (0, {knob.limit:g}]{off}, "
                          f"received {raw!r}")
    return raw


# ---------------------------------------------------------------------- the space


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """The concrete values one trial builds with (inactive knobs are None).

    ``num_layers``/``units`` are the depth and widths: hidden layers and their units for the
    MLP, conv blocks and their filters for the CNN. ``kernel_size`` and ``pooling`` are set for
    the CNN only, as are ``convs_per_block`` and the head: ``head`` (``flatten`` or
    ``global_avg``), ``dense_layers`` dense layers of ``dense_units`` units, each followed by
    ``head_dropout``.

    The recipe's opt-in knobs keep their neutral values unless the space opens them:
    ``lr_schedule`` ``constant`` and ``warmup_epochs`` 0 (no schedule); ``one_minus_momentum``
    None (each optimizer's own ``beta_1``/``momentum``) and ``weight_decay`` None (AdamW's
    default); ``width_profile``/``base_units`` None (MLP widths from ``units_i``; with a profile,
    ``units`` holds the widths it derives); ``translation``, ``rotation``, ``zoom`` None and
    ``horizontal_flip`` False (CNN, no augmentation).
    """

    num_layers: int
    units: tuple[int, ...]
    dropout: tuple[float, ...]
    normalization: str
    residual: bool
    learning_rate: float
    optimizer: str
    clipnorm: float | None
    activation: str
    kernel_initializer: str
    l2: float | None
    batch_size: int
    kernel_size: int | None = None
    pooling: str | None = None
    convs_per_block: int | None = None
    head: str | None = None
    dense_layers: int | None = None
    dense_units: int | None = None
    head_dropout: float | None = None
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    one_minus_momentum: float | None = None
    weight_decay: float | None = None
    width_profile: str | None = None
    base_units: int | None = None
    translation: float | None = None
    rotation: float | None = None
    zoom: float | None = None
    horizontal_flip: bool = False

    @property
    def augmented(self) -> bool:
        """True when some random augmentation is on (CNN)."""
        return bool(self.translation or self.rotation or self.zoom or self.horizontal_flip)


def profile_widths(profile: str, base: int, layers: int) -> tuple[int, ...]:
    """The hidden widths of ``layers`` layers shaped by ``profile`` from ``base`` units.

    ``constant``: every layer ``base``; ``pyramid``: halves per layer (``base``, ``base/2``,
    ...); ``inverted_pyramid``: doubles per layer; ``diamond``: doubles towards the middle,
    then halves again (``base``, ``2 base``, ``2 base``, ``base`` for 4 layers). Widths are at
    least 8.

    Raises:
        ConfigError: An unknown profile.

    Example:
        >>> profile_widths("pyramid", 256, 3), profile_widths("diamond", 64, 3)
        ((256, 128, 64), (64, 128, 64))
    """
    if profile not in WIDTH_PROFILES:
        raise ConfigError(f"width_profile: expected one of {', '.join(WIDTH_PROFILES)}, "
                          f"received {profile!r}")
    exponents = {
        "constant": [0] * layers,
        "pyramid": [-i for i in range(layers)],
        "inverted_pyramid": list(range(layers)),
        "diamond": [min(i, layers - 1 - i) for i in range(layers)],
    }[profile]
    return tuple(max(8, int(round(int(base) * 2.0 ** e))) for e in exponents)


class SearchSpace:
    """The knobs of a search, with the user's overrides applied.

    Args:
        overrides: Knob name to a fixed value, a list of choices, or a ``{min, max, log}``
            range. Per-layer knobs accept ``units`` (every layer) or ``units_0`` (one layer).
            An opt-in knob (:attr:`Knob.opt_in`) is registered only once overridden;
            ``recipe = True`` opens every knob of :data:`RECIPE_KNOBS` the family has, with
            its default domain. ``momentum`` sets ``one_minus_momentum`` in beta terms
            (``momentum = {min = 0.9, max = 0.999}`` is ``one_minus_momentum`` 0.001..0.1, log).
        family: ``mlp`` (:data:`KNOBS`) or ``cnn`` (:data:`CNN_KNOBS`).
        **kwargs: More overrides, as keyword arguments.

    Raises:
        ConfigError: An unknown knob (with the closest name), a knob of the other family, a bad
            range, or a value outside the knob's vocabulary; ``weight_decay`` without ``adamw``
            among the optimizers; ``width_profile`` together with ``units``; ``base_units``
            without ``width_profile``.

    Example:
        >>> space = SearchSpace(optimizer=["adam", "sgd"], clipnorm="off")
        >>> space.domain("optimizer")
        Choices(values=('adam', 'sgd'))
        >>> SearchSpace({"normalization": "instance"}, family="cnn").domain("normalization")
        Fixed(value='instance')
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, family: str = "mlp",
                 **kwargs: Any) -> None:
        merged = {**dict(overrides or {}), **kwargs}
        self.family = family
        self.knobs = knobs_for(family)
        self.depth_knob = _DEPTH_KNOB[family]
        self.width_knob = _WIDTH_KNOB[family]
        self.overrides: dict[str, Any] = dict(merged)
        self._domains: dict[str, Domain] = {}
        self._enabled: dict[str, bool | None] = {}
        #: ``recipe = true``: the knobs of :data:`RECIPE_KNOBS` are opened.
        self.recipe = _recipe_switch(merged.pop(RECIPE, False))
        if "momentum" in merged:
            if "one_minus_momentum" in merged:
                raise ConfigError(
                    f"momentum: set either momentum (beta) or one_minus_momentum (1 - beta), "
                    f"received both (momentum = {merged['momentum']!r}); drop one"
                )
            merged["one_minus_momentum"] = _one_minus_beta(merged.pop("momentum"))
        layer_names = _layer_override_names(self.knobs)
        for name, spec in merged.items():
            if name in self.knobs:
                knob = self.knobs[name]
            elif name in layer_names:
                knob = self.knobs[layer_names[name]]
            else:
                raise ConfigError(self._unknown_knob_message(name))
            if name == "normalization" and family == "mlp" and _mentions(spec, "instance"):
                raise ConfigError(
                    f"normalization: instance normalization of a dense feature vector is "
                    f"degenerate, received {spec!r}; it is for --model cnn only, use "
                    f"{', '.join(_DENSE_NORMS)} for the MLP"
                )
            domain, enabled = parse_domain(knob, spec)
            self._domains[name] = domain
            self._enabled[name] = enabled
        if family == "cnn" and max(_domain_values(self.domain("dense_layers"))) == 0:
            for name in ("dense_units", "head_dropout"):
                if name in self._domains:
                    raise ConfigError(
                        f"{name}: never used, dense_layers is 0 (received {name} = "
                        f"{merged[name]!r}); drop {name} or allow dense_layers of 1 or 2"
                    )
        max_layers = self.max_layers()
        for name in self._domains:
            if name in layer_names:
                index = int(name.rsplit("_", 1)[1])
                if index >= max_layers:
                    raise ConfigError(
                        f"{name}: layer {index} never exists, {self.depth_knob} is at most "
                        f"{max_layers}; override layers 0..{max_layers - 1}"
                    )
        self._opened = self._open_knobs(merged)

    def _open_knobs(self, merged: Mapping[str, Any]) -> frozenset[str]:
        """The opt-in knobs this space registers, with the checks that tie them together."""
        opened = set()
        for name, knob in self.knobs.items():
            if not knob.opt_in:
                continue
            if name in self._domains:
                if self._enabled.get(name) is not False:  # ``translation = "off"`` stays shut
                    opened.add(name)
            elif self.recipe and name in RECIPE_KNOBS:
                opened.add(name)
        if "base_units" in opened and "width_profile" not in opened:
            raise ConfigError(
                f"base_units: used only with width_profile (received base_units = "
                f"{merged['base_units']!r}); set width_profile too, e.g. "
                f"--set width_profile=pyramid"
            )
        if "width_profile" in opened:
            opened.add("base_units")
            per_layer = sorted(n for n in self._domains if n.split("_")[0] == self.width_knob)
            if per_layer:
                raise ConfigError(
                    f"{per_layer[0]}: per-layer widths are not used with width_profile "
                    f"(received {per_layer[0]} = {merged[per_layer[0]]!r}); drop "
                    f"{per_layer[0]}, or width_profile and base_units"
                )
        optimizers = _domain_values(self.domain("optimizer"))
        if "weight_decay" in opened and "adamw" not in optimizers:
            if "weight_decay" in self._domains:
                raise ConfigError(
                    f"weight_decay: only AdamW uses it, but optimizer is "
                    f"{' | '.join(optimizers)} (received weight_decay = "
                    f"{merged['weight_decay']!r}); add adamw to optimizer or drop weight_decay"
                )
            opened.discard("weight_decay")  # recipe = true without AdamW
        if "one_minus_momentum" in opened \
                and not any(o in MOMENTUM_OPTIMIZERS for o in optimizers):
            opened.discard("one_minus_momentum")
        return frozenset(opened)

    def _unknown_knob_message(self, name: str) -> str:
        base = name.rsplit("_", 1)[0] if name[-1:].isdigit() else name
        for other, knobs in FAMILIES.items():
            if other != self.family and (name in knobs or base in knobs):
                mine = {"num_layers": "num_blocks", "num_blocks": "num_layers",
                        "units": "filters", "filters": "units"}.get(base)
                hint = f"; use {mine}" if mine else _OTHER_FAMILY_HINTS.get(base, "")
                return (f"{name}: a knob of the {other} model, not of the {self.family} model "
                        f"(received {name}){hint}")
        close = difflib.get_close_matches(name, list(self.knobs), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"knobs: {', '.join(self.knobs)}"
        return f"{name}: unknown knob; {hint}"

    # -------------------------------------------------------------- queries
    def domain(self, name: str) -> Domain:
        """The domain of a knob (or of one layer's ``units_<i>``), overrides applied."""
        if name in self._domains:
            return self._domains[name]
        base = name.rsplit("_", 1)[0] if name not in self.knobs else name
        if base in self._domains:
            return self._domains[base]
        return self.knobs[base].default

    def enabled(self, name: str) -> bool | None:
        """For an optional knob: None (tuned on/off), True (always on) or False (off)."""
        return self._enabled.get(name)

    def opened(self, name: str) -> bool:
        """Whether a knob is registered: always for an ordinary knob; for an opt-in knob
        (:attr:`Knob.opt_in`), once overridden or opened by ``recipe = true``."""
        knob = self.knobs.get(name)
        return knob is not None and (not knob.opt_in or name in self._opened)

    def max_layers(self) -> int:
        """The largest layer (or block) count the space allows."""
        return max(_domain_values(self.domain(self.depth_knob)))

    def hparam_domains(self) -> dict[str, Domain]:
        """Every hyperparameter name a trial may carry, with its domain (for HParams)."""
        out: dict[str, Domain] = {}
        profiled = self.opened("width_profile")
        for knob in self.knobs.values():
            if not self.opened(knob.name) or (profiled and knob.name == self.width_knob):
                continue
            if knob.per_layer:
                for i in range(self.max_layers()):
                    out[f"{knob.name}_{i}"] = self.domain(f"{knob.name}_{i}")
            elif knob.optional:
                state = self.enabled(knob.name)
                if state is None:
                    out[f"use_{knob.name}"] = Choices((False, True))
                if state is not False:
                    out[knob.name] = self.domain(knob.name)
            elif knob.name in ("dense_units", "head_dropout") \
                    and max(_domain_values(self.domain("dense_layers"))) == 0:
                continue  # no dense layer, so never set
            else:
                out[knob.name] = self.domain(knob.name)
        return out

    # -------------------------------------------------------------- registration
    def resolve(self, hp: Any) -> ModelParams:
        """Register every knob on ``hp`` (a ``keras_tuner.HyperParameters``) and read its values.

        Per-layer knobs are registered under a condition on the layer count and optional knobs
        under a condition on their ``use_<name>`` switch, so inactive values never reach the
        oracle or the HParams dashboard. Opt-in knobs are registered only when opened
        (:meth:`opened`): ``weight_decay`` under ``optimizer == "adamw"``,
        ``one_minus_momentum`` under the optimizers that have a momentum, and
        ``width_profile``/``base_units`` (right after the layer count) in place of ``units_i``.
        """
        depth_knob = self.depth_knob
        num_layers = self._register(hp, depth_knob, self.domain(depth_knob))
        layer_counts = _domain_values(self.domain(depth_knob))
        profile = base_units = None
        if self.opened("width_profile"):
            profile = self._register(hp, "width_profile", self.domain("width_profile"))
            base_units = int(self._register(hp, "base_units", self.domain("base_units")))
        bases = ("dropout",) if profile else (self.width_knob, "dropout")
        units, dropout = [], []
        for i in range(self.max_layers()):
            active_counts = [n for n in layer_counts if n > i]
            values = {}
            for base in bases:
                name = f"{base}_{i}"
                if len(active_counts) == len(layer_counts):
                    values[base] = self._register(hp, name, self.domain(name))
                else:
                    with hp.conditional_scope(depth_knob, active_counts):
                        values[base] = self._register(hp, name, self.domain(name))
            if i < num_layers:
                if not profile:
                    units.append(int(values[self.width_knob]))
                dropout.append(float(values["dropout"]))
        if profile:
            units = list(profile_widths(profile, int(base_units), int(num_layers)))
        cnn = self.family == "cnn"
        return ModelParams(
            num_layers=int(num_layers),
            units=tuple(units),
            dropout=tuple(dropout),
            normalization=self._register(hp, "normalization", self.domain("normalization")),
            residual=bool(self._register(hp, "residual", self.domain("residual"))),
            learning_rate=float(
                self._register(hp, "learning_rate", self.domain("learning_rate"))
            ),
            optimizer=self._register(hp, "optimizer", self.domain("optimizer")),
            clipnorm=self._register_optional(hp, "clipnorm"),
            activation=self._register(hp, "activation", self.domain("activation")),
            kernel_initializer=self._register(
                hp, "kernel_initializer", self.domain("kernel_initializer")
            ),
            l2=self._register_optional(hp, "l2"),
            batch_size=int(self._register(hp, "batch_size", self.domain("batch_size"))),
            kernel_size=(int(self._register(hp, "kernel_size", self.domain("kernel_size")))
                         if cnn else None),
            pooling=self._register(hp, "pooling", self.domain("pooling")) if cnn else None,
            **(self._resolve_cnn_head(hp) if cnn else {}),
            **self._resolve_recipe(hp),
            width_profile=profile,
            base_units=base_units,
        )

    def _resolve_recipe(self, hp: Any) -> dict[str, Any]:
        """The opened knobs of the training recipe (schedule, momentum, weight decay,
        augmentation); a knob left shut keeps ModelParams' neutral value."""
        out: dict[str, Any] = {}
        if self.opened("lr_schedule"):
            out["lr_schedule"] = self._register(hp, "lr_schedule", self.domain("lr_schedule"))
        if self.opened("warmup_epochs"):
            out["warmup_epochs"] = int(
                self._register(hp, "warmup_epochs", self.domain("warmup_epochs")))
        for name, optimizers in (("one_minus_momentum", tuple(MOMENTUM_OPTIMIZERS)),
                                 ("weight_decay", ("adamw",))):
            if self.opened(name):
                value = self._register_when(hp, name, "optimizer", optimizers)
                out[name] = None if value is None else float(value)
        for name in ("translation", "rotation", "zoom"):
            if self.opened(name):
                out[name] = self._register_optional(hp, name)
        if self.opened("horizontal_flip"):
            out["horizontal_flip"] = bool(
                self._register(hp, "horizontal_flip", self.domain("horizontal_flip")))
        return out

    def _register_when(self, hp: Any, name: str, parent: str, wanted: tuple[Any, ...]) -> Any:
        """Register ``name`` under the condition ``parent in wanted`` (no condition when every
        value of ``parent`` qualifies); its value, or None while the condition is false."""
        values = _domain_values(self.domain(parent))
        active = [v for v in values if v in wanted]
        if len(active) == len(values):
            return self._register(hp, name, self.domain(name))
        with hp.conditional_scope(parent, active):
            return self._register(hp, name, self.domain(name))

    def _resolve_cnn_head(self, hp: Any) -> dict[str, Any]:
        """The CNN's block depth and head; the dense width and dropout are registered only
        when a dense layer can exist, under a condition on ``dense_layers``."""
        convs = int(self._register(hp, "convs_per_block", self.domain("convs_per_block")))
        head = self._register(hp, "head", self.domain("head"))
        counts = _domain_values(self.domain("dense_layers"))
        dense_layers = int(self._register(hp, "dense_layers", self.domain("dense_layers")))
        units = dropout = None
        active = [n for n in counts if n > 0]
        if active:
            scope = (contextlib.nullcontext() if len(active) == len(counts)
                     else hp.conditional_scope("dense_layers", active))
            with scope:
                units = self._register(hp, "dense_units", self.domain("dense_units"))
                dropout = self._register(hp, "head_dropout", self.domain("head_dropout"))
        return {"convs_per_block": convs, "head": head, "dense_layers": dense_layers,
                "dense_units": int(units) if dense_layers else None,
                "head_dropout": float(dropout) if dense_layers else None}

    def _register_optional(self, hp: Any, name: str) -> float | None:
        state = self.enabled(name)
        if state is False:
            return None
        if state is True:
            return float(self._register(hp, name, self.domain(name)))
        switch = f"use_{name}"
        if not hp.Boolean(switch, default=False):
            # Still declare the value under its condition so the oracle knows the space.
            with hp.conditional_scope(switch, [True]):
                self._register(hp, name, self.domain(name))
            return None
        with hp.conditional_scope(switch, [True]):
            return float(self._register(hp, name, self.domain(name)))

    def _register(self, hp: Any, name: str, domain: Domain) -> Any:
        base = name if name in self.knobs else name.rsplit("_", 1)[0]
        start = self.knobs[base].initial
        if base == "filters":  # VGG's doubling: 32, 64, 128 by default
            start = start * 2 ** int(name.rsplit("_", 1)[1])
        initial = _initial(start, domain)
        if isinstance(domain, Fixed):
            return hp.Fixed(name, domain.value)
        if isinstance(domain, IntRange):
            if domain.min == domain.max:
                return hp.Fixed(name, domain.min)
            return hp.Int(name, domain.min, domain.max, default=initial,
                          sampling="log" if domain.log else "linear")
        if isinstance(domain, FloatRange):
            if domain.min == domain.max:
                return hp.Fixed(name, domain.min)
            return hp.Float(name, domain.min, domain.max, default=initial,
                            sampling="log" if domain.log else "linear")
        if domain.values == (False, True):
            return hp.Boolean(name, default=bool(initial))
        return hp.Choice(name, list(domain.values), ordered=False, default=initial)


_OTHER_FAMILY_HINTS = {
    "width_profile": "; the CNN's widths are filters_i",
    "base_units": "; the CNN's widths are filters_i",
    **{name: "; image augmentation is for --model cnn"
       for name in ("translation", "rotation", "zoom", "horizontal_flip")},
}


def _recipe_switch(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "on", "false", "off"):
        return raw.lower() in ("true", "on")
    raise ConfigError(f"{RECIPE}: expected true or false, received {raw!r}; "
                      f"recipe = true opens {', '.join(RECIPE_KNOBS)}")


def _one_minus_beta(spec: Any) -> Any:
    """A ``momentum`` override (beta terms) as a ``one_minus_momentum`` one (1 - beta)."""

    def convert(beta: Any) -> float:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) \
                or not 0.0 <= beta < 1.0:
            raise ConfigError(f"momentum: expected beta in [0, 1) (e.g. 0.9), received "
                              f"{beta!r}; or set one_minus_momentum = 1 - beta")
        return round(1.0 - float(beta), 12)

    if isinstance(spec, Mapping):
        unknown = set(spec) - {"min", "max", "log"}
        if unknown or not {"min", "max"} <= set(spec):
            raise ConfigError(
                f"momentum: a range needs keys min and max (and optionally log), received "
                f"{dict(spec)!r}; write for example {{min = 0.9, max = 0.999}}"
            )
        out = {"min": convert(spec["max"]), "max": convert(spec["min"])}
        if "log" in spec:
            out["log"] = spec["log"]
        return out
    if isinstance(spec, (list, tuple)):
        return [convert(v) for v in spec]
    return convert(spec)


def _mentions(spec: Any, value: str) -> bool:
    if isinstance(spec, (list, tuple)):
        return value in spec
    return spec == value


def _initial(value: Any, domain: Domain) -> Any:
    """``value`` when it lies in ``domain``, else None (KerasTuner then starts at the minimum)."""
    if value is None:
        return None
    if isinstance(domain, Choices):
        return value if value in domain.values else None
    if isinstance(domain, (IntRange, FloatRange)):
        return value if domain.min <= value <= domain.max else None
    return None


def _domain_values(domain: Domain) -> list[Any]:
    if isinstance(domain, Fixed):
        return [domain.value]
    if isinstance(domain, Choices):
        return list(domain.values)
    if isinstance(domain, IntRange):
        return list(range(domain.min, domain.max + 1))
    raise TypeError(f"not a discrete domain: {domain!r}")


def _layer_override_names(knobs: Mapping[str, Knob]) -> dict[str, str]:
    limit = 64
    return {
        f"{knob.name}_{i}": knob.name
        for knob in knobs.values() if knob.per_layer for i in range(limit)
    }


def describe_domain(domain: Domain) -> str:
    """A short human description of a domain, for tables and the README."""
    if isinstance(domain, Fixed):
        return f"fixed {domain.value!r}"
    if isinstance(domain, Choices):
        return " | ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in domain.values)
    kind = "int" if isinstance(domain, IntRange) else "float"
    return f"{kind} {domain.min:g}..{domain.max:g}{' (log)' if domain.log else ''}"
