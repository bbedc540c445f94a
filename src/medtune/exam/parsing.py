"""Answer parsing: find where a model response states its answer, and read that statement.

Algorithm 1 of the 70B paper maps every part of the final answer to its most similar choice; this
module decides what the final answer *is* and cuts it into parts, the way a careful reader does:

1. `strip_echoes` drops lines that only re-type the question, or the choice list ("a. X\\nb. Y\\n
   c. Z": a run of consecutive labels longer than the number of answers asked for).
2. `locate_answer` finds every answer statement: the text after an answer marker (答え, 正解,
   Answer, The answer is, Final answer, Đáp án, ...) up to the end of its line, or the text before
   a marker that closes the line ("c が正解。", "... so c is the answer."), or "Option C is
   correct". With no statement at all, the last non-empty line stands in (with the label-led
   lines just before it, up to one line per answer asked for). The last statement is the final one.
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
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from medtune.exam.negations import drop_negations
from medtune.vocabulary import LETTERS, choice_labels

# Answer markers the answer follows. Longer ones come first: "answer is" wins over "answer".
_LEAD_MARKER_RE = re.compile(
    r"(?:\b(?:final\s+answer(?:\s+(?:is|was))?|(?:correct|best|right)\s+(?:option|choice)\s+is|answers?\s+(?:is|are)"
    r"|answer)\b"
    r"|答え|解答|正解|答|đáp\s*án)\s*(?:[:：]|は)?",
    re.IGNORECASE,
)
# A label (or "option c") followed by "is correct": the answer comes before this marker.
_LABEL_TOKEN = r"[A-Za-z]|\d{1,3}"
_TAIL_MARKER_RE = re.compile(
    rf"(?:\b(?:option|choice)\s+)?[(\[]?(?P<label>{_LABEL_TOKEN})[)\]]?\s+(?:is|would\s+be)\s+(?:the\s+)?"
    r"(?:correct|right)(?:\s+(?:answer|option|choice|one))?\b",
    re.IGNORECASE,
)
# Markdown emphasis, quotes and brackets that models wrap around a final answer.
_WRAPPERS = "*`\"'「」『』【】 \t\r\n\u3000、,:：;"
_TRAILING_PUNCT = ".。．!！?？"
# Japanese answers often end in a copula ("cです。"); it carries no answer.
_COPULAS = ("です", "である", "となります", "となる", "だ")
# What `clean_segment` strips from the end, read on the reversed text: wrappers, punctuation, copulas.
_STRIPPED_TAIL_RE = re.compile(
    "(?:[" + re.escape(_WRAPPERS + _TRAILING_PUNCT) + "]+|" + "|".join(c[::-1] for c in _COPULAS) + ")*"
)
# Words before a closing marker that carry no answer: "so c is the answer", "c is the correct answer".
_LEADING_WORDS_RE = re.compile(r"^(?:so|thus|therefore|hence|overall|in\s+conclusion|i\s+think)\b[,\s]*", re.I)
# "A and C are correct": the verdict after the labels names no answer.
_TRAILING_VERDICT_RE = re.compile(
    r"(?<!\s)\s+(?:is|are)\s+(?:the\s+)?(?:correct|right)(?:\s+(?:answers?|options?|choices?|ones?))?\s*$", re.I
)
_FINAL_RE = re.compile(r"final|最終", re.I)
_TRAILING_COPULA_RE = re.compile(
    r"(?<!\s)\s+(?:is|are|was|would\s+be)(?:\s+the)?(?:\s+(?:correct|right|best|final|most\s+likely))?$", re.I
)

# ① is U+2460; NFKC would turn it into "1", so it is mapped to a letter before NFKC runs.
_CIRCLED_TO_LETTER = str.maketrans({chr(0x2460 + i): LETTERS[i] for i in range(20)})

# A label marked as one: "(c)", "[c]", "c)", "c.", "c:" (then a space or the end), "cが" / "cは" / "cです".
_STRONG_LABEL_RE = re.compile(
    rf"[(\[]\s*(?P<bracketed>{_LABEL_TOKEN})\s*[)\]](?:\s*[.:])?"
    rf"|(?P<marked>{_LABEL_TOKEN})(?:\s*[)\]]|[.:](?=\s|$)|(?=が|は|を|です|である|だ|となる))"
)
_OPTION_LABEL_RE = re.compile(
    rf"(?:option|choice|選択肢)\s*(?P<label>{_LABEL_TOKEN})(?![A-Za-z0-9])(?:\s*[.):])?", re.I
)
# Right after an answer marker a bare label may be followed by a comma or a reason: "c, because ...".
_LEAD_LABEL_RE = re.compile(
    rf"(?P<label>{_LABEL_TOKEN})(?=\s*[,、;。(]|\s*$|\s+(?:because|since|as|which|[-–—])\s)", re.I
)
_BARE_TOKEN_RE = re.compile(rf"^[(\[]?(?P<label>{_LABEL_TOKEN})[)\]]?[.:]?$")

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
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)|[。！？]")
_NEWLINE_RE = re.compile("\n")
_SPACES_RE = re.compile(r"\s*")
# Where the word before a full stop starts: after the last of these ("(c.", "a, c.").
_WORD_START_RE = re.compile(r"[\s(\[,、]")
_LABEL_WINDOW = 64  # characters read where a line may open with a label

# Digits right after a letter belong to a unit or a name ("kg/m2", "CO2"), not to the answer.
_NUMBER_RE = re.compile(r"(?<![A-Za-z\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Private-use characters: they never occur in exam text, so they can stand in for a masked choice.
_MASK_OPEN, _MASK_CLOSE, _MASK_BASE = "\ue000", "\ue001", 0xE100
_MASK_RE = re.compile(f"{_MASK_OPEN}(.){_MASK_CLOSE}")


# ---------------------------------------------------------------------------------------------
# Normal forms
# ---------------------------------------------------------------------------------------------


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


def _uses_letters(labels: Sequence[str]) -> bool:
    return not labels or labels[0] == "a"


def as_label(token: str, labels: Sequence[str]) -> str | None:
    """`token` ("C", "c", "12") as one of `labels`, or None; a letter is no label of a numbered list."""
    token = token.strip().lower()
    if token.isdigit():
        token = str(int(token))
    return token if token in labels else None


def _label_kind_matches(token: str, labels: Sequence[str]) -> bool:
    """Whether `token` is written in the question's label scheme (a letter, or a number past 26)."""
    return token.isalpha() == _uses_letters(labels)


