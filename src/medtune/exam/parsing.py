"""Answer parsing: find where a model response states its answer, and read that statement.

Algorithm 1 of the 70B paper maps every part of the final answer to its most similar choice; this
module decides what the final answer *is* and cuts it into parts, the way a careful reader does:

1. `strip_echoes` drops the lines that only re-type the question or the choice list;
2. `locate_answer` finds every answer statement, the last one the final answer (steps 1 and 2 are
   `medtune.exam.answer_location`'s; the normal forms and labels all three steps read are in
   `medtune.exam.answer_forms`);
3. `read_statement` reads one statement (after a marker: its first sentence, without a trailing
   reason such as ", which ..." or "because ..."). A choice label counts only where it is marked as one
   ("c.", "(c)", "c)", "c:", "option c", "cが", a list of bare labels "a, c", a lone "c", or right
   after an answer marker), never an English article ("A 45-year-old ..."). Once labels are
   present the statement splits only at them, so a choice text holding "/" or "and" stays whole;
   without labels it splits on list separators. It also notes hedges ("a or b", "aかb"),
   negations ("not a", "aではない", which are dropped) and "none of the above" / "該当なし".

Every step reads in time linear in the response's length, whatever it holds (a 20k-character
loop of "not A not B", long runs of spaces or line breaks, thousands of labels): no pattern is tried
from every position of a long text (negations: `medtune.exam.negations`), and positions of
lines and sentences are found once and bisected. Before scoring, evaluation cuts each response to
what `eval.max_new_tokens` allows (`medtune.llm.response_limit`).

Labels follow `choice_labels`: letters a..z up to 26 choices, numbers 1..n beyond. Matching the
parts to choices and judging them is left to `medtune.exam.scoring` (the paper's reading)
and `medtune.exam.strict` (the strict one).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from medtune.exam.answer_forms import (
    LABEL_TOKEN,
    SENTENCE_END_RE,
    SPACES_RE,
    STRONG_LABEL_RE,
    as_label,
    clean_segment,
    fold,
    label_kind_matches,
    line_label,
    normalize,
    uses_letters,
)
from medtune.exam.negations import drop_negations
from medtune.vocabulary import LETTERS, choice_labels

# "A and C are correct": the verdict after the labels names no answer.
_TRAILING_VERDICT_RE = re.compile(
    r"(?<!\s)\s+(?:is|are)\s+(?:the\s+)?(?:correct|right)(?:\s+(?:answers?|options?|choices?|ones?))?\s*$", re.I
)
_OPTION_LABEL_RE = re.compile(rf"(?:option|choice|選択肢)\s*(?P<label>{LABEL_TOKEN})(?![A-Za-z0-9])(?:\s*[.):])?", re.I)
# Right after an answer marker a bare label may be followed by a comma or a reason: "c, because ...".
_LEAD_LABEL_RE = re.compile(
    rf"(?P<label>{LABEL_TOKEN})(?=\s*[,、;。(]|\s*$|\s+(?:because|since|as|which|[-–—])\s)", re.I
)
_BARE_TOKEN_RE = re.compile(rf"^[(\[]?(?P<label>{LABEL_TOKEN})[)\]]?[.:]?$")

# Where a new answer may start inside a statement. Run on NFKC text ("，" arrives as ",").
_SEPARATOR_RE = re.compile(r"[,、;/&\n・]|\b(?:and|or|và)\b|および|及び|または|もしくは|と", re.I)
_LIST_SEPARATOR_RE = re.compile(r"\s*([,、;/&]|\b(?:and|or)\b|および|及び|または|もしくは|と|か|\s)\s*", re.I)
_OR_WORDS = {"or", "/", "か", "または", "もしくは"}
_TENTATIVE = {"either", "possibly", "maybe", "perhaps"}
_FILLERS = _TENTATIVE | {
    "both",
    "probably",
    "likely",
    "option",
    "options",
    "choice",
    "choices",
    "then",
    "also",
    "選択肢",
}
_ARTICLE_RE = re.compile(r"(?:a|an|the)\s+(?=\S)", re.I)
_FILLER_PREFIX_RE = re.compile(r"(?:(?:either|both|possibly|maybe|perhaps|probably|also|then)\s+)+", re.I)

_LEFTOVER_RE = re.compile(r"[\s,、;.。:!?]|\b(?:but|rather|and|or|so|it)\b|しかし", re.I)
# "None of the above", "all of the above", "該当なし": no choice named (unless a choice says so).
_NO_CHOICE_RE = re.compile(
    r"\b(?:none|neither)\s+of\s+(?:the\s+)?(?:above|options|choices|these|them)\b"
    r"|\bno\s+(?:correct\s+)?(?:answer|option|choice)\b"
    r"|\ball\s+(?:of\s+)?(?:the\s+)?(?:above|options|choices)\b"
    r"|該当(?:なし|する(?:もの|選択肢)(?:は|が)?(?:ない|ありません))|いずれ(?:でも|も)(?:ない|該当しない)"
    r"|正解(?:は)?なし|(?:すべて|全て)(?:正しい|正解)|上記(?:の)?(?:すべて|全て)",
    re.I,
)
# A reason after the answer ("rash, which fits ...", "c because ...") is no second answer.
_REASON_RE = re.compile(
    r"(?<!\s)(?:\s*,\s*(?:which|because|since|as|given|due\s+to|so|this|that|it)\b|\s+(?:because|since)\b).*$",
    re.I | re.S,
)
_ABBREVIATIONS = {"e.g", "i.e", "vs", "dr", "mr", "mrs", "ms", "st", "no", "approx", "etc", "fig"}
# Where the word before a full stop starts: after the last of these ("(c.", "a, c.").
_WORD_START_RE = re.compile(r"[\s(\[,、]")

# Digits right after a letter belong to a unit or a name ("kg/m2", "CO2"), not to the answer.
_NUMBER_RE = re.compile(r"(?<![A-Za-z\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Private-use characters: they never occur in exam text, so they can stand in for a masked choice.
_MASK_OPEN, _MASK_CLOSE, _MASK_BASE = "\ue000", "\ue001", 0xE100
_MASK_RE = re.compile(f"{_MASK_OPEN}(.){_MASK_CLOSE}")


@dataclass(frozen=True)
class Part:
    """One piece of an answer statement, and the choice label it starts with, if any."""

    text: str
    label: str | None = None
    after_or: bool = False  # joined to the part before by "or", "/", "か", "または" (a hedge)


@dataclass(frozen=True)
class Reading:
    """What one answer statement says, before any choice text is matched to it."""

    text: str  # the statement as read: normalised, first sentence only when marked, negations dropped
    parts: tuple[Part, ...] = ()  # labelled parts when labels are marked, else text fragments
    labelled: bool = False
    hedge: bool = False  # labels offered as alternatives: "a or b", "either a or b", "aかb", "a/b"
    negated: tuple[str, ...] = ()  # what the statement rules out: "not a", "aではない"
    no_choice: str = ""  # "none of the above", "all of the above", "該当なし", when said and not a choice
    unknown_labels: tuple[str, ...] = ()  # labels in a label list that name no choice ("z" of five)

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels of the labelled parts, in order."""
        return tuple(dict.fromkeys(part.label for part in self.parts if part.label is not None))


