"""A job's console, kept: what a job prints to stdout and stderr also goes to `<run dir>/<job>.log`.

    with keep_console(run_dir, "train"):     # train.log, evaluate.log, judge.log, generate_qa.log
        ...                                  # the job

Python-level output is kept: `sys.stdout` / `sys.stderr` (print, rich, tqdm, warnings) and the
`logging` handlers that write to them. Output written straight to the file descriptors (a compiler,
a C library) reaches the console only.

The file holds what a person saw, not every redraw: a line rewritten with carriage returns (a
progress bar) keeps its last non-blank state, terminal escape codes (colours, cursor moves) are
left out, and secrets are masked (medtune.secrets). The file is opened at the first line to keep,
appended to (a continued run adds to its log), and starts with the command that wrote it; a job
that prints nothing leaves no file. When the job raises, its message (or, for a bug, its traceback)
ends the log, if the log was started. Only the main process (rank 0) keeps a log.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, TextIO

ERASE_LINE = re.compile(r"\x1b\[[012]?K")
ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
CLEARED = "\x00"  # where an erase-line code stood


def overlay(parts: list[str]) -> str:
    """What a terminal line shows after `parts` were each written from its first column (a carriage
    return between them): a later part covers as many characters as it has; an erase-line code clears."""
    shown = ""
    for part in parts:
        if CLEARED in part:
            shown, part = "", part.rsplit(CLEARED, 1)[1]
        shown = part + shown[len(part) :]
    return shown


def final_state(line: str) -> str:
    """What a terminal line shows once its carriage-return redraws are done, escape codes removed."""
    line = ESCAPE.sub("", ERASE_LINE.sub(CLEARED, line))
    if "\r" not in line and CLEARED not in line:
        return line
    return overlay(line.split("\r")).rstrip()


class ConsoleLog:
    """The log file of one job: text in as the streams write it, each line's final state out."""

    def __init__(self, path: Path, header: str):
        self.path = path
        self.header = header
        self._file: TextIO | None = None
        self._pending: dict[str, str] = {}  # per stream: the line being written, up to its next newline
        self._broken = False
        self._lock = threading.RLock()

    @property
    def started(self) -> bool:
        return self._file is not None

    def feed(self, text: str, stream: str = "stdout") -> None:
        """`text` as `stream` wrote it; lines of stdout and stderr complete independently (a bar
        redrawn on stderr does not swallow a line printed on stdout meanwhile)."""
        if self._broken or not text:
            return
        with self._lock:
            try:
                self._take(text, stream)
            except Exception:  # noqa: BLE001 - keeping the log must never stop the job
                self._broken = True

    def _take(self, text: str, stream: str) -> None:
        *complete, pending = (self._pending.get(stream, "") + text).split("\n")
        if "\r" in pending:  # a bar redrawn for hours: keep its state so far and the part being drawn
            *drawn, drawing = ESCAPE.sub("", ERASE_LINE.sub(CLEARED, pending)).split("\r")
            pending = overlay(drawn) + "\r" + drawing
        self._pending[stream] = pending
        for line in complete:
            self._keep(line)

    def _keep(self, line: str) -> None:
        shown = final_state(line)
        if shown.strip() or ("\r" not in line and "\x1b" not in line):  # a cleared bar leaves no blank line
            self._write(shown)

    def note(self, text: str) -> None:
        """A text for the log alone (the job's error as it ended), only when the log was started."""
        with self._lock:
            if self._file is not None:
                self.feed(text if text.endswith("\n") else text + "\n")

    def close(self) -> None:
        with self._lock:
            for pending in self._pending.values():
                if final_state(pending).strip():
                    self._keep(pending)
            self._pending = {}
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:  # a full or read-only disk: the job's own message says so
                    pass
                self._file = None
            self._broken = True  # streams still holding a tee (a library's handler) only reach the console

    def _write(self, line: str) -> None:
        from medtune.secrets import mask

        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
                self._file.write(mask(self.header) + "\n")
            self._file.write(mask(line) + "\n")
            self._file.flush()
        except OSError as error:  # a full disk must not stop the job: the console still shows everything
            self._broken = True
            sys.__stderr__.write(
                f"\nmedtune: could not write {self.path} ({error.strerror or error}); the console output from "
                "here on is not kept in it. Free space or fix the permissions of the run dir for the next run.\n"
            )


