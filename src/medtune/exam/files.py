"""Read medical multiple-choice exams (IgakuQA, JJSIMQA, MedQA or any JSONL) into `ExamQuestion`s.

IgakuQA is a folder per year of `<exam>-<block>.jsonl` files with `_metadata` (category, kinki) and
`_translate` (English) files beside them; other exams are a file or folder whose field names a
`FieldMapping` gives. Answers become lowercase letters (numbers for numeric questions), answer-key
corrections (`AnswerOverrides`) apply by problem_id, and an `ExamFilter` picks the questions to score.

A problem of one question never sinks the exam: a record with no answer, a letter beyond its
choices, blank question text, choice texts printed in a figure, twin choice texts one of which is
the key, or a key written as text that fits more than one choice is left out and listed, with its
reason, in `ExamSelection.excluded` (the `select_*` readers). A key written as the text of one choice
is read as its letter (listed in `ExamSelection.answers_from_text`); a question with twin choice
texts that the key is neither is scored (listed in `ExamSelection.repeated_choices`); see
`choice_texts`. Only problems of a whole file raise `DataError` naming file:line, the problem and
the fix: not JSON, no questions, no record readable as a question, an id used twice, a bad overrides
or side file.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.data.answers import AnswerProblem, AnswerSets, check_labels, is_number, label_span, read_answer_key
from medtune.data.choice_texts import (
    AmbiguousAnswer,
    AnswerFromText,
    RepeatedChoices,
    letters_for_texts,
    repeated_choices,
)
from medtune.data.readers import bundled_sample_dir, describe_value, iter_json_objects
from medtune.errors import DataError
from medtune.vocabulary import ExamQuestion, choice_labels

ESSENTIAL_BLOCKS = frozenset({"B", "E"})  # IgakuQA's "hisshu" blocks
SIDE_SUFFIXES = ("_metadata", "_translate")
EXAM_FILE = re.compile(r"^(?P<exam>\d+)-(?P<block>[A-Za-z])$")
SAMPLE_EXAM_FILES = ("exam_ja.jsonl", "exam_en.jsonl")
OVERRIDE_KEYS = frozenset({"problem_id", "accept", "void", "note"})

# Why a question is left out: the kind (`ExcludedQuestion.kind`, counted in summaries) and what it means.
REASON_KINDS = {
    "missing_question": "the record has no question-text field",
    "missing_choices": "the record has no choices field",
    "missing_answer": "the record has no answer field",
    "empty_question": "the question text is blank or null (a figure-only question?)",
    "bad_question": "the question text is not text (a number, list or object)",
    "bad_id": "the id is null, empty or not text (a list, object or true/false)",
    "bad_choices": "the choices are not a list of texts (null, or a choice that is a list, object or true/false)",
    "blank_choices": "some or all choice texts are blank (printed in a figure?); only where choice text is needed",
    "duplicate_choices": "two or more choices have the same text (case and spaces aside) and the key names one",
    "ambiguous_answer": "a gold answer written as text that fits more than one choice letter",
    "empty_answer": "the answer is empty",
    "answer_outside_choices": "an answer letter beyond the question's choices",
    "unparsable_answer": "an answer that is not choice letters (or, with no choices, not a number)",
    "bad_explanation": "an explanation that is not text",
    "bad_points": "points that are not a whole number",
    "bad_text_only": "a text_only flag that is not true or false",
    "no_translation": "english=True and the _translate file has no record for the question",
    "bad_translation": "the question's _translate record lacks a field or has another number of choices",
    "bad_kinki": "the _metadata kinki names a letter beyond the question's choices",
}


class QuestionProblem(DataError):
    """A problem of one record: it leaves that question out (an `ExcludedQuestion`), not the whole file."""

    def __init__(self, kind: str, reason: str, where: str = ""):
        super().__init__(f"{where}: {reason}" if where else reason)
        self.kind, self.reason = kind, reason


@dataclass(frozen=True)
class ExcludedQuestion:
    """A question left out for a problem of its data (never for the filters the user chose)."""

    qid: str  # the problem_id, or `<file stem>:<line>` when the record has none
    source: str  # file:line
    reason: str  # in words, e.g. "choice texts a-e are blank (printed in a figure?)"
    kind: str = "other"  # one of REASON_KINDS, for counting


@dataclass
class ExamSelection:
    """The questions to score, in file order, and the ones left out for problems of their data."""

    questions: list[ExamQuestion]
    excluded: list[ExcludedQuestion] = field(default_factory=list)
    answers_from_text: list[AnswerFromText] = field(default_factory=list)  # of `questions`: keys read from choice text
    repeated_choices: list[RepeatedChoices] = field(default_factory=list)  # of `questions`: twins the key is not


@dataclass(frozen=True)
class ReadRecord:
    """One exam record as read: its question, and the problem (if any) that leaves it out.

    A record that is no question (`question=None`) keeps the fields the filters can still judge, so a
    record the filters would drop anyway is dropped, not listed as excluded.
    """

    qid: str
    source: str
    question: ExamQuestion | None = None
    problem: QuestionProblem | None = None
    text_only: bool = True
    numeric: bool = False
    block: str = ""
    answer_from_text: AnswerFromText | None = None  # the key was written as choice text


@dataclass
class ExamFilter:
    """Which questions to score; the default is the IgakuQA paper's subset (277 questions of 2018)."""

    text_only: bool = True  # drop questions that come with an image
    min_answers: int = 1
    max_answers: int = 2
    require_choices: bool = True  # drop numeric-answer questions
    blocks: list[str] = field(default_factory=list)  # IgakuQA block letters; empty = all
    max_questions: int | None = None  # the first N that pass

    @classmethod
    def everything(cls) -> ExamFilter:
        return cls(text_only=False, min_answers=0, max_answers=99, require_choices=False)

    def keeps(self, q: ExamQuestion) -> bool:
        in_range = self.min_answers <= q.num_answers <= self.max_answers
        return in_range and self._fits(q.text_only, q.is_numeric, q.block)

    def selects(self, record: ReadRecord) -> bool:
        """`keeps` for a record; one that is no question is judged on the fields it has (not its answers)."""
        if record.question is not None:
            return self.keeps(record.question)
        return self._fits(record.text_only, record.numeric, record.block)

    def _fits(self, text_only: bool, numeric: bool, block: str) -> bool:
        if (self.text_only and not text_only) or (self.require_choices and numeric):
            return False
        return not self.blocks or block.upper() in {b.upper() for b in self.blocks}


