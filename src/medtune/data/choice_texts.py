"""Exam defects hidden in choice texts: a gold answer written as a choice's text, and choices that repeat.

Texts are compared folded: NFKC (full-width letters and digits as ASCII), case-folded, runs of
whitespace as one space, stripped.

A gold answer written as a choice's text ("Aspirin" for "b") is read as the letter of the one choice
with that text (`letters_for_texts`); the exam's loader warns once, with the count and the first
file:line. Where the text cannot say which letter it means, the question is left out of scoring
(`AmbiguousAnswer`, kind "ambiguous_answer") naming the text and the letters: the text of two or
more choices, or a text that also reads as choice letters ("bad" of five choices: a, b and d) or as
a choice's position ("2" where the choice with that text is d), unless both readings agree.

A question whose choices repeat a text (`repeated_choices`) is scored only where the repeat cannot
change its score. Where the key names one of the twins, a response naming that text (or the twin's
letter) fits the key and a wrong letter alike: the question is left out of scoring (kind
"duplicate_choices") in every mode. Where the key is none of them (or the question is void), every
reading of a response scores the same, so it is scored as written, and the loader says so once
(count and first file:line). Twins are never merged into one choice: that would score another
question than the one the model was shown. Blank choice texts are not repeats (a figure-only question
is `blank_choices`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medtune.data.answers import AnswerProblem, read_answer_key
from medtune.vocabulary import ExamQuestion, choice_labels


@dataclass(frozen=True)
class AnswerFromText:
    """A gold answer the exam file gives as choice text, and the letters it was read as."""

    qid: str
    source: str  # file:line
    texts: tuple[str, ...]  # as written
    letters: tuple[str, ...]


class AmbiguousAnswer(ValueError):
    """A gold answer written as text that does not name one letter; the message says which ones it could be."""


def fold_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def letters_for_texts(value: Any, choices: Sequence[str], field: str = "") -> tuple[Any, list[str]]:
    """The answer `value` (a string, a number or a list of them) with each item that is a choice's text
    replaced by that choice's letter, and the items replaced (as written). Items that are no choice's
    text are kept as written, for `read_answer_key`. Raises `AmbiguousAnswer`; `field` (the record's
    answer field) is named in its message."""
    if not choices:
        return value, []
    items = value if isinstance(value, list) else [value]
    replaced: list[str] = []
    read: list[Any] = []
    for item in items:
        letter = _letter_of_text(item, choices, field)
        if letter is None:
            read.append(item)
        else:
            read.append(letter)
            replaced.append(str(item))
    if not replaced:
        return value, []
    return (read if isinstance(value, list) else read[0]), replaced


def _letter_of_text(item: Any, choices: Sequence[str], field: str) -> str | None:
    """The letter of the one choice whose text `item` is, or None where it is no choice's text or where it
    reads as that very letter anyway."""
    if isinstance(item, bool) or not isinstance(item, (str, int, float)):
        return None
    folded = fold_text(str(item))
    matches = [i for i, text in enumerate(choices) if folded and fold_text(text) == folded]
    if not matches:
        return None
    labels = choice_labels(len(choices))
    shown = f"answer {str(item)!r}" + (f" ({field!r})" if field else "")
    if len(matches) > 1:
        which = _joined([labels[i] for i in matches])
        raise AmbiguousAnswer(
            f"{shown} is the text of choices {which} (the same text more than once); give the letter of the right one"
        )
    letter = labels[matches[0]]
    as_labels = _as_labels(item, len(choices))
    if as_labels is not None:
        if as_labels == (letter,):
            return None  # the text and the label name the same choice
        raise AmbiguousAnswer(
            f"{shown} is the text of choice {letter} and also reads as the choice letter(s) "
            f"{_joined(list(as_labels))}; give the letter of the one you mean (e.g. {letter!r})"
        )
    position = _position(folded, len(choices))
    if position is not None and position != matches[0]:
        raise AmbiguousAnswer(
            f"{shown} is the text of choice {letter} and may also be the position of choice {labels[position]} "
            f"(numbers are not labels of a question with {len(choices)} choices); give the letter of the one you "
            "mean"
        )
    return letter


def _as_labels(item: Any, n_choices: int) -> tuple[str, ...] | None:
    """`item` read as the key it would be without text matching: one set of labels, or None."""
    try:
        sets = read_answer_key(item, n_choices)
    except AnswerProblem:
        return None
    return sets[0] if len(sets) == 1 else None


def _position(folded: str, n_choices: int) -> int | None:
    """The 0-based choice a 1-based whole number in range points at, else None."""
    return int(folded) - 1 if folded.isascii() and folded.isdigit() and 1 <= int(folded) <= n_choices else None


@dataclass(frozen=True)
class RepeatedChoices:
    """A question two or more of whose choices have the same text, and whether it can still be scored."""

    qid: str
    source: str  # file:line
    twins: str  # in words: "d and e have the same text 'X'"
    scored: bool  # the key is none of the twins (or the question is void): a response scores the same either way

    def reason(self) -> str:
        if self.scored:
            return f"choices {self.twins} (case and spaces aside); scored as written, as the key is none of them"
        return (
            f"choices {self.twins} (case and spaces aside) and the key names one of them, so a response naming that "
            "text fits the key and a wrong letter alike; left out of scoring: make the texts differ, or drop the "
            "question"
        )


def repeated_choices(q: ExamQuestion) -> RepeatedChoices | None:
    """The choices of `q` that repeat a text, or None when no two non-blank texts fold alike."""
    labels = choice_labels(len(q.choices))
    first_of: dict[str, int] = {}
    groups: dict[int, list[int]] = {}
    for i, text in enumerate(q.choices):
        folded = fold_text(text)
        if not folded:
            continue
        if folded in first_of:
            groups.setdefault(first_of[folded], [first_of[folded]]).append(i)
        else:
            first_of[folded] = i
    if not groups:
        return None
    twins = "; ".join(
        f"{_joined([labels[i] for i in same])} have the same text {q.choices[same[0]].strip()!r}"
        for same in groups.values()
    )
    in_key = {labels[i] for same in groups.values() for i in same} & {x for s in q.gold_sets() for x in s}
    return RepeatedChoices(q.qid, q.source, twins, scored=q.voided or not in_key)


def _joined(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
