"""Per-epoch pruning for random, Bayesian and grid search.

Owns: the pruners (median stopping, percentile, ASHA-style successive halving) as pure functions
of learning curves: ``{trial_id: {epoch: objective value}}``. Does not own: stopping the
training (the tuner does that) or Hyperband, which prunes through its own brackets.

KerasTuner 1.4 reports nothing to the oracle per epoch, so without a pruner a random or Bayesian
search trains every bad configuration to the end. A pruner looks at the objective of the running
trial at each epoch and at the curves of the trials before it. Epochs are Keras's 0-based
indices here (``check``'s ``epoch``, the curves' keys); the reasons a pruner gives number them
from 1, as Keras prints them (index 2 is "epoch 3").

Example:
    >>> pruner = MedianPruner("max", warmup_trials=2, min_epoch=1)
    >>> curves = {"0": {0: 0.5, 1: 0.8}, "1": {0: 0.6, 1: 0.9}, "2": {0: 0.1, 1: 0.2}}
    >>> pruner.check("2", 1, curves).prune
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from kerastune_kit.errors import ConfigError

Curves = Mapping[str, Mapping[int, float]]
PRUNERS = ("none", "median", "percentile", "asha")


@dataclasses.dataclass(frozen=True)
class Decision:
    """A pruner's verdict for one trial at one epoch."""

    prune: bool
    reason: str = ""


_KEEP = Decision(False)


def _best_so_far(curve: Mapping[int, float], epoch: int, direction: str) -> float | None:
    values = [v for e, v in curve.items() if e <= epoch and math.isfinite(v)]
    if not values:
        return None
    return max(values) if direction == "max" else min(values)


class Pruner:
    """Base class: ``check(trial_id, epoch, curves)`` says whether to stop the trial now.

    Args:
        direction: ``max`` or ``min``, the objective's direction.
        warmup_trials: Finished trials needed before anything is pruned.
        min_epoch: No trial is pruned before this epoch index.
    """

    name = "none"

    def __init__(self, direction: str, *, warmup_trials: int = 3, min_epoch: int = 1) -> None:
        if direction not in ("max", "min"):
            raise ConfigError(f"direction: expected 'max' or 'min', received {direction!r}")
        if warmup_trials < 0 or min_epoch < 0:
            raise ConfigError(
                f"pruner: expected warmup_trials >= 0 and min_epoch >= 0, received "
                f"(warmup_trials={warmup_trials}, min_epoch={min_epoch})"
            )
        self.direction = direction
        self.warmup_trials = warmup_trials
        self.min_epoch = min_epoch

    def check(self, trial_id: str, epoch: int, curves: Curves,
              finished: set[str] | None = None) -> Decision:
        """Decide for ``trial_id`` after ``epoch``.

        Args:
            trial_id: The running trial; its curve so far is ``curves[trial_id]``.
            epoch: The epoch index just finished.
            curves: Every trial's objective per epoch (finished trials and this one).
            finished: Ids of the trials that count as history (default: all but this one).
        """
        return _KEEP

    def _history(self, trial_id: str, epoch: int, curves: Curves,
                 finished: set[str] | None) -> list[float]:
        """Best-so-far values at ``epoch`` of the finished trials that reached it."""
        values = []
        for other, curve in curves.items():
            if other == trial_id or (finished is not None and other not in finished):
                continue
            if not any(e >= epoch for e in curve):
                continue
            best = _best_so_far(curve, epoch, self.direction)
            if best is not None:
                values.append(best)
        return values