@dataclass
class FieldMapping:
    """The record field that holds each part of a question; the last three may be absent from the data."""

    id: str = "problem_id"  # absent: `<file stem>:<line>`
    question: str = "problem_text"
    choices: str = "choices"
    answer: str = "answer"
    points: str = "points"  # absent: 1
    text_only: str = "text_only"  # absent: True
    explanation: str = "explanation"  # absent: ""


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
    return _readable(path, [read_record(item, where, fields) for where, item in _items(path)])


def _items(path: Path) -> list[tuple[str, dict[str, Any]]]:
    items = list(iter_json_objects(path))
    if not items:
        raise DataError(
            f"{path}: the file is empty; an exam file needs at least one question: add questions, "
            "or point exam.path at the right file."
        )
    return items


def _readable(path: Path, records: list[ReadRecord]) -> list[ReadRecord]:
    """`records`, unless not one of them is a usable question: then the file is not an exam (or not mapped right)."""
    if records and all(r.question is None or r.problem for r in records):
        first = records[0]
        raise DataError(
            f"{path}: no record can be read as a question ({len(records)} tried; the first, "
            f"{first.source}: {first.problem.reason if first.problem else '?'}); fix the records, or "
            "(exam=jsonl) map the file's fields with exam.fields.*"
        )
    return records


def _check_unique(records: Sequence[ReadRecord]) -> None:
    seen: dict[str, str] = {}
    for record in records:
        if record.qid in seen:
            raise DataError(
                f"{record.source}: problem_id {record.qid!r} is already used at {seen[record.qid]}; ids "
                "must be unique: give each question its own id."
            )
        seen[record.qid] = record.source


def select_records(
    records: Sequence[ReadRecord],
    filt: ExamFilter,
    overrides: AnswerOverrides,
    needs_choice_text: bool = True,
    label: str = "the exam",
) -> ExamSelection:
    """Overrides applied, the records `filt` selects in order: questions, or excluded with their reason.

    `max_questions` counts questions only; the excluded are those met before the N-th. Raises when ids
    repeat, or when every selected record is excluded (nothing would be scored).
    """
    _check_unique(records)
    records = [replace(r, question=overrides.apply(r.question)) if r.question else r for r in records]
    questions: list[ExamQuestion] = []
    excluded: list[ExcludedQuestion] = []
    from_text: list[AnswerFromText] = []
    repeats: list[RepeatedChoices] = []
    for record in records:
        if filt.max_questions is not None and len(questions) >= filt.max_questions:
            break
        if not filt.selects(record):
            continue
        problem = record.problem
        if problem is None and needs_choice_text and record.question is not None:
            problem = blank_choices(record.question)
        repeat = repeated_choices(record.question) if problem is None and record.question is not None else None
        if repeat is not None and not repeat.scored:
            problem = QuestionProblem("duplicate_choices", repeat.reason())
        if problem is not None:
            excluded.append(ExcludedQuestion(record.qid, record.source, problem.reason, problem.kind))
        elif record.question is not None:  # a record is a question or has a problem
            questions.append(record.question)
            if record.answer_from_text is not None:
                from_text.append(record.answer_from_text)
            if repeat is not None:
                repeats.append(repeat)
    if excluded and not questions:
        first = excluded[0]
        raise DataError(
            f"{label}: every question the filters select has a problem of its data ({len(excluded)} "
            f"excluded; the first, {first.source}: {first.reason}); fix those records, or point the "
            "exam at the right data."
        )
    return ExamSelection(questions, excluded, from_text, repeats)


