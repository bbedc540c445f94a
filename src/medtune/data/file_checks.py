"""Data files are regular files of a readable size: checked before anything opens them.

A device (`/dev/zero`), a FIFO (named pipe), a socket or a folder given where medtune reads a data
file (a dataset, an exam, documents for QA generation, predictions, judge questions or answers,
token files) is refused at once: `open()` on a FIFO waits for a writer that may never come, and
`/dev/zero` never ends (read whole, it once filled 21 GB of memory until the kernel's OOM killer
ended the run). A regular file larger than the limit is refused too, before it is read into memory
(medtune reads a data file whole). The limit is `DEFAULT_MAX_GB` GB; the environment variable
`MAX_GB_VARIABLE` raises (or lowers) it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from medtune.errors import DataError

DEFAULT_MAX_GB = 4.0
MAX_GB_VARIABLE = "MEDTUNE_MAX_DATA_FILE_GB"
_GB = 1024**3

_SPECIAL_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def max_data_file_bytes() -> int:
    """The size limit of one data file: `DEFAULT_MAX_GB`, or what `MAX_GB_VARIABLE` says."""
    given = os.environ.get(MAX_GB_VARIABLE, "").strip()
    if not given:
        return int(DEFAULT_MAX_GB * _GB)
    try:
        gigabytes = float(given)
    except ValueError:
        gigabytes = -1.0
    if not gigabytes > 0:
        raise DataError(
            f"{MAX_GB_VARIABLE}={given!r} is not a positive number of GB; set it to the largest data file size "
            f"medtune may read, e.g. {MAX_GB_VARIABLE}=16, or unset it for the default {DEFAULT_MAX_GB:g} GB."
        )
    return int(gigabytes * _GB)


def _size(nbytes: int) -> str:
    """A size in words: "21.0 GB", "512 bytes"."""
    if nbytes >= _GB:
        return f"{nbytes / _GB:.1f} GB"
    if nbytes >= 1024**2:
        return f"{nbytes / 1024**2:.1f} MB"
    return f"{nbytes:,} bytes"


def check_data_file(path: Path | str, setting: str | None = None) -> Path:
    """`path` as a Path when it is a regular file within the size limit; else `DataError`.

    The message names the path (as `setting=path` when `setting` names the config key it came
    from), what is wrong with it and the fix. `path` is only `stat`-ed, never opened.
    """
    where = f"{setting}={path}" if setting else str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        fix = f"point {setting} at a data file" if setting else "check the path"
        raise DataError(f"{where}: no such file; {fix}.") from None
    except OSError as error:
        raise DataError(
            f"{where}: cannot be looked at ({error.strerror}); check the path and its permissions."
        ) from None
    kind = next((kind for test, kind in _SPECIAL_KINDS if test(info.st_mode)), None)
    if kind is not None:
        target = f"point {setting} at" if setting else "give"
        raise DataError(
            f"{where} is {kind}, not a regular file: medtune reads data only from regular files and never opens "
            f"a device or a pipe (reading one may wait forever or never end); {target} the data file itself."
        )
    limit = max_data_file_bytes()
    if info.st_size > limit:
        needed = -(-info.st_size // _GB)  # whole GB, rounded up
        raise DataError(
            f"{where} is {_size(info.st_size)}, over the limit of {_size(limit)} for one data file (medtune reads "
            f"a data file whole, into memory); split it into several files in a folder, or set {MAX_GB_VARIABLE}="
            f"{needed} to read it."
        )
    return Path(path)


def data_file_problem(path: Path | str, setting: str | None = None) -> str | None:
    """The message `check_data_file` would raise for a path that exists, else None (a regular file within
    the limit, or a path that does not exist, which the caller words itself): for config checks, which
    report every problem together."""
    if not os.path.lexists(path):
        return None
    try:
        check_data_file(path, setting)
    except DataError as problem:
        return str(problem)
    return None
