"""After the search: the best trial scored on the held-out test split, and ``--refit``.

Owns: :func:`evaluate_and_refit` (called once by :func:`kerastune_kit.tuning.finish_search`,
after ``best_model.keras`` is written), :class:`TestEvaluation` (the test score next to the
validation score, with the rule that calls a gap between them out), the ``--refit`` retraining
(the best configuration on train + validation for its best epoch count), and the records they
leave: the ``test``/``refit`` entries of ``best_hyperparameters.json`` and ``run.json``, the
TensorBoard scalars ``search/test_score``, ``search/validation_score`` (and
``search/refit_test_score``) and the text panel ``search/test_evaluation``.
Does not own: the splits (:func:`kerastune_kit.data.load_dataset`), the search, or reading a
run back (:func:`kerastune_kit.runs.load_results` reads what this module wrote through
:func:`read_final`).

Only kerastune_kit's own factories (the CLI and :func:`~kerastune_kit.tuning.run_search`) get
this: a KerasTuner user's ``search()`` takes their own data, and no test split is invented there.

Imports no TensorFlow at module level (``runs`` reads :class:`TestEvaluation` back).

Example:
    >>> from kerastune_kit import load_results
    >>> results = load_results("runs/digits-hyperband")
    >>> results.test_score, results.test.validation_score
    (0.961..., 0.972...)
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerastune_kit._logging import get_logger
from kerastune_kit.results import TrialRecord, direction_of
from kerastune_kit.rundir import BEST_MODEL, RunDir, atomic_path

logger = get_logger("final")

#: The search's own best model, kept beside a ``--refit`` model (the new ``best_model.keras``).
BEST_MODEL_SEARCH = "best_model_search.keras"
#: A gap between validation and test scores is called out above these (see :class:`TestEvaluation`).
MIN_SCORE_GAP = 0.02
MIN_RELATIVE_LOSS_GAP = 0.10
#: Objectives that are shares in [0, 1] (a binomial standard error applies).
_SHARES = ("accuracy", "auc")


@dataclasses.dataclass
class TestEvaluation:
    """The search's best trial scored on the held-out test split.

    The gap rule: a large gap means the test score is worse than the validation score by
    more than ``threshold``. For shares (accuracy, AUC) the threshold is
    ``max(0.02, 2 * sqrt(p * (1 - p) / n))`` — two binomial standard errors of the test
    estimate ``p`` on ``n`` test samples; for losses and errors (loss, mae, mse), where lower is
    better, it is ``max(10% of the validation value, 2 standard errors of the test mean)``, the
    standard error from the per-sample values. Within it the difference is what a test split
    of that size measures by chance.

    Attributes:
        trial_id: The best trial.
        metric: The test counterpart of the objective (``val_accuracy`` -> ``test_accuracy``).
        score: The best trial's test score (its best epoch's weights).
        validation_metric: The objective (``val_accuracy``).
        validation_score: The best trial's score on it (the leaderboard's).
        gap: How much worse the test score is than the validation score (positive: worse;
            ``validation - test`` for scores, ``test - validation`` for losses).
        threshold: The gap above which it is called out.
        samples: Test samples.
        metrics: Every test metric (``test_loss``, ``test_accuracy``, ``test_mae``, ...).
        refit_score: The ``--refit`` model's test score (None without ``--refit``).
        refit_metrics: The ``--refit`` model's test metrics.
    """

    __test__ = False  # (not a pytest test class)

    trial_id: str
    metric: str
    score: float
    validation_metric: str
    validation_score: float | None
    gap: float | None
    threshold: float | None
    samples: int
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    refit_score: float | None = None
    refit_metrics: dict[str, float] | None = None

    @property
    def large_gap(self) -> bool:
        """Whether the test score is worse than validation by more than :attr:`threshold`."""
        return self.gap is not None and self.threshold is not None and self.gap > self.threshold

    @property
    def reference(self) -> str:
        """``validation`` (or ``train`` for an objective measured on the training split)."""
        return "validation" if self.validation_metric.startswith("val_") else "train"

    def to_json(self) -> dict[str, Any]:
        """The ``test`` entry of ``best_hyperparameters.json`` and ``run.json``."""
        out = dataclasses.asdict(self)
        out["large_gap"] = self.large_gap
        if self.refit_score is None:
            out.pop("refit_score")
            out.pop("refit_metrics")
        return out

    @classmethod
    def from_json(cls, data: Any) -> TestEvaluation | None:
        """Read :meth:`to_json` back (None for anything else)."""
        if not isinstance(data, dict) or not isinstance(data.get("score"), (int, float)):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError:
            return None

    def lines(self) -> list[str]:
        """Plain-text lines for a terminal: ``test accuracy 0.961 (validation 0.972)``, the
        other test metrics, the refit model's score and, for a large gap, the call-out."""
        name = self.metric.removeprefix("test_")
        head = f"test {name} {_fmt(name, self.score)}"
        if self.validation_score is not None:
            head += f" ({self.reference} {_fmt(name, self.validation_score)})"
        head += f" on {self.samples} held-out samples"
        out = [head]
        others = [f"{k.removeprefix('test_')} {_fmt(k, v)}" for k, v in self.metrics.items()
                  if k != self.metric]
        if others:
            out.append("  other test metrics: " + ", ".join(others))
        if self.refit_score is not None:
            out.append(f"refit on train + validation: test {name} "
                       f"{_fmt(name, self.refit_score)} (the search's best: "
                       f"{_fmt(name, self.score)})")
        if self.large_gap:
            out.append(self.gap_line())
        return out

    def gap_line(self) -> str:
        """The one line calling a large gap out."""
        name = self.metric.removeprefix("test_")
        return (f"{self.reference} {_fmt(name, self.validation_score)} vs test "
                f"{_fmt(name, self.score)}: the search may have overfit the {self.reference} "
                f"split (a gap of {self.gap:.3g}, more than the {self.threshold:.3g} chance "
                f"explains); a larger validation split or fewer trials would help")

    def markdown(self) -> str:
        """The lines as markdown, for TensorBoard's text dashboard."""
        return "  \n".join(self.lines())


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name.removeprefix("test_").removeprefix("val_") in _SHARES:
        return f"{value:.3f}"
    return f"{value:.4g}"


