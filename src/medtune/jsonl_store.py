"""Append-only JSON Lines files that an interrupted run continues where it stopped.

Evaluation (predictions.partial.jsonl), judging (judgments.partial.jsonl), judge answers
(answers_<system>.partial.jsonl) and QA generation (qa_pairs.jsonl, qa_progress.jsonl) all append one
line per finished piece of work, so a killed run loses only the work in flight. They share one policy,
kept here:

- A row counts once its newline is written. Only the file's last line may be cut short by a kill
  (no newline after it, or text that does not parse): it is dropped and reported, and `JsonlStore.open`
  truncates it away so the next append starts a clean line.
- Any other line that is not a JSON object is damage a kill cannot cause: `JsonlLineError` names
  file:line and the fix, instead of silently losing rows.
- The settings that decided the rows are recorded (in a sidecar JSON file, or as a fingerprint on
  every row); a resume with other settings is refused, saying what changed and how to start fresh.
- The complete file is written atomically (`JsonlStore.finish`), and the appended file removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.errors import ConfigError, DataError
from medtune.io import name_the_file, write_json_atomic, write_text_atomic
from medtune.nested import changes

DEFAULT_FIX = "delete that line (what it held is made again on the next run), or delete the file to start over."
MAX_CHANGES_SHOWN = 6
MAX_CHANGE_CHARS = 400  # two long paths, old and new, still whole


class JsonlLineError(DataError):
    """A line before the last of a resumable JSON Lines file that is not a JSON object."""


class SettingsChangedError(ConfigError):
    """Rows made with other settings than this run's: continuing would mix two settings in one file."""


@dataclass(frozen=True)
class TornLine:
    """The last line of a file, cut short by an interrupted write: not a row."""

    path: Path
    line: int  # 1-based
    offset: int  # bytes before it: the file's length once it is truncated away
    size: int  # its bytes

    def describe(self, action: str) -> str:
        return (
            f"{self.path}:{self.line}: the last line ({self.size} bytes) was cut short by an interrupted "
            f"write; {action}."
        )


@dataclass(frozen=True)
class JsonlContents:
    rows: list[dict[str, Any]]
    torn: TornLine | None  # the dropped last line, if any


def read_jsonl(path: Path, fix: str = DEFAULT_FIX) -> JsonlContents:
    """The JSON objects of `path` (none when it does not exist); blank lines are skipped.

    The last line is dropped (and returned as `torn`) when no newline follows it or it does not parse;
    any other line that is not UTF-8 JSON, or is JSON but not an object, raises `JsonlLineError`
    naming file:line, with `fix` as the remedy."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JsonlContents([], None)
    pieces = data.split(b"\n")  # the last piece follows the last newline: empty when the file ends with one
    lines: list[tuple[int, int, bytes]] = []  # (line number, offset, bytes) of every non-blank line
    offset = 0
    for number, piece in enumerate(pieces, start=1):
        if piece.strip():
            lines.append((number, offset, piece))
        offset += len(piece) + 1
    rows: list[dict[str, Any]] = []
    for index, (number, start, piece) in enumerate(lines):
        last = index == len(lines) - 1
        torn = TornLine(path, number, start, len(piece))
        if last and number == len(pieces):  # no newline after it: the write did not finish
            return JsonlContents(rows, torn)
        try:
            row = json.loads(piece.decode("utf-8"))
        except UnicodeDecodeError:
            if last:
                return JsonlContents(rows, torn)
            raise JsonlLineError(
                f"{path}:{number}: not UTF-8 text. Only the last line of a file that a run "
                f"appends to can be cut short by a kill, so this line was damaged some other "
                f"way; {fix}"
            ) from None
        except json.JSONDecodeError as error:
            if last:
                return JsonlContents(rows, torn)
            raise JsonlLineError(
                f"{path}:{number}: not valid JSON ({error.msg}, column {error.colno}). Only the "
                f"last line of a file that a run appends to can be cut short by a kill, so this "
                f"line was damaged some other way; {fix}"
            ) from None
        if not isinstance(row, dict):
            raise JsonlLineError(
                f"{path}:{number}: a JSON {type(row).__name__}, not an object: every line "
                f"holds one row as a JSON object; {fix}"
            )
        rows.append(row)
    return JsonlContents(rows, None)


def jsonl_text(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)


def write_jsonl_atomic(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """The whole file at once (temporary file + rename): readers see the old file or the new one."""
    write_text_atomic(Path(path), jsonl_text(rows))


def normalized(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` as they read back from JSON (tuples as lists, other objects as text), so the ones
    recorded and the ones of this run compare equal when they are the same."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the settings' sorted JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SettingsFile:
    """The settings a store's rows were made with, in a JSON sidecar: `{field: settings, "fingerprint": ...}`."""

    path: Path
    field: str = "settings"

    def read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(
                f"{self.path}: not readable JSON ({error}); it is written whole, so something else "
                "damaged it: delete it together with the rows beside it to start over."
            ) from None
        return record if isinstance(record, dict) else None

    def write(self, settings: Mapping[str, Any]) -> None:
        write_json_atomic(self.path, {self.field: normalized(settings), "fingerprint": settings_fingerprint(settings)})


