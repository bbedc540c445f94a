"""Answer-key corrections (`AnswerOverrides`) by problem_id: replacement answer sets, or void.

`load_overrides` reads them from a JSONL file (one line per problem_id); `None` loads IgakuQA's
bundled corrections (`bundled_overrides_path`). A bad line raises `DataError` naming file:line, the
problem and the fix.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.data.answers import AnswerSets
from medtune.data.json_files import iter_json_objects
from medtune.errors import DataError
from medtune.exam.records import letter_problem
from medtune.vocabulary import ExamQuestion

OVERRIDE_KEYS = frozenset({"problem_id", "accept", "void", "note"})


@dataclass
class AnswerOverrides:
    """Answer-key corrections by problem_id: replacement answer sets, or void (every answer is correct)."""

    accept: dict[str, AnswerSets] = field(default_factory=dict)
    void: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # problem_id -> file:line of the override

    def apply(self, q: ExamQuestion) -> ExamQuestion:
        if q.qid in self.void:
            return replace(q, voided=True)
        if q.qid not in self.accept:
            return q
        where = f"{self.sources[q.qid]} (override of {q.qid}, from {q.source})"
        sets = tuple(_check_letters(s, len(q.choices), where) if q.choices else s for s in self.accept[q.qid])
        return replace(q, answers=sets[0], accepted=sets[1:])


def bundled_overrides_path() -> Path:
    """IgakuQA's known corrections (the ministry's: 112B30 accepts a or d, 116A71 is void)."""
    return Path(str(resources.files("medtune") / "resources" / "answer_overrides.jsonl"))


def load_overrides(path: Path | None = None) -> AnswerOverrides:
    """The overrides in `path` (JSONL); `None` loads IgakuQA's bundled corrections."""
    path = bundled_overrides_path() if path is None else Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such answer-overrides file; fix exam.answer_overrides, or set it to null "
            "to score by the keys as written."
        )
    overrides = AnswerOverrides()
    for where, item in iter_json_objects(path):
        qid = _override_id(item, where, overrides)
        if item.get("void") is True:
            overrides.void.add(qid)
        else:
            overrides.accept[qid] = _override_sets(item["accept"], where)
        overrides.notes[qid], overrides.sources[qid] = str(item.get("note", "")), where
    return overrides


def _override_id(item: dict[str, Any], where: str, overrides: AnswerOverrides) -> str:
    """The problem_id of a well-formed override line, not yet overridden."""
    unknown = sorted(set(item) - OVERRIDE_KEYS)
    if unknown:
        raise DataError(f"{where}: unknown field {unknown[0]!r}; an override has {sorted(OVERRIDE_KEYS)}.")
    if "problem_id" not in item:
        raise DataError(f"{where}: missing 'problem_id'; name the question the override corrects.")
    if ("accept" in item) == ("void" in item) or item.get("void", True) is not True:
        raise DataError(f'{where}: give either "accept": [["a"], ["d"]] or "void": true, not both or neither.')
    qid = str(item["problem_id"])
    if qid in overrides.sources:
        raise DataError(f"{where}: {qid} is already overridden at {overrides.sources[qid]}; keep one line per id.")
    return qid


def _override_sets(value: Any, where: str) -> AnswerSets:
    if not isinstance(value, list) or not value or not all(isinstance(s, list) and s for s in value):
        raise DataError(f'{where}: \'accept\' must be a non-empty list of non-empty answer sets, e.g. [["a"], ["d"]].')
    return tuple(tuple(sorted({unicodedata.normalize("NFKC", str(x)).strip().lower() for x in s})) for s in value)


def _check_letters(letters: Sequence[str], n_choices: int, where: str) -> tuple[str, ...]:
    """`letters` sorted; a problem raises `DataError` (for an answer-key override, a file-level input)."""
    problem = letter_problem(letters, n_choices, "answer")
    if problem:
        raise DataError(f"{where}: {problem.reason}; fix the answer key.")
    return tuple(sorted(set(letters)))
