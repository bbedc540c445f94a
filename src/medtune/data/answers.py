"""The one reading of an answer key, shared by the training reader and the evaluation reader.

A key is a list (`["a", "c"]`) or one string, in any of the ways exam files write it: `"a,c"`,
`"a c"`, `"ac"`, `"a、c"`, `"A/C"`. Labels are NFKC-folded and case-folded, so full-width `ｃ` and
`Ｃ` read as `c`, and circled numbers `①`..`⑳` read as the letters a..t (where the question's labels
are letters; past 26 choices, where they are numbers, `③` is "3"). `"a or d"` gives alternative
keys: the first is the printed key, the rest are accepted too. A question with no choices has a
numeric key (`["12"]`, `12`). The labels are `choice_labels(n)`: a..z up to 26 choices, "1".."n" beyond.

`read_answer_key` returns the key as sorted label sets, or raises `AnswerProblem`, which each
reader words for its own input (file:line and the field).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from medtune.vocabulary import LETTERS, choice_labels

AnswerSets = tuple[tuple[str, ...], ...]

_CIRCLED_TO_LETTER = str.maketrans({chr(0x2460 + i): LETTERS[i] for i in range(20)})  # ① is U+2460
_LABEL_SEPARATORS = re.compile(r"[,、，/;\s]+")
# From the start of a run of spaces only: tried inside a long run, each try would read the run again.
_ALTERNATIVES = re.compile(r"(?<!\s)\s+or(?:\s+|$)", re.IGNORECASE)


class AnswerProblem(ValueError):
    """Why a key cannot be read: `kind` (as `medtune.exam.records.REASON_KINDS` counts it) and the label.

    Kinds: `empty_answer` (nothing given), `answer_outside_choices` (a label of the question's scheme
    beyond its choices, e.g. "f" of five), `unparsable_answer` (not a label of the scheme at all,
    e.g. "3" or "b?" for lettered choices; or, with no choices, not a number).
    """

    def __init__(self, kind: str, token: str, n_choices: int):
        self.kind, self.token, self.n_choices = kind, token, n_choices
        super().__init__(self.reason())

    def reason(self, note: str = "", what: str = "answer") -> str:
        """The problem in words; `note` follows the label, e.g. " ('answer')" to name the field."""
        if self.kind == "empty_answer":
            return f"the {what}{note} is empty"
        if self.n_choices == 0:
            return f"{what} {self.token!r}{note} is not a number, and the question has no choices"
        return (
            f"{what} {self.token!r}{note} is not one of the {self.n_choices} choice letters "
            f"({label_span(self.n_choices)})"
        )


def label_span(n_choices: int) -> str:
    """The labels of `n_choices` as a range: "a-e", "1-30", "a" or "none"."""
    labels = choice_labels(n_choices)
    return "none" if n_choices == 0 else labels[0] if n_choices == 1 else f"{labels[0]}-{labels[-1]}"


def uses_letters(n_choices: int) -> bool:
    """Whether a question of `n_choices` is labelled by letters (up to 26 choices) rather than numbers."""
    return 0 < n_choices <= len(LETTERS)


def fold_answer(text: str, n_choices: int) -> str:
    """`text` NFKC- and case-folded and stripped; circled numbers as letters where the labels are letters."""
    if uses_letters(n_choices):
        text = text.translate(_CIRCLED_TO_LETTER)
    return unicodedata.normalize("NFKC", text).casefold().strip()


def split_labels(text: str, n_choices: int) -> tuple[str, ...]:
    """The labels written in one folded alternative: "a,c" / "a c" / "ac" -> ("a", "c"); "07" -> ("7",).

    A run of ASCII letters is one label per letter where the labels are letters; anything else stays
    one token as written (so "b?" or "3" fails the check against the labels, naming itself).
    """
    tokens = [t for t in _LABEL_SEPARATORS.split(text) if t]
    if uses_letters(n_choices):
        return tuple(ch for t in tokens for ch in (t if t.isascii() and t.isalpha() else [t]))
    return tuple(str(int(t)) if t.isascii() and t.isdigit() else t for t in tokens)


def check_labels(labels: tuple[str, ...], n_choices: int) -> tuple[str, ...]:
    """`labels` sorted and unique, or `AnswerProblem` for the first that is not a label of `n_choices`."""
    valid = choice_labels(n_choices)
    for label in labels:
        if label not in valid:
            same_scheme = label in LETTERS if uses_letters(n_choices) else label.isascii() and label.isdigit()
            raise AnswerProblem("answer_outside_choices" if same_scheme else "unparsable_answer", label, n_choices)
    if not labels:
        raise AnswerProblem("empty_answer", "", n_choices)
    return tuple(sorted(set(labels), key=valid.index))


def read_answer_key(value: Any, n_choices: int) -> AnswerSets:
    """The key `value` (a JSON string, number, list of them, or null) of a question of `n_choices` choices.

    Returns one or more label sets, the printed key first; numbers as written (NFKC-folded) where the
    question has no choices. Raises `AnswerProblem`: null, "" and [] are an empty answer; true/false,
    objects and nested lists are not labels.
    """
    values = value if isinstance(value, list) else [value]
    written = []
    for item in values:
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise AnswerProblem("unparsable_answer", _json_text(item), n_choices)
        folded = fold_answer(str(item), n_choices)
        if folded and folded != ",":
            written.append(folded)
    if not written:
        raise AnswerProblem("empty_answer", "", n_choices)
    if n_choices == 0:
        for number in written:
            if not is_number(number):
                raise AnswerProblem("unparsable_answer", number, n_choices)
        return (tuple(written),)
    alternatives = _ALTERNATIVES.split(",".join(written))
    return tuple(check_labels(split_labels(alternative, n_choices), n_choices) for alternative in alternatives)


def is_number(value: Any) -> bool:
    """Whether `value` reads as a number: 12, "12", "1.5", "１２" (NaN does not)."""
    try:
        return float(value) == float(value)
    except (TypeError, ValueError):
        return False


def _json_text(value: Any) -> str:
    """A non-label value as JSON writes it (true, {...}), for messages."""
    return json.dumps(value, ensure_ascii=False)[:40]