# ---------------------------------------------------------------------------------------------
# Where the answer is
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One place where the response states an answer, as written (cleaned of wrappers)."""

    text: str
    marked: bool = True  # False: the last line(s) of a response that has no answer statement
    final: bool = False  # after "Final answer" / "最終的な答え": it settles the answer over earlier statements


@dataclass(frozen=True)
class LocatedAnswer:
    """The answer statements of a response, in order (the last is the final answer)."""

    statements: tuple[Statement, ...]
    echoed_lines: int = 0  # lines dropped because they only re-type the question or the choices

    @property
    def final(self) -> Statement | None:
        return self.statements[-1] if self.statements else None

    @property
    def text(self) -> str:
        """The final answer as written: what exact match and the Gestalt score compare."""
        return self.final.text if self.final else ""


def _line_label(line: str, labels: Sequence[str], start: int = 0) -> str | None:
    """The label `line` (from `start`) opens with when it is marked as one ("b. text", "(b) text"), else None.

    Only the first `_LABEL_WINDOW` characters are read: a label is a few characters long, and
    normalising a whole (maybe very long) line for each question asked about it would not be.
    """
    begin = _SPACES_RE.match(line, start).end()
    head = line[begin : begin + _LABEL_WINDOW]
    if begin + _LABEL_WINDOW >= len(line):
        head = head.rstrip()
    found = _STRONG_LABEL_RE.match(normalize(head, _uses_letters(labels)))
    if not found:
        return None
    token = found.group("bracketed") or found.group("marked")
    return as_label(token, labels) if _label_kind_matches(token, labels) else None


def _choice_list_lines(lines: list[str], labels: Sequence[str], num_answers: int) -> set[int]:
    """Indices of lines in runs of consecutive labels ("a. X", "b. Y", ...) longer than the answer count."""
    echoed: set[int] = set()
    run: list[int] = []
    previous = -2
    for index, line in enumerate(lines + [""]):
        if not line.strip() and index < len(lines):
            continue
        label = _line_label(line, labels) if line.strip() else None
        position = labels.index(label) if label else -2
        if label is not None and position == previous + 1 and run:
            run.append(index)
        else:
            if len(run) >= 2 and len(run) > num_answers:
                echoed.update(run)
            run = [index] if label is not None else []
        previous = position
    return echoed


def _repeats_question(line: str, folded_question: str, folded_choices: Sequence[str]) -> bool:
    """Whether `line` is a piece of the question text (and not itself a choice, or part of one)."""
    text = fold(clean_segment(line))
    if len(text) < 4 or not folded_question or text not in folded_question:
        return False
    return not any(text in choice for choice in folded_choices)


def strip_echoes(
    response: str, question: str = "", choices: Sequence[str] = (), num_answers: int = 1
) -> tuple[str, int]:
    """`response` without the lines that only re-type the question or the choice list, and their count."""
    labels = choice_labels(len(choices)) if choices else LETTERS
    lines = response.split("\n")
    dropped = _choice_list_lines(lines, labels, max(1, num_answers))
    folded_question, folded_choices = fold(question), [fold(choice) for choice in choices]
    dropped |= {
        i for i, line in enumerate(lines) if line.strip() and _repeats_question(line, folded_question, folded_choices)
    }
    kept = [line for i, line in enumerate(lines) if i not in dropped]
    return "\n".join(kept), len(dropped)


def last_lines(text: str, max_lines: int = 1, labels: Sequence[str] = LETTERS) -> str:
    """The last non-empty line of `text`, with up to `max_lines - 1` label-led lines before it.

    With no answer marker, a two-answer reply often ends in one line per answer
    ("a. 酸素欠乏症\\nc. 硫化水素中毒"); those lines belong together while each starts with a label.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    taken = [lines.pop()]
    while lines and len(taken) < max_lines and _line_label(taken[0], labels) and _line_label(lines[-1], labels):
        taken.insert(0, lines.pop())
    return "\n".join(taken)


