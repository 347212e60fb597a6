"""The run directory: where every file of a search lives, how it is written, who holds it.

Owns: the layout (:class:`RunDir`, a property per file and folder, and the file names as
constants), atomic writes (temp file + rename, so a reader never sees a half-written file),
reading back what a run saved about itself (``run.json``, the ``[fingerprint]`` of
``config.toml``), the lock (:class:`RunDirLock`, an exclusive ``flock`` on
``RUN/.kerastune_kit.lock`` held for the life of a search, released by the kernel however the
process ends, so a lock left by a killed search is never stale), the checks that refuse a run
directory a search may not use, :func:`find_write_error` (the ``ENOSPC``/``EROFS``/``EACCES``/...
``OSError`` behind an exception, including the ones h5py and TensorFlow wrap in their own types)
and :func:`write_error` (a one-line :class:`~kerastune_kit.errors.WriteError` naming the path and
the fix). Pure: imports nothing of kerastune_kit but ``errors``, and no TensorFlow.
Does not own: what the files hold (``config``, ``results``, ``tuning``).

Example:
    >>> run = RunDir("runs/iris-random")
    >>> run.leaderboard
    PosixPath('runs/iris-random/leaderboard.csv')
    >>> written = run.write_json(run.marker, {"objective": "val_accuracy"})
    >>> run.read_marker()["objective"]
    'val_accuracy'
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kerastune_kit.errors import RunDirError, WriteError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# ---------------------------------------------------------------------- the layout
#: The effective configuration (what ``--resume`` checks against), with its ``[fingerprint]``.
CONFIG_FILE = "config.toml"
#: The run's marker: version, dataset, objective and direction.
RUN_MARKER = "run.json"
#: KerasTuner's project directory (oracle state, ``trial_*/``).
TUNER_DIR = "tuner"
#: The TensorBoard log directory (give it to ``tensorboard --logdir``).
TENSORBOARD_DIR = "tensorboard"
#: The TensorBoard run of the search-level panels (leaderboard, best configuration,
#: importance, contour, preflight, test evaluation): ``RUN/tensorboard/search``.
SEARCH_RUN = "search"
#: TensorBoard opened on the ``search`` run: its SCALARS, TEXT and IMAGES tabs select by
#: default every run the run filter (``regexInput`` in the URL) matches when they are 40 or
#: fewer (``tf-multi-checkbox``'s ``maxNamesToEnableByDefault``), and ``tagFilter`` keeps the
#: TEXT tab to one tag, so this URL opens on the leaderboard however many trials there are.
SEARCH_RUN_URL = f"http://localhost:6006/#text&regexInput={SEARCH_RUN}&tagFilter=leaderboard"
LEADERBOARD = "leaderboard.csv"
BEST_HYPERPARAMETERS = "best_hyperparameters.json"
BEST_MODEL = "best_model.keras"
#: A trial's record, inside its KerasTuner trial directory (``tuner/trial_<id>/``).
RECORD_FILE = "kerastune_kit_trial.json"
#: KerasTuner names a trial's directory ``trial_<trial_id>``.
TRIAL_DIR_PREFIX = "trial_"
#: The lock file inside a run directory (kept when ``--overwrite`` empties the directory).
LOCK_FILE = ".kerastune_kit.lock"
#: Coarse-to-fine stages 2, 3, ... of a ``--refine`` search: ``RUN/stages/<k>/``, each a run
#: directory of its own (see :mod:`kerastune_kit.refine`).
STAGES_DIR = "stages"
#: A stage's trials in the whole run: ``stage-<k>/<trial_id>``, also its TensorBoard folder
#: (``RUN/tensorboard/stage-<k>/``).
STAGE_PREFIX = "stage-"


class RunDir:
    """One run directory: a property per file and folder of the layout, atomic writers, readers.

    Only paths are computed here; nothing is created until something is written. A ``RunDir``
    is accepted wherever a path is (``os.fspath``, ``open``, ``Path(run)``) and ``run / name``
    is ``run.path / name``.

    Args:
        path: The run directory (``--run-dir``).

    Example:
        >>> run = RunDir("runs/digits-hyperband")
        >>> run.tensorboard_dir, run.trial_record("0003")
        (PosixPath('runs/digits-hyperband/tensorboard'),
         PosixPath('runs/digits-hyperband/tuner/trial_0003/kerastune_kit_trial.json'))
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __truediv__(self, name: str | os.PathLike[str]) -> Path:
        return self.path / name

    # -------------------------------------------------------------- files and folders
    @property
    def config(self) -> Path:
        """``RUN/config.toml``: the effective configuration."""
        return self.path / CONFIG_FILE

    @property
    def marker(self) -> Path:
        """``RUN/run.json``: version, dataset, objective and direction of the run."""
        return self.path / RUN_MARKER

    @property
    def tuner_dir(self) -> Path:
        """``RUN/tuner``: KerasTuner's project directory."""
        return self.path / TUNER_DIR

    @property
    def tensorboard_dir(self) -> Path:
        """``RUN/tensorboard``: the log directory of the whole search."""
        return self.path / TENSORBOARD_DIR

    @property
    def search_logdir(self) -> Path:
        """``RUN/tensorboard/search``: the TensorBoard run of the search-level panels."""
        return self.tensorboard_dir / SEARCH_RUN

    @property
    def leaderboard(self) -> Path:
        """``RUN/leaderboard.csv``."""
        return self.path / LEADERBOARD

    @property
    def best_hyperparameters(self) -> Path:
        """``RUN/best_hyperparameters.json``."""
        return self.path / BEST_HYPERPARAMETERS

    @property
    def best_model(self) -> Path:
        """``RUN/best_model.keras``."""
        return self.path / BEST_MODEL

    @property
    def lock(self) -> Path:
        """``RUN/.kerastune_kit.lock`` (see :class:`RunDirLock`)."""
        return self.path / LOCK_FILE

    @property
    def logdir(self) -> Path:
        """Where the event files are: ``RUN/tensorboard`` when it exists, else the directory
        itself (a bare TensorBoard log directory given as a run)."""
        return self.tensorboard_dir if self.tensorboard_dir.is_dir() else self.path

    def trial_dir(self, trial_id: str) -> Path:
        """``RUN/tuner/trial_<id>``: KerasTuner's directory of one trial (for a refine
        stage's trial ``stage-<k>/<id>``, ``RUN/stages/<k>/tuner/trial_<id>``)."""
        stage, local = split_stage_trial_id(trial_id)
        if stage is not None:
            return RunDir(self.stage_dir(stage)).trial_dir(local)
        return self.tuner_dir / f"{TRIAL_DIR_PREFIX}{trial_id}"

    def stage_dir(self, stage: int) -> Path:
        """``RUN/stages/<k>``: the run directory of coarse-to-fine stage ``k`` (2 or more)."""
        return self.path / STAGES_DIR / str(int(stage))

    def stage_logdir(self, stage: int) -> Path:
        """``RUN/tensorboard/stage-<k>``: where stage ``k``'s event files are (its run
        directory's ``tensorboard`` is a link to it)."""
        return self.tensorboard_dir / f"{STAGE_PREFIX}{int(stage)}"

    def stage_dirs(self) -> list[tuple[int, Path]]:
        """``(k, RUN/stages/<k>)`` of every refine stage started here, in order."""
        root = self.path / STAGES_DIR
        if not root.is_dir():
            return []
        return sorted((int(p.name), p) for p in root.iterdir()
                      if p.name.isdigit() and p.is_dir())

    def stage(self) -> int | None:
        """The stage this directory is, when it is ``RUN/stages/<k>`` of a ``--refine``
        search (``run.json`` says so); None otherwise."""
        if self.path.parent.name != STAGES_DIR or not self.path.name.isdigit():
            return None
        stage = self.read_marker().get("stage")
        return stage if isinstance(stage, int) and not isinstance(stage, bool) else None

    def session_name(self, trial_id: str) -> str:
        """A trial's name in the whole run's TensorBoard (its HParams session group):
        ``trial_id``, or ``stage-<k>/<trial_id>`` in a refine stage's directory."""
        stage = self.stage()
        return str(trial_id) if stage is None else stage_trial_id(stage, trial_id)

    def trial_record(self, trial_id: str) -> Path:
        """``RUN/tuner/trial_<id>/kerastune_kit_trial.json``: one trial's record."""
        return record_path(self.trial_dir(trial_id))

    def trial_logdir(self, trial_id: str) -> Path:
        """``RUN/tensorboard/<id>``: one trial's HParams session and scalars."""
        return self.tensorboard_dir / str(trial_id)

    def trial_records(self) -> list[Path]:
        """Every trial record file under ``RUN/tuner``, in trial-directory order."""
        return record_paths(self.tuner_dir)

    # -------------------------------------------------------------- what is there
    def is_run(self) -> bool:
        """Whether a search was started here (``config.toml`` or ``run.json`` exists)."""
        return self.marker.is_file() or self.config.is_file()

    def is_occupied(self) -> bool:
        """Whether the directory holds anything besides a lock file."""
        return is_occupied(self.path)

    # -------------------------------------------------------------- writing
    def write_text(self, path: str | os.PathLike[str], text: str) -> Path:
        """Write ``text`` atomically to ``path`` (a path of this layout, or a name inside the
        run directory); returns the path written."""
        target = self._inside(path)
        write_text_atomic(target, text)
        return target

    def write_json(self, path: str | os.PathLike[str], data: Any) -> Path:
        """Write ``data`` as indented JSON atomically (see :meth:`write_text`)."""
        target = self._inside(path)
        write_json_atomic(target, data)
        return target

    def _inside(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        parts = self.path.parts
        if path.is_absolute() or (parts and path.parts[:len(parts)] == parts):
            return path
        return self.path / path

    # -------------------------------------------------------------- reading back
    def read_marker(self) -> dict[str, Any]:
        """``run.json`` as a dict (empty when missing or unreadable)."""
        return read_json_object(self.marker)

    def read_best_hyperparameters(self) -> dict[str, Any]:
        """``best_hyperparameters.json`` as a dict (empty when missing or unreadable)."""
        return read_json_object(self.best_hyperparameters)

    def read_config_document(self) -> dict[str, Any]:
        """``config.toml`` as the TOML document it is (empty when missing or unreadable); the
        validated configuration is :func:`kerastune_kit.config.load_saved_config`."""
        try:
            return tomllib.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            return {}

    def read_fingerprint(self) -> dict[str, str]:
        """The ``[fingerprint]`` table of ``config.toml`` (hashes of the data and the search
        space; empty when absent)."""
        table = self.read_config_document().get("fingerprint", {})
        return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}

    def saved_objective(self) -> str | None:
        """The objective named by ``run.json`` or ``best_hyperparameters.json`` (None if
        neither)."""
        for read in (self.read_marker, self.read_best_hyperparameters):
            objective = read().get("objective")
            if isinstance(objective, str):
                return objective
        return None

    def saved_direction(self) -> str | None:
        """``max`` or ``min`` as ``run.json`` records it (None when it does not)."""
        direction = self.read_marker().get("direction")
        return direction if direction in ("max", "min") else None