def _mask_choices(text: str, choices: Sequence[str]) -> tuple[str, list[str]]:
    """Hide verbatim choice texts, so that no label is read and no cut made inside one."""
    hidden: list[str] = []
    texts = {normalize(choice).strip() for choice in choices}
    texts = sorted((text for text in texts if len(text) >= 3), key=len, reverse=True)
    for choice in texts:

        def hide(found: re.Match) -> str:
            hidden.append(found.group(0))
            return f"{_MASK_OPEN}{chr(_MASK_BASE + len(hidden) - 1)}{_MASK_CLOSE}"

        pattern = rf"(?<![A-Za-z0-9]){re.escape(choice)}(?![A-Za-z0-9])"
        text = re.sub(pattern, hide, text, flags=re.IGNORECASE)
    return text, hidden


def _unmask(text: str, hidden: list[str]) -> str:
    return _MASK_RE.sub(lambda found: hidden[ord(found.group(1)) - _MASK_BASE], text)


def first_sentence(text: str, labels: Sequence[str] = LETTERS) -> str:
    """`text` up to its first full stop, not counting the one of a label ("c.") or an abbreviation."""
    word_starts: list[int] | None = None  # found once, when a second full stop is looked at
    for found in SENTENCE_END_RE.finditer(text):
        if word_starts is None:
            word_starts = [m.end() for m in _WORD_START_RE.finditer(text)]
        at = bisect.bisect_right(word_starts, found.start()) - 1
        word = text[word_starts[at] if at >= 0 else 0 : found.start()].strip("()[]")
        if as_label(word, labels) is not None or word.casefold() in _ABBREVIATIONS:
            continue
        if found.group() in ".!?" and line_label(text, labels, found.end()):
            continue  # "a. X. c. Y": the next answer follows
        return text[: found.start()]
    return text


