"""Which language an exam's questions are written in, read from their characters.

exam=jsonl states its language (`exam.language`, ja unless set), and the prompt-language rule
checks the prompt against that statement before anything is read. A file in another language than
stated would then be asked inside a template in the wrong language without a word, so once the
questions are read, `check_stated_language` compares the statement with the text and refuses a
clear disagreement, naming the language found and the fix.

The reading is by script, over the questions' text and choices: kana means Japanese; Han characters
without kana, Chinese; Hangul, Korean; Latin letters with Vietnamese's own letters (ă â đ ê ô ơ ư and
the tone marks), Vietnamese; other Latin text, English (the languages medtune has prompts for; a Latin-
script language it has none for reads as English, and its questions' language can be stated and kept
with exam.allow_prompt_language_mismatch=true). Text with too few letters, or mixed scripts with no
clear majority, reads as unknown and is not checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from medtune.errors import DataError
from medtune.vocabulary import ExamQuestion

MIN_LETTERS = 20  # fewer letters (or kana, Han characters) than this over the questions: too little to tell
SAMPLE_QUESTIONS = 200
VIETNAMESE_LETTERS = frozenset("ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")


@dataclass(frozen=True)
class TextLanguage:
    language: str | None  # None: too little text or no clear majority
    evidence: str  # what decided it, for messages


def _script(char: str) -> str | None:
    code = ord(char)
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9D:
        return "kana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF:
        return "han"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
        return "hangul"
    if char.isalpha() and (char.isascii() or 0x00C0 <= code <= 0x024F or 0x1E00 <= code <= 0x1EFF):
        return "vi" if char.lower() in VIETNAMESE_LETTERS else "latin"
    return None


def detect_language(texts: Iterable[str]) -> TextLanguage:
    """The language of `texts` by script (see the module docstring)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(script for script in map(_script, text) if script)
    letters = sum(counts.values())
    if letters < MIN_LETTERS:
        return TextLanguage(None, f"only {letters} letters")
    share = {script: count / letters for script, count in counts.items()}
    if share.get("kana", 0) >= 0.05:
        return TextLanguage("ja", f"{share['kana']:.0%} kana")
    if share.get("han", 0) >= 0.3:
        return TextLanguage("zh", f"{share['han']:.0%} Han characters and no kana")
    if share.get("hangul", 0) >= 0.3:
        return TextLanguage("ko", f"{share['hangul']:.0%} Hangul")
    latin = share.get("latin", 0) + share.get("vi", 0)
    if latin >= 0.6:
        vietnamese = counts.get("vi", 0) / (counts.get("vi", 0) + counts.get("latin", 0))
        if vietnamese >= 0.02:
            return TextLanguage("vi", f"{vietnamese:.0%} of the Latin letters are Vietnamese ones")
        return TextLanguage("en", f"{latin:.0%} Latin letters, no kana or Han characters")
    return TextLanguage(None, "no script has a clear majority")


def question_texts(questions: Iterable[ExamQuestion]) -> Iterable[str]:
    for number, question in enumerate(questions):
        if number >= SAMPLE_QUESTIONS:
            break
        yield question.question
        yield from question.choices


def check_stated_language(exam_name: str, stated: str | None, allowed_mismatch: bool, questions) -> None:
    """Refuse questions that read clearly as another language than `exam.language` states."""
    stated = (stated or "").strip().lower() or None
    if stated is None or allowed_mismatch or not questions:
        return
    found = detect_language(question_texts(questions))
    if found.language is None or found.language == stated:
        return
    raise DataError(
        f"exam={exam_name} states exam.language={stated}, but its questions read as {found.language} "
        f"({found.evidence} over the first {min(len(questions), SAMPLE_QUESTIONS)} questions), so they would be "
        f"asked inside a {stated} prompt. Set exam.language={found.language} and pick a prompt in {found.language}; "
        "if the questions are in fact in the stated language, keep it with exam.allow_prompt_language_mismatch=true."
    )
