"""The files of a QA generation run, written so that an interrupted run continues where it stopped.

- `qa_state.json`: the settings that shape the output (template, chunking, generator, filters).
- `qa_pairs.jsonl`: the records, appended chunk by chunk.
- `qa_progress.jsonl`: one line per finished chunk (id, hash of chunk text + settings, counts),
  appended after that chunk's records. A chunk without its line is not finished: on resume its
  records are removed and it is asked again, so a kill at any moment loses at most the chunks in flight.

A rerun with other settings, or over documents that changed, is refused rather than mixed into
one file; the message says what changed and how to start a fresh run directory. Both JSON Lines files
follow `medtune.jsonl_store`'s policy: only a torn last line is dropped, any other bad line is an error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from medtune.io import write_json_atomic
from medtune.jsonl_store import JsonlStore, SettingsChangedError, SettingsFile

PAIRS_FILE = "qa_pairs.jsonl"
PROGRESS_FILE = "qa_progress.jsonl"
STATE_FILE = "qa_state.json"
SUMMARY_FILE = "qa_summary.json"
FRESH_RUN_HINT = (
    "rerun with the original settings to continue it, or start a new run directory "
    "(leave out hydra.run.dir, or point it somewhere else)."
)


# A run directory whose earlier pairs were made differently from what this run would make (a ConfigError).
ResumeMismatchError = SettingsChangedError


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_hash(settings_hash: str, chunk_text: str) -> str:
    return sha256(f"{settings_hash}\n{chunk_text}")[:16]


class RunStore:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.pairs_path = self.run_dir / PAIRS_FILE
        self.progress_path = self.run_dir / PROGRESS_FILE
        self.state_path = self.run_dir / STATE_FILE
        self.summary_path = self.run_dir / SUMMARY_FILE
        self.pairs = JsonlStore(
            self.pairs_path,
            fix="delete that line (that pair is lost, the others are kept), or start a new run directory.",
        )
        self.progress = JsonlStore(
            self.progress_path,
            settings_at=SettingsFile(self.state_path),
            fix="delete that line (that chunk is asked again), or start a new run directory.",
        )

    def open(self, settings: dict[str, Any], chunk_hashes: dict[str, str]) -> tuple[dict[str, dict], list[dict]]:
        """Check this dir against `settings` and the current chunks; return finished chunks and kept records."""
        progress = self.progress.open(settings, what="QA pairs", prefix="qa.", fresh=FRESH_RUN_HINT)
        finished = {row["chunk"]: row for row in progress if "chunk" in row and "hash" in row}
        stale = [cid for cid, row in finished.items() if chunk_hashes.get(cid) != row["hash"]]
        if stale:
            what = "no longer exist" if all(cid not in chunk_hashes for cid in stale) else "have different text"
            raise ResumeMismatchError(
                [
                    f"{self.run_dir}: {len(stale)} finished chunk(s) (e.g. {stale[0]}) {what} in qa.documents now "
                    f"(the documents, or the chunking, changed since those pairs were made). {FRESH_RUN_HINT}"
                ]
            )
        records = self.pairs.open()
        kept = [r for r in records if r.get("source") in finished]
        if len(kept) != len(records):  # records of a chunk that never finished
            self.pairs.rewrite(kept)
        return finished, kept

    def append(self, records: list[dict], progress_row: dict) -> None:
        self.pairs.append(records)  # the records first: a progress line means they are all there
        self.progress.append([progress_row])

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)
