"""Where a model response states its answer (`locate_answer`), before what it says is read.

1. `strip_echoes` drops lines that only re-type the question, or the choice list ("a. X\\nb. Y\\n
   c. Z": a run of consecutive labels longer than the number of answers asked for).
2. `answer_statements` finds every answer statement: the text after an answer marker (答え, 正解,
   Answer, The answer is, Final answer, Đáp án, ...) up to the end of its line, or the text before
   a marker that closes the line ("c が正解。", "... so c is the answer."), or "Option C is
   correct". With no statement at all, the last non-empty line stands in (with the label-led
   lines just before it, up to one line per answer asked for). The last statement is the final one.

Positions of lines and sentences are found once and bisected (`_TextIndex`), so a response that
repeats its marker costs time linear in its length. Reading a statement is `medtune.exam.parsing`'s.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from medtune.exam.answer_forms import (
    LABEL_TOKEN,
    SENTENCE_END_RE,
    as_label,
    clean_segment,
    fold,
    label_kind_matches,
    line_label,
)
from medtune.vocabulary import LETTERS, choice_labels

# Answer markers the answer follows. Longer ones come first: "answer is" wins over "answer".
_LEAD_MARKER_RE = re.compile(
    r"(?:\b(?:final\s+answer(?:\s+(?:is|was))?|(?:correct|best|right)\s+(?:option|choice)\s+is|answers?\s+(?:is|are)"
    r"|answer)\b"
    r"|答え|解答|正解|正确答案|最终答案|答案|答|đáp\s*án)\s*(?:[:：]|は|是|为)?",
    re.IGNORECASE,
)
# A label (or "option c") followed by "is correct": the answer comes before this marker.
_TAIL_MARKER_RE = re.compile(
    rf"(?:\b(?:option|choice)\s+)?[(\[]?(?P<label>{LABEL_TOKEN})[)\]]?\s+(?:is|would\s+be)\s+(?:the\s+)?"
    r"(?:correct|right)(?:\s+(?:answer|option|choice|one))?\b",
    re.IGNORECASE,
)
# Words before a closing marker that carry no answer: "so c is the answer", "c is the correct answer".
_LEADING_WORDS_RE = re.compile(r"^(?:so|thus|therefore|hence|overall|in\s+conclusion|i\s+think)\b[,\s]*", re.I)
_FINAL_RE = re.compile(r"final|最終|最终", re.I)
_TRAILING_COPULA_RE = re.compile(
    r"(?<!\s)\s+(?:is|are|was|would\s+be)(?:\s+the)?(?:\s+(?:correct|right|best|final|most\s+likely))?$", re.I
)
_NEWLINE_RE = re.compile("\n")


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


def _choice_list_lines(lines: list[str], labels: Sequence[str], num_answers: int) -> set[int]:
    """Indices of lines in runs of consecutive labels ("a. X", "b. Y", ...) longer than the answer count."""
    echoed: set[int] = set()
    run: list[int] = []
    previous = -2
    for index, line in enumerate(lines + [""]):
        if not line.strip() and index < len(lines):
            continue
        label = line_label(line, labels) if line.strip() else None
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
    while lines and len(taken) < max_lines and line_label(taken[0], labels) and line_label(lines[-1], labels):
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
        self.sentence_ends = [found.end() for found in SENTENCE_END_RE.finditer(text)]

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
        if not label_kind_matches(token, labels) or as_label(token, labels) is None:
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
        if not line.strip() or len(taken) >= count or not line_label(line, labels):
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
