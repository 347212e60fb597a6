"""Model-based oracles for KerasTuner built on Optuna's ``TPESampler``.

Owns: :class:`TPEOracle` (``--tuner tpe``), :class:`BOHBMixin` (``--tuner bohb``, put in front of a
KerasTuner ``HyperbandOracle`` subclass), :func:`default_startup_trials`, :func:`require_optuna`,
and the translation between a KerasTuner ``HyperParameters`` space and Optuna distributions
(both ways: finished KerasTuner trials become Optuna trials, Optuna suggestions become
KerasTuner values).
Does not own: the ``Kit*`` tuner classes and their wiring (``tuners``), training, the run directory.

Both oracles are stateless beyond KerasTuner's own state: every proposal rebuilds an in-memory
Optuna study from the oracle's trials, so a search reloaded from ``oracle.json`` continues exactly
where it stopped. Optuna is imported lazily; without it a :class:`~kerastune_kit.errors.ConfigError`
names the ``pip install`` command.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras_tuner as kt

# MISSING_OPTUNA: the message of the ConfigError raised when Optuna cannot be imported.
from kerastune_kit.errors import MISSING_OPTUNA, ConfigError
from kerastune_kit.trial_status import TrialStatus

_TUNER_PREFIX = "tuner/"
_HP = kt.engine.hyperparameters
_SEED_MODULUS = 2**31 - 1


def require_optuna() -> Any:
    """Import Optuna, its logging set to WARNING, or raise ConfigError with the install command
    (call it when building a ``tpe`` or ``bohb`` search, to fail before the first trial)."""
    try:
        import optuna
    except ImportError as error:
        raise ConfigError(MISSING_OPTUNA) from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def default_startup_trials(max_trials: int | None) -> int:
    """Random trials a TPE search runs before its Parzen estimators propose.

    Optuna's default is a fixed 10. With the small budgets typical of neural networks (12 or
    20 trials) that leaves the model little or nothing to do, so here it is a quarter of the
    trial budget (the same rule as ``tuners.initial_random_points`` for the Bayesian oracle), at
    least 3 (TPE splits the finished trials into a "good" and a "bad" group and needs a point in
    each), at most Optuna's 10. Without a known budget it is Optuna's 10.

    Example:
        >>> default_startup_trials(12), default_startup_trials(30), default_startup_trials(None)
        (3, 7, 10)
    """
    if not max_trials:
        return 10
    return max(3, min(10, int(max_trials) // 4))


def _derived_seed(seed: Any, *parts: int) -> int:
    """A sampler seed that depends on the search seed and on where the search is."""
    value = int(seed or 0)
    for part in parts:
        value = (value * 1_000_003 + int(part)) % _SEED_MODULUS
    return value


class _Param:
    """One tuned KerasTuner hyperparameter as an Optuna parameter.

    ``kind`` says how values map: ``categorical`` (Choice, Boolean), ``int`` (Int on a linear
    grid, Optuna's ``step``), ``int_log`` / ``float_log`` / ``float`` (the same value in Optuna),
    ``int_rlog`` / ``float_rlog`` (KerasTuner's ``reverse_log``: Optuna samples
    ``max + min - value`` on a log scale), ``index`` (a stepped Float, or an Int on a
    multiplicative grid: Optuna samples the grid index, in order; on a multiplicative grid the
    index is already the logarithm of the value).
    """

    def __init__(self, optuna: Any, key: str, hp: Any) -> None:
        dists = optuna.distributions
        self.key, self.hp = key, hp
        self.grid: list[Any] = []
        if isinstance(hp, _HP.Boolean):
            self.kind = "categorical"
            self.distribution = dists.CategoricalDistribution((False, True))
        elif isinstance(hp, _HP.Choice):
            self.kind = "categorical"
            self.distribution = dists.CategoricalDistribution(tuple(hp.values))
        elif isinstance(hp, _HP.Int):
            low, high, step = int(hp.min_value), int(hp.max_value), hp.step
            if hp.sampling == "linear":
                step = int(step or 1)
                self.kind = "int"
                self.distribution = dists.IntDistribution(
                    low, low + (high - low) // step * step, step=step)
            elif step is None:
                self.kind = "int_log" if hp.sampling == "log" else "int_rlog"
                self.distribution = dists.IntDistribution(low, high, log=True)
            else:
                self._use_grid(dists)
        elif isinstance(hp, _HP.Float):
            low, high = float(hp.min_value), float(hp.max_value)
            if hp.step is not None:
                self._use_grid(dists)
            elif hp.sampling == "linear":
                self.kind = "float"
                self.distribution = dists.FloatDistribution(low, high)
            else:
                self.kind = "float_log" if hp.sampling == "log" else "float_rlog"
                self.distribution = dists.FloatDistribution(low, high, log=True)
        else:
            raise ConfigError(
                f"tuner: TPE cannot sample hyperparameter {hp.name!r} of type "
                f"{type(hp).__name__}; use Int, Float, Choice, Boolean or Fixed")

    def _use_grid(self, dists: Any) -> None:
        # KerasTuner's own value for grid index i: prob_to_value of the middle of its cell.
        n = max(1, int(self.hp._get_n_values()))
        self.grid = [self.hp.prob_to_value((i + 0.5) / n) for i in range(n)]
        self.kind = "index"
        self.distribution = dists.IntDistribution(0, n - 1)

    def suggest(self, trial: Any) -> Any:
        """Ask ``trial`` for this parameter; return the KerasTuner value."""
        dist = self.distribution
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(dist.choices))
        if self.kind in ("int", "int_log", "int_rlog", "index"):
            internal = trial.suggest_int(self.key, dist.low, dist.high, step=dist.step,
                                         log=dist.log)
        else:
            internal = trial.suggest_float(self.key, dist.low, dist.high, log=dist.log)
        return self.to_value(internal)

    def to_value(self, internal: Any) -> Any:
        """The KerasTuner value of an Optuna value."""
        hp = self.hp
        if self.kind == "categorical":
            return internal
        if self.kind == "index":
            return self.grid[int(internal)]
        if self.kind in ("int", "int_log"):
            return int(internal)
        if self.kind == "int_rlog":
            return int(hp.max_value + hp.min_value - int(internal))
        if self.kind == "float_rlog":
            value = float(hp.max_value) + float(hp.min_value) - float(internal)
            return min(float(hp.max_value), max(float(hp.min_value), value))
        return float(internal)

    def to_internal(self, value: Any) -> Any:
        """The Optuna value of a KerasTuner value (clipped into the domain), or raise
        ValueError when it cannot be one (a choice no longer offered, a non-number)."""
        dist = self.distribution
        if self.kind == "categorical":
            for choice in dist.choices:
                if choice == value and isinstance(choice, bool) == isinstance(value, bool):
                    return choice
            raise ValueError(f"{value!r} is not one of {dist.choices}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not finite")
        if self.kind == "index":
            return min(range(len(self.grid)), key=lambda i: abs(float(self.grid[i]) - number))
        if self.kind in ("int_rlog", "float_rlog"):
            number = float(self.hp.max_value) + float(self.hp.min_value) - number
        number = min(float(dist.high), max(float(dist.low), number))
        if self.kind == "int":
            steps = round((number - dist.low) / dist.step)
            return int(min(dist.high, dist.low + steps * dist.step))
        if self.kind in ("int_log", "int_rlog"):
            return int(round(number))
        return number


def _params(optuna: Any, space: Sequence[Any]) -> list[_Param | None]:
    """One entry per hyperparameter of ``space``: its ``_Param``, or None (Fixed, ``tuner/*``).

    A name used twice in the space (the same name under two conditional scopes, with different
    ranges) becomes two Optuna parameters, ``name@0`` and ``name@1``.
    """
    counts: dict[str, int] = {}
    for hp in space:
        counts[hp.name] = counts.get(hp.name, 0) + 1
    seen: dict[str, int] = {}
    params: list[_Param | None] = []
    for hp in space:
        index = seen.get(hp.name, 0)
        seen[hp.name] = index + 1
        if isinstance(hp, _HP.Fixed) or hp.name.startswith(_TUNER_PREFIX):
            params.append(None)
            continue
        key = hp.name if counts[hp.name] == 1 else f"{hp.name}@{index}"
        params.append(_Param(optuna, key, hp))
    return params


def _walk(space: Sequence[Any], params: Sequence[_Param | None],
          choose: Callable[[Any, _Param | None], Any]) -> dict[str, Any]:
    """Walk ``space`` in order the way KerasTuner's ``Oracle._random_values`` does: each
    hyperparameter whose conditions hold for the values chosen so far gets
    ``choose(hp, param)``; inactive ones get nothing. Returns the active values."""
    hps = kt.HyperParameters()
    for hp, param in zip(space, params, strict=True):
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = choose(hp, param)
    return hps.values


def _trial_params(space: Sequence[Any], params: Sequence[_Param | None],
                  values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna ``params`` and ``distributions`` of one KerasTuner trial's values; raises
    ValueError when a value cannot be represented. A hyperparameter the trial has no value for
    (added to the space after it ran) is left out, and its default decides the conditions that
    depend on it, as it did when the trial built its model."""
    optuna_params: dict[str, Any] = {}
    distributions: dict[str, Any] = {}

    def choose(hp: Any, param: _Param | None) -> Any:
        if hp.name not in values:
            return getattr(hp, "value", hp.default)
        if param is not None:
            optuna_params[param.key] = param.to_internal(values[hp.name])
            distributions[param.key] = param.distribution
        return values[hp.name]

    _walk(space, params, choose)
    return optuna_params, distributions


def _finite_score(trial: Any) -> float | None:
    try:
        score = float(trial.score)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def _trial_order(trial: Any) -> tuple[int, str]:
    digits = "".join(ch for ch in str(trial.trial_id) if ch.isdigit())
    return (int(digits) if digits else -1, str(trial.trial_id))


class _Study:
    """An in-memory Optuna study of some KerasTuner trials, asked for new values.

    COMPLETED trials with a finite score are added as COMPLETE; FAILED ones, and COMPLETED ones
    without a finite score, as FAIL (TPE ignores both); RUNNING ones as RUNNING, which TPE's
    ``constant_liar`` treats as the worst so far so that parallel workers spread out. Other
    states (INVALID, waiting for a retry; IDLE; STOPPED) and trials whose values do not fit the
    current space are left out.
    """

    def __init__(self, space: Sequence[Any], direction: str, trials: Iterable[Any], *,
                 seed: int, n_startup_trials: int) -> None:
        optuna = require_optuna()
        self.optuna = optuna
        self.space = list(space)
        self.params = _params(optuna, self.space)
        state = optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=n_startup_trials, multivariate=True, group=True,
                constant_liar=True)
            self.study = optuna.create_study(
                direction="maximize" if direction == "max" else "minimize", sampler=sampler)
            for trial in sorted(trials, key=_trial_order):
                status = str(trial.status)
                score = _finite_score(trial)
                if status == TrialStatus.COMPLETED and score is not None:
                    kwargs: dict[str, Any] = {"value": score, "state": state.COMPLETE}
                elif status in (TrialStatus.COMPLETED, TrialStatus.FAILED):
                    kwargs = {"state": state.FAIL}
                elif status == TrialStatus.RUNNING:
                    kwargs = {"state": state.RUNNING}
                else:
                    continue
                try:
                    params, distributions = _trial_params(
                        self.space, self.params, trial.hyperparameters.values)
                    self.study.add_trial(optuna.trial.create_trial(
                        params=params, distributions=distributions, **kwargs))
                except ValueError:
                    continue  # values outside the current space: nothing to learn from

    @property
    def complete(self) -> int:
        """Trials the model is fitted on (COMPLETE)."""
        state = self.optuna.trial.TrialState.COMPLETE
        return sum(1 for t in self.study.get_trials(deepcopy=False) if t.state == state)

    def ask(self) -> dict[str, Any]:
        """New values for every active hyperparameter (Fixed ones included, as KerasTuner's
        random values have them). An asked trial stays RUNNING in the study, so the next
        ``ask`` (constant liar) moves away from it."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask()

            def choose(hp: Any, param: _Param | None) -> Any:
                if param is None:
                    return getattr(hp, "value", hp.default)
                return param.suggest(trial)

            return _walk(self.space, self.params, choose)


def _propose(oracle: Any, study: _Study, asks: int) -> dict[str, Any] | None:
    """The first of ``asks`` proposals of ``study`` that ``oracle`` has not tried, or None."""
    for _ in range(max(1, asks)):
        values = study.ask()
        if not oracle._duplicate(values):
            return values
    return None


class TPEOracle(kt.Oracle):
    """KerasTuner oracle that proposes with the Tree-structured Parzen Estimator.

    Each proposal fits Optuna's ``TPESampler`` to the finished trials: the trials are split into
    a good and a bad group by score, a Parzen (kernel density) estimator is fitted to each, and
    the candidate maximizing the ratio of the two densities (expected improvement) is proposed
    (Bergstra, Bardenet, Bengio and Kégl, 2011, "Algorithms for Hyper-Parameter Optimization",
    NeurIPS; Watanabe, 2023, "Tree-Structured Parzen Estimator: Understanding Its Algorithm
    Components and Their Roles for Better Empirical Performance", arXiv:2304.11127; Optuna's
    ``optuna.samplers.TPESampler``). The sampler is multivariate, with ``group=True`` so
    conditional hyperparameters (``units_3`` only when ``num_layers > 3``) are modelled in the
    groups where they occur, and ``constant_liar=True`` so trials still running on other
    workers count as bad ones and are not proposed again.

    The study is rebuilt from ``self.trials`` on every call, so the oracle keeps no state of its
    own beyond KerasTuner's (a reloaded search continues where it stopped) and, for a given
    ``seed`` and the same finished trials, proposes the same values. A configuration already
    tried is never proposed again: after ``kit_max_asks`` repeated proposals it falls back to
    KerasTuner's random values, and when those run out too it stops and sets ``kit_exhausted``.

    Args:
        objective: As for KerasTuner's ``RandomSearchOracle``; ``trial.score`` is maximized or
            minimized according to ``objective.direction``.
        max_trials: Trials to run at most.
        hyperparameters: The search space (optional when the hypermodel declares it).
        allow_new_entries: As for KerasTuner's oracles.
        tune_new_entries: As for KerasTuner's oracles.
        seed: The random seed (KerasTuner draws one when None or 0).
        max_retries_per_trial: As for KerasTuner's oracles.
        max_consecutive_failed_trials: As for KerasTuner's oracles.
        n_startup_trials: Finished trials before TPE models; random ones until then. Default
            :func:`default_startup_trials` of ``max_trials``.
    """

    #: Proposals asked of one study before falling back to random values.
    kit_max_asks = 5
    kit_exhausted = False

    def __init__(self, objective: Any = None, max_trials: int | None = None,
                 hyperparameters: Any = None, allow_new_entries: bool = True,
                 tune_new_entries: bool = True, seed: int | None = None,
                 max_retries_per_trial: int = 0, max_consecutive_failed_trials: int = 3,
                 n_startup_trials: int | None = None) -> None:
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters, allow_new_entries=allow_new_entries,
                         tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        if n_startup_trials is not None and int(n_startup_trials) < 0:
            raise ConfigError(
                f"tuner: n_startup_trials must be >= 0, received {n_startup_trials!r}")
        self.n_startup_trials = n_startup_trials
        self.kit_exhausted = False
        #: Proposals made by the fitted model, and by the startup/random phase.
        self.kit_model_proposals = 0
        self.kit_random_proposals = 0
        require_optuna()  # fail at construction, not at the first trial

    @property
    def startup_trials(self) -> int:
        """The startup trials in force (``n_startup_trials`` or its default)."""
        if self.n_startup_trials is not None:
            return int(self.n_startup_trials)
        return default_startup_trials(self.max_trials)

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        study = _Study(self.hyperparameters.space, self.objective.direction,
                       self.trials.values(), seed=_derived_seed(self.seed, len(self.trials)),
                       n_startup_trials=self.startup_trials)
        values = _propose(self, study, self.kit_max_asks)
        modelled = values is not None and study.complete >= self.startup_trials
        if values is None:
            values = self._random_values()
        if values is None:
            self.kit_exhausted = True
            return {"status": TrialStatus.STOPPED, "values": None}
        if modelled:
            self.kit_model_proposals += 1
        else:
            self.kit_random_proposals += 1
        return {"status": TrialStatus.RUNNING, "values": values}

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "n_startup_trials": self.n_startup_trials,
                "kit_exhausted": self.kit_exhausted,
                "kit_model_proposals": self.kit_model_proposals,
                "kit_random_proposals": self.kit_random_proposals}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.n_startup_trials = state.get("n_startup_trials", self.n_startup_trials)
        self.kit_exhausted = bool(state.get("kit_exhausted", False))
        self.kit_model_proposals = int(state.get("kit_model_proposals", 0))
        self.kit_random_proposals = int(state.get("kit_random_proposals", 0))


class BOHBMixin:
    """Turns a KerasTuner ``HyperbandOracle`` (sub)class into BOHB.

    BOHB (Falkner, Klein and Hutter, 2018, "BOHB: Robust and Efficient Hyperparameter
    Optimization at Scale", ICML, Algorithm 2) keeps Hyperband's brackets and successive
    halving but draws each bracket's new configurations from a TPE model instead of at random:
    with probability ``random_fraction`` (the paper's rho, 1/3) a configuration is random;
    otherwise the model is fitted to the finished trials at the highest budget
    (``tuner/epochs``) that has at least ``min_points_in_model`` of them, and proposes; with no
    such budget yet the configuration is random. The default ``min_points_in_model`` is the
    number of tuned hyperparameters + 1, the paper's N_min = d + 1 (its Algorithm 2 asks
    N_min + 2 points, one good and one bad multivariate KDE of N_min each; Optuna's TPE builds
    its two Parzen estimators from fewer, so d + 1 is enough here and the model starts earlier),
    capped at 10 (``kit_min_points_cap``, Optuna's own start-up count).
    The model is Optuna's ``TPESampler`` (see :class:`TPEOracle`) in place of the paper's
    statsmodels KDEs: the same good/bad density-ratio acquisition.

    Use it first in the bases: ``class KitBOHBOracle(BOHBMixin, KitHyperbandOracle)``. Only
    ``_random_values`` (what ``HyperbandOracle`` calls for every new configuration of a
    bracket's first round) is overridden; the returned values never hold ``tuner/*`` keys
    (Hyperband adds them), and None means the space has no untried configuration left. Every
    setting is a class attribute with a default too, so an oracle whose ``__class__`` is
    swapped after construction (``tuners._use_oracle_class``) works.

    Draws are deterministic: the random/model coin and the TPE seed derive from the oracle's
    ``seed``, its number of trials and its ``_seed_state`` (all in ``oracle.json``).

    Args:
        *args: Passed to the Hyperband oracle.
        random_fraction: Probability of a random configuration when a model is available.
        min_points_in_model: Finished trials a budget needs before its model is used.
        **kwargs: Passed to the Hyperband oracle.
    """

    random_fraction: float = 1 / 3
    min_points_in_model: int | None = None
    #: The default ``min_points_in_model`` is d + 1 but at most this: Optuna's TPE models from
    #: 10 trials whatever the dimension (its ``n_startup_trials``), and the default 20-knob
    #: space would otherwise wait for 21 trials at one budget, past most time budgets.
    kit_min_points_cap = 10
    kit_max_asks = 5
    #: New configurations proposed by the model / drawn at random, and the budget
    #: (``tuner/epochs``) of the model used last (None before the first).
    kit_model_proposals = 0
    kit_random_proposals = 0
    kit_model_budget: int | None = None

    def __init__(self, *args: Any, random_fraction: float = 1 / 3,
                 min_points_in_model: int | None = None, **kwargs: Any) -> None:
        if not 0.0 <= float(random_fraction) <= 1.0:
            raise ConfigError(
                f"tuner: random_fraction must be in [0, 1], received {random_fraction!r}")
        if min_points_in_model is not None and int(min_points_in_model) < 1:
            raise ConfigError(
                f"tuner: min_points_in_model must be >= 1, received {min_points_in_model!r}")
        super().__init__(*args, **kwargs)
        self.random_fraction = float(random_fraction)
        self.min_points_in_model = min_points_in_model
        require_optuna()

    def _kit_tuned_count(self) -> int:
        space = self.hyperparameters.space  # type: ignore[attr-defined]
        return len({hp.name for hp in space if not isinstance(hp, _HP.Fixed)
                    and not hp.name.startswith(_TUNER_PREFIX)})

    def kit_min_points(self) -> int:
        """Finished trials a budget needs before its model is used."""
        if self.min_points_in_model is not None:
            return int(self.min_points_in_model)
        return min(self._kit_tuned_count() + 1, self.kit_min_points_cap)

    def kit_model_budget_for(self) -> int | None:
        """The highest budget (``tuner/epochs``) with at least :meth:`kit_min_points` finished
        trials (COMPLETED, finite score), or None."""
        counts: dict[int, int] = {}
        for trial in self.trials.values():  # type: ignore[attr-defined]
            budget = trial.hyperparameters.values.get("tuner/epochs")
            if (budget is not None and str(trial.status) == TrialStatus.COMPLETED
                    and _finite_score(trial) is not None):
                counts[int(budget)] = counts.get(int(budget), 0) + 1
        needed = self.kit_min_points()
        budgets = [budget for budget, count in counts.items() if count >= needed]
        return max(budgets) if budgets else None

    def _random_values(self) -> dict[str, Any] | None:
        oracle: Any = self
        trials = oracle.trials
        coin = random.Random(_derived_seed(oracle.seed, len(trials), oracle._seed_state, 1))
        budget = self.kit_model_budget_for()
        values = None
        if budget is not None and self._kit_tuned_count() > 0 \
                and coin.random() >= self.random_fraction:
            at_budget = [t for t in trials.values()
                         if t.hyperparameters.values.get("tuner/epochs") == budget]
            study = _Study(oracle.hyperparameters.space, oracle.objective.direction, at_budget,
                           seed=_derived_seed(oracle.seed, len(trials), oracle._seed_state, 2),
                           n_startup_trials=self.kit_min_points())
            values = _propose(oracle, study, self.kit_max_asks)
            if values is not None:
                self.kit_model_proposals += 1
                self.kit_model_budget = budget
                return {k: v for k, v in values.items() if not k.startswith(_TUNER_PREFIX)}
        values = super()._random_values()  # type: ignore[misc]
        if values is not None:
            self.kit_random_proposals += 1
        return values

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(),  # type: ignore[misc]
                "random_fraction": self.random_fraction,
                "min_points_in_model": self.min_points_in_model,
                "kit_model_proposals": self.kit_model_proposals,
                "kit_random_proposals": self.kit_random_proposals,
                "kit_model_budget": self.kit_model_budget}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)  # type: ignore[misc]
        self.random_fraction = float(state.get("random_fraction", self.random_fraction))
        self.min_points_in_model = state.get("min_points_in_model", self.min_points_in_model)
        self.kit_model_proposals = int(state.get("kit_model_proposals", 0))
        self.kit_random_proposals = int(state.get("kit_random_proposals", 0))
        self.kit_model_budget = state.get("kit_model_budget")