def _label_list(masked: str, labels: Sequence[str]) -> tuple[list[Part], list[str], bool] | None:
    """A statement made only of labels, joining words and fillers ("a, c", "either a or b", "aかb").

    Returns the labelled parts, the labels that name no choice, and whether it is a hedge; None
    when anything else is written.
    """
    pieces = _LIST_SEPARATOR_RE.split(masked.strip())
    parts: list[Part] = []
    unknown: list[str] = []
    after_or = tentative = False
    for index, piece in enumerate(pieces):
        word = piece.strip().casefold()
        if index % 2:  # a separator
            after_or = after_or or word in _OR_WORDS
            continue
        if not word:
            continue
        if word in _FILLERS:
            tentative = tentative or word in _TENTATIVE
            continue
        bare = _BARE_TOKEN_RE.match(piece.strip())
        if not bare or not label_kind_matches(bare.group("label"), labels):
            return None
        label = as_label(bare.group("label"), labels)
        if label is None:
            unknown.append(bare.group("label"))
        else:
            parts.append(Part(piece.strip(), label, after_or=after_or and bool(parts)))
        after_or = False
    if not parts and not unknown:
        return None
    distinct = len({part.label for part in parts} | set(unknown))
    hedge = distinct > 1 and (any(part.after_or for part in parts) or tentative)
    return parts, unknown, hedge


def _label_at(masked: str, position: int, labels: Sequence[str], first: bool) -> str | None:
    """The label marked at `position` of `masked`, if one is; `first`: the statement starts there."""
    matchers = [_OPTION_LABEL_RE, STRONG_LABEL_RE] + ([_LEAD_LABEL_RE] if first else [])
    for matcher in matchers:
        found = matcher.match(masked, position)
        if found:
            token = next(group for group in found.groups() if group)
            if label_kind_matches(token, labels) and as_label(token, labels):
                return as_label(token, labels)
    return None


def _label_before_its_text(text: str, labels: Sequence[str], choices: Sequence[str]) -> str | None:
    """ "C Rheumatoid factor" right after an answer marker: a bare label, then its own choice text."""
    found = re.match(rf"(?P<label>{LABEL_TOKEN})\s+(?P<rest>\S.*)", text, re.S)
    if not found or not label_kind_matches(found.group("label"), labels):
        return None
    label = as_label(found.group("label"), labels)
    if label is None:
        return None
    own = fold(choices[labels.index(label)])
    rest = fold(found.group("rest"))
    return label if rest.startswith(own) and not rest[len(own) : len(own) + 1].isalnum() else None


class _SpaceRuns:
    """Where the whitespace at a position ends; a run already read is not read again (a run of line
    breaks holds a separator at each of its characters)."""

    def __init__(self, text: str):
        self.text, self.run_start, self.run_end = text, 0, 0

    def end(self, position: int) -> int:
        if not self.run_start <= position <= self.run_end:
            self.run_start, self.run_end = position, SPACES_RE.match(self.text, position).end()
        return self.run_end