def blank_choices(q: ExamQuestion) -> QuestionProblem | None:
    """The problem of a question whose choice texts are (partly) blank, e.g. printed in a figure; else None."""
    labels = choice_labels(len(q.choices))
    blank = [labels[i] for i, text in enumerate(q.choices) if not text.strip()]
    if not blank:
        return None
    if len(blank) == len(q.choices):
        some = f"texts {label_span(len(blank))} are" if len(blank) > 1 else "text a is"
        return QuestionProblem("blank_choices", f"choice {some} blank (printed in a figure?)")
    some = f"texts {', '.join(blank)} are" if len(blank) > 1 else f"text {blank[0]} is"
    return QuestionProblem("blank_choices", f"choice {some} blank (of {label_span(len(q.choices))})")


def read_record(item: dict[str, Any], where: str, fields: FieldMapping, block: str = "") -> ReadRecord:
    """One record as its question (with `block`), or as the problem that keeps it from being one."""
    try:
        question, from_text = _read_question(item, where, fields)
    except QuestionProblem as problem:
        return _unreadable(item, where, fields, block, problem)
    question = replace(question, block=block) if block else question
    return ReadRecord(question.qid, question.source, question, answer_from_text=from_text)


def _unreadable(
    item: dict[str, Any],
    where: str,
    fields: FieldMapping,
    block: str,
    problem: QuestionProblem,
) -> ReadRecord:
    """A record that is no question, with what the filters can still judge of it."""
    return ReadRecord(
        _record_id(item, where, fields),
        where,
        None,
        problem,
        block=block,
        text_only=item.get(fields.text_only, True) is not False,
        numeric=item.get(fields.choices) == [],
    )


def to_question(item: dict[str, Any], where: str, fields: FieldMapping) -> ExamQuestion:
    """One record as an `ExamQuestion`, its answers read by `read_answer_key` and checked against its choices.

    A gold answer written as the text of one choice is read as its letter (`choice_texts`). Choice
    texts may be blank (`blank_choices` says so) or repeat (`select_records` judges it); any other
    problem, a null field included, raises `QuestionProblem`.
    """
    return _read_question(item, where, fields)[0]


def _read_question(
    item: dict[str, Any], where: str, fields: FieldMapping
) -> tuple[ExamQuestion, AnswerFromText | None]:
    """`to_question`, and the gold answer as the file wrote it where it was choice text."""
    for key in ("question", "choices", "answer"):
        if getattr(fields, key) not in item:
            raise QuestionProblem(
                f"missing_{key}",
                f"missing field {getattr(fields, key)!r} (the {key}); the record "
                f"has {sorted(item)}; map it with exam.fields.{key}",
                where,
            )
    try:
        _check_id(item, fields.id)
        question = _question_text(item[fields.question], fields.question)
        choices = _choices(item[fields.choices], fields.choices)
        answer, texts = _answer_letters(item[fields.answer], choices, fields.answer)
        sets = _answer_sets(answer, len(choices), fields.answer)
        text_only = item.get(fields.text_only, True)
        if not isinstance(text_only, bool):
            raise QuestionProblem(
                "bad_text_only", f"{fields.text_only!r} is {describe_value(text_only)}, expected true or false"
            )
        points = _points(item.get(fields.points, 1), fields.points)
        explanation = _explanation(item.get(fields.explanation), fields.explanation)
    except QuestionProblem as problem:
        raise QuestionProblem(problem.kind, problem.reason, where) from None
    qid = _record_id(item, where, fields)
    from_text = AnswerFromText(qid, where, tuple(texts), sets[0]) if texts else None
    return ExamQuestion(
        qid=qid,
        question=question,
        choices=choices,
        answers=sets[0],
        accepted=sets[1:],
        points=points,
        text_only=text_only,
        explanation=explanation,
        source=where,
    ), from_text


def _answer_letters(value: Any, choices: tuple[str, ...], key: str) -> tuple[Any, list[str]]:
    """The key with choice texts read as their letters (`choice_texts.letters_for_texts`), and those texts."""
    try:
        return letters_for_texts(value, choices, key)
    except AmbiguousAnswer as problem:
        raise QuestionProblem("ambiguous_answer", str(problem)) from None


