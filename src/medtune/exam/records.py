"""One exam record read as a question (`read_record`), or as the problem that leaves that question out.

A problem of one question never sinks the exam: a record with no answer, a letter beyond its
choices, blank question text, choice texts printed in a figure, twin choice texts one of which is
the key, or a key written as text that fits more than one choice is left out and listed, with its
reason (`REASON_KINDS`), as an `ExcludedQuestion` (see `medtune.exam.selection`). A key written as
the text of one choice is read as its letter (`ReadRecord.answer_from_text`); see `choice_texts`.
Answers become lowercase letters (numbers for numeric questions); the field that holds each part
of a question is a `FieldMapping`. Only problems of a whole file raise `DataError` naming file:line,
the problem and the fix: not JSON, no questions, no record readable as a question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medtune.data.answers import AnswerProblem, AnswerSets, check_labels, is_number, label_span, read_answer_key
from medtune.data.choice_texts import AmbiguousAnswer, AnswerFromText, letters_for_texts
from medtune.data.json_files import describe_value, iter_json_objects
from medtune.errors import DataError
from medtune.vocabulary import ExamQuestion, choice_labels

SIDE_SUFFIXES = ("_metadata", "_translate")  # IgakuQA's side files beside an exam file: no questions

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
    "no_answer_key": "the key says the question has none (NA, N/A, none, なし, 无): it cannot be scored",
    "answer_outside_choices": "an answer letter beyond the question's choices",
    "unparsable_answer": "an answer that is not choice letters (or, with no choices, not a number)",
    "bad_explanation": "an explanation that is not text",
    "bad_context": "a context (passage) that is not text or a list of texts",
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
class FieldMapping:
    """The record field that holds each part of a question; the last three may be absent from the data."""

    id: str = "problem_id"  # absent: `<file stem>:<line>`
    question: str = "problem_text"
    choices: str = "choices"
    answer: str = "answer"
    points: str = "points"  # absent: 1
    text_only: str = "text_only"  # absent: True
    explanation: str = "explanation"  # absent: ""
    context: str = "context"  # absent: ""


def exam_items(path: Path) -> list[tuple[str, dict[str, Any]]]:
    items = list(iter_json_objects(path))
    if not items:
        raise DataError(
            f"{path}: the file is empty; an exam file needs at least one question: add questions, "
            "or point exam.path at the right file."
        )
    return items


def readable(path: Path, records: list[ReadRecord]) -> list[ReadRecord]:
    """`records`, unless not one of them is a usable question: then the file is not an exam (or not mapped right)."""
    if records and all(r.question is None or r.problem for r in records):
        first = records[0]
        raise DataError(
            f"{path}: no record can be read as a question ({len(records)} tried; the first, "
            f"{first.source}: {first.problem.reason if first.problem else '?'}); fix the records, or "
            "(exam=jsonl) map the file's fields with exam.fields.*"
        )
    return records


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
        _check_key_exists(item[fields.answer], len(choices), fields.answer)
        answer, texts = _answer_letters(item[fields.answer], choices, fields.answer)
        sets = _answer_sets(answer, len(choices), fields.answer)
        text_only = item.get(fields.text_only, True)
        if not isinstance(text_only, bool):
            raise QuestionProblem(
                "bad_text_only", f"{fields.text_only!r} is {describe_value(text_only)}, expected true or false"
            )
        points = _points(item.get(fields.points, 1), fields.points)
        explanation = _explanation(item.get(fields.explanation), fields.explanation)
        context = _context(item.get(fields.context), fields.context)
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
        context=context,
    ), from_text


# How exams write "there is no key" (a withdrawn or disputed question). "NA" would otherwise read as the
# letters n and a; it is read as letters only where n is a choice label (14 or more choices).
NO_KEY_WORDS = frozenset({"na", "n/a", "n.a.", "none", "no answer", "unknown", "なし", "解なし", "不明", "无", "無"})


def _check_key_exists(value: Any, n_choices: int, key: str) -> None:
    if not isinstance(value, str):
        return
    word = " ".join(value.split()).casefold()
    if word in NO_KEY_WORDS and not (word == "na" and n_choices >= 14):
        raise QuestionProblem(
            "no_answer_key",
            f"{key!r} is {value!r}: the record says it has no answer key, so the question cannot be scored "
            "and is left out (give its key to score it)",
        )


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


def letter_problem(letters: Sequence[str], n_choices: int, what: str, note: str = "") -> QuestionProblem | None:
    """Why `letters` (the `what`, e.g. answer) are not choices of a question of `n_choices`; None when they are."""
    try:
        check_labels(tuple(letters), n_choices)
    except AnswerProblem as problem:
        return QuestionProblem(problem.kind, problem.reason(note, what))
    return None


def _points(value: Any, key: str) -> int:
    if isinstance(value, bool) or not is_number(value) or not float(value).is_integer():
        raise QuestionProblem(
            "bad_points", f"points ({key!r}) is {describe_value(value)}, expected a whole number such as 1 or 3"
        )
    return int(float(value))


def _context(value: Any, key: str) -> str:
    """The passage: text, or a list of texts (PubMedQA's CONTEXTS) joined by blank lines; absent or null: ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "\n\n".join(part.strip() for part in value if part.strip())
    raise QuestionProblem(
        "bad_context", f"the context ({key!r}) is {describe_value(value)}, expected text or a list of texts"
    )


def _explanation(value: Any, key: str) -> str:
    """The explanation: text, or "" where it is absent or null (it is optional)."""
    if value is not None and not isinstance(value, str):
        raise QuestionProblem("bad_explanation", f"the explanation ({key!r}) is {describe_value(value)}, not text")
    return value or ""