def _marked_labels(
    masked: str, hidden: list[str], labels: Sequence[str], choices: Sequence[str], lead: bool
) -> list[tuple[int, int, str, bool]]:
    """(start, separator start, label, after "or") for each label marked at a place an answer may start.

    `lead`: the statement follows an answer marker, so it may open with a bare label and its text.
    """
    candidates = [(0, 0, False)]
    article = _ARTICLE_RE.match(masked)
    if article:  # "A b. Hypokalemia": the article is no label, the "b." after it is
        candidates.append((article.end(), 0, False))
    for found in _SEPARATOR_RE.finditer(masked):
        candidates.append((found.end(), found.start(), found.group().strip().casefold() in _OR_WORDS))
    marks: list[tuple[int, int, str, bool]] = []
    spaces = _SpaceRuns(masked)
    for position, separator_start, after_or in candidates:
        begin = spaces.end(position)
        filler = _FILLER_PREFIX_RE.match(masked, begin)
        tentative = bool(filler) and any(w in _TENTATIVE for w in filler.group().casefold().split())
        start = filler.end() if filler else begin
        label = _label_at(masked, start, labels, first=position == 0)
        if label is None and lead and position == 0:
            label = _label_before_its_text(_unmask(masked[start:], hidden), labels, choices)
        if label is not None:
            marks.append((start, separator_start, label, after_or or tentative))
    return marks


def _labelled_parts(masked: str, hidden: list[str], marks: list[tuple[int, int, str, bool]]) -> list[Part]:
    """Cut `masked` at its marked labels only: each part runs to the separator before the next label."""
    parts: list[Part] = []
    for index, (start, _, label, after_or) in enumerate(marks):
        end = marks[index + 1][1] if index + 1 < len(marks) else len(masked)
        parts.append(Part(clean_segment(_unmask(masked[start:end], hidden)), label, after_or and index > 0))
    return parts


def _fragments(masked: str, hidden: list[str]) -> list[Part]:
    """Cut an unlabelled statement on list separators (masked choice texts stay whole)."""
    parts: list[Part] = []
    after_or = False
    position = 0
    for found in list(_SEPARATOR_RE.finditer(masked)) + [None]:
        end = found.start() if found else len(masked)
        piece = _unmask(masked[position:end], hidden).strip()
        filler = _FILLER_PREFIX_RE.match(piece)
        piece = clean_segment(piece[filler.end() :] if filler else piece)
        if piece:
            parts.append(Part(piece, None, after_or and bool(parts)))
            after_or = False
        if found:
            after_or = after_or or found.group().strip().casefold() in _OR_WORDS
            position = found.end()
    return parts


def _no_choice(masked: str) -> str:
    found = _NO_CHOICE_RE.search(masked)
    return found.group().strip() if found else ""


def read_statement(text: str, choices: Sequence[str], marked: bool = True) -> Reading:
    """Read one answer statement of a question with `choices` (see the module docstring)."""
    labels = choice_labels(len(choices))
    normalised = normalize(text, uses_letters(labels)).replace("*", "").replace("`", "")
    masked, hidden = _mask_choices(clean_segment(normalised), choices)
    if marked:
        masked = _REASON_RE.sub("", first_sentence(masked, labels))
    masked = _TRAILING_VERDICT_RE.sub("", masked)
    masked, negated_masked = drop_negations(masked)
    masked = clean_segment(masked)
    negated = tuple(clean_segment(_unmask(piece, hidden)) for piece in negated_masked)
    read = clean_segment(_unmask(masked, hidden))
    if negated and not _LEFTOVER_RE.sub("", read):
        return Reading(read, negated=negated)
    listed = _label_list(masked, labels)
    if listed is not None:
        parts, unknown, hedge = listed
        return Reading(read, tuple(parts), True, hedge, negated, unknown_labels=tuple(unknown))
    marks = _marked_labels(masked, hidden, labels, choices, lead=marked)
    if marks:
        parts = _labelled_parts(masked, hidden, marks)
        hedge = len({part.label for part in parts}) > 1 and any(part.after_or for part in parts)
        return Reading(read, tuple(parts), True, hedge, negated)
    no_choice = _no_choice(masked)
    if no_choice:
        return Reading(read, negated=negated, no_choice=no_choice)
    return Reading(read, tuple(_fragments(masked, hidden)), False, False, negated)


def split_parts(segment: str, choices: Sequence[str], num_answers: int = 1) -> list[Part]:
    """The parts of an answer segment: its labelled parts, or its text fragments when it has no labels."""
    return list(read_statement(segment, choices, marked=False).parts)


def extract_numbers(segment: str) -> list[str]:
    """The numbers written in `segment` (NFKC-folded, decimals allowed), in order."""
    text = normalize(segment, circled_as_letters=False)
    return [number.replace(",", "") for number in _NUMBER_RE.findall(text)]
