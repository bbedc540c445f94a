"""A full disk or a directory medtune may not write to, said as a message instead of a traceback.

    with storage_guard(out, "the evaluation's predictions and metrics", kept=..., elsewhere="eval.output_dir=<dir>"):
        ...  # every write into `out`

An OSError of a write inside the directory (ENOSPC / EDQUOT: the disk is full; EROFS: a read-only file
system; EACCES / EPERM: no permission), or a library error whose text says the disk is full, becomes a
`StorageError` naming the directory, the problem, what was kept and the fix (make room or make it
writable, or write elsewhere, then run the same command again). Any other error passes unchanged.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from medtune.errors import MedtuneError


def human_bytes(count: float) -> str:
    """A byte count as people read it: 512 bytes, 1.5 KiB, 3.2 GiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
READ_ONLY = {errno.EROFS}
NO_PERMISSION = {errno.EACCES, errno.EPERM}
NO_SPACE_TEXT = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")
READ_ONLY_TEXT = ("read-only file system", "os error 30")

FULL = "the disk is full"
READ_ONLY_FS = "it is on a read-only file system"
DENIED = "this user may not write there (permission denied)"


class StorageError(MedtuneError):
    """A directory medtune writes to is full, read-only or not writable; what was written before is kept."""


def errors_in_chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def is_inside(filename: str | os.PathLike, directory: Path) -> bool:
    try:
        Path(os.path.abspath(filename)).relative_to(os.path.abspath(directory))
        return True
    except ValueError:
        return False


def storage_problem(error: BaseException, directory: Path) -> str | None:
    """What keeps medtune from writing into `directory` according to `error`, or None when `error` is
    something else (a missing input file, a bug). An OSError must name a file inside `directory` (or a
    folder above it), or no file at all (a failed write() on an open file); a permission error must name one."""
    for item in errors_in_chain(error):
        if isinstance(item, OSError) and item.errno is not None:
            named = item.filename
            if named is not None and not (is_inside(named, directory) or is_inside(directory, named)):
                continue  # a file elsewhere (a folder above `directory` counts: it was being created)
            if item.errno in NO_SPACE:
                return FULL
            if item.errno in READ_ONLY:
                return READ_ONLY_FS
            if item.errno in NO_PERMISSION and named is not None:
                return DENIED
            continue
        text = str(item).lower()
        if any(t in text for t in NO_SPACE_TEXT):
            return FULL
        if any(t in text for t in READ_ONLY_TEXT):
            return READ_ONLY_FS
    return None


def free_space(directory: Path) -> str:
    """'<n> free there now', from the nearest existing folder; '' when even that cannot be read."""
    folder = Path(directory)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f"{human_bytes(shutil.disk_usage(folder).free)} free there now"
    except OSError:
        return ""


def remedy(problem: str, directory: Path) -> str:
    if problem == FULL:
        room = free_space(directory)
        return f"free space on that disk{f' ({room})' if room else ''}"
    if problem == READ_ONLY_FS:
        return f"remount the file system of {directory} read-write"
    return f"give this user write permission on {directory} (e.g. chmod u+w {directory})"


def storage_message(
    directory: Path, what: str, problem: str, error: BaseException, kept: str, elsewhere: str, again: str
) -> str:
    cause = next((item for item in errors_in_chain(error) if isinstance(item, OSError)), error)
    first = (str(cause).strip().splitlines() or [""])[0][:200]
    return (
        f"{what} could not be written in {directory}: {problem} ({type(cause).__name__}: {first}). {kept} "
        f"Fix: {remedy(problem, directory)}, or {elsewhere}; then {again}."
    )


@contextmanager
def storage_guard(
    directory: Path | str,
    what: str,
    *,
    kept: str | Callable[[], str] = "What was written there before is unchanged.",
    elsewhere: str,
    again: str = "run the same command again",
) -> Iterator[None]:
    """Turn a full, read-only or forbidden `directory` met inside the block into a StorageError.

    `what` names what was being written, `kept` says (or computes, at the moment of the error) what
    is still there, `elsewhere` how to write somewhere else (`eval.output_dir=<a dir on another disk>`)."""
    directory = Path(directory)
    try:
        yield
    except StorageError:
        raise
    except Exception as error:  # noqa: BLE001 - anything not about this directory is raised unchanged
        problem = storage_problem(error, directory)
        if problem is None:
            raise
        said = kept() if callable(kept) else kept
        raise StorageError(storage_message(directory, what, problem, error, said, elsewhere, again)) from error
