"""Question/answer pairs out of whatever a generator wrote, and a count of what could not be read.

Asked for JSON Lines, models also answer with a JSON list, a JSON object holding a list, ```json
fences, Python-style dicts, "Q:/A:" or "質問:/回答:" blocks, "### Instruction / ### Output" blocks,
or numbered items ("1. question? answer"). The readers are tried in that order and the first that
finds a pair wins. Anything that looks like a pair but cannot be read (a cut-off JSON line, an
object without question/answer fields, a question with no answer) counts as a rejected fragment;
a response with no pair at all is unparsable. Nothing here raises on model output, and every
reader takes time linear in the response's length; a response longer than any generator writes
within its tokens (`medtune.llm.response_limit`) is read up to that length only (`cut_chars`).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from medtune.llm.response_limit import DEFAULT_MAX_CHARS, cut_to

QUESTION_KEYS = ("instruction", "question", "q", "query", "prompt", "質問", "問題", "問い", "問", "指示")
ANSWER_KEYS = ("output", "answer", "a", "response", "completion", "回答", "答え", "解答", "答", "出力")
LIST_KEYS = ("pairs", "data", "qa", "qas", "items", "questions", "records", "examples", "results")
OPENING_BRACKET = re.compile(r"[\[{]")
QUOTED_KEY_OBJECT = re.compile(r"\{\s*['\"]")  # an object whose first key is quoted: JSON or a Python dict
OBJECT_START = re.compile(r"\{\s*[\"}]")  # how a JSON object starts
BRACKET_RUN = re.compile(r"\[+")
DEEP_RUN = 256  # a run of "[" this long nests past what any pair is read from; the decoder's stack ends near 1000
MAX_NESTING = 32  # lists and objects deeper than this hold no pair
FAILED_READING_FACTOR, FAILED_READING_MIN = 16, 65536  # see `parse_json`
FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
JSON_DECODER = json.JSONDecoder(strict=False)  # models put raw newlines inside strings

_Q = r"instruction|question|query|q|質問|問題|問い|設問|問|指示"
_A = r"output|answer|response|a|回答|答え|解答|答|出力"
# No two runs of whitespace meet without a mark between them: a regular expression would try every
# way of splitting a long run of spaces between the two, which takes time quadratic in its length.
LABEL = re.compile(
    r"^\s*(?:[-*•]\s*)?(?:\(?\d+[.)）]\s*)?(?P<hash>#+\s*)?(?:(?:\*\*|__)\s*)?"
    rf"(?:(?P<q>{_Q})|(?P<a>{_A}))(?![A-Za-z])\s*(?P<num>\d+)?\s*(?:\*\*|__)?\s*"
    r"(?P<sep>[:：]|(?<=\d)[.．)](?=[\s*_])|)\s*(?:\*\*|__)?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
INLINE_ANSWER = re.compile(
    rf"(?:(?<!\s)\s+|(?<=[?？。]))(?:\*\*)?(?:{_A})\s*(?:\d+\s*)?(?:\*\*\s*)?[:：]\s*", re.IGNORECASE
)
NUMBERED = re.compile(r"^\s*(?:\(?(\d+)[.)）、]|(\d+)\s*[:：])\s*(.*)$")
FILLER_LINE = re.compile(r"^\s*(?:(?:\(?\d+[.)）]|[-*_=]{3,}|#+|[-*•])\s*)?$")
QUESTION_END = re.compile(r"[?？]|(?:ですか|ますか|でしょうか|か)[。]?(?=\s|$)")


@dataclass
class ParsedResponse:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rejected: int = 0  # fragments that looked like a pair but could not be read
    format: str = "none"  # json | labelled | numbered | none
    cut_chars: int = 0  # characters past the read limit, left unread

    @property
    def unparsable(self) -> bool:
        return not self.pairs


def _text(value, depth: int = 0) -> str:
    if isinstance(value, list):  # lists nested past MAX_NESTING are left out (their repr would overflow the stack)
        return "\n".join(_text(v, depth + 1) for v in value) if depth <= MAX_NESTING else ""
    if isinstance(value, dict) and depth > MAX_NESTING:
        return ""
    return "" if value is None else str(value).strip()


def _field(item: dict, keys: tuple[str, ...]):
    lowered = {str(k).strip().lower(): v for k, v in item.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def pair_from_object(item: dict) -> tuple[str, str] | None:
    question, answer = _field(item, QUESTION_KEYS), _field(item, ANSWER_KEYS)
    if question is None or answer is None:
        return None
    question = _text(question)
    extra = _text(item.get("input"))  # Alpaca-style context: part of the question
    return (f"{question}\n{extra}" if extra else question), _text(answer)


def _collect(value, result: ParsedResponse, depth: int = 0) -> None:
    if depth > MAX_NESTING:  # no pair sits this deep; a recursion this deep would overflow the stack
        result.rejected += 1
        return
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                _collect(item, result, depth + 1)
        return
    if not isinstance(value, dict):
        return
    pair = pair_from_object(value)
    if pair is not None:
        result.pairs.append(pair)
        return
    nested = [v for k, v in value.items() if str(k).lower() in LIST_KEYS and isinstance(v, (list, dict))]
    if nested:
        for inner in nested:
            _collect(inner, result, depth + 1)
    else:
        result.rejected += 1


def _python_literal(text: str, start: int):
    """A Python-style dict on one line (`{'instruction': ...}`), or None."""
    end = text.find("\n", start)
    line = text[start : end if end >= 0 else len(text)].rstrip().rstrip(",")
    if not line.endswith("}") or len(line) > 20000:
        return None
    try:
        value = ast.literal_eval(line)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # TypeError: {[1]} (a set of lists)
        return None
    return (value, start + len(line)) if isinstance(value, dict) else None


class _Decoded(NamedTuple):
    """A try at reading a JSON value: the value and where it ends, or (None, -1) with what the failed try
    read (`cost`, for `parse_json`'s budget) and where to look for the next opening bracket."""

    value: Any
    end: int
    cost: int = 0
    resume: int = 0


def _decode_at(text: str, start: int) -> _Decoded:
    """The JSON value opening at `start`, if there is one."""
    if text[start] == "{" and not OBJECT_START.match(text, start):
        return _Decoded(None, -1, 1, start + 1)  # not JSON; `_python_literal` may still read it
    try:
        value, end = JSON_DECODER.scan_once(text, start)
    except StopIteration as stop:  # no value where one must be ("[x"): nothing counted but the reading
        return _Decoded(None, -1, stop.value - start + 1, start + 1)
    except json.JSONDecodeError as error:  # its message counts the lines before `pos`: 1/64 of a parse step each
        return _Decoded(None, -1, error.pos - start + 1 + error.pos // 64, start + 1)
    except RecursionError:  # nested past the stack: "[[[[..." is skipped whole; else assume it read all
        run = BRACKET_RUN.match(text, start).end()
        if run - start >= DEEP_RUN:
            return _Decoded(None, -1, run - start, run)
        return _Decoded(None, -1, len(text) - start, start + 1)
    return _Decoded(value, end)


def parse_json(text: str) -> ParsedResponse:
    """Every JSON object or array in `text`, in order, wherever it sits (lines, a list, prose around it).

    A failed try at one bracket moves on to the next, inner one, and may read the same text again;
    brackets nested a thousand deep ("[[[[...") would make that quadratic, so the characters read by
    failed tries are counted, and past `FAILED_READING_FACTOR` times the text's length the rest of
    the text is left unread (counted as one rejected fragment).
    """
    result = ParsedResponse()
    position = 0
    budget = FAILED_READING_FACTOR * len(text) + FAILED_READING_MIN
    while True:
        match = OPENING_BRACKET.search(text, position)
        if match is None:
            break
        if budget < 0:
            result.rejected += 1
            break
        start = match.start()
        value, end, cost, resume = _decode_at(text, start)
        if end < 0:
            budget -= cost
            quoted_object = text[start] == "{" and QUOTED_KEY_OBJECT.match(text, start) is not None
            literal = _python_literal(text, start) if quoted_object else None
            if literal is None:
                if quoted_object:
                    result.rejected += 1  # an object cut off or broken: skip the rest of its line
                    newline = text.find("\n", start)
                    position = len(text) if newline < 0 else newline + 1
                else:
                    position = resume
                continue
            value, end = literal
        _collect(value, result)
        position = end
    result.format = "json" if result.pairs else "none"
    return result


def _clean(lines: list[str]) -> str:
    kept = [line for line in lines if not FILLER_LINE.match(line)]
    return "\n".join(kept).strip().strip("*").strip()


def parse_labelled(text: str) -> ParsedResponse:
    """Blocks that start with a question label and an answer label, on one line or several."""
    result = ParsedResponse()
    question: list[str] | None = None
    answer: list[str] | None = None

    def close() -> None:
        nonlocal question, answer
        if question is not None:
            q, a = _clean(question), _clean(answer or [])
            if q and a:
                result.pairs.append((q, a))
            else:
                result.rejected += 1
        question, answer = None, None

    for line in text.splitlines():
        match = LABEL.match(line)
        if match and not (match["sep"] or match["hash"]):
            match = None  # a bare word at the start of a sentence, not a label
        if match and match["q"]:
            close()
            rest = match["rest"]
            inline = INLINE_ANSWER.search(rest)
            if inline:
                question, answer = [rest[: inline.start()]], [rest[inline.end() :]]
            else:
                question, answer = [rest], None
        elif match and match["a"]:
            if question is None:
                result.rejected += 1  # an answer with no question before it
                question, answer = None, None
                continue
            if answer is not None:  # a second answer label: keep both as one answer
                answer.append(match["rest"])
            else:
                answer = [match["rest"]]
        elif question is not None:
            (answer if answer is not None else question).append(line)
    close()
    result.format = "labelled" if result.pairs else "none"
    return result


def parse_numbered(text: str) -> ParsedResponse:
    """`1. question` followed by its answer (on the next lines, or after the question mark)."""
    result = ParsedResponse()
    items: list[list[str]] = []
    for line in text.splitlines():
        match = NUMBERED.match(line)
        if match:
            items.append([match[3]])
        elif items:
            items[-1].append(line)
    for item in items:
        head, body = item[0].strip(), _clean(item[1:])
        if not body:
            end = QUESTION_END.search(head)
            if end and head[end.end() :].strip(" -–—:：\t"):
                head, body = head[: end.end()], head[end.end() :].strip(" -–—:：\t")
        if head and body:
            result.pairs.append((head, body))
        else:
            result.rejected += 1
    result.format = "numbered" if result.pairs else "none"
    return result


def unfence(text: str) -> str:
    """The inside of ``` fences when there are any (a cut-off last fence counts), else the text."""
    if "```" not in text:
        return text
    blocks = [m.group(1) for m in FENCE.finditer(text)]
    return "\n".join(blocks) if any(b.strip() for b in blocks) else text


def parse_pairs(response: str, max_chars: int = DEFAULT_MAX_CHARS) -> ParsedResponse:
    """The pairs of one response (its first `max_chars` characters) by the first reader that finds any;
    rejected fragments of that reader."""
    read, cut = cut_to(response or "", max_chars)
    text = unfence(read)
    attempts = [parse_json(text), parse_labelled(text), parse_numbered(text)]
    chosen = next((attempt for attempt in attempts if attempt.pairs), None)
    if chosen is None:
        chosen = ParsedResponse(rejected=max(a.rejected for a in attempts))
    chosen.cut_chars = cut.chars - cut.kept if cut else 0
    return chosen
