"""Command line: ``python -m kerastune_kit`` / ``kerastune-kit``.

Owns: argument parsing, one function per sub-command, printing, exit codes. Does not own logic
the library lacks: every command calls the library.

Exit status: 0 on success; 2 for bad input (usage, configuration, data, run directory, a write the
file system refused) with one line ``error: ...`` and no traceback; 130 when interrupted; 141 when
the reader of stdout went away (``inspect RUN | head``), quietly; 1 for an unexpected failure
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit import __version__
from kerastune_kit._backend import native_stderr_silenced
from kerastune_kit.errors import KerastuneKitError
from kerastune_kit.rundir import RunDir
from kerastune_kit.trial_status import TrialStatus

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_STARTED = time.perf_counter()  # this module loads first: start-up is measured from here
_STARTED_WALL = time.time()  # --max-time counts from here: the command's start
_command_started = _STARTED_WALL  # main(argv) called in-process (tests) counts from its call
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `head`'s writers usually end with
_STDOUT_GONE = False  # set once stdout refused a write: progress lines are dropped from then on


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 without the usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message}; see `{self.prog} --help`\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, received {text!r}") from None
    return value


def _column_list(values: list[str] | None) -> list[str] | None:
    """``--categorical a,b --categorical c`` -> ``["a", "b", "c"]`` (None when not given)."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",")]


