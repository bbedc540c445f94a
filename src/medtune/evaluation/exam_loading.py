"""The questions an `exam` config selects: reader by format, the paper's filters, overrides, shuffling."""

from __future__ import annotations

from pathlib import Path

from medtune.config.eval_schema import ExamConfig, ExamFormat
from medtune.evaluation.exams import (
    ExamFilter,
    FieldMapping,
    load_overrides,
    read_exam_jsonl,
    read_igakuqa,
    read_sample_exam,
    shuffle_choices,
)
from medtune.evaluation.types import ExamQuestion


def exam_filter(exam: ExamConfig) -> ExamFilter:
    return ExamFilter(
        text_only=exam.text_only,
        min_answers=exam.min_answers,
        max_answers=exam.max_answers,
        require_choices=exam.require_choices,
        blocks=list(exam.blocks),
        max_questions=exam.max_questions,
    )


def load_exam(exam: ExamConfig) -> list[ExamQuestion]:
    filt = exam_filter(exam)
    overrides = load_overrides(Path(exam.answer_overrides) if exam.answer_overrides else None)
    if exam.format == ExamFormat.sample:
        questions = filt.apply([overrides.apply(q) for q in read_sample_exam()])
    elif exam.format == ExamFormat.igakuqa:
        years = list(exam.years) or sorted(p.name for p in Path(exam.path).iterdir() if p.is_dir() and p.name.isdigit())
        questions = read_igakuqa(Path(exam.path), years, filt, english=exam.english, overrides=overrides)
    else:
        fields = FieldMapping(**{k: getattr(exam.fields, k) for k in ("id", "question", "choices", "answer", "points", "text_only")})
        questions = read_exam_jsonl(Path(exam.path), fields, filt, overrides)
    if exam.shuffle_choices:
        questions = shuffle_choices(questions, exam.shuffle_seed)
    return questions
