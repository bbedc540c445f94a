"""Small file helpers: atomic JSON / text writes, JSON Lines appends, and an exclusive lock file.

Files are created with the permissions the user's umask gives (0644 under the usual umask 022), like
any other file a program writes: `tempfile.mkstemp` alone would leave the renamed file 0600.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

_UMASK_LOCK = threading.Lock()


@functools.cache
def process_umask() -> int:
    """This process's umask, read once: from /proc (Linux), else by setting and restoring it under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new regular file gets under the user's umask (`open()`'s 0o666 & ~umask)."""
    return 0o666 & ~process_umask()


def folder_mode() -> int:
    """The mode a new directory gets under the user's umask (`mkdir`'s 0o777 & ~umask)."""
    return 0o777 & ~process_umask()


def name_the_file(error: OSError, path: Path) -> None:
    """Give `error` `path` as its filename when it has none (a failed write() on an open file names none),
    so that a message about a full or read-only disk can say which file and directory."""
    if error.filename is None:
        error.filename = str(path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), file_mode())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        name_the_file(error, path)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if needed): other processes wait for it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
