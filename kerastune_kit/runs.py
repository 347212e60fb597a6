"""A run directory read back: its trials best first, the best model exported.

Owns: :class:`RunResults` (a list of :class:`~kerastune_kit.results.TrialRecord`, best first,
with the objective, importance and a pandas DataFrame), :func:`load_results` and
:func:`export_best`. Imports no TensorFlow: a run that holds only TensorBoard event files is read
by :mod:`kerastune_kit.inspection`, imported on demand.

Example:
    >>> from kerastune_kit import load_results
    >>> results = load_results("runs/digits-hyperband")
    >>> results.best.trial_id, results.best.score
    ('0009', 0.969...)
    >>> frame = results.to_dataframe()  # needs pandas
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.results import (
    BASE_COLUMNS,
    BEST_HYPERPARAMETERS,
    BEST_MODEL,
    LEADERBOARD,
    RUN_MARKER,
    TENSORBOARD_DIR,
    TUNER_DIR,
    TrialRecord,
    atomic_path,
    best_of,
    direction_of,
    rank,
    read_leaderboard,
    read_trial_records,
    record_from_row,
    write_json_atomic,
)
from kerastune_kit.rundir import find_write_error, write_error


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

    Example:
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

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, index: Any) -> Any:
        return self.trials[index]

    def __iter__(self) -> Iterator[TrialRecord]:
        return iter(self.trials)

    @property
    def best(self) -> TrialRecord | None:
        """The best trial (a completed or pruned one, :func:`~kerastune_kit.results.is_ranked`),
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

    def to_dataframe(self) -> Any:
        """A pandas DataFrame: one row per trial, best first, one column per hyperparameter.

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
            row = {key: value for key, value in record.to_json().items()
                   if key != "hyperparameters"}
            row["outcome"] = record.outcome
            row.update({name: record.hyperparameters.get(name) for name in self.hp_names})
            rows.append(row)
        columns = ["trial_id", "outcome", *[f.name for f in dataclasses.fields(TrialRecord)
                                            if f.name not in ("trial_id", "hyperparameters")],
                   *self.hp_names]
        return pd.DataFrame(rows, columns=columns).set_index("trial_id")


def load_results(run_dir: str | Path) -> RunResults:
    """Read a run directory back: its trials best first, the objective, the hyperparameters.

    Works while the search runs (finished trials have records; the leaderboard lists the
    running ones) and on a directory that holds only ``tensorboard/`` event files.

    Args:
        run_dir: The search's ``--run-dir``.

    Raises:
        RunDirError: ``run_dir`` is missing or holds no results of a search.

    Example:
        >>> results = load_results("runs/digits-hyperband")
        >>> print(results.best.hyperparameters["learning_rate"])
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(
            f"run_dir: '{run_dir}' is not a directory; pass the --run-dir of a search"
        )
    records = {r.trial_id: r for r in read_trial_records(run_dir / TUNER_DIR)}
    hp_names: list[str] = []
    if (run_dir / LEADERBOARD).is_file():
        rows = read_leaderboard(run_dir)
        hp_names = [name for name in (rows[0] if rows else {}) if name not in BASE_COLUMNS]
        for row in rows:
            records.setdefault(row["trial_id"], record_from_row(row, hp_names))
    if not records:
        logdir = run_dir / TENSORBOARD_DIR if (run_dir / TENSORBOARD_DIR).is_dir() else run_dir
        if any(logdir.rglob("events.out.tfevents.*")):
            from kerastune_kit.inspection import results_from_events

            return results_from_events(run_dir)
        raise RunDirError(
            f"run_dir: '{run_dir}' holds no kerastune_kit results (no {LEADERBOARD}, trial "
            f"records or {TENSORBOARD_DIR}/ event files); pass the --run-dir of a search"
        )
    for record in records.values():
        hp_names += [name for name in record.hyperparameters if name not in hp_names]
    objective = saved_objective(run_dir)
    direction = _saved_direction(run_dir) or direction_of(objective or "val_loss")
    return RunResults(run_dir=run_dir, objective=objective, direction=direction,
                      trials=rank(records.values(), direction), hp_names=hp_names)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def saved_objective(run_dir: Path) -> str | None:
    """The objective named by ``run.json`` or ``best_hyperparameters.json`` (None if neither)."""
    for name in (RUN_MARKER, BEST_HYPERPARAMETERS):
        objective = _read_json(run_dir / name).get("objective")
        if isinstance(objective, str):
            return objective
    return None


def _saved_direction(run_dir: Path) -> str | None:
    direction = _read_json(run_dir / RUN_MARKER).get("direction")
    return direction if direction in ("max", "min") else None


def export_best(run_dir: str | Path, output: str | Path) -> tuple[Path, Path]:
    """Copy a run's best model to ``output`` (``.keras``) and its hyperparameters beside it.

    Both files are written atomically; an existing file at either path is replaced.

    Args:
        run_dir: The search's run directory.
        output: Where to write the model; it must end in ``.keras``. The hyperparameters go to
            the same path with ``.json`` (``best.keras`` -> ``best.json``).

    Returns:
        ``(model_path, hyperparameters_path)``.

    Raises:
        ConfigError: ``output`` does not end in ``.keras`` or is a directory.
        RunDirError: The run has no best model (yet).
        WriteError: ``output`` cannot be written (no space, read-only, no permission, a parent
            that is a file); nothing is left half-written.

    Example:
        >>> export_best("runs/digits-hyperband", "models/digits.keras")
        (PosixPath('models/digits.keras'), PosixPath('models/digits.json'))
    """
    import shutil

    run_dir, output = Path(run_dir), Path(output)
    if output.suffix != ".keras" or output.is_dir():
        raise ConfigError(
            f"output: expected a file path ending in .keras, received '{output}'; pass for "
            "example --output best.keras"
        )
    if not run_dir.is_dir():
        raise RunDirError(
            f"run_dir: '{run_dir}' is not a directory; pass the --run-dir of a search"
        )
    model, best = run_dir / BEST_MODEL, _read_json(run_dir / BEST_HYPERPARAMETERS)
    if not model.is_file() or not best:
        raise RunDirError(
            f"run_dir: '{run_dir}' has no {BEST_MODEL} and {BEST_HYPERPARAMETERS} (the search "
            "has not finished, or no trial completed); export after the search finishes"
        )
    sidecar = output.with_suffix(".json")
    try:
        # Both written to temporary files first: a failure leaves neither half-written.
        with atomic_path(output) as tmp:
            shutil.copyfile(model, tmp)
            write_json_atomic(sidecar, {**best, "model": output.name, "run_dir": str(run_dir)})
    except OSError as exc:
        error = find_write_error(exc)
        if error is None:
            raise
        # (shutil names the source file in its errors: the user's path is the output)
        raise write_error(OSError(error.errno, error.strerror), output,
                          action="export") from None
    return output, sidecar
