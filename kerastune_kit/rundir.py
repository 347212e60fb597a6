"""The run directory as a shared resource: one search at a time, and write errors users can act on.

Owns: :class:`RunDirLock` (an exclusive ``flock`` on ``RUN/.kerastune_kit.lock`` held for the
life of a search, released by the kernel however the process ends, so a lock left by a killed
search is never stale), :func:`find_write_error` (the ``ENOSPC``/``EROFS``/``EACCES``/...
``OSError`` behind an exception, including the ones h5py and TensorFlow wrap in their own
types) and :func:`write_error` (a one-line :class:`~kerastune_kit.errors.WriteError` naming the
path and the fix). Imports no TensorFlow.
Does not own: what is written where (``results``, ``tuning``).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from kerastune_kit.errors import RunDirError, WriteError

#: The lock file inside a run directory (kept when ``--overwrite`` empties the directory).
LOCK_FILE = ".kerastune_kit.lock"

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
        return self.run_dir / LOCK_FILE

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

    path = Path(run_dir) / LOCK_FILE
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
    (under the run's lock) before it writes.

    Returns:
        Whether the directory holds a search (``config.toml`` or ``run.json``).

    Raises:
        RunDirError: The directory is unusable (:func:`check_run_dir_usable`), ``--resume``
            finds no search there, it already holds something and neither ``--overwrite`` nor
            ``--resume`` was given, or ``--overwrite`` would delete what is not a run.
        ConfigError: ``--resume`` with a setting that contradicts the saved search.
    """
    from kerastune_kit.config import check_resume_settings
    from kerastune_kit.results import RUN_MARKER

    run_dir = config.effective_run_dir()
    check_run_dir_usable(run_dir, locked=locked)
    is_run = (run_dir / RUN_MARKER).is_file() or (run_dir / "config.toml").is_file()
    if config.resume:
        if not is_run:
            raise RunDirError(
                f"run_dir: '{run_dir}' holds no search to resume; drop --resume to start one"
            )
        check_resume_settings(config)
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
