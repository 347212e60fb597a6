"""Sanity checks before the budget is spent: the preflight of a search.

Owns: the three checks a practitioner runs before a long training run, applied to the first
configuration the search would train (the first popular design, or the space's defaults), and
their record (``RUN/run.json`` under ``"preflight"``, the TensorBoard TEXT panel
``search/preflight``, one printed line per finding):

1. **Loss at init** (:func:`check_initial_loss`): the untrained network's loss on training
   samples against its chance value (:func:`chance_loss`), the loss of an uninformative
   prediction: ``ln C`` for a softmax over ``C`` classes, ``ln 2`` for a sigmoid unit (a
   prediction of 0.5, whatever the class balance; the entropy of the class prior is what a
   network reaches once it has learnt only the bias, not where it starts), and 1.0 for
   regression, whose loss is the mean squared error divided by the training targets' variance
   (:meth:`kerastune_kit.hypermodels.TaskHead.loss`: 1.0 is predicting the mean). Karpathy,
   "A Recipe for Training Neural Networks" (2019): "verify loss @ init"; CS231n, "Neural
   Networks Part 3": "look for correct loss at chance performance".
2. **Overfit a tiny subset** (:func:`check_overfit`): the configuration trained on 64 training
   samples must fit them (training accuracy >= 0.95 in inference mode, or the loss down by
   >= 90% for regression). Karpathy (2019): "overfit one batch"; CS231n: "overfit a tiny subset
   of data".
3. **Generalisation** (:func:`check_generalization`): a network memorises 64 random labels as
   easily as 64 true ones, so check 2 cannot tell shuffled labels from real ones. The same
   network, reset to its initial weights, is trained on a few hundred samples and must beat
   chance on the validation split: an accuracy above the majority class's share by more than
   four standard errors, or a cross-entropy below 85% of the class prior's entropy
   (classification); a loss below 90% of the mean predictor's (regression).

Each check that fails gives one finding, a line naming the measured values and the likely
cause. Findings are warnings: the search runs anyway. A check cut short by the time budget
before it could decide is recorded as inconclusive, never as a finding.

Does not own: the search (``tuning`` calls :func:`preflight_search` before the first trial),
the training loop (the checks train through :meth:`KitHyperModel.fit`, as trials do) or the
TensorBoard writers (``tensorboard``). The decision functions and :class:`PreflightReport` are
pure (NumPy and the standard library); :func:`run_preflight` imports TensorFlow.

Example:
    >>> report = run_preflight(dataset, hypermodel, budget_s=5.0)
    >>> report.summary()
    'preflight (mlp_2x256, 1.6s): loss at init 2.39 (chance 2.30), 64 samples overfit to 1.00, \
validation accuracy 0.87 (chance 0.10) after 256 samples'
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Seconds the preflight takes at most (and at most :data:`BUDGET_SHARE` of a time budget).
MAX_SECONDS = 5.0
#: Share of ``max_time`` the preflight may take.
BUDGET_SHARE = 0.05
#: A budget under this many seconds skips the preflight (``--max-time`` under 10 s).
MIN_SECONDS = 0.5
#: Left to itself (``preflight`` None), the preflight checks a search that plans at least
#: this many trial-epochs (the sum of each planned trial's epochs) or has a ``--max-time``:
#: a shorter search costs about what the checks do, and is its own check.
MIN_PLANNED_EPOCHS = 20
#: Training samples of the overfit check, and of the generalisation check.
OVERFIT_SAMPLES = 64
GENERALIZATION_SAMPLES = 256
#: Validation samples the generalisation check scores (the first ones of the split).
VALIDATION_SAMPLES = 1024
#: Optimizer steps per preflight epoch (the subset is passed over several times), and the
#: epochs each training check runs at most.
STEPS_PER_EPOCH = 16
OVERFIT_EPOCHS = 20
GENERALIZATION_EPOCHS = 12
#: Share of the budget the overfit check may use before the generalisation check starts,
#: and the share that must be left for the generalisation check to start.
OVERFIT_SHARE = 0.5
MIN_SHARE_FOR_GENERALIZATION = 0.2
#: Training accuracy (inference mode) the overfit check requires.
OVERFIT_ACCURACY = 0.95
#: Regression: the loss must fall to this fraction of its initial value.
OVERFIT_LOSS_FRACTION = 0.10
#: Loss at init above this many times chance is a finding (classification). Keras's default
#: initializers (He for the hidden layers, Glorot and a zero bias for the output layer) do
#: not start at chance: on the bundled data sets the first designs measured up to 3.8x
#: chance (LeNet on standardized digits, whose rare pixels standardize to outliers; 30
#: seeds), the MLPs up to 2.2x; inputs left unscaled give hundreds of times chance.
INIT_FACTOR = 6.0
#: Regression's loss grows with the square of the output's scale: an untrained linear unit
#: over 256 He-initialised ReLU features adds an output variance of about 2 (measured up to
#: 9.5x chance on diabetes, 30 seeds) to the mean predictor's 1.0.
INIT_FACTOR_REGRESSION = 25.0
#: Inputs whose standard deviation exceeds this are called "not scaled" in a finding.
INPUT_STD_LIMIT = 10.0
#: Classification: validation accuracy within this many binomial standard errors of the
#: majority share is "at chance" (the best of up to 12 epochs is a maximum of noisy values;
#: shuffled digits labels reached 1.5 standard errors above chance).
CHANCE_STANDARD_ERRORS = 4.0
#: Classification: a lowest validation loss above this fraction of the class prior's entropy
#: is "at chance" too (measured on the bundled sets: shuffled labels 1.03-1.42x the entropy,
#: real ones 0.02-0.61x).
PRIOR_LOSS_FRACTION = 0.85
#: Regression: a lowest validation loss above this fraction of the mean predictor's is "at
#: chance" (not clearly below it; measured on diabetes over 15 seeds: shuffled targets
#: 1.01-1.45x the mean predictor's loss, real ones 0.60-0.79x).
REGRESSION_CHANCE_FRACTION = 0.9
#: Training must have risen this far above chance (accuracy), or below the mean predictor
#: (regression, as a fraction of its loss), for "validation at chance" to blame the labels.
TRAIN_RISE = 0.3
#: The TensorBoard TEXT tag (run ``search``) and the ``run.json`` key.
TEXT_TAG = "search/preflight"
MARKER_KEY = "preflight"


@dataclasses.dataclass
class Check:
    """One check's outcome.

    Attributes:
        name: ``initial_loss``, ``overfit`` or ``generalization``.
        passed: True, False (then ``finding`` says why), or None: inconclusive (the time
            budget ran out before the check could decide, or it could not run).
        values: What was measured (losses, accuracies, samples, steps, the thresholds).
        seconds: Wall-clock seconds the check took.
        finding: One line: what was measured and its likely cause; None when it passed.
    """

    name: str
    passed: bool | None
    values: dict[str, Any]
    seconds: float = 0.0
    finding: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "seconds": round(self.seconds, 3),
                "finding": self.finding, "values": _plain(self.values)}


@dataclasses.dataclass
class PreflightReport:
    """The preflight of one search.

    Attributes:
        checks: The checks, in the order they ran.
        configuration: The configuration checked (a popular design's name, or ``defaults``).
        hyperparameters: Its hyperparameter values.
        budget_s: The time cap, in seconds; ``seconds`` is what the preflight took.
        task: ``binary``, ``multiclass`` or ``regression``.
    """

    checks: list[Check]
    configuration: str
    hyperparameters: dict[str, Any]
    budget_s: float
    seconds: float
    task: str

    @property
    def findings(self) -> list[str]:
        """One line per failed check."""
        return [c.finding for c in self.checks if c.finding]

    def check(self, name: str) -> Check | None:
        """The check called ``name`` (None when it did not run)."""
        return next((c for c in self.checks if c.name == name), None)

    def summary(self) -> str:
        """One short line: the measured values, or how many findings there are."""
        parts = []
        init = self.check("initial_loss")
        if init is not None and init.values.get("loss") is not None:
            parts.append(f"loss at init {_num(init.values['loss'])} "
                         f"(chance {_num(init.values['chance'])})")
        fit = self.check("overfit")
        if fit is not None and fit.values:
            score = "loss" if self.task == "regression" else "accuracy"
            parts.append(f"{fit.values.get('samples')} samples overfit to {score} "
                         f"{_num(fit.values.get(score))} in {fit.seconds:.1f}s")
            if fit.passed is None:
                parts[-1] += " (unfinished)"
        gen = self.check("generalization")
        if gen is not None and gen.values.get("skipped"):
            parts.append(f"validation check skipped ({gen.values['skipped']})")
        elif gen is not None and gen.values:
            key = "val_loss" if self.task == "regression" else "val_accuracy"
            parts.append(f"validation {key.split('_')[1]} {_num(gen.values.get(key))} "
                         f"(chance {_num(gen.values.get('chance'))}) after "
                         f"{gen.values.get('samples')} samples")
            if gen.passed is None:
                parts[-1] += " (unfinished)"
        head = f"preflight ({self.configuration}, {self.seconds:.1f}s)"
        if self.findings:
            return f"{head}: {len(self.findings)} " \
                   f"finding{'s' if len(self.findings) != 1 else ''}: " + "; ".join(parts)
        return f"{head}: " + ", ".join(parts)

    def lines(self) -> list[str]:
        """What the CLI prints: the summary, then one ``preflight warning:`` line per finding."""
        return [self.summary(), *(f"preflight warning: {f}" for f in self.findings)]

    def to_json(self) -> dict[str, Any]:
        """The ``run.json`` entry."""
        return {"configuration": self.configuration,
                "hyperparameters": _plain(self.hyperparameters),
                "budget_s": round(self.budget_s, 3), "seconds": round(self.seconds, 3),
                "task": self.task, "findings": self.findings, "summary": self.summary(),
                "checks": [c.to_json() for c in self.checks]}

    def markdown(self) -> str:
        """The TensorBoard TEXT panel: the summary, the findings and a table of the checks."""
        lines = [f"**{self.summary()}**", ""]
        if self.findings:
            lines += [f"- warning: {f}" for f in self.findings] + [""]
        lines += ["| check | result | seconds | measured |", "|---|---|---|---|"]
        for c in self.checks:
            result = {True: "passed", False: "finding", None: "inconclusive"}[c.passed]
            measured = ", ".join(f"{k}={_num(v) if isinstance(v, float) else v}"
                                 for k, v in c.values.items())
            lines.append(f"| {c.name} | {result} | {c.seconds:.2f} | {measured} |")
        return "\n".join(lines)


# ---------------------------------------------------------------------- pure decisions
def preflight_budget(max_time: float | None) -> float:
    """Seconds the preflight may take: :data:`MAX_SECONDS`, or :data:`BUDGET_SHARE` of
    ``max_time`` when that is smaller.

    Example:
        >>> preflight_budget(None), preflight_budget(60)
        (5.0, 3.0)
    """
    if not max_time:
        return MAX_SECONDS
    return min(MAX_SECONDS, BUDGET_SHARE * float(max_time))


def short_search_reason(config: Any) -> str | None:
    """Why a search whose ``preflight`` is left unset (None) skips the preflight, or None when
    it runs it: a search that plans fewer than :data:`MIN_PLANNED_EPOCHS` trial-epochs and has
    no ``max_time`` is about as short as the checks ("overfit a tiny subset before a long
    run"). ``preflight=True`` runs it anyway; ``False`` never.

    Example:
        >>> short_search_reason(SearchConfig(data="iris", tuner="random", max_trials=3,
        ...                                  max_epochs=2))
        'a short search (6 trial-epochs planned, under 20); --preflight runs it anyway'
    """
    if config.preflight is not None or config.max_time:
        return None
    from kerastune_kit.plan import planned_epochs

    planned = sum(planned_epochs(config))
    if planned >= MIN_PLANNED_EPOCHS:
        return None
    return (f"a short search ({planned} trial-epochs planned, under {MIN_PLANNED_EPOCHS}); "
            "--preflight runs it anyway")


def preflight_runs(config: Any) -> bool:
    """Whether a search of ``config`` runs the preflight before its first trial (not on
    ``--resume``; left unset, not for a short search: :func:`short_search_reason`)."""
    if config.preflight is False or config.resume:
        return False
    return short_search_reason(config) is None


def chance_loss(task: str, n_classes: int | None = None) -> float:
    """The loss of an uninformative prediction, what an untrained network should start near.

    ``ln C`` for softmax cross-entropy over ``C`` classes (a uniform prediction), ``ln 2`` for
    binary cross-entropy (a prediction of 0.5), 1.0 for regression (this package's regression
    loss is the mean squared error divided by the training targets' variance, so predicting
    the training mean scores 1.0 on the training data).

    Raises:
        ValueError: An unknown task, or a multiclass task without 2 or more classes.
    """
    if task == "multiclass":
        if not n_classes or n_classes < 2:
            raise ValueError(f"n_classes: expected 2 or more for multiclass, received "
                             f"{n_classes!r}")
        return math.log(n_classes)
    if task == "binary":
        return math.log(2.0)
    if task == "regression":
        return 1.0
    raise ValueError(f"task: expected binary, multiclass or regression, received {task!r}")


def check_initial_loss(loss: float, task: str, n_classes: int | None = None, *,
                       samples: int | None = None, input_std: float | None = None,
                       input_max: float | None = None) -> Check:
    """Check 1: the untrained network's loss against :func:`chance_loss`.

    A loss above :data:`INIT_FACTOR` times chance (:data:`INIT_FACTOR_REGRESSION` for
    regression), or a non-finite one, is a finding: outputs that large at init come from
    inputs that are not scaled or from an initializer that is too wide. The finding blames
    the inputs when their standard deviation (``input_std``, over the network's inputs after
    the dataset's preprocessing) is above :data:`INPUT_STD_LIMIT`.

    Args:
        loss: The mean loss of the untrained network on training samples.
        task: The task; ``n_classes`` its class count (multiclass).
        samples: How many samples the loss was measured on (recorded only).
        input_std: Standard deviation of the training inputs the network sees.
        input_max: Their largest absolute value (recorded, and named in a finding).

    Example:
        >>> print(check_initial_loss(14.2, "multiclass", 10).finding)
        loss at init 14.20 vs 2.30 expected for 10 classes: inputs not scaled, or a bad ...
    """
    chance = chance_loss(task, n_classes)
    factor = INIT_FACTOR_REGRESSION if task == "regression" else INIT_FACTOR
    values: dict[str, Any] = {"loss": float(loss), "chance": chance, "limit": factor * chance,
                              "samples": samples, "input_std": input_std,
                              "input_max": input_max}
    what = {"multiclass": f"for {n_classes} classes", "binary": "for 2 classes",
            "regression": "(the mean predictor's, in units of the target variance)"}[task]
    if math.isfinite(loss) and loss <= factor * chance:
        return Check("initial_loss", True, values)
    cause = "inputs not scaled, or a bad initializer"
    if input_std is not None and input_std > INPUT_STD_LIMIT:
        largest = f", largest |x| {_num(input_max)}" if input_max is not None else ""
        cause = (f"inputs not scaled (standard deviation {_num(input_std)}{largest}); scale "
                 "them to about unit range")
    measured = (f"is {loss}, not finite" if not math.isfinite(loss) else _num(loss))
    return Check("initial_loss", False, values,
                 finding=f"loss at init {measured} vs {_num(chance)} expected {what}: {cause}")


def check_overfit(task: str, *, samples: int, steps: int, initial_loss: float,
                  loss: float, accuracy: float | None = None, finished: bool = True,
                  diverged: bool = False) -> Check:
    """Check 2: could the configuration fit ``samples`` training samples?

    Classification needs a training accuracy (inference mode) of at least
    :data:`OVERFIT_ACCURACY`; regression a loss at most :data:`OVERFIT_LOSS_FRACTION` of its
    initial value. ``finished`` False (the time budget ended the training before its step
    limit) makes a shortfall inconclusive rather than a finding.
    """
    values: dict[str, Any] = {"samples": samples, "steps": steps,
                              "initial_loss": float(initial_loss), "loss": float(loss)}
    if task != "regression":
        values.update(accuracy=None if accuracy is None else float(accuracy),
                      required=OVERFIT_ACCURACY)
    else:
        values.update(reduction=_reduction(initial_loss, loss),
                      required=1.0 - OVERFIT_LOSS_FRACTION)
    if diverged or not math.isfinite(loss):
        return Check("overfit", False, values, finding=(
            f"the loss diverged while fitting {samples} samples (after {steps} steps): the "
            "learning rate is too high, or the inputs are not scaled"))
    if task == "regression":
        ok = math.isfinite(initial_loss) and loss <= OVERFIT_LOSS_FRACTION * initial_loss
        if ok:
            return Check("overfit", True, values)
        if not finished:
            return Check("overfit", None, values)
        return Check("overfit", False, values, finding=(
            f"could not overfit {samples} samples (loss {_num(initial_loss)} -> {_num(loss)}, "
            f"{values['reduction']:.0%} lower after {steps} steps; 90% expected): the model or "
            "the learning rate cannot fit; check the targets and the inputs"))
    if accuracy is not None and accuracy >= OVERFIT_ACCURACY:
        return Check("overfit", True, values)
    if not finished:
        return Check("overfit", None, values)
    return Check("overfit", False, values, finding=(
        f"could not overfit {samples} samples (train accuracy {_num(accuracy)} after "
        f"{steps} steps): the model or the learning rate cannot fit; check the labels and "
        "the inputs"))


def chance_accuracy(y_val: Any) -> float:
    """The majority class's share of the labels: the accuracy of always predicting it."""
    counts = np.bincount(np.asarray(y_val).astype("int64").reshape(-1))
    return float(counts.max() / counts.sum()) if counts.sum() else 0.0


def mean_predictor_loss(y_train: Any, y_val: Any) -> float:
    """Regression: the loss (mean squared error over the training targets' variance) of
    predicting the training mean on ``y_val``."""
    y_train = np.asarray(y_train, dtype="float64").reshape(-1)
    y_val = np.asarray(y_val, dtype="float64").reshape(-1)
    variance = float(y_train.var()) or 1.0
    return float(np.mean((y_val - y_train.mean()) ** 2) / variance)


def prior_entropy(y_val: Any) -> float:
    """The entropy (nats) of the labels' class shares: the lowest cross-entropy a prediction
    that ignores the inputs can score on them."""
    counts = np.bincount(np.asarray(y_val).astype("int64").reshape(-1)).astype("float64")
    shares = counts[counts > 0] / max(counts.sum(), 1.0)
    return float(-(shares * np.log(shares)).sum())


def check_generalization(task: str, *, samples: int, steps: int, val_samples: int,
                         chance: float, train: float, val: float,
                         val_loss: float | None = None, prior_loss: float | None = None,
                         finished: bool = True) -> Check:
    """Check 3: does training on ``samples`` samples carry over to the validation split?

    Classification (``train``/``val``: accuracies; ``chance``: :func:`chance_accuracy` of the
    validation labels): at chance when the best validation accuracy is within
    :data:`CHANCE_STANDARD_ERRORS` binomial standard errors of chance and, when given, the
    lowest validation loss ``val_loss`` is at least :data:`PRIOR_LOSS_FRACTION` of
    ``prior_loss`` (:func:`prior_entropy` of the validation labels: a network whose outputs
    carry no information about the labels cannot score below it). The loss, which weighs
    every predicted probability, separates shuffled labels from hard but real ones where the
    accuracy of a small validation split cannot. Regression (``train``/``val``: losses;
    ``chance``: :func:`mean_predictor_loss`): at chance when the best validation loss is above
    :data:`REGRESSION_CHANCE_FRACTION` of chance.

    At chance while the training score rose (by :data:`TRAIN_RISE`) is a finding: the labels
    look unrelated to the inputs. At chance without the training score rising is one only
    when the training ran to its step limit (``finished``; the overfit check names a cause).
    """
    regression = task == "regression"
    values: dict[str, Any] = {"samples": samples, "steps": steps, "val_samples": val_samples,
                              "chance": float(chance)}
    if regression:
        values.update(train_loss=float(train), val_loss=float(val),
                      limit=REGRESSION_CHANCE_FRACTION * chance)
        at_chance = not math.isfinite(val) or val > REGRESSION_CHANCE_FRACTION * chance
        rose = math.isfinite(train) and train <= (1.0 - TRAIN_RISE) * chance
    else:
        error = math.sqrt(max(chance * (1.0 - chance), 1e-12) / max(val_samples, 1))
        values.update(train_accuracy=float(train), val_accuracy=float(val),
                      limit=min(1.0, chance + CHANCE_STANDARD_ERRORS * error))
        at_chance = not math.isfinite(val) or val <= values["limit"]
        if val_loss is not None and prior_loss is not None:
            values.update(val_loss=float(val_loss), prior_loss=float(prior_loss),
                          loss_limit=PRIOR_LOSS_FRACTION * prior_loss)
            at_chance = at_chance and not (val_loss < PRIOR_LOSS_FRACTION * prior_loss)
        rose = math.isfinite(train) and train >= min(0.9, chance + TRAIN_RISE)
    if not at_chance:
        return Check("generalization", True, values)
    name = "loss" if regression else "accuracy"
    measured = (f"validation {name} {_num(val)} is at chance ({_num(chance)}, the "
                f"{'mean predictor' if regression else 'majority class'}")
    if "prior_loss" in values:
        measured += (f"; loss {_num(values['val_loss'])} vs the class prior's "
                     f"{_num(values['prior_loss'])}")
    measured += ")"
    if rose:
        return Check("generalization", False, values, finding=(
            f"{measured} after training to {_num(train)} on {samples} samples: labels look "
            "unrelated to the inputs (shuffled or misaligned?)"))
    if not finished:
        return Check("generalization", None, values)
    return Check("generalization", False, values, finding=(
        f"{measured} and training reached only {_num(train)} on {samples} samples after "
        f"{steps} steps: nothing was learnt; check the labels, the inputs and the learning "
        "rate"))


# ---------------------------------------------------------------------- the TF part
def first_configuration(hypermodel: Any, *, baselines: bool = True
                        ) -> tuple[str, dict[str, Any], Any]:
    """The configuration a search trains first: ``(name, values, hyperparameters)``.

    The first popular design of the factory's family (:data:`kerastune_kit.designs.
    POPULAR_DESIGNS`, with the user's overrides applied as the oracle applies them) when
    ``baselines``, else the search space's default values (``defaults``). ``hyperparameters``
    is a ``keras_tuner.HyperParameters`` holding the values, ready for ``hypermodel.build``.
    """
    import keras_tuner as kt

    from kerastune_kit.designs import design_values, designs_for

    space = kt.HyperParameters()
    hypermodel.space.resolve(space)  # registers every knob (KerasTuner's defaults as values)
    designs = designs_for(hypermodel.family) if baselines else ()
    name, values = "defaults", dict(space.values)
    if designs:
        name, values = designs[0].name, design_values(space, designs[0])
    chosen = space.copy()
    chosen.values = dict(values)
    return name, values, chosen


def run_preflight(dataset: Any, hypermodel: Any, *, budget_s: float = MAX_SECONDS,
                  seed: int = 0, baselines: bool = True) -> PreflightReport:
    """Run the three checks on the first configuration of a search over ``dataset``.

    One network of that configuration is built (as a trial's: seeded weights) and trained
    through ``hypermodel.fit``, the trials' loop, loss and metrics: first on
    :data:`OVERFIT_SAMPLES` training samples (checks 1 and 2; validated on the same samples,
    so the validation scores are the training scores in inference mode), then, from its
    initial weights and optimizer state again, on :data:`GENERALIZATION_SAMPLES` (check 3),
    validated on the first :data:`VALIDATION_SAMPLES` of the validation split. An epoch is
    :data:`STEPS_PER_EPOCH` steps of the configuration's batch size (the subset passed over
    several times). Each training stops once its check has decided, at its epoch limit, or
    at the end of the epoch during which its share of ``budget_s`` ran out; check 3 is left
    inconclusive when less than :data:`MIN_SHARE_FOR_GENERALIZATION` of the budget remains.
    Deterministic for a given ``seed`` (the subsets; the weights come from the factory's
    seed) unless the time cap cuts a training short.

    Args:
        dataset: A :class:`kerastune_kit.data.Dataset`.
        hypermodel: Its factory (``factory.for_dataset(dataset, space, seed=...)``).
        budget_s: Seconds the preflight may take (:func:`preflight_budget`); the first epoch
            (which traces the compiled passes) always runs.
        seed: Seeds the choice of the subsets.
        baselines: Check the first popular design (else the space's defaults).

    Returns:
        The :class:`PreflightReport`.
    """
    started = time.perf_counter()
    budget_s = max(0.0, float(budget_s))
    deadline = started + budget_s
    name, values, hp = first_configuration(hypermodel, baselines=baselines)
    task = hypermodel.head.task
    n_classes = getattr(hypermodel, "n_classes", None)
    order = np.random.default_rng(seed).permutation(len(dataset.x_train))
    small, larger = order[:OVERFIT_SAMPLES], order[:GENERALIZATION_SAMPLES]
    x_small, y_small = dataset.x_train[small], dataset.y_train[small]
    checks: list[Check] = []
    saved_min_steps = hypermodel.min_steps_per_epoch
    hypermodel.min_steps_per_epoch = STEPS_PER_EPOCH
    try:
        network = _Network(hypermodel, hp)
        initial = network.evaluate(x_small, y_small)
        x_large, y_large = dataset.x_train[larger], dataset.y_train[larger]
        checks.append(check_initial_loss(
            initial["loss"], task, n_classes, samples=len(small),
            input_std=float(np.std(x_large, dtype="float64")),
            input_max=float(np.abs(x_large).max(initial=0.0))))
        checks[-1].seconds = time.perf_counter() - started

        tick = time.perf_counter()
        run = network.train(x_small, y_small, validation=(x_small, y_small),
                            epochs=OVERFIT_EPOCHS, deadline=started + OVERFIT_SHARE * budget_s,
                            done=_overfit_done(task, initial["loss"]))
        best = run.best_epoch(task)
        checks.append(check_overfit(
            task, samples=len(small), steps=run.steps, initial_loss=initial["loss"],
            loss=best.get("val_loss", math.nan), accuracy=best.get("val_accuracy"),
            finished=run.finished, diverged=run.diverged))
        checks[-1].seconds = time.perf_counter() - tick

        tick = time.perf_counter()
        x_val = dataset.x_val[:VALIDATION_SAMPLES]
        y_val = dataset.y_val[:VALIDATION_SAMPLES]
        chance = (mean_predictor_loss(dataset.y_train, y_val) if task == "regression"
                  else chance_accuracy(y_val))
        if deadline - tick < MIN_SHARE_FOR_GENERALIZATION * budget_s:
            checks.append(Check("generalization", None, {
                "samples": len(larger), "chance": chance,
                "skipped": "no time left in the budget"}))
        else:
            network.reset()
            run = network.train(x_large, y_large, validation=(x_val, y_val),
                                epochs=GENERALIZATION_EPOCHS, deadline=deadline,
                                done=_generalization_done(task, chance, len(y_val)))
            key = "loss" if task == "regression" else "accuracy"
            best = run.best_epoch(task)
            losses = {} if task == "regression" else {
                "val_loss": run.lowest("val_loss"), "prior_loss": prior_entropy(y_val)}
            checks.append(check_generalization(
                task, samples=len(larger), steps=run.steps, val_samples=len(y_val),
                chance=chance, train=run.best_training(key), val=best.get(f"val_{key}", math.nan),
                finished=run.finished, **losses))
        checks[-1].seconds = time.perf_counter() - tick
    finally:
        hypermodel.min_steps_per_epoch = saved_min_steps
    return PreflightReport(checks=checks, configuration=name, hyperparameters=dict(values),
                           budget_s=budget_s, seconds=time.perf_counter() - started, task=task)


@dataclasses.dataclass
class _Run:
    """One preflight training: its epochs' logs and how it ended."""

    epochs_logs: list[dict[str, float]]
    steps: int
    finished: bool
    diverged: bool

    def best_epoch(self, task: str) -> dict[str, float]:
        """The logs of the epoch with the best validation score (the last when none is
        finite)."""
        logs = [e for e in self.epochs_logs if all(map(math.isfinite, e.values()))]
        if not logs:
            return self.epochs_logs[-1] if self.epochs_logs else {}
        if task == "regression":
            return min(logs, key=lambda e: e.get("val_loss", math.inf))
        return max(logs, key=lambda e: (e.get("val_accuracy", -1.0), -e.get("val_loss", 0.0)))

    def lowest(self, key: str) -> float:
        """The lowest finite value of ``key`` over the epochs (NaN when none)."""
        values = [e[key] for e in self.epochs_logs if math.isfinite(e.get(key, math.nan))]
        return min(values) if values else math.nan

    def best_training(self, key: str) -> float:
        """The best training-mode ``loss`` (lowest) or ``accuracy`` (highest) of an epoch."""
        values = [e[key] for e in self.epochs_logs if math.isfinite(e.get(key, math.nan))]
        if not values:
            return math.nan
        return min(values) if key == "loss" else max(values)


def _overfit_done(task: str, initial_loss: float
                  ) -> Callable[[dict[str, float]], bool]:
    """Check 2 has passed: stop training."""
    if task == "regression":
        return lambda logs: logs.get("val_loss", math.inf) <= \
            OVERFIT_LOSS_FRACTION * initial_loss
    return lambda logs: logs.get("val_accuracy", 0.0) >= OVERFIT_ACCURACY


def _generalization_done(task: str, chance: float, n_val: int
                         ) -> Callable[[dict[str, float]], bool]:
    """Check 3 has clearly passed (well clear of chance): stop training."""
    if task == "regression":
        return lambda logs: logs.get("val_loss", math.inf) <= \
            0.8 * REGRESSION_CHANCE_FRACTION * chance
    error = math.sqrt(max(chance * (1.0 - chance), 1e-12) / max(n_val, 1))
    return lambda logs: logs.get("val_accuracy", 0.0) >= \
        chance + max(2 * CHANCE_STANDARD_ERRORS * error, 0.1)


class _Network:
    """The checked configuration's network, built once (as KerasTuner builds a trial's: after
    ``clear_session``, so its layer names, and with them the compiled passes traced for it,
    are a trial's), with its initial weights and optimizer state kept for :meth:`reset`."""

    def __init__(self, hypermodel: Any, hp: Any) -> None:
        from kerastune_kit._backend import keras as _keras

        self.keras = _keras()
        self.keras.backend.clear_session()
        self.hypermodel, self.hp = hypermodel, hp
        self.model = hypermodel.build(hp)
        self.initial_weights = self.model.get_weights()
        self.initial_slots = [v.numpy() for v in self.model.optimizer.variables]

    def reset(self) -> None:
        """Back to the untrained network, with a fresh optimizer state."""
        self.model.set_weights(self.initial_weights)
        for variable, value in zip(self.model.optimizer.variables, self.initial_slots,
                                   strict=True):
            variable.assign(value)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Loss (the task's) and, for classes, accuracy on ``(x, y)`` in inference mode."""
        import tensorflow as tf

        head = self.hypermodel.head
        targets = head.prepare_targets(y)
        out = self.model(tf.convert_to_tensor(np.asarray(x, dtype="float32")), training=False)
        scores = {"loss": float(head.loss()(targets, out))}
        predicted = np.asarray(out)
        if head.task == "multiclass":
            scores["accuracy"] = float(np.mean(predicted.argmax(axis=-1) == targets))
        elif head.task == "binary":
            scores["accuracy"] = float(np.mean((predicted.reshape(-1) > 0.5)
                                               == (targets.reshape(-1) > 0.5)))
        return scores

    def train(self, x: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray],
              epochs: int, deadline: float, done: Callable[[dict[str, float]], bool]) -> _Run:
        """Train with the trials' ``fit`` until ``done(epoch logs)``, ``epochs`` or the end
        of the epoch during which ``deadline`` (``time.perf_counter()``) passes."""
        from kerastune_kit.hypermodels import DivergedTrialError, passes_per_epoch

        state: dict[str, Any] = {"logs": [], "stop": None}

        class _Watch(self.keras.callbacks.Callback):  # type: ignore[name-defined,misc]
            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                logs = {k: float(v) for k, v in (logs or {}).items()}
                state["logs"].append(logs)
                if done(logs):
                    state["stop"] = "done"
                elif time.perf_counter() >= deadline:
                    state["stop"] = "time"
                if state["stop"]:
                    self.model.stop_training = True

        diverged = False
        try:
            history = self.hypermodel.fit(self.hp, self.model, x, y,
                                          validation_data=validation, epochs=epochs,
                                          callbacks=[_Watch()], shuffle=True)
        except DivergedTrialError as exc:
            history, diverged = exc.history, True
        diverged = diverged or getattr(history, "divergence", None) is not None
        logs = state["logs"]
        batch = int(self.hp.get("batch_size")) if "batch_size" in self.hp.values else 32
        batch = max(1, min(batch, len(x)))
        rows = len(x) * passes_per_epoch(len(x), batch, STEPS_PER_EPOCH)
        finished = diverged or state["stop"] == "done" or (
            state["stop"] is None and len(logs) >= epochs)
        return _Run(logs, math.ceil(rows / batch) * len(logs), finished, diverged)


# ---------------------------------------------------------------------- the search's hook
def preflight_search(config: Any, dataset: Any, hypermodel: Any, run_dir: str | Path, *,
                     deadline: float | None = None,
                     say: Callable[[str], None] | None = None) -> PreflightReport | None:
    """The preflight of a search (``tuning.run_search`` calls it before the first trial).

    Skipped (None) with ``config.preflight`` False, on ``--resume`` (the run's start did it),
    left unset (None) for a short search (:func:`short_search_reason`; ``run.json`` says so) or
    when its budget (:func:`preflight_budget`, and at most :data:`BUDGET_SHARE` of what is left
    before ``deadline``, a ``time.time()``) is under :data:`MIN_SECONDS` (then ``run.json``
    says so). Records the report in
    ``RUN/run.json`` under ``"preflight"`` and as TensorBoard TEXT ``search/preflight`` (run
    ``search``); ``say`` receives :meth:`PreflightReport.lines` (the CLI prints them); without it
    each finding is logged as a warning.
    """
    if config.preflight is False or config.resume:
        return None
    short = short_search_reason(config)
    if short is not None:
        _record_skip(run_dir, short, say=say)
        return None
    budget = preflight_budget(config.max_time)
    if deadline is not None:
        budget = min(budget, BUDGET_SHARE * max(0.0, deadline - time.time()))
    if budget < MIN_SECONDS:
        _record_skip(run_dir, f"its share of the time budget is {budget:.2g}s, under "
                     f"{MIN_SECONDS:g}s", say=say, budget_s=round(budget, 3))
        return None
    report = run_preflight(dataset, hypermodel, budget_s=budget, seed=config.seed,
                           baselines=config.baselines and config.tuner != "grid")
    record_preflight(run_dir, report)
    if say is not None:
        for line in report.lines():
            say(line)
    else:
        from kerastune_kit._logging import get_logger

        logger = get_logger("preflight")
        logger.info("%s", report.summary())
        for finding in report.findings:
            logger.warning("preflight: %s", finding)
    return report


def _record_skip(run_dir: str | Path, why: str, *, say: Callable[[str], None] | None,
                 **extra: Any) -> None:
    """Record in ``RUN/run.json`` (and say, in one line) why the preflight did not run."""
    from kerastune_kit.rundir import RunDir

    run = RunDir(run_dir)
    marker = run.read_marker()
    marker[MARKER_KEY] = {"skipped": why, **extra}
    run.write_json(run.marker, marker)
    if say is not None:
        say(f"preflight skipped: {why}")


def record_preflight(run_dir: str | Path, report: PreflightReport) -> None:
    """Write ``report`` into ``RUN/run.json`` (key ``"preflight"``) and TensorBoard TEXT."""
    from kerastune_kit.rundir import RunDir
    from kerastune_kit.tensorboard import SearchSummaryWriter

    run = RunDir(run_dir)
    marker = run.read_marker()
    marker[MARKER_KEY] = report.to_json()
    run.write_json(run.marker, marker)
    writer = SearchSummaryWriter(run.tensorboard_dir)
    try:
        writer.write_preflight(report)
    finally:
        writer.close()


# ---------------------------------------------------------------------- helpers
def _reduction(initial: float, loss: float) -> float | None:
    if not (math.isfinite(initial) and math.isfinite(loss)) or initial <= 0:
        return None
    return 1.0 - loss / initial


def _num(value: Any) -> str:
    """``2.30``, ``14.20``, ``1234``: two decimals below 100, none above; ``n/a`` for None."""
    if value is None:
        return "n/a"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def _finite_or_none(value: Any) -> bool:
    return value is None or math.isfinite(float(value))


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy: non-finite floats become None, NumPy scalars Python ones."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (np.floating, float)):
            value = float(value)
            out[key] = value if math.isfinite(value) else None
        elif isinstance(value, np.integer):
            out[key] = int(value)
        else:
            out[key] = value
    return out
