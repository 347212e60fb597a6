"""What a search will do, said before it starts: trial counts, the plan line, cost limits (pure).

Owns: :func:`search_plan`, :func:`expected_trials`, :func:`initial_random_points`,
:func:`cost_limit`. Imports no TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any

from kerastune_kit.config import BRACKET_TUNERS, TIME_BUDGET_TRIALS, SearchConfig

#: Random proposals cost at most this many times the dearest popular design of the family,
#: and never less than COST_LIMIT_FLOOR multiply-accumulates per sample (networks that cheap
#: train fast whatever their shape: every MLP of the default space is below it).
COST_LIMIT_FACTOR = 4.0
COST_LIMIT_FLOOR = 16e6


def cost_limit(hypermodel: Any) -> float | None:
    """The multiply-accumulates per sample random proposals stay under:
    :data:`COST_LIMIT_FACTOR` times the dearest popular design of the factory's family, at
    least :data:`COST_LIMIT_FLOOR` (so
    on 28x28 images a random network costs at most about four LeNets, one epoch at most a
    few times a baseline's). None for a factory without designs or a cost model."""
    from kerastune_kit.designs import designs_for

    costs = [hypermodel.cost(dict(d.values)) for d in designs_for(hypermodel.family)]
    costs = [c for c in costs if c > 0]
    return max(COST_LIMIT_FLOOR, COST_LIMIT_FACTOR * max(costs)) if costs else None


def initial_random_points(max_trials: int | None, dimensions: int) -> int:
    """Random trials a Bayesian search starts with before its Gaussian process proposes.

    KerasTuner's default, 3 × the number of hyperparameters (Snoek et al., 2012 use a similar
    rule), is 48 for the default 16-knob space: a 12-trial "Bayesian" search would be random
    from start to end. Here it is a quarter of the trial budget, at least 3 and at most
    3 × dimensions; for a search bounded by time alone, 10 (Optuna's TPE default) at most.

    Example:
        >>> initial_random_points(12, 16), initial_random_points(100, 16)
        (3, 25)
    """
    ceiling = max(3, 3 * dimensions)
    if not max_trials:  # a time budget: as many as Optuna's TPE starts with
        return min(ceiling, 10)
    return max(3, min(ceiling, round(max_trials / 4)))


def search_plan(config: SearchConfig, hypermodel: Any) -> str:
    """One line saying how the search will choose its trials (printed before it starts).

    Example (a 12-trial Bayesian search of the MLP)::

        bayesian optimization: of 12 trials, the first 2 are the popular designs (mlp_2x256,
        mlp_2x64), 1 random, the other 9 proposed by a Gaussian process fitted to the
        finished ones
    """
    from kerastune_kit.designs import describe, designs_for

    designs = designs_for(hypermodel.family) if config.baselines and config.tuner != "grid" \
        else ()
    time_only = bool(config.max_time) and config.max_trials is None
    until = f", until {_duration(config.max_time)} is spent" if config.max_time else ""
    epochs = f"{config.max_epochs} epoch{'s' if config.max_epochs != 1 else ''}"
    if config.tuner in BRACKET_TUNERS:
        first = (f"the popular designs ({describe(designs)}) for {epochs}, then "
                 if designs else "")
        how = ("new configurations from a TPE model of the finished trials once it has enough "
               "of them (BOHB)" if config.tuner == "bohb" else "random new configurations")
        cap = "" if time_only else f", up to {expected_trials(config)} trials in all"
        return (f"{config.tuner}: {first}brackets of {epochs} at most, factor "
                f"{config.factor}, {how}{cap}{until}")
    trials = config.effective_max_trials() or 0
    lead = len(designs) if time_only else min(len(designs), trials)
    names = f"the popular designs ({describe(designs[:lead])})"
    if time_only:
        head = f"trials of {epochs} until {_duration(config.max_time)} is spent: "
        first = f"{names} first, then " if lead else ""
    else:
        head = f"{trials} trial{'s' if trials != 1 else ''} of {epochs}{until}: "
        first = f"the first {lead} {names}, " if lead else ""
    rest = "the rest" if time_only else f"the other {trials - lead}"
    if config.tuner == "bayesian":
        random = initial_random_points(None if time_only else trials,
                                       len(hypermodel.space.hparam_domains()))
        random = max(0, random - lead)  # the designs count as initial points
        if not time_only:
            random = min(random, trials - lead)
            rest = f"the other {trials - lead - random}"
        if not lead and not time_only:
            return (f"bayesian optimization: the first {random} of {trials} trials are random, "
                    f"{rest} {'is' if trials - random == 1 else 'are'} proposed by a Gaussian "
                    f"process fitted to the finished ones{until}")
        return (f"bayesian optimization: {head}{first}{random} random, {rest} proposed by a "
                "Gaussian process fitted to the finished ones")
    what = {"tpe": "proposed by Optuna's TPE sampler after its random start-up trials",
            "random": "random", "grid": ""}[config.tuner]
    name = {"tpe": "tpe", "random": "random search", "grid": "grid search"}[config.tuner]
    if not what or (not time_only and trials == lead):
        tail = first.rstrip(", ")
    else:
        tail = f"{first}{rest if lead else 'all'} {what}"
    return f"{name}: {head}{tail}".rstrip(": ")


def _duration(seconds: float | None) -> str:
    seconds = float(seconds or 0)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def expected_trials(config: SearchConfig) -> int:
    """How many trials the search will run at most (Hyperband: one full iteration; with only
    a time budget, :data:`~kerastune_kit.config.TIME_BUDGET_TRIALS`)."""
    from kerastune_kit.designs import POPULAR_DESIGNS

    if config.tuner not in BRACKET_TUNERS:
        return int(config.effective_max_trials() or 0)
    if config.max_time:  # brackets repeat until the time is spent or max_trials exist
        return config.max_trials or TIME_BUDGET_TRIALS
    max_epochs, factor = config.max_epochs, config.factor
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    total = 0
    for bracket in range(brackets):
        for round_num in range(bracket + 1):
            total += math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_num))
    if config.baselines:  # (as many as the family has; the CNN and the MLP have 2 each)
        total += max(len(d) for d in POPULAR_DESIGNS.values())
    return min(total, config.max_trials) if config.max_trials else total


