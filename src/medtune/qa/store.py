"""The files of a QA generation run, written so that an interrupted run continues where it stopped.

- `qa_state.json`: the settings that shape the output (template, chunking, generator, filters).
- `qa_pairs.jsonl`: the records, appended chunk by chunk.
- `qa_progress.jsonl`: one line per finished chunk (id, hash of chunk text + settings, counts),
  appended after that chunk's records. A chunk without its line is not finished: on resume its
  records are removed and it is asked again, so a kill at any moment loses at most the chunks in flight.

A rerun with other settings, or over documents that changed, is refused rather than mixed into
one file; the message says what changed and how to start a fresh run directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medtune.errors import MedtuneError
from medtune.io import append_jsonl, write_json_atomic, write_text_atomic
from medtune.nested import changes

PAIRS_FILE = "qa_pairs.jsonl"
PROGRESS_FILE = "qa_progress.jsonl"
STATE_FILE = "qa_state.json"
SUMMARY_FILE = "qa_summary.json"
FRESH_RUN_HINT = ("rerun with the original settings to continue it, or start a new run directory "
                  "(leave out hydra.run.dir, or point it somewhere else).")


class ResumeMismatchError(MedtuneError):
    """A run directory whose earlier pairs were made differently from what this run would make."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_hash(settings_hash: str, chunk_text: str) -> str:
    return sha256(f"{settings_hash}\n{chunk_text}")[:16]


def _read_rows(path: Path) -> tuple[list[dict], bool]:
    """The JSON objects of a JSON Lines file, and whether any line was unreadable (a write cut short)."""
    if not path.is_file():
        return [], False
    rows, damaged = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            damaged = True
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            damaged = True
    return rows, damaged


def _rewrite(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class RunStore:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.pairs_path = self.run_dir / PAIRS_FILE
        self.progress_path = self.run_dir / PROGRESS_FILE
        self.state_path = self.run_dir / STATE_FILE
        self.summary_path = self.run_dir / SUMMARY_FILE

    def open(self, settings: dict[str, Any], chunk_hashes: dict[str, str]) -> tuple[dict[str, dict], list[dict]]:
        """Check this dir against `settings` and the current chunks; return finished chunks and kept records."""
        progress, progress_damaged = _read_rows(self.progress_path)
        finished = {row["chunk"]: row for row in progress if "chunk" in row and "hash" in row}
        if finished and self.state_path.is_file():
            earlier = json.loads(self.state_path.read_text(encoding="utf-8")).get("settings", {})
            changed = changes(earlier, settings, prefix="qa.")
            if changed:
                raise ResumeMismatchError(
                    f"{self.run_dir} holds QA pairs of {len(finished)} chunk(s) made with other settings "
                    f"({'; '.join(changed[:6])}). Pairs made differently are not mixed in one file: {FRESH_RUN_HINT}")
        stale = [cid for cid, row in finished.items() if chunk_hashes.get(cid) != row["hash"]]
        if stale:
            what = "no longer exist" if all(cid not in chunk_hashes for cid in stale) else "have different text"
            raise ResumeMismatchError(
                f"{self.run_dir}: {len(stale)} finished chunk(s) (e.g. {stale[0]}) {what} in qa.documents now "
                f"(the documents, or the chunking, changed since those pairs were made). {FRESH_RUN_HINT}")
        write_json_atomic(self.state_path, {"settings": settings, "settings_hash": sha256(json.dumps(settings, sort_keys=True))})
        if progress_damaged:
            _rewrite(self.progress_path, list(finished.values()))
        records, pairs_damaged = _read_rows(self.pairs_path)
        kept = [r for r in records if r.get("source") in finished]
        if pairs_damaged or len(kept) != len(records):  # records of a chunk that never finished
            _rewrite(self.pairs_path, kept)
        return finished, kept

    def append(self, records: list[dict], progress_row: dict) -> None:
        append_jsonl(self.pairs_path, records)  # the records first: a progress line means they are all there
        append_jsonl(self.progress_path, [progress_row])

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)
