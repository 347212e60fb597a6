"""Learning-rate schedules per epoch, with linear warm-up, and the callback that applies them.

Owns: :class:`EpochSchedule` (a small picklable record: the learning rate of every epoch, a pure
function of the absolute epoch index), :func:`schedule_for` (the schedule of a trial's
hyperparameter values) and :class:`EpochScheduleCallback` (a Keras
``LearningRateScheduler`` that sets the optimizer's learning-rate variable at the start of
each epoch). Does not own: the ``lr_schedule``/``warmup_epochs`` knobs (``space``) or when the
callback is added (``hypermodels.KitHyperModel.fit``).

Why per epoch, through a callback, and not a per-step ``keras.optimizers.schedules``
``LearningRateSchedule``: the training loop reuses the passes it traced for an earlier trial of
the same architecture (``steps.trace_key``), and a schedule's constants (base rate, decay
horizon) would be baked into that trace; a learning rate kept in the optimizer's variable and
assigned once per epoch keeps reuse correct, works the same under ``model.fit``, and leaves
the exported model an ordinary Keras model. The callback receives the absolute epoch index
(a promoted Hyperband trial or a resumed one calls ``fit`` with ``initial_epoch > 0``), so the
schedule continues where the parent stopped.

The schedules, over a horizon of ``total_epochs`` epochs (the search's ``max_epochs``), after
``warmup_epochs`` epochs of linear warm-up (epoch ``e < W`` trains at ``base * (e + 1) / (W +
1)``; Goyal et al., 2017, "Accurate, Large Minibatch SGD", gradual warm-up), with ``t = e - W``
and ``T = max(1, total_epochs - W)``:

- ``constant``: ``base``.
- ``cosine``: ``base * (1 + cos(pi * t / T)) / 2``, cosine annealing without restarts
  (Loshchilov & Hutter, 2017, "SGDR").
- ``exponential``: ``base * 0.01 ** (t / T)``: the course's ``alpha = alpha0 * decay ** epoch``
  with the decay chosen so the rate falls to 1% of ``base`` over the horizon.
- ``step``: ``base``, times 0.1 from ``t >= T / 2`` and 0.01 from ``t >= 3 T / 4`` (He et al.,
  2016; Goyal et al., 2017 divide by 10 at fixed epochs).

Past the horizon every schedule holds its last epoch's value.

Example:
    >>> schedule = EpochSchedule(1e-2, "cosine", warmup_epochs=1, total_epochs=5)
    >>> [round(schedule.learning_rate(e), 5) for e in range(5)]
    [0.005, 0.01, 0.00854, 0.005, 0.00146]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from kerastune_kit._backend import keras as _keras
from kerastune_kit.errors import ConfigError
from kerastune_kit.space import LR_SCHEDULES

keras = _keras()

#: ``exponential``: the fraction of the base rate left at the end of the horizon.
EXPONENTIAL_FINAL_FRACTION = 0.01
#: ``step``: (fraction of the horizon, factor from there on), in order.
STEP_MILESTONES: tuple[tuple[float, float], ...] = ((0.5, 0.1), (0.75, 0.01))


@dataclasses.dataclass(frozen=True)
class EpochSchedule:
    """The learning rate of each epoch: linear warm-up, then a decay over the horizon.

    Attributes:
        base_learning_rate: The trial's ``learning_rate`` (reached after the warm-up).
        kind: One of :data:`kerastune_kit.space.LR_SCHEDULES`.
        warmup_epochs: Epochs of linear warm-up (0: none).
        total_epochs: The horizon the decay runs over, in epochs (warm-up included): the
            search's ``max_epochs``.

    Raises:
        ConfigError: An unknown kind, a learning rate that is not a positive number, a
            negative warm-up or a horizon below 1.
    """

    base_learning_rate: float
    kind: str = "constant"
    warmup_epochs: int = 0
    total_epochs: int = 1

    def __post_init__(self) -> None:
        if self.kind not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule: expected one of {', '.join(LR_SCHEDULES)}, "
                              f"received {self.kind!r}")
        if not (isinstance(self.base_learning_rate, (int, float))
                and math.isfinite(self.base_learning_rate) and self.base_learning_rate > 0):
            raise ConfigError(f"learning_rate: expected a positive number, received "
                              f"{self.base_learning_rate!r}")
        if int(self.warmup_epochs) < 0:
            raise ConfigError(f"warmup_epochs: expected an integer >= 0, received "
                              f"{self.warmup_epochs!r}")
        if int(self.total_epochs) < 1:
            raise ConfigError(f"epochs: a schedule needs a horizon of at least 1 epoch, "
                              f"received {self.total_epochs!r}")

    @property
    def active(self) -> bool:
        """False for a constant rate without warm-up (nothing to schedule)."""
        return self.kind != "constant" or self.warmup_epochs > 0

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based, absolute: counts the epochs a promoted or
        resumed trial trained before)."""
        base, warmup = float(self.base_learning_rate), int(self.warmup_epochs)
        epoch = max(0, int(epoch))
        if epoch < warmup:
            return base * (epoch + 1) / (warmup + 1)
        horizon = max(1, int(self.total_epochs) - warmup)
        t = min(epoch - warmup, horizon - 1)  # past the horizon: hold the last value
        if self.kind == "cosine":
            return base * 0.5 * (1.0 + math.cos(math.pi * t / horizon))
        if self.kind == "exponential":
            return base * EXPONENTIAL_FINAL_FRACTION ** (t / horizon)
        if self.kind == "step":
            factor = 1.0
            for fraction, value in STEP_MILESTONES:
                if t >= fraction * horizon:
                    factor = value
            return base * factor
        return base

    def __call__(self, epoch: int, learning_rate: float | None = None) -> float:
        """``LearningRateScheduler``'s ``schedule(epoch, lr)``: the rate of ``epoch`` (the
        current ``learning_rate`` is ignored, so the result depends on the epoch alone)."""
        return float(self.learning_rate(epoch))


def schedule_for(values: Mapping[str, Any], *, total_epochs: int,
                 base_learning_rate: float | None = None) -> EpochSchedule | None:
    """The schedule of a trial's hyperparameter ``values`` (``lr_schedule``, ``warmup_epochs``,
    ``learning_rate``), or None when it trains at a constant rate (the knobs unset or neutral).

    Args:
        values: Hyperparameter name -> value (``hp.values``).
        total_epochs: The decay horizon in epochs.
        base_learning_rate: Used when ``values`` has no ``learning_rate``.
    """
    kind = str(values.get("lr_schedule") or "constant")
    warmup = int(values.get("warmup_epochs") or 0)
    if kind == "constant" and warmup == 0:
        return None
    base = values.get("learning_rate", base_learning_rate)
    return EpochSchedule(float(base), kind, warmup, max(1, int(total_epochs)))


class EpochScheduleCallback(keras.callbacks.LearningRateScheduler):
    """Keras's ``LearningRateScheduler`` driven by an :class:`EpochSchedule`: at the start of
    each epoch it assigns the schedule's rate to the optimizer's learning-rate variable, and
    it adds ``learning_rate`` to the epoch's logs (TensorBoard's ``epoch_learning_rate``).

    Example:
        >>> callback = EpochScheduleCallback(EpochSchedule(1e-3, "step", total_epochs=10))
        >>> model.fit(x, y, epochs=10, callbacks=[callback])
    """

    def __init__(self, schedule: EpochSchedule, verbose: int = 0) -> None:
        super().__init__(schedule, verbose=verbose)
