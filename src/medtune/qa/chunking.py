"""Read documents and cut them into chunks of about `chunk_tokens`, at paragraph ends first, then sentence ends.

A paragraph that fits the budget is kept whole; a longer one is cut at sentence ends (`。！？!?`, a
full stop before a space, or a line break); a sentence longer than the budget is cut between
characters, never between a character and the combining mark after it, preferring a space. Chunks
are sized by a `Measure`: the generator's tokenizer when the model is local, else a character
budget of `chars_per_token` characters per token (no tokenizer of a remote model is available here).
The budget counts the units' own text, not the blank lines between them, so a chunk can run a few
characters over. Each chunk after the first repeats the end of the previous one (whole trailing
sentences while they fit in `overlap`, else the tail of the last sentence).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medtune.data.text_corpus import Document, read_documents

BUNDLED_DOCUMENT = "hypertension_review_ja.md"
DEFAULT_CHARS_PER_TOKEN = {"ja": 1.2}  # other languages: 4.0 (English-like)
PARAGRAPH_BREAK = re.compile(r"\n[ \t\u3000]*\n\s*")
CLAUSE_BREAK = re.compile(r"[、，,;；:：]\s*|\s+")
SENTENCE_END = re.compile(r"[。！？!?]+[」』）)\]\"'”’]*|\.[\"'”’)\]]*(?=\s|$)|\n")


@dataclass(frozen=True)
class Chunk:
    document: str
    index: int  # 0-based position in its document
    text: str

    @property
    def id(self) -> str:
        return f"{self.document}#{self.index}"


@dataclass(frozen=True)
class Measure:
    """Text -> size in tokens (exact with a tokenizer, estimated from characters without one)."""

    size: Callable[[str], float]
    description: str  # e.g. "tokenizer of tiny" or "1.2 characters per token"


def char_measure(chars_per_token: float) -> Measure:
    return Measure(lambda text: len(text) / chars_per_token, f"{chars_per_token:g} characters per token")


def token_measure(tokenizer, name: str) -> Measure:
    return Measure(lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]), f"tokenizer of {name}")


def default_chars_per_token(language: str) -> float:
    return DEFAULT_CHARS_PER_TOKEN.get(language, 4.0)


# ----------------------------------------------------------------------------------------- documents


def bundled_document_path() -> Path:
    return Path(str(resources.files("medtune") / "resources" / "qa" / BUNDLED_DOCUMENT))


def load_documents(path: str | Path | None, text_field: str = "text") -> list[Document]:
    """The documents of a file or folder (.txt, .md, .jsonl, .json); `None` gives the bundled sample article."""
    return read_documents(
        path if path is not None else bundled_document_path(),
        text_field,
        path_key="qa.documents",
        field_key="qa.text_field",
    )


# ---------------------------------------------------------------------------------------------- spans


@dataclass(frozen=True)
class Unit:
    start: int
    end: int
    size: float
    paragraph: bool  # a whole paragraph (sentence ends inside it can still be cut for the overlap)
    heading: bool = False  # a heading left on its own: it should open a chunk, not close one


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def split_spans(text: str, start: int, end: int, pattern: re.Pattern) -> list[tuple[int, int]]:
    """Non-empty, whitespace-trimmed spans of text[start:end] cut after each match of `pattern`."""
    spans, position = [], start
    for match in pattern.finditer(text, start, end):
        cut = match.end() if pattern is SENTENCE_END else match.start()
        span = _trimmed(text, position, cut)
        if span:
            spans.append(span)
        position = match.end()
    span = _trimmed(text, position, end)
    return spans + [span] if span else spans


def paragraphs(text: str) -> list[tuple[int, int]]:
    return split_spans(text, 0, len(text), PARAGRAPH_BREAK)


def sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return split_spans(text, start, end, SENTENCE_END)


def _is_boundary(text: str, index: int) -> bool:
    """May text be cut before index? Not before a combining mark or joiner (it belongs to the previous character)."""
    if index <= 0 or index >= len(text):
        return True
    char = text[index]
    return not (
        unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Mc", "Me") or char in "\u200d\ufe0f\ufe0e"
    )


def hard_cut(text: str, start: int, end: int, budget: float, measure: Measure) -> int:
    """The largest cut in (start, end] whose piece fits `budget`, at a character boundary (at least one character)."""
    low, high = start + 1, end
    while low < high:  # the longest prefix that fits (sizes grow with length)
        middle = (low + high + 1) // 2
        if measure.size(text[start:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    cut = low
    while cut > start + 1 and not _is_boundary(text, cut):
        cut -= 1
    while cut < end and not _is_boundary(text, cut):  # a lone base character with its marks
        cut += 1
    space = text.rfind(" ", start + (cut - start) * 4 // 5, cut)  # prefer a word break near the end
    return space + 1 if space > start and cut < end else cut


def pieces(text: str, start: int, end: int, budget: float, measure: Measure) -> list[Unit]:
    """A sentence over the budget as consecutive pieces that each fit."""
    units = []
    while start < end:
        cut = hard_cut(text, start, end, budget, measure)
        span = _trimmed(text, start, cut)
        if span:
            units.append(Unit(span[0], span[1], measure.size(text[span[0] : span[1]]), False))
        start = cut
    return units


def is_heading(paragraph: str) -> bool:
    """A Markdown heading, or one short line with no sentence end: it belongs with the paragraph after it."""
    line = paragraph.strip()
    return line.startswith("#") or ("\n" not in line and len(line) <= 40 and not re.search(r"[。．.!?！？]$", line))


def paragraph_spans(text: str, budget: float, measure: Measure) -> list[tuple[int, int]]:
    """Paragraphs, each heading joined to the paragraph after it when both fit the budget."""
    spans = paragraphs(text)
    joined, i = [], 0
    while i < len(spans):
        start, end = spans[i]
        while (
            is_heading(text[spans[i][0] : spans[i][1]])
            and i + 1 < len(spans)
            and measure.size(text[start : spans[i + 1][1]]) <= budget
        ):
            i += 1
            end = spans[i][1]
        joined.append((start, end))
        i += 1
    return joined


def units_of(text: str, budget: float, measure: Measure) -> list[Unit]:
    """Whole paragraphs where they fit, else their sentences, else pieces of sentences."""
    units: list[Unit] = []
    for p_start, p_end in paragraph_spans(text, budget, measure):
        size = measure.size(text[p_start:p_end])
        if size <= budget:
            alone = PARAGRAPH_BREAK.search(text, p_start, p_end) is None  # not already joined to its paragraph
            units.append(Unit(p_start, p_end, size, True, alone and is_heading(text[p_start:p_end])))
            continue
        for s_start, s_end in sentences(text, p_start, p_end):
            s_size = measure.size(text[s_start:s_end])
            if s_size <= budget:
                units.append(Unit(s_start, s_end, s_size, False))
            else:
                units.extend(pieces(text, s_start, s_end, budget, measure))
    return units


def overlap_tail(text: str, units: list[Unit], overlap: float, measure: Measure) -> list[Unit]:
    """The end of a chunk to repeat: trailing sentences while they fit, else the tail of the last one."""
    if overlap <= 0 or not units:
        return []
    taken: list[Unit] = []
    used = 0.0
    for unit in reversed(units):
        parts = [unit]
        if unit.paragraph and used + unit.size > overlap:
            parts = [Unit(s, e, measure.size(text[s:e]), False) for s, e in sentences(text, unit.start, unit.end)]
        for part in reversed(parts):
            if used + part.size > overlap:
                if not taken:  # not even one sentence fits: repeat the last characters that do
                    start = part.end
                    while start > part.start and measure.size(text[start - 1 : part.end]) <= overlap:
                        start -= 1
                    while start < part.end and not _is_boundary(text, start):
                        start += 1
                    clause = CLAUSE_BREAK.search(text, start, part.end)  # start after a comma when there is one
                    if clause and clause.end() < part.end:
                        start = clause.end()
                    span = _trimmed(text, start, part.end)
                    return [Unit(span[0], span[1], measure.size(text[span[0] : span[1]]), False)] if span else []
                return taken
            taken.insert(0, part)
            used += part.size
    return taken


def chunk_spans(text: str, budget: float, overlap: float, measure: Measure) -> list[tuple[int, int]]:
    """(start, end) of each chunk of `text`; a text shorter than the budget is one chunk."""
    chunks: list[list[Unit]] = []
    current: list[Unit] = []
    carried = 0  # how many units at the start of `current` repeat the previous chunk
    units = units_of(text, budget, measure)
    for i, unit in enumerate(units):
        need = unit.size
        if unit.heading and i + 1 < len(units) and len(current) > carried:
            need += units[i + 1].size  # a heading opens the next chunk unless its first unit fits here too
        size = sum(u.size for u in current)
        new = sum(u.size for u in current[carried:])
        if carried and size + need > budget and new < budget / 4:
            current, carried, size = current[carried:], 0, new  # mostly repeated text: drop the overlap, not a sliver
        if current and size + need > budget:
            chunks.append(current)
            current = overlap_tail(text, current, overlap, measure)
            carried = len(current)
            if sum(u.size for u in current) + unit.size > budget:
                current, carried = [], 0
        current.append(unit)
    if current:
        chunks.append(current)
    return [(c[0].start, c[-1].end) for c in chunks]


def chunk_text(text: str, budget: float, overlap: float, measure: Measure) -> list[str]:
    return [text[start:end] for start, end in chunk_spans(text, budget, overlap, measure)]


def chunk_documents(documents: list[Document], budget: float, overlap: float, measure: Measure) -> list[Chunk]:
    return [
        Chunk(doc.name, index, piece)
        for doc in documents
        for index, piece in enumerate(chunk_text(doc.text, budget, overlap, measure))
    ]
