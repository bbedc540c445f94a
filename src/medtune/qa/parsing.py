"""Question/answer pairs out of whatever a generator wrote, and a count of what could not be read.

Asked for JSON Lines, models also answer with a JSON list, a JSON object holding a list, ```json
fences, Python-style dicts, "Q:/A:" or "質問:/回答:" blocks, "### Instruction / ### Output" blocks,
or numbered items ("1. question? answer"). The readers are tried in that order and the first that
finds a pair wins. Anything that looks like a pair but cannot be read (a cut-off JSON line, an
object without question/answer fields, a question with no answer) counts as a rejected fragment;
a response with no pair at all is unparsable. Nothing here raises on model output.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

QUESTION_KEYS = ("instruction", "question", "q", "query", "prompt", "質問", "問題", "問い", "問", "指示")
ANSWER_KEYS = ("output", "answer", "a", "response", "completion", "回答", "答え", "解答", "答", "出力")
LIST_KEYS = ("pairs", "data", "qa", "qas", "items", "questions", "records", "examples", "results")
FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
JSON_DECODER = json.JSONDecoder(strict=False)  # models put raw newlines inside strings

_Q = r"instruction|question|query|q|質問|問題|問い|設問|問|指示"
_A = r"output|answer|response|a|回答|答え|解答|答|出力"
LABEL = re.compile(
    r"^\s*(?:[-*•]\s*)?(?:\(?\d+[.)）]\s*)?(?P<hash>#+\s*)?(?:\*\*|__)?\s*"
    rf"(?:(?P<q>{_Q})|(?P<a>{_A}))(?![A-Za-z])\s*(?P<num>\d+)?\s*(?:\*\*|__)?\s*"
    r"(?P<sep>[:：]|(?<=\d)[.．)](?=[\s*_])|)\s*(?:\*\*|__)?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
INLINE_ANSWER = re.compile(rf"(?:\s+|(?<=[?？。]))(?:\*\*)?(?:{_A})\s*\d*\s*(?:\*\*)?\s*[:：]\s*", re.IGNORECASE)
NUMBERED = re.compile(r"^\s*(?:\(?(\d+)[.)）、]|(\d+)\s*[:：])\s*(.*)$")
FILLER_LINE = re.compile(r"^\s*(?:\(?\d+[.)）]|[-*_=]{3,}|#+|[-*•])?\s*$")
QUESTION_END = re.compile(r"[?？]|(?:ですか|ますか|でしょうか|か)[。]?(?=\s|$)")


@dataclass
class ParsedResponse:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rejected: int = 0  # fragments that looked like a pair but could not be read
    format: str = "none"  # json | labelled | numbered | none

    @property
    def unparsable(self) -> bool:
        return not self.pairs


def _text(value) -> str:
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
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


def _collect(value, result: ParsedResponse) -> None:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                _collect(item, result)
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
            _collect(inner, result)
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
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return (value, start + len(line)) if isinstance(value, dict) else None


def parse_json(text: str) -> ParsedResponse:
    """Every JSON object or array in `text`, in order, wherever it sits (lines, a list, prose around it)."""
    result = ParsedResponse()
    position = 0
    while True:
        match = re.compile(r"[\[{]").search(text, position)
        if match is None:
            break
        start = match.start()
        try:
            value, end = JSON_DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            literal = _python_literal(text, start) if text[start] == "{" else None
            if literal is None:
                if text[start] == "{" and re.match(r"\{\s*['\"]", text[start:]):
                    result.rejected += 1  # an object cut off or broken: skip the rest of its line
                    newline = text.find("\n", start)
                    position = len(text) if newline < 0 else newline + 1
                else:
                    position = start + 1
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


def parse_pairs(response: str) -> ParsedResponse:
    """The pairs of one response by the first reader that finds any; rejected fragments of that reader."""
    text = unfence(response or "")
    attempts = [parse_json(text), parse_labelled(text), parse_numbered(text)]
    for attempt in attempts:
        if attempt.pairs:
            return attempt
    return ParsedResponse(rejected=max(a.rejected for a in attempts))
