"""One process per output directory: a lock file that a second train / evaluate / judge / QA run is refused by.

    with lock_output_dir(run_dir, setting="hydra.run.dir", task="training"):
        ...  # write checkpoints, metrics, predictions

The lock is `<dir>/.medtune.lock`, created with O_EXCL when absent, and held by an exclusive
`fcntl.flock` on its open file for as long as the holder runs. The kernel drops a flock when its
process dies, however it dies, so a lock left by a crashed run is free to take: nothing decides
from the file's text whether the holder is alive, and two processes can never both hold it. The
text (pid, host, start time, command) is there for the refusal message, and to refuse a lock
written on another machine, where this host's flock proves nothing on a network file system.

Under torchrun / DeepSpeed only the main process (rank 0) takes the lock; the other ranks write
nothing of their own into the directory.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from medtune.distributed import is_main_process
from medtune.errors import ConfigError, DirectoryRefused

LOCK_NAME = ".medtune.lock"
OPEN_TRIES = 20  # the file can be released and recreated between open and flock: try again this often


class OutputDirBusy(DirectoryRefused):
    """Another process holds the directory: the refused run leaves nothing in it, not even failure.json."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a directory: written into the lock file, read for the messages."""

    pid: int
    host: str
    started: str  # ISO time, local to the host
    command: str
    task: str

    @classmethod
    def this_process(cls, task: str) -> LockHolder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=datetime.datetime.now().isoformat(timespec="seconds"),
            command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
            task=task,
        )

    def describe(self) -> str:
        command = self.command if len(self.command) <= 120 else self.command[:117] + "..."
        return f"pid {self.pid} on host {self.host} ({self.task}, started {self.started}: {command})"


def read_holder(fd: int) -> LockHolder | None:
    """The holder written in an open lock file; None while it is empty or half written."""
    for _ in range(5):  # the holder truncates, then writes: give it a moment to finish
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", errors="replace")
        try:
            data = json.loads(text)
            return LockHolder(
                int(data["pid"]),
                str(data["host"]),
                str(data["started"]),
                str(data.get("command", "")),
                str(data.get("task", "")),
            )
        except (ValueError, KeyError, TypeError):
            time.sleep(0.02)
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class OutputDirLock:
    """The exclusive lock on one output directory; `acquire` refuses with a ConfigError if it is taken."""

    def __init__(self, directory: Path, setting: str, task: str):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.setting = setting  # the key a user changes to pick another directory, for the fix
        self.task = task
        self.fd: int | None = None
        self.took_over: LockHolder | None = None  # the stale holder replaced, if any

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> OutputDirLock:
        if self.fd is not None:
            return self
        from medtune.storage import storage_guard

        with storage_guard(
            self.directory,
            f"{self.setting}={self.directory}: the lock file {LOCK_NAME}, the first thing a run writes there,",
            kept="Nothing was written there.",
            elsewhere=f"use another directory ({self.setting}=<a writable dir with room>)",
        ):
            return self._acquire()

    def _acquire(self) -> OutputDirLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(OPEN_TRIES):
            fd, created = self._open()
            if fd is None:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise
                holder = read_holder(fd)
                os.close(fd)
                raise OutputDirBusy(self.directory, self._busy(holder)) from None
            if not self._still_at_path(fd):  # the holder released (and removed) it between our open and flock
                os.close(fd)
                continue
            previous = None if created else read_holder(fd)
            if previous is not None and previous.host != socket.gethostname():
                os.close(fd)
                raise OutputDirBusy(self.directory, self._elsewhere(previous))
            try:
                self._write(fd, LockHolder.this_process(self.task))
            except OSError:  # a full disk: leave no empty lock file behind
                if created and self._still_at_path(fd):
                    self.path.unlink(missing_ok=True)
                os.close(fd)
                raise
            self.fd, self.took_over = fd, previous
            if previous is not None:
                print(
                    f"medtune: took over a stale lock on {self.directory}: {previous.describe()} no longer holds "
                    f"it ({'its pid is reused' if pid_alive(previous.pid) else 'that process has ended'}).",
                    file=sys.stderr,
                )
            return self
        raise ConfigError(
            [
                f"{self.setting}={self.directory}: the lock file {self.path} kept changing while medtune tried to "
                f"take it ({OPEN_TRIES} tries), so other processes are starting in this directory; "
                f"give each run its own directory ({self.setting}=<another dir>)."
            ]
        )

    def release(self) -> None:
        """Remove the lock file, then let go of it; a process waiting on the old file sees it gone and retries."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if self._still_at_path(fd):
                self.path.unlink(missing_ok=True)
        except OSError:  # a directory that turned read-only: the file stays, unlocked, for the next run to take
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:  # a lock that was never released goes with its object (or its process)
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass

    # --- helpers ---

    def _open(self) -> tuple[int | None, bool]:
        """(fd, created): O_EXCL tells a fresh lock from one left by an earlier holder."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                return os.open(self.path, os.O_RDWR), False
            except FileNotFoundError:  # released in between: create it next time round
                return None, False

    def _still_at_path(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    @staticmethod
    def _write(fd: int, holder: LockHolder) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(asdict(holder)) + "\n").encode("utf-8"))
        os.fsync(fd)

    def _busy(self, holder: LockHolder | None) -> str:
        who = holder.describe() if holder else f"a process that has not written its details yet ({self.path})"
        if holder is not None and holder.host == socket.gethostname() and not pid_alive(holder.pid):
            who += " - that pid has ended, but a process it started (a data loader worker?) still holds the lock"
        return (
            f"{self.setting}={self.directory} is in use by another medtune process: {who}. Two runs in one "
            f"directory would overwrite each other's files; wait for that one to finish, or use another "
            f"directory ({self.setting}=<another dir>)."
        )

    def _elsewhere(self, holder: LockHolder) -> str:
        return (
            f"{self.setting}={self.directory} is locked by {holder.describe()}, another machine, and this one "
            f"cannot tell whether that process still runs. Wait for it to finish, or use another directory "
            f"({self.setting}=<another dir>); if that run is over (it crashed), delete {self.path}."
        )


class NoLock:
    """What the ranks other than 0 hold: nothing."""

    held = False

    def acquire(self) -> NoLock:
        return self

    def release(self) -> None:
        return None

    def __enter__(self) -> NoLock:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        return None


def lock_output_dir(directory: Path | str, setting: str, task: str) -> OutputDirLock | NoLock:
    """A lock on `directory` for the main process (a no-op on other ranks), to use as a context manager.

    `setting` is the key that picks the directory (`hydra.run.dir`, `eval.output_dir`): the refusal
    tells the user to change it. Raises OutputDirBusy, a ConfigError (exit 2), when another process
    holds the directory.
    """
    if not is_main_process():
        return NoLock()
    return OutputDirLock(Path(directory), setting, task)
