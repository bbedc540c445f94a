"""Which questions are scored: an `ExamFilter` selects records (`select_records`) into an `ExamSelection`.

The selection holds the questions in file order, the questions left out for problems of their data
(`ExcludedQuestion`, with their reason), the keys read from choice text and the questions scored
although two choices have the same text (the key is neither). `shuffle_choices` gives each question
a seeded order of its own choices. The readers of each exam format (`medtune.exam.jsonl_exam`,
`medtune.exam.igakuqa`) end in `select_records`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from medtune.data.choice_texts import AnswerFromText, RepeatedChoices, repeated_choices
from medtune.errors import DataError
from medtune.exam.overrides import AnswerOverrides
from medtune.exam.records import ExcludedQuestion, QuestionProblem, ReadRecord, blank_choices
from medtune.vocabulary import ExamQuestion, choice_labels


@dataclass
class ExamSelection:
    """The questions to score, in file order, and the ones left out for problems of their data."""

    questions: list[ExamQuestion]
    excluded: list[ExcludedQuestion] = field(default_factory=list)
    answers_from_text: list[AnswerFromText] = field(default_factory=list)  # of `questions`: keys read from choice text
    repeated_choices: list[RepeatedChoices] = field(default_factory=list)  # of `questions`: twins the key is not


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
