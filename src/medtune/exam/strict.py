"""The strict reading: an answer counts only where the response commits to it.

Algorithm 1 maps any part of the final answer to its most similar choice, so a hedge, a negation,
a bare restatement of the question or plain gibberish can still land on the right choice. The
strict reading asks of every answer statement (see `medtune.exam.parsing`) what it commits
to:

- marked labels ("c.", "(c)", "Answer: c", "option c", "a, c"), unless offered as alternatives
  ("a or b", "either a or b", "a/b", "aまたはb", "aかb"), or a label whose text is another
  choice's ("b. <the text of choice c>");
- choice text, only when it is at least `strict_threshold` similar to a choice (after an answer
  marker, a statement that opens with a choice's text also names it: "The answer is acute
  cholecystitis because ...");
- nothing, for a negation with no answer left ("not a", "a is incorrect", "aではない"), for "none
  of the above" / "all of the above" / "該当なし" when no choice says that, and for text that
  names no choice.

The final statement must commit, and every statement that commits must name the same answer: a
response that says "The answer is c" and later "The answer is a" has not committed to either,
unless the last one is an explicit "Final answer:" / "最終的な答え", which settles it.
Judging the committed labels against the key is left to `medtune.exam.scoring`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from medtune.exam.answer_forms import fold
from medtune.exam.answer_location import LocatedAnswer, Statement
from medtune.exam.parsing import Part, Reading, read_statement
from medtune.vocabulary import ExamQuestion

SimilarityFn = Callable[[str, str], float]

# The label mark a labelled part opens with ("b. ", "(b) ", "option b "), cut off to read its text.
# (No two runs of whitespace meet without a mark between them: a long run must not be split two ways.)
_LABEL_MARK_RE = re.compile(
    r"^\s*(?:(?:option|choice|選択肢)\s*)?(?:[(\[]\s*)?(?:[A-Za-z]|\d{1,3})\s*(?:[)\]]\s*)?(?:[.:]\s*)?", re.I
)


@dataclass(frozen=True)
class Commitment:
    """The labels a statement (or a whole response) commits to, or why it commits to none."""

    labels: tuple[str, ...] = ()
    problem: str = ""  # "" when the statement commits; else the reason, in words


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@lru_cache(maxsize=256)
def folded_choices(choices: tuple[str, ...]) -> tuple[str, ...]:
    """`fold` of each choice text, kept: an answer cut into many parts compares each with every choice."""
    return tuple(fold(choice) for choice in choices)


def best_choice(question: ExamQuestion, text: str, similarity: SimilarityFn) -> tuple[str, float]:
    """The label of the choice most similar to `text`, and that similarity (ties: the earlier choice)."""
    folded = fold(text)
    scores = [similarity(folded, choice) for choice in folded_choices(tuple(question.choices))]
    top = scores.index(max(scores))
    return question.label(top), scores[top]


def _opens_with(folded_text: str, folded_choice: str) -> bool:
    """Whether folded text starts with a folded choice, ending there at a word boundary."""
    end = len(folded_choice)
    return bool(folded_choice) and folded_text.startswith(folded_choice) and not folded_text[end : end + 1].isalnum()


def _choice_it_opens_with(question: ExamQuestion, folded_text: str) -> str | None:
    """The label of the longest choice text that folded text opens with, if any."""
    opened = [
        (len(choice), question.label(index))
        for index, (choice, folded) in enumerate(zip(question.choices, folded_choices(tuple(question.choices))))
        if _opens_with(folded_text, folded)
    ]
    return max(opened)[1] if opened else None


def _label_text_mismatch(question: ExamQuestion, parts: Sequence[Part]) -> str:
    """A labelled part whose text is another choice's ("b. <text of c>"), in words; else ""."""
    for part in parts:
        if part.label is None:
            continue
        text = fold(_LABEL_MARK_RE.sub("", part.text, count=1))
        own = folded_choices(tuple(question.choices))[question.index_of(part.label)]
        other = _choice_it_opens_with(question, text)
        if other is not None and other != part.label and not _opens_with(text, own):
            return f"label {part.label} is given with the text of choice {other} ({question.choice_of(other)})"
    return ""