def test_metric_name(objective: str) -> str:
    """The test counterpart of an objective: ``val_accuracy`` -> ``test_accuracy``."""
    return "test_" + objective.removeprefix("val_")


def gap_and_threshold(name: str, validation: float | None, test: float, samples: int,
                      per_sample_std: float | None = None) -> tuple[float | None, float | None]:
    """``(gap, threshold)`` of :class:`TestEvaluation`'s rule for the metric ``name``.

    Args:
        name: The metric (``test_accuracy``, ``val_loss``, ``mae``...).
        validation: The validation score.
        test: The test score.
        samples: Test samples.
        per_sample_std: For losses and errors: the standard deviation of the per-sample values
            on the test split (None: the relative rule alone).
    """
    if validation is None or not math.isfinite(validation) or not math.isfinite(test):
        return None, None
    base = name.removeprefix("test_").removeprefix("val_")
    n = max(1, int(samples))
    if direction_of(base) == "max":
        p = min(1.0, max(0.0, test))
        return validation - test, max(MIN_SCORE_GAP, 2.0 * math.sqrt(p * (1.0 - p) / n))
    error = 0.0 if per_sample_std is None else 2.0 * per_sample_std / math.sqrt(n)
    return test - validation, max(MIN_RELATIVE_LOSS_GAP * abs(validation), error)


@dataclasses.dataclass
class FinalResult:
    """What :func:`evaluate_and_refit` found: the test evaluation (None without a test
    split) and the refit's record (None without ``--refit``)."""

    test: TestEvaluation | None = None
    refit: dict[str, Any] | None = None


