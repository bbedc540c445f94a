"""Reject generated pairs that would teach nothing, and say why (one reason per dropped pair)."""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz

from medtune.qa.dedupe import normalize

REASONS = (
    "empty",  # no question or no answer text (punctuation alone counts as none)
    "template_echo",  # the template's own example ("質問" / "回答", "question" / "answer") came back
    "question_too_short",  # under qa.min_question_chars
    "answer_too_short",  # under qa.min_answer_chars
    "same_question_and_answer",  # the answer only repeats the question
    "copies_chunk",  # the question or answer is (nearly) the whole chunk, not a question about it
)
PLACEHOLDERS = frozenset(normalize(t) for t in ("質問", "回答", "question", "answer", "instruction", "output"))
COPY_LENGTH_SHARE = 0.8  # a field at least this long relative to the chunk ...
COPY_SIMILARITY = 90.0  # ... and this similar to it (rapidfuzz ratio) is a copy


@dataclass(frozen=True)
class Limits:
    min_question_chars: int
    min_answer_chars: int


def copies(field: str, chunk: str) -> bool:
    if not chunk:
        return False
    if chunk in field:
        return True
    return len(field) >= COPY_LENGTH_SHARE * len(chunk) and fuzz.ratio(field, chunk) >= COPY_SIMILARITY


def rejection(question: str, answer: str, chunk_text: str, limits: Limits) -> str | None:
    """Why the pair is dropped (one of REASONS), or None when it is kept."""
    question, answer = question.strip(), answer.strip()
    q_key, a_key = normalize(question), normalize(answer)
    if not q_key or not a_key:
        return "empty"
    if q_key in PLACEHOLDERS or a_key in PLACEHOLDERS:
        return "template_echo"
    if len(question) < limits.min_question_chars:
        return "question_too_short"
    if len(answer) < limits.min_answer_chars:
        return "answer_too_short"
    if q_key == a_key:
        return "same_question_and_answer"
    chunk_key = normalize(chunk_text)
    if copies(a_key, chunk_key) or copies(q_key, chunk_key):
        return "copies_chunk"
    return None
