"""The questions an `exam` config selects: reader by format, the exam's filters and answer-key
corrections (both set per exam in conf/exam/*.yaml), shuffling.

`select_exam` also lists the questions left out for problems of their data (`ExcludedQuestion`,
in file order); `exclusion_summary` turns that list into the `excluded` entry of metrics.json. Gold
answers written as a choice's text (read as its letter) and questions scored although two choices
have the same text (the key is neither) are each said once in a warning (`warn_choice_texts`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtune.config.eval_schema import ExamConfig, ExamFormat
from medtune.data.file_checks import check_data_file
from medtune.errors import DataError, warn
from medtune.exam.igakuqa import select_igakuqa
from medtune.exam.jsonl_exam import select_exam_jsonl, select_sample_exam
from medtune.exam.overrides import AnswerOverrides, load_overrides
from medtune.exam.records import ExcludedQuestion, FieldMapping
from medtune.exam.selection import ExamFilter, ExamSelection, shuffle_choices
from medtune.exam.text_language import check_stated_language
from medtune.vocabulary import ExamQuestion

__all__ = [
    "ExamSelection",
    "ExcludedQuestion",
    "exam_filter",
    "exam_overrides",
    "exclusion_summary",
    "load_exam",
    "select_exam",
]


def exam_filter(exam: ExamConfig) -> ExamFilter:
    return ExamFilter(
        text_only=exam.text_only,
        min_answers=exam.min_answers,
        max_answers=exam.max_answers,
        require_choices=exam.require_choices,
        blocks=list(exam.blocks),
        max_questions=exam.max_questions,
    )


def select_exam(exam: ExamConfig, needs_choice_text: bool = True) -> ExamSelection:
    """The questions `exam` selects (shuffled if asked) and those left out for problems of their data.

    `needs_choice_text=False` (scoring letters only, e.g. replaying published predictions) keeps
    questions whose choice texts are blank; `True` (generation, log-likelihood) leaves them out.
    The filters (text_only, answers, blocks, max_questions) select; they never exclude.
    """
    filt = exam_filter(exam)
    overrides = exam_overrides(exam)
    if exam.format == ExamFormat.sample:
        selection = select_sample_exam(filt, overrides, needs_choice_text)
    elif exam.format == ExamFormat.igakuqa:
        root = Path(exam.path)
        years = list(exam.years) or _year_folders(root)
        selection = select_igakuqa(
            root, years, filt, english=exam.english, overrides=overrides, needs_choice_text=needs_choice_text
        )
    else:
        names = ("id", "question", "choices", "answer", "points", "text_only", "context")
        fields = FieldMapping(**{k: getattr(exam.fields, k) for k in names})
        selection = select_exam_jsonl(_data_path(exam.path, "exam.path"), fields, filt, overrides, needs_choice_text)
    if exam.shuffle_choices:
        selection = dataclasses.replace(selection, questions=shuffle_choices(selection.questions, exam.shuffle_seed))
    if not exam.english:  # IgakuQA's English translation states no language of its own
        check_stated_language(exam.name, exam.language, exam.allow_prompt_language_mismatch, selection.questions)
    warn_choice_texts(exam.name, selection)
    return selection


def exam_overrides(exam: ExamConfig) -> AnswerOverrides:
    """The exam's answer-key corrections: the file exam.answer_overrides names, or none."""
    if not exam.answer_overrides:
        return AnswerOverrides()
    return load_overrides(_data_path(exam.answer_overrides, "exam.answer_overrides", folders=False))


def _data_path(value: str, setting: str, folders: bool = True) -> Path:
    """`value` as a Path; one that exists (and is no folder, where `folders` are read file by file) must be
    a regular file within the size limit (`check_data_file`): a FIFO or a device is refused unopened."""
    path = Path(value)
    if path.exists() and not (folders and path.is_dir()):
        check_data_file(path, setting)
    return path


def load_exam(exam: ExamConfig) -> list[ExamQuestion]:
    """The questions `exam` selects, choice texts needed (those of `select_exam`, without the excluded)."""
    return select_exam(exam).questions


def _year_folders(root: Path) -> list[str]:
    if root.is_file() and root.suffix == ".jsonl":
        raise DataError(
            f"exam.path={root} is a single file, but exam=igakuqa reads a folder of year folders (2018/, ...). "
            f"To evaluate this file, use exam=jsonl exam.path={root} (and exam.language=<its language>)."
        )
    if not root.is_dir():
        raise DataError(f"{root}: no such IgakuQA folder; point exam.path at the folder that holds the year folders.")
    years = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not years:
        raise DataError(
            f"{root}: no year folders (e.g. 2018/) in the IgakuQA folder; fix exam.path, or set exam.years."
        )
    return years


def warn_choice_texts(exam_name: str, selection: ExamSelection) -> None:
    """One warning for the keys the exam file wrote as choice text (how many, and the first), one for the
    questions scored although two of their choices have the same text."""
    if selection.answers_from_text:
        read = selection.answers_from_text
        first, many = read[0], len(read) > 1
        texts = ", ".join(repr(t) for t in first.texts)
        warn(
            f"exam={exam_name}: {len(read)} gold answer{'s' if many else ''} {'are' if many else 'is'} written as "
            f"a choice's text, not its letter, and {'were' if many else 'was'} read as the letter of the one choice "
            f"with that text (case and spaces aside); the first: {first.source} ({first.qid}): {texts} -> "
            f"{', '.join(first.letters)}. Write the letters in the exam file to silence this."
        )
    if selection.repeated_choices:
        repeats = selection.repeated_choices
        first, many = repeats[0], len(repeats) > 1
        warn(
            f"exam={exam_name}: {len(repeats)} question{'s' if many else ''} {'have' if many else 'has'} two "
            f"choices with the same text, and {'are' if many else 'is'} scored as written because the key is "
            f"neither of them (a response naming that text is wrong either way); the first: {first.source} "
            f"({first.qid}): choices {first.twins}. Questions whose key is one of the twins are left out (listed "
            "under excluded, duplicate_choices)."
        )


def exclusion_summary(excluded: Sequence[ExcludedQuestion]) -> dict[str, Any]:
    """The excluded questions, JSON-ready: how many, a count per reason kind (by name), and each one in order."""
    return {
        "n": len(excluded),
        "by_reason": dict(sorted(Counter(x.kind for x in excluded).items())),
        "questions": [{"id": x.qid, "source": x.source, "reason": x.reason, "kind": x.kind} for x in excluded],
    }