def evaluate_and_refit(config: Any, tuner: Any, best: TrialRecord | None, *,
                       load_dataset: Callable[[], Any], stopped: str | None = None,
                       step: int = 0, trial_id: str | None = None) -> FinalResult:
    """Score the search's best trial on the test split and, with ``config.refit``, retrain it
    on train + validation; record both in the run directory.

    The best trial's network is rebuilt and loaded from its best epoch's checkpoint
    (``tuner.load_model``: the weights of ``best_model.keras``, before the preprocessing layers)
    and evaluated on ``dataset.x_test`` with the task's loss and metrics, as the search measured
    validation. With ``config.refit`` (and a search not interrupted by a signal), the best
    configuration is rebuilt with the same hyperparameters and seed and trained on train +
    validation for ``best_epoch + 1`` epochs (``TrialRecord.best_epoch`` is 0-based); that model
    becomes ``best_model.keras`` and the search's own best moves to
    ``best_model_search.keras``. The results go to ``best_hyperparameters.json`` and
    ``run.json`` (``test``, ``refit``) and TensorBoard.

    Args:
        config: The search's :class:`~kerastune_kit.config.SearchConfig`.
        tuner: The search's tuner (its oracle and checkpoints).
        best: The best trial (None: nothing to do), as ``tuner`` knows it.
        load_dataset: Returns the search's :class:`~kerastune_kit.data.Dataset` (loaded only
            when there is a test split or a refit).
        stopped: Why the search stopped early (None: it ran to its end); an interrupted
            search (``interrupted by SIGINT``) is not refitted until ``--resume`` finishes it.
        step: The TensorBoard step of the scalars (the finished trials' count).
        trial_id: The id the records name the best trial by, when it differs from
            ``best.trial_id`` (a ``--refine`` stage's trial: ``stage-2/0003``).

    Returns:
        The :class:`FinalResult`.

    Raises:
        WriteError: The run directory cannot be written (the caller turns ``OSError`` into it).
    """
    result = FinalResult()
    run = RunDir(config.effective_run_dir())
    search_copy = run.path / BEST_MODEL_SEARCH
    if best is None or best.score is None:
        return result
    # A search stopped by --max-time has spent its budget and refits; an interrupted one not.
    refit = bool(config.refit) and not (stopped or "").startswith("interrupted")
    if config.refit and not refit:
        logger.warning("refit: skipped because the search was %s; --resume it to refit", stopped)
    if not refit and search_copy.exists():  # from a refit of an earlier finish: gone now
        search_copy.unlink()
    # (test_split 0 without --refit: only an .npz can bring a test split of its own)
    wanted = refit or config.test_split > 0 or str(config.data).strip().lower().endswith(".npz")
    dataset = load_dataset() if wanted else None
    if dataset is not None and (dataset.x_test is not None or refit):
        _evaluate_and_refit(tuner, dataset, best, result, config=config, refit=refit, run=run)
    if trial_id is not None:
        if result.test is not None:
            result.test.trial_id = trial_id
        if result.refit is not None:
            result.refit["trial_id"] = trial_id
    _record(run, result, step)
    if result.test is not None:
        for line in result.test.lines():
            logger.info("%s", line)
    return result


