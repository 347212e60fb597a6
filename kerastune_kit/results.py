"""Trial records and how they rank: one status enum, one "best", the leaderboard table.

Owns: :class:`TrialRecord`, :func:`is_ranked`, :func:`rank` and :func:`best_of` (the one
definition of the best trial), :class:`RunResults` (a run's trials, best first), the leaderboard
table (``leaderboard.csv`` written and read back as records) and :func:`direction_of`. Pure:
imports no TensorFlow.
Does not own: where files live or how they are written (:mod:`kerastune_kit.rundir`, whose layout
names and atomic writers are re-exported here for older imports), reading a whole run directory
back (:func:`kerastune_kit.runs.load_results`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit.rundir import (  # noqa: F401 - re-exported: the layout and atomic writes
    BEST_HYPERPARAMETERS,
    BEST_MODEL,
    LEADERBOARD,
    RECORD_FILE,
    RUN_MARKER,
    TENSORBOARD_DIR,
    TUNER_DIR,
    RunDir,
    atomic_path,
    record_paths,
    write_json_atomic,
    write_text_atomic,
)
from kerastune_kit.trial_status import (  # noqa: F401 - re-exported: the one status enum
    FAILED_STATUSES,
    RANKED_STATUSES,
    UNFINISHED_STATUSES,
    TrialStatus,
)

#: The HParams hparam naming a promoted Hyperband trial's parent.
PARENT_HPARAM = "parent_trial_id"
#: The HParams hparam naming the popular design a baseline trial ran (empty for the others).
BASELINE_HPARAM = "baseline"
#: The HParams hparam with a trial's :attr:`TrialRecord.outcome` (``completed``, ``pruned``,
#: ``diverged``, ``failed``; ``running`` for a trial a stop left unfinished).
OUTCOME_HPARAM = "outcome"
#: Every value :data:`OUTCOME_HPARAM` takes, in the order the HParams filter lists them.
OUTCOMES = ("completed", "pruned", "diverged", "failed", "running")

BASE_COLUMNS = (
    "trial_id", "status", "score", "best_epoch", "epochs", "parent_trial_id",
    "start_score", "wall_time_s", "baseline", "training", "diagnosis", "message",
)
#: A status no KerasTuner 1.4 trial has, still read as unfinished in older runs.
_LEGACY_NEW = "NEW"


@dataclasses.dataclass
class TrialRecord:
    """What one trial did.

    Epochs are numbered two ways. Inside Python these attributes are Keras-style: 0-based
    indices (``initial_epoch``, ``best_epoch``, the keys of ``curve``) and a count
    (``epochs``). Wherever a person reads them (``leaderboard.csv``, ``inspect`` and its
    ``--format json``, :meth:`RunResults.to_dataframe`, ``best_hyperparameters.json``,
    TensorBoard's steps and ``trial/best_epoch``, every printed line) they are numbered from 1,
    as Keras prints ``Epoch 4/9``: a promoted trial with ``initial_epoch=3, epochs=9,
    best_epoch=7`` shows as epochs ``4-9``, best epoch ``8`` (:meth:`epoch_range`,
    :meth:`to_public_json`, :func:`kerastune_kit.report.epoch_text`).

    Attributes:
        trial_id: KerasTuner's trial id.
        status: ``COMPLETED``; ``PRUNED`` (stopped early by the pruner, keeps its best score so
            far); ``DIVERGED`` (a non-finite loss; no score of its own, ranked below every
            completed and pruned trial; the oracle sees a stand-in just worse than the worst
            finished trial, revised as trials finish); ``FAILED`` (crashed after
            its retries); ``RUNNING`` (unfinished, resumable).
        score: Best objective value, None when the trial produced none.
        best_epoch: Index of the best epoch, counted from 0 over the trial's whole training
            (a promoted trial's parent epochs included), like Keras's ``History.epoch``.
        initial_epoch: Index of the first epoch trained (a promoted Hyperband trial starts
            above 0: ``initial_epoch=3`` continues after its parent's 3 epochs).
        epochs: Epoch count the trial trained up to (the index of its last epoch + 1).
        parent_trial_id: The Hyperband trial whose checkpoint this one continued.
        start_score: The objective measured on the loaded weights before training
            (equals the parent's score when the parent's checkpoint was really loaded).
        start_optimizer_step: The optimizer's iteration count when training started (a promoted
            trial continues its parent's optimizer state, so it is above 0).
        wall_time_s: Seconds the trial took.
        message: Why a trial failed, diverged or was pruned.
        seed: The seed its weights, dropout and shuffles were drawn with.
        curve: The objective after each epoch (epoch index as a string -> value).
        hyperparameters: Its active hyperparameter values.
        baseline: The popular design this trial ran (``lenet``, ``mlp_2x256``; see
            :mod:`kerastune_kit.designs`), None for the tuner's own trials.
        training: How its model trained: ``loop`` (our compiled GradientTape loop) or
            ``fit`` (``model.fit``: a model or data the loop does not support, or
            ``training="fit"``); None in runs recorded before this field.
        diagnosis: Overfitting or underfitting at the best epoch, with what to try
            (:mod:`kerastune_kit.diagnosis`); None when healthy, unknown or in runs
            recorded before this field.
        explosion_reference: The training loss the explosion rule compared with: the mean
            of the trial's first epoch, or (a promoted Hyperband trial) its parent's; None
            when the rule was off or had no reference.
    """

    trial_id: str
    status: str  # a TrialStatus (plain strings compare equal)
    score: float | None = None
    best_epoch: int | None = None
    initial_epoch: int = 0
    epochs: int | None = None
    parent_trial_id: str | None = None
    start_score: float | None = None
    start_optimizer_step: int | None = None
    wall_time_s: float | None = None
    message: str | None = None
    seed: int | None = None
    curve: dict[str, float | None] = dataclasses.field(default_factory=dict)
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    baseline: str | None = None
    training: str | None = None
    diagnosis: str | None = None
    explosion_reference: float | None = None

    @property
    def outcome(self) -> str:
        """``completed``, ``diverged``, ``pruned``, ``failed`` or ``running``.

        A finer reading of :attr:`status`: a ``FAILED`` trial whose message says it diverged is
        ``diverged``; a trial stopped early by a pruner is ``pruned``.
        """
        status = self.status.upper()
        message = (self.message or "").lower()
        if status == TrialStatus.DIVERGED:
            return "diverged"
        if status in (TrialStatus.PRUNED, TrialStatus.STOPPED):
            return "pruned"
        # (a diverged trial's message also says it ranks below every "pruned" trial)
        if status in FAILED_STATUSES and "diverged" in message:
            return "diverged"
        if "pruned" in message:
            return "pruned"
        if status == TrialStatus.COMPLETED:
            return "completed"
        if status in FAILED_STATUSES:
            return "diverged" if "diverged" in message else "failed"
        if status in UNFINISHED_STATUSES or status == _LEGACY_NEW:
            return "running"
        return status.lower()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become None)."""
        out = dataclasses.asdict(self)
        for key in ("score", "start_score"):
            if out[key] is not None and not math.isfinite(out[key]):
                out[key] = None
        out["curve"] = {k: (v if _finite(v) else None) for k, v in self.curve.items()}
        return out

    @property
    def has_model(self) -> bool:
        """Whether a checkpoint of a finite epoch exists (completed or pruned trials); the same
        as :func:`is_ranked`."""
        return is_ranked(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        """Inverse of :meth:`to_json`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def epoch_range(self) -> str:
        """The first and last epoch trained, numbered from 1: ``4-9`` (a promoted trial that
        trained its 4th to 9th epoch), ``1-1`` (one epoch); ``""`` when it trained none.
        The ``epochs`` column of ``leaderboard.csv`` and ``inspect``."""
        if self.epochs is None or self.epochs <= self.initial_epoch:
            return ""
        return f"{self.initial_epoch + 1}-{self.epochs}"

    @property
    def best_epoch_number(self) -> int | None:
        """The best epoch numbered from 1 (``best_epoch + 1``), as people read it; None
        without one."""
        return None if self.best_epoch is None else self.best_epoch + 1

    def to_public_json(self) -> dict[str, Any]:
        """:meth:`to_json` with epochs numbered from 1, as ``leaderboard.csv`` has them:
        ``best_epoch`` 1-based, ``epochs`` the range ``"4-9"`` (no ``initial_epoch``), ``curve``
        keyed by epoch number. What ``inspect --format json`` and
        :meth:`RunResults.to_dataframe` show."""
        out = self.to_json()
        out.pop("initial_epoch")
        out["best_epoch"] = self.best_epoch_number
        out["epochs"] = self.epoch_range() or None
        out["curve"] = {_epoch_key(k): v for k, v in out["curve"].items()}
        return out

    def row(self, hp_names: Sequence[str]) -> dict[str, Any]:
        """One leaderboard row (epochs numbered from 1: ``best_epoch`` and the ``epochs``
        range ``4-9``, :meth:`epoch_range`)."""
        row = {
            "trial_id": self.trial_id, "status": self.status,
            "score": _fmt(self.score), "best_epoch": _fmt(self.best_epoch_number),
            "epochs": self.epoch_range(), "parent_trial_id": self.parent_trial_id or "",
            "start_score": _fmt(self.start_score), "wall_time_s": _fmt(self.wall_time_s, 2),
            "baseline": self.baseline or "",
            "training": self.training or "",
            "diagnosis": self.diagnosis or "",
            "message": (self.message or "").splitlines()[-1][:300] if self.message else "",
        }
        for name in hp_names:
            row[name] = _fmt(self.hyperparameters.get(name))
        return row


def _epoch_key(key: str) -> str:
    """A ``curve`` key (a 0-based epoch index as text) as the epoch's number from 1."""
    try:
        return str(int(key) + 1)
    except ValueError:
        return key


def _fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def is_ranked(record: TrialRecord) -> bool:
    """Whether ``record`` competes for "best": a COMPLETED or PRUNED trial with a finite score.

    This is the one rule every reader uses (the search summary, ``leaderboard.csv``,
    ``inspect``, ``load_results``, ``export``, ``best_hyperparameters.json``, TensorBoard): a
    pruned trial keeps a real score and a checkpoint of its best epoch, so it counts; a
    diverged, failed or unfinished trial never does.
    """
    return record.status in RANKED_STATUSES and _finite(record.score)


def rank(records: Iterable[TrialRecord], direction: str) -> list[TrialRecord]:
    """Records best first: ranked trials (:func:`is_ranked`) by score (ties: the later best
    epoch first), then DIVERGED trials, then the rest (failed, running), each group in id order.

    Args:
        records: Trial records.
        direction: ``max`` or ``min``, the objective's direction.
    """
    records = list(records)
    ranked = [r for r in records if is_ranked(r)]
    # Equal scores: the model trained longer (a later best epoch, e.g. a promoted Hyperband
    # trial level with its one-epoch parent) first, then the lower trial id.
    ranked.sort(key=lambda r: (-r.score if direction == "max" else r.score,
                               -(r.best_epoch or 0), r.trial_id))
    diverged = sorted((r for r in records if not is_ranked(r) and r.outcome == "diverged"),
                      key=lambda r: r.trial_id)
    rest = sorted((r for r in records if not is_ranked(r) and r.outcome != "diverged"),
                  key=lambda r: r.trial_id)
    return ranked + diverged + rest


def best_of(records: Iterable[TrialRecord], direction: str | None) -> TrialRecord | None:
    """The best trial: the first of :func:`rank` that :func:`is_ranked` (a COMPLETED or PRUNED
    trial with a finite score; never a diverged, failed or running one). None when no trial is
    ranked. This is the one definition of "best" (results, ``inspect``, TensorBoard's panel).

    Args:
        records: Trial records.
        direction: ``max`` or ``min``. None when ``records`` are ranked already (best first, as
            :func:`rank` returns them) and the caller does not know the direction.
    """
    ordered = list(records) if direction is None else rank(records, direction)
    return next((r for r in ordered if is_ranked(r)), None)


# ---------------------------------------------------------------------- a run's trials
@dataclasses.dataclass
class RunResults(Sequence[TrialRecord]):
    """The trials of one run directory, best first; behaves as a list of :class:`TrialRecord`.

    Attributes:
        run_dir: The run directory.
        objective: The objective's name (None when the run does not say).
        direction: ``max`` or ``min``.
        trials: Every trial, best first (unscored trials last).
        hp_names: Every hyperparameter name, in leaderboard order.
        source: Where the trials were read: ``leaderboard`` (trial records and
            ``leaderboard.csv``) or ``tensorboard`` (event files alone).
        test: The best trial scored on the held-out test split after the search
            (:class:`kerastune_kit.final.TestEvaluation`), None without one.
        refit: What ``--refit`` trained (epochs, samples, seed, model files), None without.

    Example:
        >>> from kerastune_kit import load_results
        >>> results = load_results("runs/iris-random")
        >>> [r.trial_id for r in results[:3]]
        ['02', '00', '01']
    """

    run_dir: Path
    objective: str | None
    direction: str
    trials: list[TrialRecord]
    hp_names: list[str]
    source: str = "leaderboard"
    test: Any = None
    refit: dict[str, Any] | None = None

    @property
    def test_score(self) -> float | None:
        """The best trial's held-out test score (``test_accuracy`` for ``val_accuracy``),
        None without a test split."""
        return None if self.test is None else self.test.score

    @property
    def test_metrics(self) -> dict[str, float]:
        """Every test metric of the best trial (``test_loss``, ``test_accuracy``...)."""
        return {} if self.test is None else dict(self.test.metrics)

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, index: Any) -> Any:
        return self.trials[index]

    def __iter__(self) -> Iterator[TrialRecord]:
        return iter(self.trials)

    @property
    def best(self) -> TrialRecord | None:
        """The best trial (:func:`best_of`: a completed or pruned one, :func:`is_ranked`),
        None when no trial has a score yet."""
        return best_of(self.trials, self.direction)

    def counts(self) -> dict[str, int]:
        """How many trials ended each way (``{"completed": 20, "diverged": 3}``)."""
        counts: dict[str, int] = {}
        for record in self.trials:
            counts[record.outcome] = counts.get(record.outcome, 0) + 1
        return counts

    def importance(self, *, min_trials: int | None = None) -> Any:
        """Hyperparameter importance of the finished trials (:mod:`kerastune_kit.importance`)."""
        from kerastune_kit.importance import MIN_TRIALS, hyperparameter_importance

        return hyperparameter_importance(self.trials, self.hp_names, direction=self.direction,
                                         min_trials=MIN_TRIALS if min_trials is None
                                         else min_trials)

    def ensemble(self, k: int, *, tuner: Any = None, validation_data: Any = None,
                 test_data: Any = None) -> Any:
        """The top-``k`` distinct trials averaged into one Keras model, scored next to the best
        trial on the validation and test splits (:func:`kerastune_kit.ensemble.build_ensemble`).

        Returns an :class:`~kerastune_kit.ensemble.Ensemble`: ``.model`` is the
        ``keras.Model``, ``.scores`` / ``.best_scores`` its and the best trial's
        ``evaluate`` dicts per split, ``.save(path)`` writes it. A run of a public tuner
        around your own model needs ``tuner=`` and ``validation_data=``.

        Example:
            >>> ensemble = load_results("runs/iris-random").ensemble(3)
            >>> ensemble.scores["validation"]["accuracy"]
        """
        # Through the package's lazy API: ``ensemble`` sits above this module (it rebuilds the
        # tuner), and imports run one way (tests/test_imports.py).
        from kerastune_kit import build_ensemble

        return build_ensemble(self, k, tuner=tuner, validation_data=validation_data,
                              test_data=test_data)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame: one row per trial, best first, one column per hyperparameter.

        Epochs are numbered from 1 as in ``leaderboard.csv``: ``best_epoch`` (``8``) and
        ``epochs``, the first and last epoch trained (``"4-9"``); see
        :meth:`TrialRecord.to_public_json`.

        Raises:
            ImportError: pandas is not installed (it is optional: ``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "to_dataframe: pandas is not installed; install it with `pip install pandas` "
                "or use the records (list(results)) directly"
            ) from None
        rows = []
        for record in self.trials:
            row = {key: value for key, value in record.to_public_json().items()
                   if key != "hyperparameters"}
            row["outcome"] = record.outcome
            row.update({name: record.hyperparameters.get(name) for name in self.hp_names})
            rows.append(row)
        columns = ["trial_id", "outcome", *[f.name for f in dataclasses.fields(TrialRecord)
                                            if f.name not in ("trial_id", "hyperparameters",
                                                              "initial_epoch")],
                   *self.hp_names]
        return pd.DataFrame(rows, columns=columns).set_index("trial_id")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------- leaderboard.csv
def write_leaderboard(path: str | Path, records: Sequence[TrialRecord],
                      hp_names: Sequence[str]) -> None:
    """Write ``leaderboard.csv``: one row per trial (in the given order), every hyperparameter;
    epochs numbered from 1 (:meth:`TrialRecord.row`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*BASE_COLUMNS, *hp_names], lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(record.row(hp_names))
    write_text_atomic(path, buffer.getvalue())


def read_leaderboard(run_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``RUN/leaderboard.csv`` as dicts of strings."""
    with open(RunDir(run_dir).leaderboard, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_trial_records(tuner_dir: str | Path) -> list[TrialRecord]:
    """Every trial record saved under KerasTuner's project directory."""
    return [TrialRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            for path in record_paths(tuner_dir)]


def read_stage_records(run_dir: str | Path) -> list[TrialRecord]:
    """The trial records of every ``--refine`` stage of ``run_dir`` (``RUN/stages/<k>``),
    named ``stage-<k>/<id>`` as the whole run names them (:mod:`kerastune_kit.refine`)."""
    return [in_stage(record, stage) for stage, path in RunDir(run_dir).stage_dirs()
            for record in read_trial_records(RunDir(path).tuner_dir)]


def in_stage(record: TrialRecord, stage: int) -> TrialRecord:
    """A copy of a refine stage's record as the whole run names it: ``stage-<k>/<id>`` (and
    its parent trial likewise)."""
    from kerastune_kit.rundir import stage_trial_id

    parent = record.parent_trial_id
    return dataclasses.replace(record, trial_id=stage_trial_id(stage, record.trial_id),
                               parent_trial_id=stage_trial_id(stage, parent) if parent else None)


# ---------------------------------------------------------------------- reading rows back
def direction_of(objective: str) -> str:
    """``max`` for accuracy-like objectives, ``min`` for losses and errors."""
    base = objective.removeprefix("val_")
    return "max" if base in ("accuracy", "auc") or base.endswith(("accuracy", "auc")) else "min"


def record_from_row(row: Mapping[str, str], hp_names: Sequence[str]) -> TrialRecord:
    """A :class:`TrialRecord` from one ``leaderboard.csv`` row (the inverse of ``row``: the
    file's 1-based ``best_epoch`` and ``epochs`` range ``4-9`` become the record's 0-based
    indices and count)."""
    record = TrialRecord(trial_id=row["trial_id"],
                         status=row.get("status") or TrialStatus.RUNNING)
    record.score = _number(row.get("score"), float)
    best = _number(row.get("best_epoch"), int)  # numbered from 1 in the file
    record.best_epoch = None if best is None else best - 1
    record.start_score = _number(row.get("start_score"), float)
    record.wall_time_s = _number(row.get("wall_time_s"), float)
    record.parent_trial_id = row.get("parent_trial_id") or None
    record.baseline = row.get("baseline") or None
    record.training = row.get("training") or None
    record.diagnosis = row.get("diagnosis") or None  # (absent in older leaderboards)
    record.message = row.get("message") or None
    first, _, last = (row.get("epochs") or "").partition("-")
    if last:  # "4-9": the first and last epoch trained, numbered from 1
        record.initial_epoch, record.epochs = max(0, int(first) - 1), int(last)
    for name in hp_names:
        text = row.get(name, "")
        if text != "":
            record.hyperparameters[name] = parse_value(text)
    return record


def _number(text: str | None, kind: type) -> Any:
    if not text:
        return None
    try:
        return kind(float(text)) if kind is int else kind(text)
    except ValueError:
        return None


def parse_value(text: str) -> bool | int | float | str:
    """A hyperparameter value from its leaderboard text (``"true"``, ``"64"``, ``"0.001"``)."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text

