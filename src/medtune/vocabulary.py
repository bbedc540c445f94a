"""The records evaluation passes around: a question, the scored answer to it, and its status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from medtune.config.eval_schema import Similarity  # noqa: F401  (re-exported: scoring takes it)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


@lru_cache(maxsize=64)
def choice_labels(count: int) -> tuple[str, ...]:
    """The labels of `count` choices: letters a..z up to 26 choices, numbers "1".."n" beyond.

    One scheme per question, used everywhere: the prompt writes these labels, the parser reads
    them, and gold answers are given in them.
    """
    if count <= len(LETTERS):
        return tuple(LETTERS[:count])
    return tuple(str(number) for number in range(1, count + 1))


class Status(str, Enum):
    correct = "correct"
    invalid = "invalid"  # a different number of answers than the question asks for, or none at all
    wrong = "wrong"


@dataclass(frozen=True)
class ExamQuestion:
    qid: str
    question: str
    choices: tuple[str, ...]  # empty for a numeric-answer question
    answers: tuple[str, ...]  # gold letters ("a", "c") or, for numeric questions, numbers as strings
    points: int = 1
    year: str = ""
    block: str = ""  # IgakuQA block letter, e.g. "B"
    essential: bool = False  # the "hisshu" blocks (B and E), scored separately for the pass line
    category: str = ""
    kinki: tuple[str, ...] = ()  # contraindicated choices (letters) from the metadata
    accepted: tuple[tuple[str, ...], ...] = ()  # extra accepted answer sets (ministry corrections)
    voided: bool = False  # every answer counts as correct
    text_only: bool = True
    explanation: str = ""
    source: str = ""  # file:line
    context: str = ""  # a passage the question is about (an abstract, a vignette), shown before it

    @property
    def is_numeric(self) -> bool:
        return not self.choices

    @property
    def num_answers(self) -> int:
        return len(self.answers)

    def labels(self) -> tuple[str, ...]:
        """The labels of the choices, in order (see `choice_labels`)."""
        return choice_labels(len(self.choices))

    def label(self, index: int) -> str:
        """The label of the choice at `index` (0-based): "a" ... "z", or "1" ... "n" past 26 choices."""
        return self.labels()[index]

    def index_of(self, label: str) -> int:
        """The 0-based index of the choice labelled `label`; ValueError if no choice has that label."""
        try:
            return self.labels().index(label)
        except ValueError:
            raise ValueError(f"{label!r} is not a choice label of question {self.qid}") from None

    def letter(self, index: int) -> str:
        """The same as `label`; kept for callers that say "letter"."""
        return self.label(index)

    def choice_of(self, letter: str) -> str:
        return self.choices[self.index_of(letter)]

    def gold_sets(self) -> list[frozenset[str]]:
        return [frozenset(self.answers), *(frozenset(s) for s in self.accepted)]


@dataclass
class ScoredAnswer:
    """A scored response, read twice: the paper's reading (`status`, `parsed`, `reason`) and the strict one.

    The paper's reading (Algorithm 1) maps any part of the final answer to its most similar choice;
    the strict reading counts an answer only where the output commits to it (a marked label, or a
    choice text at `strict_threshold` or above) and calls hedges, negations and "none of the above"
    invalid. Left out, `strict_status` is None and all three strict fields copy the paper's reading.
    """

    status: Status
    parsed: tuple[str, ...]  # what the response was read as: letters, or numbers for numeric questions
    answer_text: str  # the part of the response that was matched (the final answer statement)
    similarities: dict[str, float] = field(default_factory=dict)  # choice letter -> best similarity
    exact_match: bool = False  # JMedLoRA's Exact match
    gestalt_score: float = 0.0  # JMedLoRA's Gestalt score: similarity of the answer to the gold choice text(s)
    reason: str = ""  # why the answer is invalid or wrong, in words
    strict_status: Status | None = None  # the strict reading's status; None on creation: the paper's
    strict_parsed: tuple[str, ...] = ()  # what the strict reading read (labels it committed to)
    strict_reason: str = ""  # why the strict reading is invalid or wrong

    def __post_init__(self) -> None:
        if self.strict_status is None:
            self.strict_status = self.status
            self.strict_parsed = tuple(self.parsed)
            self.strict_reason = self.reason