class _TextIndex:
    """Where the lines and sentences of a text end, found once: each question about them is a bisection.

    Asked per answer marker, a search back to the start of the sentence or forward to the end of the
    line would cost time quadratic in the length of a response that repeats its marker.
    """

    def __init__(self, text: str):
        self.text = text
        self.newlines = [found.start() for found in _NEWLINE_RE.finditer(text)]
        self.sentence_ends = [found.end() for found in _SENTENCE_END_RE.finditer(text)]

    def line_end(self, position: int) -> int:
        """The first line break at or after `position` (len(text) if none)."""
        at = bisect.bisect_left(self.newlines, position)
        return self.newlines[at] if at < len(self.newlines) else len(self.text)

    def sentence_start(self, position: int) -> int:
        """Where the sentence holding `position` starts: after the last line break or full stop before it."""
        at = bisect.bisect_left(self.newlines, position)
        start = self.newlines[at - 1] + 1 if at else 0
        at = bisect.bisect_right(self.sentence_ends, position)
        if at:
            start = max(start, self.sentence_ends[at - 1])
        if position and self.text[position - 1] in ".!?":  # a stop right before `position` ends a sentence
            start = position
        return start


def _lines_after(text: str, start: int):
    """The lines of `text[start:]`, one at a time (the first is the rest of the line holding `start`)."""
    while True:
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end]
        start = end + 1


def _tail_statements(text: str, labels: Sequence[str], index: _TextIndex) -> list[tuple[int, int, Statement]]:
    """ "Option C is correct" / "C is the correct answer" at the start of a sentence."""
    found: list[tuple[int, int, Statement]] = []
    for match in _TAIL_MARKER_RE.finditer(text):
        token = match.group("label")
        if not _label_kind_matches(token, labels) or as_label(token, labels) is None:
            continue
        before = text[index.sentence_start(match.start()) : match.start()]
        if _LEADING_WORDS_RE.sub("", before.strip()):
            continue  # "Vitamin B is correct": the letter is not where an answer starts
        found.append((match.start(), match.end(), Statement(match.group("label"))))
    return found


def _before_marker(text: str, start: int, marker_start: int, index: _TextIndex) -> str:
    """The text a closing marker refers to: "c が正解", "... so c is the correct answer"."""
    before = clean_segment(text[max(start, index.sentence_start(marker_start)) : marker_start])
    before = _TRAILING_COPULA_RE.sub("", before)
    return clean_segment(_LEADING_WORDS_RE.sub("", before))


def _following_lines(text: str, start: int, count: int) -> str:
    """Up to `count` non-empty lines after `start` (a marker alone on its line: "答え:\\n酸素欠乏症")."""
    lines: list[str] = []
    for line in _lines_after(text, start):
        if len(lines) >= count:
            break
        if line.strip():
            lines.append(line.strip())
    return clean_segment("\n".join(lines))


def _more_label_lines(text: str, start: int, count: int, labels: Sequence[str]) -> str:
    """Label-led lines right after `start`, up to `count` (answers on lines of their own)."""
    taken: list[str] = []
    lines = _lines_after(text, start)
    next(lines)  # the rest of the marker's own line
    for line in lines:
        if not line.strip() or len(taken) >= count or not _line_label(line, labels):
            break
        taken.append(line.strip())
    return "\n".join(taken)


