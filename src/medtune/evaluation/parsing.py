"""Answer parsing: find the final answer in a model response and cut it into choice-sized parts.

The steps follow Algorithm 1 of the 70B paper, made robust to how models actually answer:

1. `answer_segment` keeps the text after the last answer marker (答え, 正解, Answer, Final answer,
   Đáp án, ...), or the last non-empty line when there is no marker (with the label-led lines just
   before it, up to one line per answer asked for).
2. `normalize` folds full-width forms with NFKC and reads circled numbers ①..⑳ as labels a..t.
3. `split_parts` cuts the segment on list separators and joining words, and reads a choice label
   ("e.", "(c)", "B", ...) at the start of each part.

Matching parts to choices and judging them is left to `medtune.evaluation.scoring`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from medtune.evaluation.types import LETTERS

# Longer markers come first so that "answer is" wins over "answer", and 答え over 答.
_MARKER_RE = re.compile(
    r"(?:\b(?:final\s+answer|answer\s+is|answer)\b|答え|解答|正解|答|đáp\s*án)\s*(?:[:：]|は)?",
    re.IGNORECASE,
)
# Markdown emphasis, quotes and brackets that models wrap around a final answer.
_WRAPPERS = "*`\"'「」『』【】 \t\r\n\u3000"
_TRAILING_PUNCT = ".。．!！?？"
# Japanese answers often end in a copula ("cです。"); it carries no answer.
_COPULA_RE = re.compile(r"(?:です|である|となります|となる|だ)$")

# ① is U+2460; NFKC would turn it into "1", so it is mapped to a letter before NFKC runs.
_CIRCLED_TO_LETTER = str.maketrans({chr(0x2460 + i): LETTERS[i] for i in range(20)})

# Separators between answers. Run on NFKC text, so "，" and "；" arrive as "," and ";".
_SPLIT_RE = re.compile(r"[,、/・;\n]|\band\b|\bvà\b|および|と", re.IGNORECASE)
# A choice label at the start of a part: "c", "c.", "c)", "(c)", "c:", "c text", "cです".
_LABEL_RE = re.compile(r"^[(\[]?([a-zA-Z])(?:[)\]]|[.:]|(\s)|$|(?=が|は|を|です|である|だ))")
_BARE_LABELS_RE = re.compile(r"^[a-zA-Z](?:\s+[a-zA-Z])+$")
# Digits right after a letter belong to a unit or a name ("kg/m2", "CO2"), not to the answer.
_NUMBER_RE = re.compile(r"(?<![A-Za-z\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Private-use characters: they never occur in exam text, so they can stand in for a masked choice.
_MASK_OPEN, _MASK_CLOSE = "\ue000", "\ue001"


@dataclass(frozen=True)
class Part:
    """One piece of the answer segment, and the choice label it starts with, if any."""

    text: str
    label: str | None = None


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
    """Strip wrappers, trailing punctuation and a trailing copula until nothing more comes off."""
    previous = None
    while text != previous:
        previous = text
        text = _COPULA_RE.sub("", text.strip(_WRAPPERS).rstrip(_TRAILING_PUNCT))
    return text


def _starts_with_label(line: str) -> bool:
    return _LABEL_RE.match(normalize(line)) is not None


def last_lines(text: str, max_lines: int = 1) -> str:
    """The last non-empty line of `text`, with up to `max_lines - 1` label-led lines before it.

    With no answer marker, a two-answer reply often ends in one line per answer
    ("a. 酸素欠乏症\nb. 硫化水素中毒"); those lines belong together while each starts with a label.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    taken = [lines.pop()]
    while lines and len(taken) < max_lines and _starts_with_label(taken[0]) and _starts_with_label(lines[-1]):
        taken.insert(0, lines.pop())
    return "\n".join(taken)


