"""The records evaluation passes around: a question, the scored answer to it, and its status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from medtune.config.eval_schema import Similarity  # noqa: F401  (re-exported: scoring takes it)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


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

    @property
    def is_numeric(self) -> bool:
        return not self.choices

    @property
    def num_answers(self) -> int:
        return len(self.answers)

    def letter(self, index: int) -> str:
        return LETTERS[index]

    def choice_of(self, letter: str) -> str:
        return self.choices[LETTERS.index(letter)]

    def gold_sets(self) -> list[frozenset[str]]:
        return [frozenset(self.answers), *(frozenset(s) for s in self.accepted)]


@dataclass
class ScoredAnswer:
    status: Status
    parsed: tuple[str, ...]  # what the response was read as: letters, or numbers for numeric questions
    answer_text: str  # the part of the response that was matched (after the last answer marker)
    similarities: dict[str, float] = field(default_factory=dict)  # choice letter -> best similarity
    exact_match: bool = False  # JMedLoRA's Exact match
    gestalt_score: float = 0.0  # JMedLoRA's Gestalt score: similarity of the answer to the gold choice text(s)
    reason: str = ""  # why the answer is invalid or wrong, in words
