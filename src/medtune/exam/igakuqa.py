"""IgakuQA: a folder per year of `<exam>-<block>.jsonl` files, with `_metadata` (category, kinki) and
`_translate` (English) files beside them.

`select_igakuqa` reads the years asked for, block by block, joins each question to its metadata
(and, with `english=True`, to its translation), applies IgakuQA's answer-key corrections
(`medtune.exam.overrides`) and selects through `medtune.exam.selection.select_records`. A bad side
file raises `DataError` naming file:line; a translation or kinki problem leaves its question out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from medtune.data.json_files import iter_json_objects
from medtune.errors import DataError
from medtune.exam.overrides import AnswerOverrides, load_overrides
from medtune.exam.records import (
    SIDE_SUFFIXES,
    FieldMapping,
    QuestionProblem,
    ReadRecord,
    exam_items,
    letter_problem,
    read_record,
    readable,
)
from medtune.exam.selection import ExamFilter, ExamSelection, select_records
from medtune.vocabulary import ExamQuestion

ESSENTIAL_BLOCKS = frozenset({"B", "E"})  # IgakuQA's "hisshu" blocks
EXAM_FILE = re.compile(r"^(?P<exam>\d+)-(?P<block>[A-Za-z])$")


def select_igakuqa(
    root: Path,
    years: Sequence[int | str],
    filt: ExamFilter | None = None,
    english: bool = False,
    overrides: AnswerOverrides | None = None,
    needs_choice_text: bool = True,
) -> ExamSelection:
    """IgakuQA questions of `years` (folders under `root`) that `filt` selects, by year, block and line.

    `english=True` takes question and choices from the `_translate` files. `overrides=None` applies
    IgakuQA's bundled corrections (`bundled_overrides_path`); pass `AnswerOverrides()` to score by the
    printed keys.
    `needs_choice_text` as in `select_exam_jsonl`.
    """
    filt = filt or ExamFilter()
    overrides = load_overrides(None) if overrides is None else overrides
    records: list[ReadRecord] = []
    for year in sorted({str(y) for y in years}):
        for path in _block_files(Path(root), year, {b.upper() for b in filt.blocks}):
            records.extend(_read_block(path, year, english))
    label = f"{root} (years {', '.join(sorted({str(y) for y in years}))})"
    return select_records(records, filt, overrides, needs_choice_text, label)


def read_igakuqa(
    root: Path,
    years: Sequence[int | str],
    filt: ExamFilter | None = None,
    english: bool = False,
    overrides: AnswerOverrides | None = None,
) -> list[ExamQuestion]:
    """The selected questions of `select_igakuqa` (those with choice text), without the excluded list."""
    return select_igakuqa(root, years, filt, english, overrides).questions


def _block_files(root: Path, year: str, blocks: set[str]) -> list[Path]:
    """The year's exam files in block order; only `blocks` when given, so only their side files are read."""
    folder = root / year
    if root.is_file() and root.suffix == ".jsonl":
        raise DataError(
            f"exam.path={root} is a single file, but exam=igakuqa reads a folder of year folders ({year}/, ...). "
            f"To evaluate this file, use exam=jsonl exam.path={root} (and exam.language=<its language>)."
        )
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder (IgakuQA is a folder of year folders)"
        raise DataError(
            f"exam.path={root} {what}; point exam.path at the IgakuQA root, the folder that holds "
            f"{year}/ with its <exam>-<block>.jsonl files (exam=jsonl reads a single file)."
        )
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit()) if root.is_dir() else []
        raise DataError(
            f"{folder}: no such year folder; years found under {root}: {', '.join(found) or 'none'}. "
            "Fix the years or the IgakuQA root."
        )
    files = sorted(p for p in folder.glob("*.jsonl") if not p.stem.endswith(SIDE_SUFFIXES))
    for p in files:
        if not EXAM_FILE.match(p.stem):
            raise DataError(f"{p}: not named <exam>-<block>.jsonl (e.g. 112-A.jsonl); rename or move it.")
    if not files:
        raise DataError(f"{folder}: no <exam>-<block>.jsonl files in the year folder.")
    return [p for p in sorted(files, key=lambda p: (_block_of(p), p.name)) if not blocks or _block_of(p) in blocks]