def answer_statements(text: str, num_answers: int = 1, labels: Sequence[str] = LETTERS) -> list[Statement]:
    """Every answer statement in `text`, in order (see the module docstring)."""
    index = _TextIndex(text)
    tails = _tail_statements(text, labels, index)
    tail_starts = [start for start, _, _ in tails]  # in order, not overlapping: finditer's matches

    def inside_tail(position: int) -> bool:
        at = bisect.bisect_right(tail_starts, position) - 1
        return at >= 0 and position < tails[at][1]

    leads = [m for m in _LEAD_MARKER_RE.finditer(text) if not inside_tail(m.start())]
    stops = sorted([m.start() for m in leads] + tail_starts)
    found: list[tuple[int, Statement]] = [(start, statement) for start, _, statement in tails]
    previous_end = 0
    for number, marker in enumerate(leads):
        line_end = index.line_end(marker.end())
        at = bisect.bisect_right(stops, marker.start())
        stop = min(line_end, stops[at]) if at < len(stops) else line_end
        statement = clean_segment(text[marker.end() : stop])
        if statement and num_answers > 1 and stop == line_end:
            more = _more_label_lines(text, marker.end(), num_answers - 1, labels)
            statement = "\n".join(filter(None, [statement, more]))
        if not statement:
            statement = _before_marker(text, previous_end, marker.start(), index)
        if not statement and number == len(leads) - 1:
            statement = _following_lines(text, line_end, max(1, num_answers))
        if statement:
            final = _FINAL_RE.search(text[max(0, marker.start() - 6) : marker.end()]) is not None
            found.append((marker.start(), Statement(statement, final=final)))
        previous_end = marker.end()
    return [statement for _, statement in sorted(found, key=lambda item: item[0])]


def _is_bare_marker(line: str) -> bool:
    """Whether `line` is an answer marker and nothing else ("答え", "Answer:")."""
    return _LEAD_MARKER_RE.fullmatch(line.strip()) is not None


def locate_answer(
    response: str, question: str = "", choices: Sequence[str] = (), num_answers: int = 1
) -> LocatedAnswer:
    """The answer statements of `response` after dropping echoed lines; the last line(s) if none."""
    labels = choice_labels(len(choices)) if choices else LETTERS
    text, echoed = strip_echoes(response, question, choices, num_answers)
    statements = answer_statements(text, max(1, num_answers), labels)
    if statements:
        return LocatedAnswer(tuple(statements), echoed)
    last = last_lines(text, max(1, num_answers), labels)
    fallback = "" if _is_bare_marker(last) else clean_segment(last)
    return LocatedAnswer((Statement(fallback, marked=False),) if fallback else (), echoed)


def answer_segment(response: str, max_lines: int = 1) -> str:
    """The final answer as written in `response`: its last answer statement, else its last line(s)."""
    return locate_answer(response, num_answers=max_lines).text


# ---------------------------------------------------------------------------------------------
# Reading one statement
# ---------------------------------------------------------------------------------------------


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
    for found in _SENTENCE_END_RE.finditer(text):
        if word_starts is None:
            word_starts = [m.end() for m in _WORD_START_RE.finditer(text)]
        at = bisect.bisect_right(word_starts, found.start()) - 1
        word = text[word_starts[at] if at >= 0 else 0 : found.start()].strip("()[]")
        if as_label(word, labels) is not None or word.casefold() in _ABBREVIATIONS:
            continue
        if found.group() in ".!?" and _line_label(text, labels, found.end()):
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
        if not bare or not _label_kind_matches(bare.group("label"), labels):
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
    matchers = [_OPTION_LABEL_RE, _STRONG_LABEL_RE] + ([_LEAD_LABEL_RE] if first else [])
    for matcher in matchers:
        found = matcher.match(masked, position)
        if found:
            token = next(group for group in found.groups() if group)
            if _label_kind_matches(token, labels) and as_label(token, labels):
                return as_label(token, labels)
    return None


def _label_before_its_text(text: str, labels: Sequence[str], choices: Sequence[str]) -> str | None:
    """ "C Rheumatoid factor" right after an answer marker: a bare label, then its own choice text."""
    found = re.match(rf"(?P<label>{_LABEL_TOKEN})\s+(?P<rest>\S.*)", text, re.S)
    if not found or not _label_kind_matches(found.group("label"), labels):
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
            self.run_start, self.run_end = position, _SPACES_RE.match(self.text, position).end()
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
    normalised = normalize(text, _uses_letters(labels)).replace("*", "").replace("`", "")
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