def _text_commitment(
    question: ExamQuestion, reading: Reading, marked: bool, similarity: SimilarityFn, threshold: float
) -> Commitment:
    """What unlabelled text commits to: choice texts matched at `threshold` or above."""
    matched = [(part, *best_choice(question, part.text, similarity)) for part in reading.parts]
    hits = [(part, label) for part, label, score in matched if score >= threshold]
    if hits and (marked or len(hits) == len(matched)):
        labels = _unique([label for _, label in hits])
        if len(labels) > 1 and any(part.after_or for part, _ in hits[1:]):
            return Commitment(problem=f"hedges between {' and '.join(labels)}")
        return Commitment(labels)
    whole_label, whole_score = best_choice(question, reading.text, similarity) if reading.text else ("", 0.0)
    if whole_score >= threshold:
        return Commitment((whole_label,))
    if marked and reading.text:
        opened = _choice_it_opens_with(question, fold(reading.text))
        if opened is not None:
            return Commitment((opened,))
    if not reading.text:
        return Commitment(problem="no answer found")
    return Commitment(
        problem=(
            f"{reading.text[:60]!r} names no choice (closest: {whole_label} at {whole_score:.2f}; "
            f"the strict reading needs {threshold:g})"
        )
    )


def statement_commitment(
    question: ExamQuestion,
    statement: Statement,
    similarity: SimilarityFn,
    threshold: float,
    reading: Reading | None = None,
) -> Commitment:
    """What one answer statement commits to under the strict reading (`reading`: its reading, if made)."""
    reading = reading or read_statement(statement.text, question.choices, statement.marked)
    if reading.negated and not reading.parts and not reading.no_choice:
        return Commitment(problem=f"rules out {', '.join(reading.negated)} and names no answer")
    if reading.no_choice:
        return Commitment(problem=f"says {reading.no_choice!r}, which is not one of the choices")
    if reading.unknown_labels:
        return Commitment(problem=f"names {', '.join(reading.unknown_labels)}, which is no choice label here")
    if not reading.labelled:
        return _text_commitment(question, reading, statement.marked, similarity, threshold)
    if reading.hedge:
        return Commitment(problem=f"hedges between {' and '.join(reading.labels)}")
    mismatch = _label_text_mismatch(question, reading.parts)
    return Commitment(problem=mismatch) if mismatch else Commitment(reading.labels)


def strict_commitment(
    question: ExamQuestion,
    located: LocatedAnswer,
    similarity: SimilarityFn,
    threshold: float,
    final_reading: Reading | None = None,
) -> Commitment:
    """What the whole response commits to: its final statement, if no other statement disagrees.

    `final_reading`: the final statement's reading, when the caller has made it already."""
    if not located.statements:
        if located.echoed_lines:
            return Commitment(problem="no answer found: the response only re-types the question or the choices")
        return Commitment(problem="no answer found")
    # A looping response states the same thing many times: each distinct statement is judged once.
    judged: dict[Statement, Commitment] = {}
    if final_reading is not None:
        final_statement = located.statements[-1]
        judged[final_statement] = statement_commitment(question, final_statement, similarity, threshold, final_reading)
    for statement in located.statements:
        if statement not in judged:
            judged[statement] = statement_commitment(question, statement, similarity, threshold)
    commitments = [judged[statement] for statement in located.statements]
    final = commitments[-1]
    if final.problem or located.statements[-1].final:
        return final  # an explicit "Final answer:" settles it, whatever came before
    stated = _unique([",".join(c.labels) for c in commitments if c.labels and not c.problem])
    if len({frozenset(answer.split(",")) for answer in stated}) > 1:
        return Commitment(problem=f"states different answers: {', then '.join(stated)}")
    return final