def _explosion_factor(text: str | None) -> float | str | None:
    """``--explosion-factor``: a number, or ``off`` (validated by ``SearchConfig``)."""
    if text is None or text.strip().lower() == "off":
        return text and "off"
    try:
        return float(text)
    except ValueError:
        return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = _Parser(prog="kerastune-kit", description=(
        "Tune Keras 3 / TensorFlow networks with KerasTuner oracles, a fast GradientTape loop "
        "and TensorBoard."))
    parser.add_argument("--version", action="version", version=f"kerastune_kit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    search = sub.add_parser("search", help="run a hyperparameter search", description=(
        "Run a hyperparameter search. With no flags: a quick Hyperband search on the bundled "
        "digits dataset, results in runs/digits-hyperband."))
    search.add_argument("--data", help="bundled dataset name or .npz/.csv path (default: digits)")
    search.add_argument("--target", help="target column of a .csv dataset")
    search.add_argument("--categorical", action="append", metavar="COL[,COL]",
                        help=".csv columns to one-hot as categories, whatever the inferred kind "
                        "(e.g. integer codes with gaps); repeatable")
    search.add_argument("--numeric", action="append", metavar="COL[,COL]",
                        help=".csv number columns to standardize as numeric, e.g. small integer "
                        "codes that are counts; repeatable")
    search.add_argument("--text-columns", action="append", metavar="COL[,COL]",
                        help=".csv free-text columns to keep as a bag of words (default: "
                        "dropped with a notice); repeatable")
    search.add_argument("--task", help="binary, multiclass or regression (default: inferred)")
    search.add_argument("--model", help="mlp, cnn, or auto: the CNN for images, the MLP for "
                        "feature vectors (default: auto)")
    search.add_argument("--tuner", help="hyperband, bohb, bayesian, tpe, random or grid "
                        "(default: hyperband; tpe and bohb need pip install "
                        "'kerastune_kit[tpe]')")
    search.add_argument("--max-trials", type=_positive_int, help="upper bound on trials")
    search.add_argument("--max-epochs", type=_positive_int,
                        help="epochs of the longest trial (default: 9)")
    search.add_argument("--factor", type=_positive_int,
                        help="Hyperband's and ASHA's reduction factor (default: 3)")
    search.add_argument("--objective", help="metric to optimize (default: val_accuracy, "
                        "or val_loss for regression)")
    search.add_argument("--run-dir", help="results directory (default: runs/<data>-<tuner>, "
                        "or runs/<data>-<model>-<tuner> with --model mlp|cnn)")
    search.add_argument("--config", help="TOML file with [search] and [space] tables")
    search.add_argument("--seed", type=_positive_int, help="random seed (default: 0)")
    group = search.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", default=None,
                       help="replace an existing run directory")
    group.add_argument("--resume", action="store_true", default=None,
                       help="continue the search saved in the run directory")
    search.add_argument("--pruner", help="none, median, percentile or asha: stop bad trials "
                        "early (random, bayesian, grid; default: none)")
    search.add_argument("--max-time", metavar="DURATION",
                        help="wall-clock budget such as 90s, 30m or 2h: without --max-trials "
                        "the search runs until it is spent")
    search.add_argument("--no-baseline", dest="baselines", action="store_false", default=None,
                        help="skip the popular designs (LeNet, a small VGG; two MLPs) that "
                        "every search trains first")
    search.add_argument("--patience", type=_positive_int, metavar="EPOCHS",
                        help="stop a trial after this many epochs without improvement "
                        "(default: max(3, max_epochs / 5); 0: never)")
    search.add_argument("--min-steps-per-epoch", type=_positive_int, metavar="N",
                        help="pass small data several times per epoch so that an epoch is at "
                        "least N optimizer steps (default: 50; 0: one pass)")
    search.add_argument("--test-split", type=float, metavar="SHARE",
                        help="share held out as a test set the search never sees, when the "
                        "data has none (default: 0.15; 0: none)")
    search.add_argument("--refit", action="store_true", default=None,
                        help="retrain the best configuration on train + validation for its "
                        "best epoch count and export that model")
    search.add_argument("--preflight", action=argparse.BooleanOptionalAction, default=None,
                        help="run (--preflight) or skip (--no-preflight) the sanity checks "
                        "before the first trial: loss at init, overfitting a tiny subset "
                        "(default: only for a search of 20 trial-epochs or more, or with "
                        "--max-time)")
    search.add_argument("--explosion-factor", metavar="X",
                        help="record a trial as diverged when its loss exceeds X times its "
                        "starting loss (default: 3; off: never)")
    search.add_argument("--refine", type=_positive_int, metavar="N",
                        help="N coarse-to-fine stages after the first, each around the top "
                        "trials of the one before (default: 0)")
    search.add_argument("--refine-factor", type=float, metavar="X",
                        help="each refine stage trains X times longer (default: 2)")
    search.add_argument("--max-retries", type=_positive_int,
                        help="retries of a trial that crashed (default: 0)")
    search.add_argument("--trials-per-worker", type=_positive_int, metavar="N",
                        help="replace the worker process every N trials to keep memory flat "
                        "(default: 20; 0 runs everything in one process)")
    search.add_argument("--workers", type=_positive_int, metavar="N",
                        help="run N trials at once in worker processes on this machine")
    search.add_argument("--role", choices=("chief", "worker"),
                        help="distributed search: the chief serves the oracle at --oracle; "
                        "workers on other machines run trials (shared --run-dir)")
    search.add_argument("--oracle", metavar="HOST:PORT",
                        help="the chief's address (KERASTUNER_ORACLE_IP/PORT)")
    search.add_argument("--worker-id", metavar="ID",
                        help="this worker's name (KERASTUNER_TUNER_ID), unique per worker")
    search.add_argument("--worker-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="re-queue the trial of a worker silent this long (default: 600)")
    search.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long a worker waits for its chief (default: 30)")
    search.add_argument("--set", action="append", metavar="KNOB=VALUE", dest="set_flags",
                        help="fix (normalization=batch), restrict (optimizer=adam,sgd) or "
                        "range (learning_rate=1e-4..1e-2) a knob; repeatable")
    search.add_argument("--quiet", action="store_true", help="print only the summary")
    search.add_argument("--debug", action="store_true", help="show tracebacks")
    search.set_defaults(handler=cmd_search)

    datasets = sub.add_parser("datasets", help="list the bundled datasets")
    datasets.set_defaults(handler=cmd_datasets)
    _add_inspect_parsers(sub)
    return parser


def _add_inspect_parsers(sub: Any) -> None:
    inspect = sub.add_parser("inspect", help="show a run's leaderboard, best configuration and "
                             "hyperparameter importance", description=(
                                 "Show the leaderboard, the best configuration and the "
                                 "hyperparameter importance of a run directory; works while "
                                 "its search runs, and on a directory with only tensorboard/ "
                                 "event files."))
    inspect.add_argument("run", metavar="RUN", help="the search's run directory")
    inspect.add_argument("--top", type=_positive_int, default=10,
                         help="rows to show, best first (default: 10; 0: all)")
    inspect.add_argument("--format", choices=("table", "csv", "json"), default="table",
                         help="table (default), csv or json")
    inspect.add_argument("--wide", action="store_true",
                         help="show every column of the table, however wide (default: the "
                         "columns that fit the terminal's width or COLUMNS, 100 into a pipe; "
                         "the most important hyperparameters first)")
    inspect.add_argument("--contour", nargs="*", metavar="KNOB", default=None,
                         help="instead, draw the objective over two knobs (KNOB_A KNOB_B; "
                         "none: the two most important) as a PNG, RUN/contour_<a>_<b>.png")
    inspect.add_argument("--contour-output", metavar="PATH", default=None,
                         help="where --contour writes its PNG")
    inspect.add_argument("--debug", action="store_true", help="show tracebacks")
    inspect.set_defaults(handler=cmd_inspect)

    export = sub.add_parser("export", help="write a run's best model and its hyperparameters",
                            description="Copy RUN/best_model.keras to PATH and write its "
                            "hyperparameters beside it (PATH with .json), atomically.")
    export.add_argument("run", metavar="RUN", help="the search's run directory")
    export.add_argument("--output", required=True, metavar="PATH",
                        help="where to write the model (ending in .keras)")
    export.add_argument("--ensemble", type=_positive_int, metavar="K",
                        help="write instead one model averaging the top K distinct trials' "
                        "predictions (K >= 2), and print its validation and test scores next "
                        "to the best trial's")
    export.add_argument("--debug", action="store_true", help="show tracebacks")
    export.set_defaults(handler=cmd_export)


# ---------------------------------------------------------------------- commands
def cmd_search(args: argparse.Namespace) -> int:
    """``search``: validate, run, print one line per trial and a closing summary."""
    from kerastune_kit.config import (
        build_config,
        load_toml,
        parse_duration,
        parse_set_flags,
        resume_base,
    )
    from kerastune_kit.errors import ConfigError

    if args.role == "worker":
        return _cmd_worker(args)
    if args.oracle and args.role != "chief":
        raise ConfigError("oracle: --oracle needs --role chief or --role worker")
    if args.worker_id:
        raise ConfigError("worker_id: --worker-id goes with --role worker")
    if args.role == "chief" and not args.oracle:
        raise ConfigError("oracle: --role chief needs --oracle HOST:PORT to listen on, "
                          "for example --oracle 0.0.0.0:8000")

    file_values = load_toml(args.config) if args.config else None
    if args.resume:  # every setting of the saved search, unless a flag says otherwise
        file_values = resume_base(file_values, run_dir=args.run_dir, data=args.data,
                                  tuner=args.tuner, model=args.model)
    config = build_config(
        file_values,
        data=args.data, target=args.target, task=args.task, model=args.model,
        tuner=args.tuner, max_trials=args.max_trials, max_epochs=args.max_epochs,
        objective=args.objective, run_dir=args.run_dir, seed=args.seed,
        overwrite=args.overwrite, resume=args.resume,
        overrides=parse_set_flags(args.set_flags), pruner=args.pruner,
        max_time=parse_duration(args.max_time) if args.max_time else None,
        max_retries=args.max_retries, trials_per_worker=args.trials_per_worker,
        factor=args.factor, baselines=args.baselines, patience=args.patience,
        min_steps_per_epoch=args.min_steps_per_epoch,
        categorical_columns=_column_list(args.categorical),
        numeric_columns=_column_list(args.numeric), text_columns=_column_list(args.text_columns),
        test_split=args.test_split, refit=args.refit, preflight=args.preflight,
        explosion_factor=_explosion_factor(args.explosion_factor), refine=args.refine,
        refine_factor=args.refine_factor,
    )
    args.effective_run_dir = config.effective_run_dir()
    _refuse_early(config)  # before TensorFlow's seconds of start-up
    from kerastune_kit.progress import SearchTerminal

    deadline = _command_started + config.max_time if config.max_time else None
    terminal = SearchTerminal(write=_say, started=_command_started, deadline=deadline,
                              live=False if args.quiet else None)
    loud = not args.quiet
    with terminal:  # on a terminal, the live progress display until the summary
        with native_stderr_silenced(enabled=not args.debug):
            from kerastune_kit.tuning import run_search, warm_up_tensorflow

            warm_up_tensorflow()
        startup = time.perf_counter() - _STARTED
        result = run_search(config, on_trial=terminal.trial if loud else None,
                            workers=args.workers or 0, role=args.role, oracle=args.oracle,
                            worker_timeout=args.worker_timeout,
                            on_start=terminal.say if loud else None,
                            on_begin=terminal.begin if loud else None,
                            on_epoch=terminal.epoch if loud else None, deadline=deadline)
    if result.stopped == "time budget" and all(r.status == TrialStatus.RUNNING
                                               for r in result.trials):
        raise ConfigError(
            f"max_time: the budget of {config.max_time:g}s ran out before the first epoch "
            f"of the first trial ended (TensorFlow's start-up took {startup:.1f}s of it); "
            f"continue with a longer one: python -m kerastune_kit search --run-dir "
            f"{shlex.quote(str(config.effective_run_dir()))} --resume --max-time "
            f"{int(max(60, 2 * config.max_time))}s"
        )
    _print_summary(result, workers=args.workers or 0, terminal=terminal,
                   max_epochs=config.max_epochs)
    if result.stopped and result.stopped.startswith("interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_OK if result.best is not None else EXIT_FAILURE


#: What each bundled dataset is, so that input they cannot take is refused before TensorFlow
#: loads (reading one takes scikit-learn's second of start-up): task, features per sample.
_BUNDLED_SHAPES: dict[str, tuple[str, int]] = {
    "digits": ("multiclass", 64), "iris": ("multiclass", 4), "wine": ("multiclass", 13),
    "breast_cancer": ("binary", 30), "diabetes": ("regression", 10),
}
#: The only bundled dataset a CNN takes (its 64 pixels are an 8x8 image).
_BUNDLED_IMAGES = ("digits",)
#: The metrics each task's head reports (``hypermodels.available_objectives``, which imports
#: TensorFlow): train names, and ``val_`` + each.
_TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("loss", "accuracy", "auc"), "multiclass": ("loss", "accuracy"),
    "regression": ("loss", "mae", "mse"),
}


def _refuse_early(config: Any) -> None:
    """Refuse, in well under a second, every bad input that needs no TensorFlow to notice.

    Checked here, with the messages :func:`kerastune_kit.tuning.run_search` would give after
    TensorFlow's start-up (it checks everything again): a dataset that is neither bundled nor
    an existing ``.npz``/``.csv`` file (or a ``.csv`` without ``--target``), ``--model cnn`` on
    a bundled feature-vector dataset, the ``--set``/``[space]`` overrides when the model family
    is known without reading data, an ``--objective`` the task's model does not report when the
    task is known, and the run directory (a file, in use, already holding something without
    ``--overwrite``/``--resume``, nothing to resume, a resume with changed settings).
    Imports no TensorFlow, Keras or scikit-learn.

    Raises:
        KerastuneKitError: One line naming the field, the value and the fix.
    """
    from pathlib import Path

    from kerastune_kit.data import BUNDLED_DATASETS, load_dataset
    from kerastune_kit.errors import ConfigError
    from kerastune_kit.rundir import check_run_dir_for_search
    from kerastune_kit.space import SearchSpace

    if config.tuner in ("tpe", "bohb"):
        import importlib.util

        if importlib.util.find_spec("optuna") is None:
            from kerastune_kit.errors import MISSING_OPTUNA

            raise ConfigError(MISSING_OPTUNA)
    spec = config.data.strip()
    bundled = spec.lower().replace("-", "_")
    suffix = Path(spec).suffix.lower()
    if bundled not in BUNDLED_DATASETS:
        bundled = None
        usable = Path(spec).expanduser().is_file() and (
            suffix == ".npz" or (suffix == ".csv" and config.target))
        if not usable:  # raises at once, reading nothing (a .csv without --target: its header)
            load_dataset(spec, target=config.target, task=config.task,
                         validation_split=config.validation_split, seed=config.seed)
    natural_task, n_features = _BUNDLED_SHAPES.get(bundled or "", (None, None))
    if config.model == "cnn" and bundled is not None and bundled not in _BUNDLED_IMAGES:
        raise ConfigError(f"model: cnn needs image-shaped data, but '{bundled}' has "
                          f"{n_features} features per sample; use --model mlp")
    family = ("cnn" if config.model == "cnn" else "mlp"
              if config.model == "mlp" or bundled is not None or suffix == ".csv" else None)
    if family is not None:  # with --model auto on a .npz, only its arrays tell
        SearchSpace(config.overrides, family=family)
    task = config.task or natural_task
    if bundled is not None and config.task not in (None, natural_task):
        task = None  # the data may refuse that task; it is the one to say so
    if config.objective and task in _TASK_METRICS:
        names = _TASK_METRICS[task]
        choices = [f"val_{n}" for n in names] + list(names)
        if config.objective not in choices:
            raise ConfigError(
                f"objective: {task} models report {', '.join(choices)}; received "
                f"{config.objective!r}; pass one of those to --objective"
            )

    check_run_dir_for_search(config)


def _cmd_worker(args: argparse.Namespace) -> int:
    """``search --role worker``: run trials for a chief until it has none left."""
    from kerastune_kit.errors import ConfigError

    if not args.oracle or not args.worker_id or not args.run_dir:
        raise ConfigError(
            "role: --role worker needs --oracle HOST:PORT, --worker-id ID and the chief's "
            "--run-dir (on a shared file system)"
        )
    with native_stderr_silenced(enabled=not args.debug):
        from kerastune_kit.tuning import run_worker, warm_up_tensorflow

        warm_up_tensorflow()
    records = run_worker(args.run_dir, args.oracle, worker_id=args.worker_id,
                         on_trial=None if args.quiet else _print_trial,
                         connect_timeout=args.connect_timeout)
    print(f"worker {args.worker_id} finished: {len(records)} trials; the chief writes the "
          f"results to {args.run_dir}")
    return EXIT_OK


def cmd_datasets(args: argparse.Namespace) -> int:
    """``datasets``: the bundled datasets, one per line."""
    from kerastune_kit.data import list_datasets

    for name, description in list_datasets():
        print(f"{name:<14} {description}")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect``: leaderboard, best configuration and importances as a table, CSV or JSON."""
    import json

    from kerastune_kit.errors import ConfigError
    from kerastune_kit.runs import load_results

    if args.top < 0:
        raise ConfigError(f"top: expected 0 (all) or a positive count, received {args.top}; "
                          "pass for example --top 10")
    with native_stderr_silenced(enabled=not args.debug):
        results = load_results(args.run)
        if getattr(args, "contour", None) is not None:
            return _print_contour(args, results)
        importance = results.importance()
    shown = results.trials if args.top == 0 else results.trials[: args.top]
    if args.format == "json":
        best = results.best
        print(json.dumps({
            "run_dir": str(results.run_dir), "source": results.source,
            "objective": results.objective, "direction": results.direction,
            "counts": results.counts(), "hp_names": results.hp_names,
            # (epochs numbered from 1, as in leaderboard.csv: TrialRecord.to_public_json)
            "trials": [{**r.to_public_json(), "outcome": r.outcome} for r in shown],
            "best": None if best is None else {**best.to_public_json(),
                                               "outcome": best.outcome},
            "importance": importance.to_json(),
            "test": None if results.test is None else results.test.to_json(),
            "refit": results.refit,
        }, indent=2, default=str))
        return EXIT_OK
    if args.format == "csv":
        _print_csv(shown, results.hp_names)
        return EXIT_OK
    _print_inspection(results, shown, importance, wide=getattr(args, "wide", False))
    return EXIT_OK


def _print_contour(args: argparse.Namespace, results: Any) -> int:
    """``inspect RUN --contour [KNOB_A KNOB_B]``: write the PNG, print its path and a line."""
    import json

    from kerastune_kit.contour import write_contour

    plot = write_contour(results, args.contour, args.contour_output)
    why = {"given": "", "importance": " (the two most important knobs that can be drawn)",
           "order": " (too few trials for importance: the first two knobs that varied)"}
    if args.format == "json":
        contour = plot.contour
        print(json.dumps({"path": str(plot.path), "x": contour.x.name, "y": contour.y.name,
                          "scales": [contour.x.scale, contour.y.scale],
                          "trials": [r.trial_id for r in contour.trials],
                          "chosen_by": plot.chosen_by, "summary": plot.summary()}, indent=2))
        return EXIT_OK
    from kerastune_kit.inspect_view import DEFAULT_WIDTH, terminal_width
    from kerastune_kit.progress import fit_lines

    width = min(DEFAULT_WIDTH, terminal_width())  # 100 columns at most, like inspect's lines
    print(f"wrote {plot.path}")  # (a path to copy: never wrapped)
    for part in fit_lines(f"{plot.summary()}{why[plot.chosen_by]}", width):
        print(part)
    return EXIT_OK


def _print_csv(records: Sequence[Any], hp_names: Sequence[str]) -> None:
    import csv

    from kerastune_kit.results import BASE_COLUMNS

    columns = ["rank", "trial_id", "status", "outcome", *BASE_COLUMNS[2:], *hp_names]
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    from kerastune_kit.report import rank_numbers

    for record, rank in zip(records, rank_numbers(records), strict=True):
        writer.writerow({"rank": "" if rank == "-" else rank, "outcome": record.outcome,
                         **record.row(hp_names)})


def _print_inspection(results: Any, shown: Sequence[Any], importance: Any, *,
                      wide: bool = False) -> None:
    """The table format, fitted to the terminal (:mod:`kerastune_kit.inspect_view`)."""
    from kerastune_kit.inspect_view import print_inspection

    print_inspection(results, shown, importance, wide=wide)


def cmd_export(args: argparse.Namespace) -> int:
    """``export``: the best model (.keras) and its hyperparameters (.json), atomically; with
    ``--ensemble K`` the top K distinct trials averaged, and their scores."""
    if getattr(args, "ensemble", None) is not None:
        from kerastune_kit.ensemble import export_ensemble

        with native_stderr_silenced(enabled=not getattr(args, "debug", False)):
            ensemble, model, sidecar = export_ensemble(args.run, args.ensemble, args.output)
        print(f"wrote {model} and {sidecar}: the mean of {len(ensemble.trial_ids)} trials' "
              f"predictions ({', '.join(ensemble.trial_ids)})")
        for line in ensemble.summary_lines():
            print(line)
        return EXIT_OK
    from kerastune_kit.runs import export_best

    model, sidecar = export_best(args.run, args.output)
    print(f"wrote {model} and {sidecar}")
    return EXIT_OK


def _print_trial(record: Any) -> None:
    """One finished trial in at most 100 columns (``--role worker``'s lines)."""
    from kerastune_kit.progress import trial_line

    _say(trial_line(record))


def _say(line: str) -> None:
    """Print a progress or summary line of a search; a closed stdout (`search | head -1`)
    must not stop the search, so from then on the lines go nowhere."""
    global _STDOUT_GONE
    if _STDOUT_GONE:
        return
    try:
        print(line, flush=True)
    except OSError as exc:  # a closed pipe, a full disk behind `> file`: not the search's fault
        _STDOUT_GONE = True
        _detach_stdout()
        if not isinstance(exc, BrokenPipeError):
            print(f"warning: cannot write to standard output ({exc.strerror or exc}); the "
                  "search goes on without progress lines", file=sys.stderr)


def _print_summary(result: Any, *, workers: int = 0, terminal: Any = None,
                   max_epochs: int | None = None) -> None:
    """The closing lines (:func:`kerastune_kit.progress.summary_lines`), the time counted
    from the command's start: TensorFlow's start-up and the preflight are in it."""
    from kerastune_kit.final import final_lines  # the held-out test score, --refit
    from kerastune_kit.progress import summary_lines
    from kerastune_kit.refine import summary_line  # --refine: each stage's best

    stages = summary_line(result.run_dir, result.trials, objective=result.objective)
    details = [stages] if stages else []
    details += final_lines(getattr(result, "test", None), getattr(result, "refit", None))
    lines = summary_lines(result, elapsed_s=time.time() - _command_started,
                          first_trial_s=getattr(terminal, "first_trial_s", None),
                          max_epochs=max_epochs, workers=workers, details=details)
    for line in lines:  # (already fitted; a command stays whole)
        if terminal is not None:
            terminal.say(line, fit=False)
        else:
            _say(line)


# ---------------------------------------------------------------------- entry point
def _print_warnings() -> None:
    """The library's warnings (a worker died, trials re-queued) as ``warning: …`` on stderr."""
    from kerastune_kit._logging import get_logger

    logger = get_logger()
    logger.setLevel(logging.WARNING)
    if not any(getattr(h, "_kerastune_kit_cli", False) for h in logger.handlers):
        from kerastune_kit.progress import StderrHandler, WrappingFormatter

        handler = StderrHandler(sys.stderr)  # (above the live display; wrapped at 100)
        handler.setFormatter(WrappingFormatter("warning: "))
        handler._kerastune_kit_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def _detach_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush raises nothing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "search": cmd_search,
    "datasets": cmd_datasets,
    "inspect": cmd_inspect,
    "export": cmd_export,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (tests call it in-process)."""
    global _command_started
    # `python -m kerastune_kit` (argv None): from the process's start; a call with arguments
    # (in-process use) from the call.
    _command_started = _STARTED_WALL if argv is None else time.time()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    _print_warnings()
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # The reader went away (`inspect RUN | head -2`): stop quietly, as `head` users expect.
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except KerastuneKitError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        run_dir = getattr(args, "effective_run_dir", None)
        saved = run_dir is not None and RunDir(run_dir).config.is_file()
        print("error: interrupted" + (f"; continue with: python -m kerastune_kit search "
                                      f"--run-dir {run_dir} --resume" if saved else
                                      " before the search started; nothing was saved"),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            traceback.print_exc()
        from kerastune_kit.rundir import find_write_error, write_error

        error = find_write_error(exc)
        if error is not None:  # a write the library did not name: still the user's to fix
            if args.command == "search":
                message = write_error(error, getattr(args, "run_dir", None), action="search")
            elif args.command == "export":
                message = write_error(error, args.output, action="export")
            else:
                message = write_error(OSError(error.errno, error.strerror), "standard output",
                                      action="output")
            print(f"error: {message}", file=sys.stderr)
            return EXIT_USAGE
        message = str(exc).strip().splitlines()
        detail = message[-1] if message else type(exc).__name__
        print(f"error: unexpected {type(exc).__name__}: {detail} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_FAILURE
