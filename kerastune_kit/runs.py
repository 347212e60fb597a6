"""A run directory read back: its trials best first, the best model exported.

Owns: :func:`load_results` (a run's :class:`~kerastune_kit.results.RunResults`, from its trial
records and ``leaderboard.csv``, or from its event files alone through
:mod:`kerastune_kit.inspection`, imported on demand) and :func:`export_best`. Imports no
TensorFlow. :class:`~kerastune_kit.results.RunResults` lives in ``results`` (re-exported here),
so that ``inspection`` builds one without importing this module: imports run
``runs -> inspection -> results``.

Example:
    >>> from kerastune_kit import load_results
    >>> results = load_results("runs/digits-hyperband")
    >>> results.best.trial_id, results.best.score
    ('0009', 0.969...)
    >>> frame = results.to_dataframe()  # needs pandas
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.results import (
    BASE_COLUMNS,
    RunResults,
    direction_of,
    rank,
    read_leaderboard,
    read_trial_records,
    record_from_row,
)
from kerastune_kit.rundir import (
    BEST_HYPERPARAMETERS,
    BEST_MODEL,
    LEADERBOARD,
    TENSORBOARD_DIR,
    RunDir,
    atomic_path,
    find_write_error,
    write_error,
    write_json_atomic,
)


def load_results(run_dir: str | Path) -> RunResults:
    """Read a run directory back: its trials best first, the objective, the hyperparameters.

    Works while the search runs (finished trials have records; the leaderboard lists the
    running ones) and on a directory that holds only ``tensorboard/`` event files. After the
    search, ``test_score``/``test`` hold the best trial's score on the held-out test split
    (next to its validation score) and ``refit`` what ``--refit`` trained.

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
    layout = RunDir(run_dir)
    records = {r.trial_id: r for r in read_trial_records(layout.tuner_dir)}
    from kerastune_kit.results import read_stage_records  # --refine: RUN/stages/<k>'s

    records.update((r.trial_id, r) for r in read_stage_records(run_dir))
    hp_names: list[str] = []
    if layout.leaderboard.is_file():
        rows = read_leaderboard(run_dir)
        hp_names = [name for name in (rows[0] if rows else {}) if name not in BASE_COLUMNS]
        for row in rows:
            records.setdefault(row["trial_id"], record_from_row(row, hp_names))
    if not records:
        if any(layout.logdir.rglob("events.out.tfevents.*")):
            from kerastune_kit.inspection import results_from_events

            return _with_final(results_from_events(run_dir))
        raise RunDirError(
            f"run_dir: '{run_dir}' holds no kerastune_kit results (no {LEADERBOARD}, trial "
            f"records or {TENSORBOARD_DIR}/ event files); pass the --run-dir of a search"
        )
    for record in records.values():
        hp_names += [name for name in record.hyperparameters if name not in hp_names]
    objective = layout.saved_objective()
    direction = layout.saved_direction() or direction_of(objective or "val_loss")
    return _with_final(RunResults(run_dir=run_dir, objective=objective, direction=direction,
                                  trials=rank(records.values(), direction), hp_names=hp_names))


def _with_final(results: RunResults) -> RunResults:
    """``results`` with the held-out test evaluation and the refit of the finished search
    (``best_hyperparameters.json``), when it has them."""
    from kerastune_kit.final import read_final

    final = read_final(results.run_dir)
    results.test, results.refit = final.test, final.refit
    return results


def saved_objective(run_dir: str | Path) -> str | None:
    """The objective named by ``run.json`` or ``best_hyperparameters.json`` (None if neither);
    :meth:`RunDir.saved_objective <kerastune_kit.rundir.RunDir.saved_objective>`."""
    return RunDir(run_dir).saved_objective()


def check_model_path(output: str | Path) -> Path:
    """``output`` as the path of a model file to write: it must end in ``.keras`` and not be a
    directory.

    Raises:
        ConfigError: It does not (one line naming the path and the fix).
    """
    output = Path(output)
    if output.suffix != ".keras" or output.is_dir():
        raise ConfigError(
            f"output: expected a file path ending in .keras, received '{output}'; pass for "
            "example --output best.keras"
        )
    return output


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

    run_dir, output = Path(run_dir), check_model_path(output)
    if not run_dir.is_dir():
        raise RunDirError(
            f"run_dir: '{run_dir}' is not a directory; pass the --run-dir of a search"
        )
    layout = RunDir(run_dir)
    model, best = layout.best_model, layout.read_best_hyperparameters()
    if not model.is_file() or not best:
        raise RunDirError(
            f"run_dir: '{run_dir}' has no {BEST_MODEL} and {BEST_HYPERPARAMETERS} (the search "
            "has not finished, or no trial completed); export after the search finishes"
        )
    sidecar = output.with_suffix(".json")
    write_export(output, lambda tmp: shutil.copyfile(model, tmp), sidecar,
                 {**best, "model": output.name, "run_dir": str(run_dir)})
    return output, sidecar


def write_export(output: Path, write_model: Callable[[Path], Any], sidecar: Path,
                 sidecar_data: Any) -> None:
    """Write an exported model (``write_model(tmp)``) to ``output`` and its JSON sidecar, both
    through temporary files first, so a failure leaves neither half-written.

    Raises:
        WriteError: The file system refused the write (one line naming ``output``).
    """
    try:
        with atomic_path(output) as tmp:
            write_model(tmp)
            write_json_atomic(sidecar, sidecar_data)
    except OSError as exc:
        error = find_write_error(exc)
        if error is None:
            raise
        # (shutil names the source file in its errors: the user's path is the output)
        raise write_error(OSError(error.errno, error.strerror), output,
                          action="export") from None