def _evaluate_and_refit(tuner: Any, dataset: Any, best: TrialRecord, result: FinalResult, *,
                        config: Any, refit: bool, run: RunDir) -> None:
    """Fill ``result`` in: the test evaluation, then the refit (exported)."""
    objective = tuner.oracle.objective.name
    hypermodel = tuner.hypermodel
    try:
        if dataset.x_test is not None:
            network = tuner.load_model(tuner.oracle.get_trial(best.trial_id))
            result.test = _evaluate(network, hypermodel, dataset, objective, best)
        if refit:
            result.refit, model = _refit(config, tuner, dataset, best)
            if model is not None:
                if result.test is not None:
                    metrics = _test_metrics(model, hypermodel, dataset)
                    result.test.refit_metrics = metrics
                    result.test.refit_score = metrics.get(result.test.metric)
                    result.refit["test_score"] = result.test.refit_score
                _export_refit(run, hypermodel, model)
    except (OSError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the search's results stand without it
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        logger.warning("final evaluation: %s; the search's results are written without it",
                       reason)
        if refit:
            result.refit = {**(result.refit or {}), "model": None, "error": reason}


def _evaluate(network: Any, hypermodel: Any, dataset: Any, objective: str,
              best: TrialRecord) -> TestEvaluation:
    metrics = _test_metrics(network, hypermodel, dataset)
    name = test_metric_name(objective)
    score = metrics.get(name)
    if score is None:  # an objective that is no metric of the model: its loss, then
        name, score = "test_loss", metrics["test_loss"]
    std = None
    if direction_of(name.removeprefix("test_")) == "min":
        std = _per_sample_std(network, hypermodel, dataset, name.removeprefix("test_"))
    gap, threshold = gap_and_threshold(name, best.score, score, len(dataset.x_test), std)
    return TestEvaluation(trial_id=best.trial_id, metric=name, score=score,
                          validation_metric=objective, validation_score=best.score, gap=gap,
                          threshold=threshold, samples=int(len(dataset.x_test)),
                          metrics=metrics)


def _test_metrics(network: Any, hypermodel: Any, dataset: Any) -> dict[str, float]:
    """Every metric of the task on the test split (``test_loss``, ``test_accuracy``...),
    computed by :meth:`TrainLoop.evaluate`, as the search computed validation metrics."""
    from kerastune_kit.training import TrainLoop

    head = hypermodel.head
    loop = TrainLoop(network, loss=head.loss(), metrics=head.metrics())
    values = loop.evaluate(dataset.x_test, head.prepare_targets(dataset.y_test))
    return {f"test_{name.removeprefix('val_')}": float(v) for name, v in values.items()}


def _per_sample_std(network: Any, hypermodel: Any, dataset: Any, metric: str) -> float | None:
    """The standard deviation of a loss or error's per-sample values on the test split."""
    import numpy as np

    head = hypermodel.head
    y_true = head.prepare_targets(dataset.y_test)
    y_pred = np.asarray(network.predict(dataset.x_test, batch_size=256, verbose=0))
    if metric == "loss":
        values = np.asarray(head.loss().call(y_true, y_pred), dtype="float64")
    elif metric == "mae":
        values = np.abs(y_true.astype("float64") - y_pred).reshape(len(y_true), -1).mean(axis=1)
    elif metric == "mse":
        values = np.square(y_true.astype("float64") - y_pred).reshape(len(y_true), -1).mean(
            axis=1)
    else:
        return None
    values = values.reshape(-1)
    return float(values.std(ddof=1)) if len(values) > 1 else None


def _refit(config: Any, tuner: Any, dataset: Any, best: TrialRecord
           ) -> tuple[dict[str, Any], Any]:
    """Retrain the best configuration on train + validation for ``best_epoch + 1`` epochs
    with the trial's seed: ``(record, model)``, the model None when the training diverged."""
    import numpy as np

    from kerastune_kit._backend import keras as _keras
    from kerastune_kit.trial_report import trial_seed

    hypermodel = tuner.hypermodel
    trial = tuner.oracle.get_trial(best.trial_id)
    hp = trial.hyperparameters.copy()
    epochs = int(best.best_epoch if best.best_epoch is not None else (best.epochs or 1) - 1) + 1
    seed = best.seed if best.seed is not None else trial_seed(config.seed, best.trial_id)
    x = np.concatenate([dataset.x_train, dataset.x_val])
    y = np.concatenate([dataset.y_train, dataset.y_val])
    record: dict[str, Any] = {"trial_id": best.trial_id, "epochs": epochs,
                              "samples": int(len(x)), "seed": int(seed),
                              "model": BEST_MODEL,
                              "search_model": BEST_MODEL_SEARCH}
    logger.info("refit: training trial %s's configuration on %d train + validation samples "
                "for %d epochs", best.trial_id, len(x), epochs)
    saved_seed = hypermodel.seed
    hypermodel.seed = int(seed)
    try:
        _keras().backend.clear_session()
        model = hypermodel.build(hp)
        try:
            history = hypermodel.fit(hp, model, x, y, epochs=epochs, verbose=0)
        except Exception as exc:  # noqa: BLE001 - DivergedTrialError and its kind
            history, reason = None, " ".join(str(exc).split())
        else:
            divergence = getattr(history, "divergence", None)
            reason = divergence.reason() if divergence is not None else None
    finally:
        hypermodel.seed = saved_seed
    if reason is not None:
        logger.warning("refit: the training diverged (%s); best_model.keras stays the "
                       "search's best", reason)
        record.update(model=None, error=reason)
        return record, None
    losses = (history.history.get("loss") or [None]) if history is not None else [None]
    record["final_loss"] = None if losses[-1] is None else float(losses[-1])
    return record, model


def _export_refit(run: RunDir, hypermodel: Any, model: Any) -> None:
    """Keep the search's best as ``best_model_search.keras``; the refit model becomes
    ``best_model.keras`` (raw inputs in, as the search's)."""
    from kerastune_kit._saving import save_model_atomically

    with atomic_path(run.path / BEST_MODEL_SEARCH) as tmp:
        shutil.copyfile(run.best_model, tmp)
    save_model_atomically(hypermodel.inference_model(model), run.best_model)


def _record(run: RunDir, result: FinalResult, step: int) -> None:
    """The ``test`` and ``refit`` entries of ``best_hyperparameters.json`` and ``run.json``,
    and the TensorBoard scalars and text panel."""
    test = None if result.test is None else result.test.to_json()
    for path, data in ((run.best_hyperparameters, run.read_best_hyperparameters()),
                       (run.marker, run.read_marker())):
        data.pop("test", None)
        data.pop("refit_details", None)
        if test is not None:
            data["test"] = test
        data["refit"] = result.refit is not None and result.refit.get("model") is not None
        if result.refit is not None:
            data["refit_details"] = result.refit
        run.write_json(path, data)
    if result.test is None:
        return
    from kerastune_kit.tensorboard import SearchSummaryWriter

    writer = SearchSummaryWriter(run.tensorboard_dir)
    try:
        writer.write_test_evaluation(result.test, step=step)
    finally:
        writer.close()


def final_lines(test: TestEvaluation | None, refit: dict[str, Any] | None) -> list[str]:
    """The test evaluation and the refit as plain-text lines (the CLI summary, ``inspect``)."""
    lines = [] if test is None else test.lines()
    if refit:
        if refit.get("model"):
            lines.append(f"refit: trial {refit.get('trial_id')}'s configuration retrained on "
                         f"{refit.get('samples')} train + validation samples for "
                         f"{refit.get('epochs')} epochs is {refit['model']} (the search's "
                         f"best: {refit.get('search_model')})")
        else:
            lines.append(f"refit: failed ({refit.get('error')}); {BEST_MODEL} is the "
                         "search's best")
    return lines


def read_final(run_dir: str | Path) -> FinalResult:
    """What :func:`evaluate_and_refit` recorded in a run's ``best_hyperparameters.json``
    (an empty :class:`FinalResult` for a run without a test split or refit)."""
    data = RunDir(run_dir).read_best_hyperparameters()
    refit = data.get("refit_details")
    return FinalResult(test=TestEvaluation.from_json(data.get("test")),
                       refit=refit if isinstance(refit, dict) else None)