class PercentilePruner(Pruner):
    """Stop a trial whose best value so far is outside the top ``percentile`` percent.

    Compared with the best-so-far values of finished trials at the same epoch, once
    ``warmup_trials`` of them reached it (median stopping with ``percentile=50``).
    """

    name = "percentile"

    def __init__(self, direction: str, *, percentile: float = 25.0, warmup_trials: int = 3,
                 min_epoch: int = 1) -> None:
        super().__init__(direction, warmup_trials=warmup_trials, min_epoch=min_epoch)
        if not 0.0 < percentile <= 100.0:
            raise ConfigError(
                f"percentile: expected a share of trials kept in (0, 100], received {percentile!r}"
            )
        self.percentile = float(percentile)

    def check(self, trial_id: str, epoch: int, curves: Curves,
              finished: set[str] | None = None) -> Decision:
        if epoch < self.min_epoch:
            return _KEEP
        history = self._history(trial_id, epoch, curves, finished)
        if len(history) < max(1, self.warmup_trials):
            return _KEEP
        current = _best_so_far(curves.get(trial_id, {}), epoch, self.direction)
        if current is None:
            return Decision(True, f"no finite objective by epoch {epoch + 1}")
        # The value a trial must reach to be in the kept share of the history.
        q = 100.0 - self.percentile if self.direction == "max" else self.percentile
        threshold = float(np.percentile(history, q))
        worse = current < threshold if self.direction == "max" else current > threshold
        if not worse:
            return _KEEP
        return Decision(True, f"{self.name}: best {current:.4g} by epoch {epoch + 1} is outside "
                              f"the top {self.percentile:g}% of {len(history)} trials "
                              f"(threshold {threshold:.4g})")


class MedianPruner(PercentilePruner):
    """Median stopping: stop a trial worse than the median of earlier trials at the same epoch."""

    name = "median"

    def __init__(self, direction: str, *, warmup_trials: int = 3, min_epoch: int = 1) -> None:
        super().__init__(direction, percentile=50.0, warmup_trials=warmup_trials,
                         min_epoch=min_epoch)


class ASHAPruner(Pruner):
    """Successive halving in the ASHA style: at rung epochs, keep the top ``1/factor``.

    Rungs sit at epoch indices ``min_epoch * factor**k`` (counting epochs from 1, so with
    ``min_epoch=1, factor=3`` at the ends of epochs 1, 3, 9, ...). A trial reaching a rung is
    compared with every trial that reached that rung before it (asynchronously: early trials
    pass while a rung is sparse) and continues only in the top ``1/factor``.
    """

    name = "asha"

    def __init__(self, direction: str, *, factor: int = 3, min_epoch: int = 1,
                 warmup_trials: int = 0) -> None:
        super().__init__(direction, warmup_trials=warmup_trials, min_epoch=max(1, min_epoch))
        if factor < 2:
            raise ConfigError(f"factor: expected an integer >= 2, received {factor!r}")
        self.factor = int(factor)

    def rungs(self, up_to: int) -> list[int]:
        """Epoch indices (0-based) that end a rung, up to ``up_to``."""
        out, resource = [], self.min_epoch
        while resource - 1 <= up_to:
            out.append(resource - 1)
            resource *= self.factor
        return out

    def check(self, trial_id: str, epoch: int, curves: Curves,
              finished: set[str] | None = None) -> Decision:
        if epoch not in self.rungs(epoch):
            return _KEEP
        history = self._history(trial_id, epoch, curves, finished)
        if len(history) < self.warmup_trials:
            return _KEEP
        current = _best_so_far(curves.get(trial_id, {}), epoch, self.direction)
        if current is None:
            return Decision(True, f"asha: no finite objective by epoch {epoch + 1}")
        values = sorted([*history, current], reverse=self.direction == "max")
        keep = max(1, len(values) // self.factor)
        cutoff = values[keep - 1]
        better_or_equal = current >= cutoff if self.direction == "max" else current <= cutoff
        if better_or_equal:
            return _KEEP
        return Decision(True, f"asha: best {current:.4g} at rung epoch {epoch + 1} is not in the "
                              f"top 1/{self.factor} of {len(values)} trials "
                              f"(cutoff {cutoff:.4g})")


def make_pruner(name: str, direction: str, *, warmup_trials: int = 3, min_epoch: int = 1,
                percentile: float = 25.0, factor: int = 3) -> Pruner | None:
    """The pruner called ``name`` (``none`` gives None).

    Raises:
        ConfigError: Unknown name.
    """
    if name == "none":
        return None
    if name == "median":
        return MedianPruner(direction, warmup_trials=warmup_trials, min_epoch=min_epoch)
    if name == "percentile":
        return PercentilePruner(direction, percentile=percentile, warmup_trials=warmup_trials,
                                min_epoch=min_epoch)
    if name == "asha":
        return ASHAPruner(direction, factor=factor, min_epoch=min_epoch)
    raise ConfigError(f"pruner: expected one of {', '.join(PRUNERS)}, received {name!r}")
