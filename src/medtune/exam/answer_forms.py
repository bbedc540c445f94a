"""Normal forms of answer text, and choice labels as a response writes them.

`normalize` / `fold` / `canonical` are the forms matching and exact match compare (full-width
letters and digits folded, ①..⑳ read as a..t); `clean_segment` strips the wrappers, punctuation and
copulas models put around an answer. `as_label` reads a token as one of a question's labels
(`choice_labels`: letters a..z up to 26 choices, numbers 1..n beyond) and `line_label` the label a
line opens with where it is marked as one ("b. text", "(b) text"). Used by `medtune.exam.answer_location`
(where the answer is) and `medtune.exam.parsing` (what it says).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from medtune.vocabulary import LETTERS

# A choice label as written: a letter, or a number (questions of more than 26 choices).
LABEL_TOKEN = r"[A-Za-z]|\d{1,3}"
# Markdown emphasis, quotes and brackets that models wrap around a final answer.
_WRAPPERS = "*`\"'「」『』【】 \t\r\n\u3000、,:：;"
_TRAILING_PUNCT = ".。．!！?？"
# Japanese answers often end in a copula ("cです。"); it carries no answer.
_COPULAS = ("です", "である", "となります", "となる", "だ")
# What `clean_segment` strips from the end, read on the reversed text: wrappers, punctuation, copulas.
_STRIPPED_TAIL_RE = re.compile(
    "(?:[" + re.escape(_WRAPPERS + _TRAILING_PUNCT) + "]+|" + "|".join(c[::-1] for c in _COPULAS) + ")*"
)

# ① is U+2460; NFKC would turn it into "1", so it is mapped to a letter before NFKC runs.
_CIRCLED_TO_LETTER = str.maketrans({chr(0x2460 + i): LETTERS[i] for i in range(20)})

# A label marked as one: "(c)", "[c]", "c)", "c.", "c:" (then a space or the end), "cが" / "cは" / "cです".
STRONG_LABEL_RE = re.compile(
    rf"[(\[]\s*(?P<bracketed>{LABEL_TOKEN})\s*[)\]](?:\s*[.:])?"
    rf"|(?P<marked>{LABEL_TOKEN})(?:\s*[)\]]|[.:](?=\s|$)|(?=が|は|を|です|である|だ|となる))"
)
SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)|[。！？]")
SPACES_RE = re.compile(r"\s*")
_LABEL_WINDOW = 64  # characters read where a line may open with a label


def normalize(text: str, circled_as_letters: bool = True) -> str:
    """NFKC-fold `text` (ａ→a, Ａ→A, １→1) after reading ①..⑳ as a..t; used for matching only."""
    if circled_as_letters:
        text = text.translate(_CIRCLED_TO_LETTER)
    return unicodedata.normalize("NFKC", text)


def fold(text: str) -> str:
    """`normalize`, then casefold and collapse whitespace: the form that fuzzy matching compares."""
    return " ".join(normalize(text).casefold().split())


def canonical(text: str) -> str:
    """`fold`, and read "、" as "," with no space around commas: the form exact match compares."""
    folded = fold(text).replace("、", ",")
    return re.sub(r"\s*,\s*", ",", folded)


def clean_segment(text: str) -> str:
    """Strip wrappers, trailing punctuation and a trailing copula until nothing more comes off.

    The end is read once, backwards: "cですですです..." loses one copula at a time, and copying the
    text for each would cost time quadratic in its length.
    """
    start = len(text) - len(text.lstrip(_WRAPPERS))
    end = len(text) - _STRIPPED_TAIL_RE.match(text[::-1]).end()
    return text[start:end]


def uses_letters(labels: Sequence[str]) -> bool:
    return not labels or labels[0] == "a"


def as_label(token: str, labels: Sequence[str]) -> str | None:
    """`token` ("C", "c", "12") as one of `labels`, or None; a letter is no label of a numbered list."""
    token = token.strip().lower()
    if token.isdigit():
        token = str(int(token))
    return token if token in labels else None


def label_kind_matches(token: str, labels: Sequence[str]) -> bool:
    """Whether `token` is written in the question's label scheme (a letter, or a number past 26)."""
    return token.isalpha() == uses_letters(labels)


def line_label(line: str, labels: Sequence[str], start: int = 0) -> str | None:
    """The label `line` (from `start`) opens with when it is marked as one ("b. text", "(b) text"), else None.

    Only the first `_LABEL_WINDOW` characters are read: a label is a few characters long, and
    normalising a whole (maybe very long) line for each question asked about it would not be.
    """
    begin = SPACES_RE.match(line, start).end()
    head = line[begin : begin + _LABEL_WINDOW]
    if begin + _LABEL_WINDOW >= len(line):
        head = head.rstrip()
    found = STRONG_LABEL_RE.match(normalize(head, uses_letters(labels)))
    if not found:
        return None
    token = found.group("bracketed") or found.group("marked")
    return as_label(token, labels) if label_kind_matches(token, labels) else None
