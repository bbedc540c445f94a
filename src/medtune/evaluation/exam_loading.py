"""The questions an `exam` config selects: reader by format, the exam's filters and answer-key
corrections (both set per exam in conf/exam/*.yaml), shuffling.

`select_exam` also lists the questions left out for problems of their data (`ExcludedQuestion`,
in file order); `exclusion_summary` turns that list into the `excluded` entry of metrics.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtune.config.eval_schema import ExamConfig, ExamFormat
from medtune.errors import DataError
from medtune.evaluation.exams import (
    AnswerOverrides,
    ExamFilter,
    ExamSelection,
    ExcludedQuestion,
    FieldMapping,
    load_overrides,
    select_exam_jsonl,
    select_igakuqa,
    select_sample_exam,
    shuffle_choices,
)
from medtune.evaluation.types import ExamQuestion

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
        names = ("id", "question", "choices", "answer", "points", "text_only")
        fields = FieldMapping(**{k: getattr(exam.fields, k) for k in names})
        selection = select_exam_jsonl(Path(exam.path), fields, filt, overrides, needs_choice_text)
    if exam.shuffle_choices:
        selection = ExamSelection(shuffle_choices(selection.questions, exam.shuffle_seed), selection.excluded)
    return selection


def exam_overrides(exam: ExamConfig) -> AnswerOverrides:
    """The exam's answer-key corrections: the file exam.answer_overrides names, or none."""
    return load_overrides(Path(exam.answer_overrides)) if exam.answer_overrides else AnswerOverrides()


def load_exam(exam: ExamConfig) -> list[ExamQuestion]:
    """The questions `exam` selects, choice texts needed (those of `select_exam`, without the excluded)."""
    return select_exam(exam).questions


def _year_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"{root}: no such IgakuQA folder; point exam.path at the folder that holds the year folders.")
    years = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not years:
        raise DataError(
            f"{root}: no year folders (e.g. 2018/) in the IgakuQA folder; fix exam.path, or set exam.years."
        )
    return years


def exclusion_summary(excluded: Sequence[ExcludedQuestion]) -> dict[str, Any]:
    """The excluded questions, JSON-ready: how many, a count per reason kind (by name), and each one in order."""
    return {
        "n": len(excluded),
        "by_reason": dict(sorted(Counter(x.kind for x in excluded).items())),
        "questions": [{"id": x.qid, "source": x.source, "reason": x.reason, "kind": x.kind} for x in excluded],
    }