def stage_trial_id(stage: int, trial_id: str) -> str:
    """``stage-<k>/<trial_id>``: a refine stage's trial, named in the whole run (stage 1's
    trials keep their ids)."""
    return str(trial_id) if int(stage) <= 1 else f"{STAGE_PREFIX}{int(stage)}/{trial_id}"


def split_stage_trial_id(trial_id: str) -> tuple[int | None, str]:
    """``("stage-2/03")`` -> ``(2, "03")``; an ordinary id -> ``(None, id)``."""
    head, sep, local = str(trial_id).partition("/")
    number = head.removeprefix(STAGE_PREFIX)
    if sep and head.startswith(STAGE_PREFIX) and number.isdigit() and local:
        return int(number), local
    return None, str(trial_id)


def record_path(trial_dir: str | os.PathLike[str]) -> Path:
    """The record file inside a KerasTuner trial directory (``Tuner.get_trial_dir(id)``)."""
    return Path(trial_dir) / RECORD_FILE


def record_paths(tuner_dir: str | os.PathLike[str]) -> list[Path]:
    """Every trial record file under KerasTuner's project directory, sorted."""
    return sorted(Path(tuner_dir).glob(f"{TRIAL_DIR_PREFIX}*/{RECORD_FILE}"))


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file holding an object, as a dict; empty when missing, unreadable or not an
    object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
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


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# ---------------------------------------------------------------------- write errors
#: errno values that mean "this file system will not take the write" (the user must act).
WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent is a file, not a directory",
}