def _record_id(item: dict[str, Any], where: str, fields: FieldMapping) -> str:
    """The record's id, or `<file stem>:<line>` where it has none (or one `_check_id` refuses)."""
    value = item.get(fields.id)
    return str(value).strip() if _usable_id(value) else _line_id(where)


def _usable_id(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and bool(str(value).strip())


def _check_id(item: dict[str, Any], key: str) -> None:
    """An id, where the record gives one, is text or a number; null, "" and others leave the question out."""
    if key in item and not _usable_id(item[key]):
        value = item[key]
        shown = "empty" if isinstance(value, str) else describe_value(value)
        raise QuestionProblem(
            "bad_id",
            f'the id ({key!r}) is {shown}; give the question an id such as "Q12", '
            f"or leave {key!r} out to use the line number",
        )


def _line_id(where: str) -> str:
    file, line = where.rsplit(":", 1)
    return f"{Path(file).stem}:{line}"


def _question_text(value: Any, key: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        null = " (null)" if value is None else ""
        raise QuestionProblem("empty_question", f"the question text ({key!r}) is empty{null} (a figure-only question?)")
    if not isinstance(value, str):
        raise QuestionProblem("bad_question", f"the question text ({key!r}) is a {type(value).__name__}, not text")
    return value.strip()


def _choices(value: Any, key: str) -> tuple[str, ...]:
    """The choice texts; a null choice becomes "" (blank, like a choice printed in a figure), a number its text."""
    if not isinstance(value, list) or any(isinstance(c, (bool, list, dict)) for c in value):
        shown = "null" if value is None else f"a {type(value).__name__}"
        raise QuestionProblem("bad_choices", f"{key!r} is {shown}, expected a list of strings ([] for numeric)")
    return tuple("" if c is None else str(c) for c in value)


def _answer_sets(value: Any, n_choices: int, key: str) -> AnswerSets:
    """The key as answer sets (`read_answer_key`): the first is the key, the rest alternatives written "a or d"."""
    try:
        return read_answer_key(value, n_choices)
    except AnswerProblem as problem:
        null = " (null)" if value is None else ""
        raise QuestionProblem(problem.kind, problem.reason(f" ({key!r})") + null) from None


def _letter_problem(letters: Sequence[str], n_choices: int, what: str, note: str = "") -> QuestionProblem | None:
    """Why `letters` (the `what`, e.g. answer) are not choices of a question of `n_choices`; None when they are."""
    try:
        check_labels(tuple(letters), n_choices)
    except AnswerProblem as problem:
        return QuestionProblem(problem.kind, problem.reason(note, what))
    return None


def _check_letters(letters: Sequence[str], n_choices: int, where: str) -> tuple[str, ...]:
    """`letters` sorted; a problem raises `DataError` (for an answer-key override, a file-level input)."""
    problem = _letter_problem(letters, n_choices, "answer")
    if problem:
        raise DataError(f"{where}: {problem.reason}; fix the answer key.")
    return tuple(sorted(set(letters)))


def _points(value: Any, key: str) -> int:
    if isinstance(value, bool) or not is_number(value) or not float(value).is_integer():
        raise QuestionProblem(
            "bad_points", f"points ({key!r}) is {describe_value(value)}, expected a whole number such as 1 or 3"
        )
    return int(float(value))


def _explanation(value: Any, key: str) -> str:
    """The explanation: text, or "" where it is absent or null (it is optional)."""
    if value is not None and not isinstance(value, str):
        raise QuestionProblem("bad_explanation", f"the explanation ({key!r}) is {describe_value(value)}, not text")
    return value or ""


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
    return _readable(
        path, [_igakuqa_record(item, where, year, block, metadata, translations) for where, item in _items(path)]
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
    problem = _letter_problem(letters, n_choices, "kinki", f" ({where})") if letters else None
    if problem:
        raise QuestionProblem("bad_kinki", problem.reason)
    return tuple(sorted(set(letters)))


def shuffle_choices(questions: Sequence[ExamQuestion], seed: int) -> list[ExamQuestion]:
    """Each question's choices in a seeded order of its own (by problem_id); answers, accepted and kinki follow.

    Explanations that name letters are left as written; numeric questions are unchanged.
    """
    return [q if q.is_numeric else _shuffled(q, random.Random(f"{seed}:{q.qid}")) for q in questions]


def _shuffled(q: ExamQuestion, rng: random.Random) -> ExamQuestion:
    order = list(range(len(q.choices)))
    rng.shuffle(order)  # new position i holds old choice order[i]
    labels = choice_labels(len(q.choices))
    new_letter = {labels[old]: labels[new] for new, old in enumerate(order)}

    def remap(letters: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(new_letter[x] for x in letters))

    return replace(
        q,
        choices=tuple(q.choices[old] for old in order),
        answers=remap(q.answers),
        accepted=tuple(remap(s) for s in q.accepted),
        kinki=remap(q.kinki),
    )


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