@dataclass(frozen=True)
class RowStamp:
    """Every row carries its settings' fingerprint under `field` (the rows describe themselves)."""

    field: str = "key"


def report_to_stderr(message: str) -> None:
    print(f"medtune: {message}", file=sys.stderr, flush=True)


class JsonlStore:
    """One append-only JSON Lines file of a run that can be interrupted and run again.

    `path` is appended to while the run works; `final`, if given, is where `finish` writes the complete
    rows. `settings_at` says where the settings of the rows are recorded: a `SettingsFile`, a
    `RowStamp`, or None for a file whose rows another store vouches for."""

    def __init__(
        self,
        path: Path,
        *,
        final: Path | None = None,
        settings_at: SettingsFile | RowStamp | None = None,
        fix: str = DEFAULT_FIX,
        report: Callable[[str], None] = report_to_stderr,
    ):
        self.path = Path(path)
        self.final = Path(final) if final is not None else None
        self.settings_at = settings_at
        self.fix = fix
        self.report = report

    def open(
        self,
        settings: Mapping[str, Any] | None = None,
        *,
        what: str = "rows",
        fresh: str | None = None,
        prefix: str = "",
        reuse_final: bool = False,
    ) -> list[dict[str, Any]]:
        """Make the file ready to append to and return the rows an earlier run left: those of `final`
        first when `reuse_final`, then the appended ones. A torn last line is truncated away (and
        reported). With `settings`, rows made with other settings raise `SettingsChangedError`,
        naming `what` the rows are, the changed keys (after `prefix`) and `fresh`, how to start over;
        then the settings are recorded for the next run."""
        contents = read_jsonl(self.path, self.fix)
        if contents.torn:
            with open(self.path, "r+b") as handle:
                handle.truncate(contents.torn.offset)
                os.fsync(handle.fileno())
            self.report(contents.torn.describe("it was removed, and that work is done again"))
        rows = contents.rows
        if reuse_final and self.final is not None:
            finished = read_jsonl(self.final, self.fix)
            if finished.torn:
                self.report(finished.torn.describe("it is ignored"))
            rows = finished.rows + rows
        if settings is not None:
            self._check_settings(settings, rows, what, fresh or f"delete {self.path.name} to start over.", prefix)
        return rows

    def _check_settings(
        self, settings: Mapping[str, Any], rows: list[dict[str, Any]], what: str, fresh: str, prefix: str
    ) -> None:
        where = self.path.parent
        fingerprint = settings_fingerprint(settings)
        if isinstance(self.settings_at, RowStamp):
            others = sorted({str(row.get(self.settings_at.field)) for row in rows} - {fingerprint})
            if others:
                raise SettingsChangedError(
                    [
                        f"{where} holds {what} with different settings (fingerprint "
                        f"{' / '.join(others)} -> {fingerprint}); {fresh}"
                    ]
                )
            return
        if not isinstance(self.settings_at, SettingsFile):
            raise TypeError(f"{self.path}: settings given to a store that records none")
        record = self.settings_at.read()
        if rows:
            if record is None or (self.settings_at.field not in record and "fingerprint" not in record):
                raise SettingsChangedError(
                    [
                        f"{where} holds {what} but no {self.settings_at.path.name} recording the settings they were "
                        f"made with, so they cannot be checked against this run's; {fresh}"
                    ]
                )
            if self.settings_at.field in record:
                changed = changes(record[self.settings_at.field], normalized(settings), prefix)
            else:  # a sidecar of an earlier version: the fingerprint only
                earlier = record["fingerprint"]
                changed = [] if earlier == fingerprint else [f"fingerprint {earlier!r} -> {fingerprint!r}"]
            if changed:
                raise SettingsChangedError(
                    [f"{where} holds {what} with different settings (changed: {describe_changes(changed)}); {fresh}"]
                )
        self.settings_at.write(settings)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows at the end, in one write: a kill leaves whole rows and at most one torn last line.
        The file exists afterwards even when `rows` is empty (work done that gave nothing is still done)."""
        data = jsonl_text(rows).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides, as for open()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as error:  # a full disk: os.write names no file
            name_the_file(error, self.path)
            raise
        finally:
            os.close(fd)

    def rewrite(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the appended rows by `rows`, atomically (to drop rows of unfinished work)."""
        write_jsonl_atomic(self.path, rows)

    def finish(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write the complete rows to `final` atomically, then remove the appended file."""
        if self.final is None:
            raise TypeError(f"{self.path}: a store without a final file has nothing to finish")
        write_jsonl_atomic(self.final, rows)
        self.path.unlink(missing_ok=True)


def describe_changes(changed: list[str]) -> str:
    """`key: old -> new; ...`, the first few, each cut to a readable length."""
    shown = [c if len(c) <= MAX_CHANGE_CHARS else c[: MAX_CHANGE_CHARS - 1] + "…" for c in changed[:MAX_CHANGES_SHOWN]]
    more = len(changed) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
