"""Results files of a run directory: writing them atomically and reading them back.

Owns: :class:`TrialRecord`, the leaderboard table (``leaderboard.csv``), the best configuration
(``best_hyperparameters.json``), atomic file writes (temp file + rename, so a reader never sees a
half-written file), and leaderboard rows read back as records. Imports no TensorFlow.
Reading a whole run directory back is :func:`kerastune_kit.runs.load_results`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

LEADERBOARD = "leaderboard.csv"
BEST_HYPERPARAMETERS = "best_hyperparameters.json"
BEST_MODEL = "best_model.keras"
RECORD_FILE = "kerastune_kit_trial.json"

RUN_MARKER = "run.json"
TUNER_DIR = "tuner"
TENSORBOARD_DIR = "tensorboard"
#: The HParams hparam naming a promoted Hyperband trial's parent.
PARENT_HPARAM = "parent_trial_id"
#: The HParams hparam naming the popular design a baseline trial ran (empty for the others).
BASELINE_HPARAM = "baseline"

BASE_COLUMNS = (
    "trial_id", "status", "score", "best_epoch", "epochs", "parent_trial_id",
    "start_score", "wall_time_s", "baseline", "message",
)


@dataclasses.dataclass
class TrialRecord:
    """What one trial did.

    Attributes:
        trial_id: KerasTuner's trial id.
        status: ``COMPLETED``; ``PRUNED`` (stopped early by the pruner, keeps its best score so
            far); ``DIVERGED`` (a non-finite loss; no score of its own, ranked below every
            completed and pruned trial; the oracle sees a stand-in just worse than the worst
            finished trial, revised as trials finish); ``FAILED`` (crashed after
            its retries); ``RUNNING`` (unfinished, resumable).
        score: Best objective value, None when the trial produced none.
        best_epoch: Absolute index of the best epoch.
        initial_epoch: First epoch trained (a promoted Hyperband trial starts above 0).
        epochs: Epoch count the trial trained up to.
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
    """

    trial_id: str
    status: str
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

    @property
    def outcome(self) -> str:
        """``completed``, ``diverged``, ``pruned``, ``failed`` or ``running``.

        A finer reading of :attr:`status`: a ``FAILED`` trial whose message says it diverged is
        ``diverged``; a trial stopped early by a pruner is ``pruned``.
        """
        status = self.status.upper()
        message = (self.message or "").lower()
        if status == "DIVERGED":
            return "diverged"
        if status in ("PRUNED", "STOPPED"):
            return "pruned"
        # (a diverged trial's message also says it ranks below every "pruned" trial)
        if status in ("FAILED", "INVALID") and "diverged" in message:
            return "diverged"
        if "pruned" in message:
            return "pruned"
        if status == "COMPLETED":
            return "completed"
        if status in ("FAILED", "INVALID"):
            return "diverged" if "diverged" in message else "failed"
        if status in ("RUNNING", "IDLE", "NEW"):
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

    def row(self, hp_names: Sequence[str]) -> dict[str, Any]:
        """One leaderboard row."""
        epochs = "" if self.epochs is None else f"{self.initial_epoch}-{self.epochs}"
        row = {
            "trial_id": self.trial_id, "status": self.status,
            "score": _fmt(self.score), "best_epoch": _fmt(self.best_epoch),
            "epochs": epochs, "parent_trial_id": self.parent_trial_id or "",
            "start_score": _fmt(self.start_score), "wall_time_s": _fmt(self.wall_time_s, 2),
            "baseline": self.baseline or "",
            "message": (self.message or "").splitlines()[-1][:300] if self.message else "",
        }
        for name in hp_names:
            row[name] = _fmt(self.hyperparameters.get(name))
        return row


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
    return record.status in ("COMPLETED", "PRUNED") and _finite(record.score)


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


def best_of(records: Iterable[TrialRecord], direction: str) -> TrialRecord | None:
    """The best trial under :func:`is_ranked`, None when no trial is ranked."""
    return next((r for r in rank(records, direction) if is_ranked(r)), None)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    The temporary name keeps the suffix (Keras needs ``.keras`` to save a model).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    except FileExistsError as exc:  # a parent is a file
        raise NotADirectoryError(errno.ENOTDIR, "a parent is a file", str(path)) from exc
    except OSError as exc:  # name the file the caller asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as exc:
            if exc.errno is None or exc.filename not in (None, str(tmp_path)):
                raise
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        try:
            os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_leaderboard(path: str | Path, records: Sequence[TrialRecord],
                      hp_names: Sequence[str]) -> None:
    """Write ``leaderboard.csv``: one row per trial (in the given order), every hyperparameter."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*BASE_COLUMNS, *hp_names], lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(record.row(hp_names))
    write_text_atomic(path, buffer.getvalue())


def read_leaderboard(run_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``RUN/leaderboard.csv`` as dicts of strings."""
    with open(Path(run_dir) / LEADERBOARD, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_trial_records(tuner_dir: str | Path) -> list[TrialRecord]:
    """Every trial record saved under KerasTuner's project directory."""
    records = []
    for path in sorted(Path(tuner_dir).glob(f"trial_*/{RECORD_FILE}")):
        records.append(TrialRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
    return records


# ---------------------------------------------------------------------- reading rows back
def direction_of(objective: str) -> str:
    """``max`` for accuracy-like objectives, ``min`` for losses and errors."""
    base = objective.removeprefix("val_")
    return "max" if base in ("accuracy", "auc") or base.endswith(("accuracy", "auc")) else "min"


def record_from_row(row: Mapping[str, str], hp_names: Sequence[str]) -> TrialRecord:
    """A :class:`TrialRecord` from one ``leaderboard.csv`` row (the inverse of ``row``)."""
    record = TrialRecord(trial_id=row["trial_id"], status=row.get("status") or "RUNNING")
    record.score = _number(row.get("score"), float)
    record.best_epoch = _number(row.get("best_epoch"), int)
    record.start_score = _number(row.get("start_score"), float)
    record.wall_time_s = _number(row.get("wall_time_s"), float)
    record.parent_trial_id = row.get("parent_trial_id") or None
    record.baseline = row.get("baseline") or None
    record.message = row.get("message") or None
    first, _, last = (row.get("epochs") or "").partition("-")
    if last:
        record.initial_epoch, record.epochs = int(first), int(last)
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