# How libraries that hide the OSError (h5py, TensorFlow's C++ writers) spell the same causes.
_MESSAGES = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "file too large": errno.EFBIG,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
    "not a directory": errno.ENOTDIR,
}
_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")
_NAME_IN_TEXT = re.compile(
    r"(?:file)?name = '([^']+)'"  # h5py
    r"|(/[^\s;'\"]+); (?:No space left|Read-only file system|Permission denied|Disk quota)"
)  # TensorFlow: "/run/tensorboard/0/train/events.out...; No space left on device"


def find_write_error(exc: BaseException | None) -> OSError | None:
    """The write error behind ``exc``, or None.

    Walks ``exc``, its ``__cause__`` and ``__context__`` chain. An ``OSError`` whose ``errno`` is
    one of :data:`WRITE_ERRNOS` is returned as it is; an error that only names the cause in its
    text (h5py's ``Unable to synchronously create file (... errno = 28 ...)``, TensorFlow's
    ``ResourceExhaustedError``) is returned as a new ``OSError`` with that errno and the file
    name found in the text.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WriteError):
            return exc.os_error
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return exc
        text = str(exc)
        code = errno_in_text(text)
        if code is not None:
            name = _NAME_IN_TEXT.search(text)
            return OSError(code, os.strerror(code),
                           (name.group(1) or name.group(2)) if name else None)
        exc = exc.__cause__ or exc.__context__
    return None


def errno_in_text(text: str) -> int | None:
    """The write errno (:data:`WRITE_ERRNOS`) a message names, such as a trial's stored
    traceback (``errno = 28``, ``No space left on device``), or None."""
    match = _ERRNO_IN_TEXT.search(text)
    if match and int(match.group(1)) in WRITE_ERRNOS:
        return int(match.group(1))
    lowered = text.lower()
    for phrase, code in _MESSAGES.items():
        if phrase in lowered:
            return code
    return None


def write_error(error: OSError, path: str | Path | None, *, action: str) -> WriteError:
    """A one-line :class:`WriteError`: the cause, the path, what to do.

    Args:
        error: The ``OSError`` (see :func:`find_write_error`).
        path: The path the user gave (the run directory, ``--output``), used when the error
            names no file or names a temporary one.
        action: ``search`` (the search stopped: free space / make it writable, then
            ``--resume``), ``start`` (nothing was written: pick another ``--run-dir``),
            ``export`` (run ``export`` again) or ``output`` (the command's standard output).

    Returns:
        The error to raise; the CLI prints it as ``error: …`` and exits with status 2.
    """
    code = error.errno if error.errno in WRITE_ERRNOS else errno.EIO
    named = str(error.filename) if error.filename else None
    if named and Path(named).name.startswith("."):
        named = None  # a temporary file: the user never named it
    if path is None:
        target = f"'{named or '?'}'"
    elif named and named != str(path):
        target = f"'{named}' (in '{path}')"
    else:
        target = f"'{path}'"
    cause = WRITE_ERRNOS.get(code, "input/output error")
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = {"search": "free space and continue with --resume",
               "start": "free space or pass another --run-dir",
               "export": "free space and export again",
               "output": "free space or send the output elsewhere"}[action]
    elif code == errno.ENOTDIR:
        fix = "pass a path whose parents are directories"
    else:
        fix = {"search": "make it writable and continue with --resume",
               "start": "pass a --run-dir you can write to",
               "export": "pass an --output you can write to",
               "output": "send the output somewhere writable"}[action]
    return WriteError(f"{cause} while writing {target}; {fix}", error)


class RunDirLock:
    """An exclusive lock on a run directory, held while a search runs in it.

    ``flock(2)`` on ``RUN/.kerastune_kit.lock``: the kernel releases it when the holder exits
    for any reason (SIGKILL included), so a lock is held exactly while its search lives. The file
    records the holder's pid and host for the refusal message; ``inspect``, ``load_results`` and
    ``export`` never take it, so they read a run while its search writes.

    Args:
        run_dir: The run directory (created if missing).
        action: How a write error is explained (:func:`write_error`): ``start`` for a new
            search, ``search`` for a resumed one.

    Raises:
        RunDirError: Another live search holds the directory (one line naming its pid).
        WriteError: The directory or the lock file cannot be created.

    Example:
        >>> with RunDirLock("runs/iris-random"):
        ...     ...  # the search
    """

    def __init__(self, run_dir: str | Path, *, action: str = "start") -> None:
        self.run_dir = Path(run_dir)
        self.action = action  # for write errors: "start", or "search" when resuming
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return RunDir(self.run_dir).lock

    def acquire(self) -> RunDirLock:
        import fcntl

        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            error = find_write_error(exc) or exc
            if isinstance(error, FileExistsError) or isinstance(exc, FileExistsError):
                raise RunDirError(
                    f"run_dir: '{self.run_dir}' is a file; pass a directory to --run-dir"
                ) from None
            raise write_error(error, self.run_dir, action=self.action) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise in_use(self.run_dir, holder) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        except OSError:
            pass  # a full disk: the lock still holds, the message just names no pid
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def in_use(run_dir: str | Path, holder: str) -> RunDirError:
    """The one-line refusal of a run directory another live search holds."""
    return RunDirError(
        f"run_dir: '{run_dir}' is in use by another search ({holder}); wait for it to end or "
        "stop it, or pass another --run-dir"
    )


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def holder_of(run_dir: str | Path) -> str | None:
    """Who holds ``run_dir``'s lock (``pid N on HOST since …``), None when nobody does.

    Never creates anything: a directory without a lock file is free.
    """
    import fcntl

    path = RunDir(run_dir).lock
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_holder(fd)
    finally:
        os.close(fd)
    return None


def check_run_dir_usable(run_dir: str | Path, *, locked: bool = False) -> None:
    """Refuse a run directory no search can use, before anything is loaded or written.

    Args:
        run_dir: The run directory.
        locked: This process holds its lock already (skip the holder check).

    Raises:
        RunDirError: ``run_dir`` or one of its parents is a file, or another live search holds
            it (the message names the holder's pid).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run_dir: '{run_dir}' is a file; pass a directory to --run-dir")
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(
                    f"run_dir: '{parent}' is a file, so '{run_dir}' cannot be created; pass a "
                    "--run-dir whose parents are directories"
                )
            break
    holder = None if locked else holder_of(run_dir)
    if holder is not None:
        raise in_use(run_dir, holder)


def empty_run_dir(run_dir: str | Path) -> None:
    """Delete everything inside ``run_dir`` except its lock file (``--overwrite``)."""
    for child in Path(run_dir).iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def is_occupied(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds anything besides a lock file."""
    path = Path(run_dir)
    return path.is_dir() and any(child.name != LOCK_FILE for child in path.iterdir())


def check_run_dir_for_search(config: Any, *, locked: bool = False) -> bool:
    """Refuse a run directory a search (``config``, a ``SearchConfig``) may not use.

    Needs no TensorFlow: the CLI calls it before TensorFlow loads, and ``run_search`` again
    (under the run's lock) before it writes. The saved settings are compared by the
    configuration itself (:meth:`~kerastune_kit.config.SearchConfig.check_against_saved`), so
    that this module stays below ``config``.

    Returns:
        Whether the directory holds a search (``config.toml`` or ``run.json``).

    Raises:
        RunDirError: The directory is unusable (:func:`check_run_dir_usable`), ``--resume``
            finds no search there, it already holds something and neither ``--overwrite`` nor
            ``--resume`` was given, or ``--overwrite`` would delete what is not a run.
        ConfigError: ``--resume`` with a setting that contradicts the saved search.
    """
    run_dir = config.effective_run_dir()
    check_run_dir_usable(run_dir, locked=locked)
    is_run = RunDir(run_dir).is_run()
    if config.resume:
        if not is_run:
            raise RunDirError(
                f"run_dir: '{run_dir}' holds no search to resume; drop --resume to start one"
            )
        config.check_against_saved()
    elif is_occupied(run_dir):
        if not config.overwrite:
            raise RunDirError(
                f"run_dir: '{run_dir}' already exists; pass --overwrite to replace it, --resume "
                "to continue it, or another --run-dir"
            )
        if not is_run:
            raise RunDirError(
                f"run_dir: '{run_dir}' is not a kerastune_kit run directory; refusing to delete "
                "it with --overwrite; pass another --run-dir"
            )
    return is_run


@contextlib.contextmanager
def write_errors(path: str | Path, *, action: str) -> Iterator[None]:
    """Turn a failed write (no space, read-only, no permission) inside the block into a
    one-line :class:`~kerastune_kit.errors.WriteError` (:func:`write_error`); other errors
    pass unchanged."""
    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        error = find_write_error(exc)
        if error is None:
            raise
        raise write_error(error, path, action=action) from exc