def planned_epochs(config: Any) -> list[int]:
    """The epochs each trial of ``config`` trains, in the order they run.

    Hyperband (and BOHB): the popular designs at ``max_epochs``, then KerasTuner's brackets
    from the widest (most trials, fewest epochs) to one of ``max_epochs``, each round's
    promoted trials training from the round before's epochs (Li et al., 2018, algorithm 1);
    cut at ``max_trials``. Other tuners: ``max_epochs`` per trial (early stopping ends some
    sooner). The sum is the search's work, which the ETA divides.
    """
    max_epochs = int(config.max_epochs)
    if config.tuner not in BRACKET_TUNERS:
        return [max_epochs] * expected_trials(config)
    from kerastune_kit.designs import POPULAR_DESIGNS

    factor = int(config.factor)
    plan = [max_epochs] * (max(len(d) for d in POPULAR_DESIGNS.values())
                           if config.baselines else 0)
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    for bracket in reversed(range(brackets)):
        before = 0
        for round_num in range(bracket + 1):
            size = math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_num))
            until = math.ceil(max_epochs / factor ** (bracket - round_num))
            plan += [max(1, until - before)] * size
            before = until
    return plan[: config.max_trials] if config.max_trials else plan


def stage_epochs(max_epochs: int, factor: float) -> int:
    """The epochs of the next ``--refine`` stage: ``max_epochs x factor``, rounded half up, at
    least 1."""
    return max(1, int(math.floor(max_epochs * factor + 0.5)))


def read_stages(run_dir: Any) -> list[dict[str, Any]]:
    """The ``stages`` entries of ``RUN/run.json`` (empty for a run without ``--refine``)."""
    from kerastune_kit.rundir import RunDir

    stages = RunDir(run_dir).read_marker().get("stages")
    return [s for s in stages if isinstance(s, dict)] if isinstance(stages, list) else []
