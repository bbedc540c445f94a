"""Exams as a JSONL/JSON file or a folder of them, fields named by a `FieldMapping`; the bundled sample exam.

`select_exam_jsonl` reads any such exam (MedQA, JJSIMQA, your own), `select_sample_exam` the
sample bundled with medtune; both select through `medtune.exam.selection.select_records`.
"""

from __future__ import annotations

from pathlib import Path

from medtune.data.readers import bundled_sample_dir
from medtune.errors import DataError
from medtune.exam.overrides import AnswerOverrides
from medtune.exam.records import SIDE_SUFFIXES, FieldMapping, ReadRecord, exam_items, read_record, readable
from medtune.exam.selection import ExamFilter, ExamSelection, select_records
from medtune.vocabulary import ExamQuestion

SAMPLE_EXAM_FILES = ("exam_ja.jsonl", "exam_en.jsonl")


def select_exam_jsonl(
    path: Path,
    fields: FieldMapping | None = None,
    filt: ExamFilter | None = None,
    overrides: AnswerOverrides | None = None,
    needs_choice_text: bool = True,
) -> ExamSelection:
    """The questions of a JSONL/JSON file or folder that `filt` selects, and the ones left out.

    `overrides=None` corrects no answer key (IgakuQA's corrections are IgakuQA's: `select_igakuqa`).
    `needs_choice_text=False` keeps questions whose choice texts are blank (they can still be scored
    by letter); `True` leaves them out.
    """
    fields, filt = fields or FieldMapping(), filt or ExamFilter()
    overrides = AnswerOverrides() if overrides is None else overrides
    records = [r for file in _exam_files(Path(path)) for r in _file_records(file, fields)]
    return select_records(records, filt, overrides, needs_choice_text, label=str(path))


def read_exam_jsonl(
    path: Path,
    fields: FieldMapping | None = None,
    filt: ExamFilter | None = None,
    overrides: AnswerOverrides | None = None,
) -> list[ExamQuestion]:
    """The selected questions of `select_exam_jsonl` (those with choice text), without the excluded list."""
    return select_exam_jsonl(path, fields, filt, overrides).questions


def _exam_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder; fix the exam path.")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and not p.stem.endswith(SIDE_SUFFIXES))
    if not files:
        raise DataError(f"{path}: the folder holds no .jsonl or .json exam files.")
    return files


def _file_records(path: Path, fields: FieldMapping) -> list[ReadRecord]:
    return readable(path, [read_record(item, where, fields) for where, item in exam_items(path)])


def select_sample_exam(
    filt: ExamFilter | None = None,
    overrides: AnswerOverrides | None = None,
    needs_choice_text: bool = True,
) -> ExamSelection:
    """The bundled sample exam (Japanese, then English); by default every question, no overrides."""
    filt = filt or ExamFilter.everything()
    overrides = AnswerOverrides() if overrides is None else overrides
    records = [r for name in SAMPLE_EXAM_FILES for r in _file_records(bundled_sample_dir() / name, FieldMapping())]
    return select_records(records, filt, overrides, needs_choice_text, label="the bundled sample exam")


def read_sample_exam() -> list[ExamQuestion]:
    """The bundled sample exam (Japanese, then English): every question, explanations filled."""
    return select_sample_exam().questions