def _block_of(path: Path) -> str:
    return EXAM_FILE.match(path.stem)["block"].upper()


def _read_block(path: Path, year: str, english: bool) -> list[ReadRecord]:
    block = _block_of(path)
    metadata = _by_id(path.with_name(f"{path.stem}_metadata.jsonl"), required=False)
    translations = _by_id(path.with_name(f"{path.stem}_translate.jsonl"), required=True) if english else None
    return readable(
        path, [_igakuqa_record(item, where, year, block, metadata, translations) for where, item in exam_items(path)]
    )


def _igakuqa_record(
    item: dict[str, Any],
    where: str,
    year: str,
    block: str,
    metadata: dict,
    translations: dict | None,
) -> ReadRecord:
    """One IgakuQA record (in English when `translations` are given) joined to its metadata.

    A translation problem is the record's problem, but its Japanese question stays for the filters.
    """
    problem = None
    if translations is not None:
        try:
            where, item = _english(item, where, translations)
        except QuestionProblem as english:
            problem = english
    record = read_record(item, where, FieldMapping(), block)
    if record.question is None:
        return record
    q = replace(record.question, year=year, essential=block in ESSENTIAL_BLOCKS)
    meta_where, meta = metadata.get(q.qid, ("", {}))
    q = replace(q, category=str(meta.get("category", "")))
    try:
        q = replace(q, kinki=_kinki(meta.get("kinki", []), len(q.choices), meta_where))
    except QuestionProblem as kinki:
        problem = problem or kinki
    return replace(record, question=q, problem=problem)


def _by_id(path: Path, required: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    if not path.is_file():
        if required:
            raise DataError(f"{path}: no such translation file; add it or read the Japanese version (english=False).")
        return {}
    records = {}
    for where, item in iter_json_objects(path):
        if "problem_id" not in item:
            raise DataError(f"{where}: missing 'problem_id'; a side file is joined to the questions by it.")
        records[str(item["problem_id"])] = (where, item)
    return records


def _english(item: dict[str, Any], where: str, translations: dict) -> tuple[str, dict[str, Any]]:
    """The Japanese record with the translation's text; its answer and points where the translation has them."""
    qid = str(item.get("problem_id", ""))
    if qid not in translations:
        raise QuestionProblem("no_translation", f"problem {qid!r} has no record in the _translate file (english=True)")
    en_where, en = translations[qid]
    for key in ("problem_text_en", "choices_en"):
        if key not in en:
            raise QuestionProblem(
                "bad_translation",
                f"its translation ({en_where}) lacks {key!r}; a translation needs problem_text_en and choices_en",
            )
    n_en, n_ja = _count(en["choices_en"]), _count(item.get("choices", []))
    if n_en != n_ja:
        raise QuestionProblem(
            "bad_translation", f"its translation ({en_where}) has {n_en} choices for the {n_ja} of the Japanese record"
        )
    merged = {**item, "problem_text": en["problem_text_en"], "choices": en["choices_en"]}
    return en_where, merged | {k: en[k] for k in ("answer", "points") if k in en}


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _kinki(values: Any, n_choices: int, where: str) -> tuple[str, ...]:
    """Contraindicated letters, written ["c", "e"], ["ce"] or full-width ["ｂ"]."""
    text = unicodedata.normalize("NFKC", "".join(str(v) for v in (values if isinstance(values, list) else [values])))
    letters = tuple(ch for ch in text.lower() if ch.isalnum())
    problem = letter_problem(letters, n_choices, "kinki", f" ({where})") if letters else None
    if problem:
        raise QuestionProblem("bad_kinki", problem.reason)
    return tuple(sorted(set(letters)))