def answer_segment(response: str, max_lines: int = 1) -> str:
    """The final answer in `response`: after the last marker, else the last non-empty line(s).

    When the last marker ends the response ("…なので c が正解。"), the answer stands before it on
    the same line, so that text is used instead. `max_lines` (the number of answers asked for)
    bounds how many label-led lines make up a marker-less answer.
    """
    markers = list(_MARKER_RE.finditer(response))
    if markers:
        last = markers[-1]
        after = clean_segment(response[last.end():])
        if after:
            return after
        line_start = response.rfind("\n", 0, last.start()) + 1
        before = clean_segment(response[line_start:last.start()])
        if before:
            return before
    return clean_segment(last_lines(response, max_lines))


def read_label(text: str, choices: Sequence[str]) -> str | None:
    """The choice letter that `text` (normalised) starts with, or None.

    A letter followed only by a space is a weaker sign: "B cell lymphoma" is a choice text, not
    label b, so such a part is a label only if it is not itself one of the choice texts.
    """
    found = _LABEL_RE.match(text.strip())
    if not found:
        return None
    letter = found.group(1).lower()
    if LETTERS.index(letter) >= len(choices):
        return None
    if found.group(2) is not None and fold(text) in {fold(choice) for choice in choices}:
        return None
    return letter


def _mask_choices(segment: str, choices: Sequence[str]) -> tuple[str, list[str]]:
    """Hide verbatim choice texts that contain a separator, so splitting cannot cut them."""
    hidden: list[str] = []
    texts = sorted({normalize(c).strip() for c in choices}, key=len, reverse=True)
    for text in texts:
        if not text or not _SPLIT_RE.search(text):
            continue

        def hide(found: re.Match) -> str:
            hidden.append(found.group(0))
            return f"{_MASK_OPEN}{len(hidden) - 1}{_MASK_CLOSE}"

        segment = re.sub(re.escape(text), hide, segment, flags=re.IGNORECASE)
    return segment, hidden


def _unmask(text: str, hidden: list[str]) -> str:
    pattern = re.escape(_MASK_OPEN) + r"(\d+)" + re.escape(_MASK_CLOSE)
    return re.sub(pattern, lambda found: hidden[int(found.group(1))], text)


def split_fragments(segment: str, choices: Sequence[str]) -> list[str]:
    """Cut a normalised segment on separators, keeping choice texts that contain one whole."""
    masked, hidden = _mask_choices(segment, choices)
    fragments = [_unmask(piece, hidden).strip() for piece in _SPLIT_RE.split(masked)]
    fragments = [clean_segment(piece) for piece in fragments]
    pieces: list[str] = []
    for fragment in fragments:
        # "a c": labels separated by spaces alone are still a list.
        if _BARE_LABELS_RE.match(fragment):
            pieces.extend(fragment.split())
        elif fragment:
            pieces.append(fragment)
    return pieces


def _group_by_label(parts: list[Part]) -> list[Part]:
    """Join unlabelled fragments to the labelled part before them (leading ones to the first).

    A choice text may contain "、" or "・", and a final answer may trail an explanation; once
    labels are present they, not the separators, say how many answers were given.
    """
    groups: list[list[str]] = []
    labels: list[str] = []
    leading: list[str] = []
    for part in parts:
        if part.label is not None:
            groups.append([*leading, part.text])
            labels.append(part.label)
            leading = []
        elif groups:
            groups[-1].append(part.text)
        else:
            leading.append(part.text)
    return [Part(" ".join(texts), label) for texts, label in zip(groups, labels)]


def split_parts(segment: str, choices: Sequence[str], num_answers: int) -> list[Part]:
    """The parts of a normalised answer segment, each with the choice label it starts with."""
    parts = [Part(text, read_label(text, choices)) for text in split_fragments(segment, choices)]
    if len(parts) > num_answers and any(part.label is not None for part in parts):
        return _group_by_label(parts)
    return parts


def extract_numbers(segment: str) -> list[str]:
    """The numbers written in `segment` (NFKC-folded, decimals allowed), in order."""
    text = normalize(segment, circled_as_letters=False)
    return [number.replace(",", "") for number in _NUMBER_RE.findall(text)]