class Tee:
    """A text stream that writes to `stream` and feeds `log`; everything else is `stream`'s own."""

    def __init__(self, stream: TextIO, log: ConsoleLog, name: str):
        self._stream = stream
        self._log = log
        self._name = name

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self._log.feed(text, self._name)
        return written

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding, buffer...: the console's own
        return getattr(self._stream, name)


def log_path(run_dir: Path, job: str) -> Path:
    return Path(run_dir) / f"{job}.log"


@contextmanager
def keep_console(
    run_dir: Path, job: str, discard_if: Callable[[BaseException], bool] | None = None
) -> Iterator[ConsoleLog | None]:
    """Tee stdout and stderr into `<run_dir>/<job>.log` for the block (on the main process; elsewhere
    nothing happens and None is yielded). When the block raises an error `discard_if` accepts (a
    command turned away), the log goes back to what it was: such a command leaves nothing in the dir."""
    from medtune.distributed import is_main_process

    if not is_main_process():
        yield None
        return
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "(in-process)"
    path = log_path(run_dir, job)
    size_before = path.stat().st_size if path.is_file() else None
    log = ConsoleLog(path, f"--- {datetime.now():%Y-%m-%d %H:%M:%S} {job}: {command}")
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Tee(stdout, log, "stdout"), Tee(stderr, log, "stderr")
    handlers = redirect_logging({id(stdout): sys.stdout, id(stderr): sys.stderr})
    try:
        yield log
    except BaseException as error:
        if discard_if is not None and discard_if(error):
            log.close()
            undo(path, size_before)
        else:
            log.note(ending(error))
        raise
    finally:
        for handler, stream in handlers:
            if handler.stream in (sys.stdout, sys.stderr):
                handler.setStream(stream)
        if isinstance(sys.stdout, Tee) and sys.stdout._log is log:
            sys.stdout = stdout
        if isinstance(sys.stderr, Tee) and sys.stderr._log is log:
            sys.stderr = stderr
        log.close()


def undo(path: Path, size_before: int | None) -> None:
    """Put the log back as it was before the job: gone if the job made it, else cut to its old size."""
    try:
        if size_before is None:
            path.unlink(missing_ok=True)
        elif path.is_file() and path.stat().st_size > size_before:
            with open(path, "r+b") as file:
                file.truncate(size_before)
    except OSError:
        pass  # the refusal's own message matters more


def redirect_logging(tees: dict[int, Tee]) -> list[tuple[logging.StreamHandler, TextIO]]:
    """Point every logging handler that writes to the console (Hydra's, a library's own) at its tee;
    returns (handler, its stream before) to restore."""
    loggers = [logging.getLogger(), *(obj for obj in logging.Logger.manager.loggerDict.values())]
    changed = []
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in tees:
                changed.append((handler, handler.stream))
                handler.setStream(tees[id(handler.stream)])
    return changed


def ending(error: BaseException) -> str:
    """How the job ended, for its log: a medtune message as the console shows it, else the traceback."""
    from medtune.errors import MedtuneError, Preempted

    if isinstance(error, (MedtuneError, Preempted)):
        return f"\nmedtune: {error}\n"
    if isinstance(error, KeyboardInterrupt):
        return "\nmedtune: stopped by Ctrl-C\n"
    if isinstance(error, SystemExit):
        return f"\n(exit {error.code})\n"
    return "\n" + "".join(traceback.format_exception(error))
