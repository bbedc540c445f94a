"""Text as the contamination audit compares it: normalised, in a canonical choice order, cut into n-grams.

Normalisation (`normalise`): Unicode NFKC (full-width ａ１． becomes a1., half-width katakana full-width,
① becomes 1), case-folding, every punctuation mark and symbol (Unicode categories P and S, and `_`)
replaced by a space, runs of whitespace collapsed to one space. Two copies of a question that differ
only in spacing, line breaks, punctuation or letter case normalise to the same words.

Two forms of a normalised text are compared:

- the word form: the normalised words (`text.split()`), for space-separated scripts;
- the character form: the same text with every space removed (`characters`), for Japanese and
  Chinese, which put no spaces between words (so re-spacing a Japanese question changes nothing).

A question is "CJK" when at least `cjk_share` of its letters are Han, hiragana or katakana
(`cjk_share_of`); its similarity and exact-match checks then use the character form.

A question's text is its stem followed by its choices, one per line, in a canonical order: sorted by
their normalised text without spaces (`canonical_question`), so a copy that lists the choices in
another order reads the same. A training text is put in the same order only where it lists choices
as labelled lines (`a. X` / `(b) Y` / `1) Z` / `ａ．X`, two or more in a row; `canonical_training_text`),
which is how exam records, medtune's prompts and most instruction sets write them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

# Han (with extension A and the compatibility block), hiragana and katakana: scripts written without spaces.
CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_NOT_WORD = re.compile(r"[^\w\s]|_")  # punctuation and symbols (after NFKC): replaced by a space
# A labelled choice line after NFKC and case-folding: "a. X", "(b) X", "c) X", "1. X", "d: X", "e、X".
_CHOICE_LINE = re.compile(r"^\s*\(?([a-z]|[0-9]{1,2})[.):、]\s*(?=\S)")


def normalise(text: str) -> str:
    """`text` NFKC-normalised, case-folded, punctuation and symbols replaced by spaces, whitespace collapsed."""
    if not text.isascii():  # ASCII is NFKC already; skipping it saves most of the time on English text
        text = unicodedata.normalize("NFKC", text)
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def characters(normalised: str) -> str:
    """The character form of a normalised text: its words joined without spaces."""
    return normalised.replace(" ", "")


def has_cjk(text: str) -> bool:
    return CJK_CHAR.search(text) is not None


def cjk_share_of(text: str) -> float:
    """The share of the letters in `text` that are Han, hiragana or katakana (0 when it has no letters)."""
    letters = sum(ch.isalpha() for ch in text)
    return len(CJK_CHAR.findall(text)) / letters if letters else 0.0


def word_ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """Every run of `n` consecutive words, as a tuple (none when there are fewer than `n` words)."""
    return set(zip(*(words[i:] for i in range(n))))


def char_ngrams(chars: str, n: int) -> set[str]:
    """Every run of `n` consecutive characters (none when the text is shorter)."""
    return {chars[i : i + n] for i in range(len(chars) - n + 1)}


def strided_word_ngrams(words: Sequence[str], n: int, stride: int) -> Iterator[tuple[str, ...]]:
    """The word n-grams that start at every `stride`-th word (0, stride, 2·stride, ...)."""
    return zip(*(words[i::stride] for i in range(n)))


def strided_char_ngrams(chars: str, n: int, stride: int) -> Iterator[str]:
    """The character n-grams that start at every `stride`-th character."""
    return map(chars.__getitem__, map(slice, range(0, len(chars) - n + 1, stride), range(n, len(chars) + 1, stride)))


def cjk_char_ngrams(chars: str, n: int) -> set[str]:
    """The character n-grams that hold at least one Han or kana character.

    A window of Latin letters and digits alone (a spelled-out term inside Japanese text, such as
    "tissueplasminogenactivator") is two or three English words: far too short to be evidence by the
    13-word rule, and it would flag every Japanese question that names the same term in English.
    """
    return {gram for gram in char_ngrams(chars, n) if CJK_CHAR.search(gram)}


def _choice_key(normalised_choice: str) -> str:
    return characters(normalised_choice)  # spaces aside, so a re-spaced copy sorts the same


def canonical_question(stem: str, choices: Iterable[str]) -> tuple[str, str, tuple[str, ...]]:
    """(whole, stem, choices) of a question, each normalised; `whole` is the stem then the sorted choices."""
    stem_n = normalise(stem)
    choices_n = tuple(sorted((normalise(c) for c in choices), key=_choice_key))
    return " ".join([stem_n, *choices_n]).strip(), stem_n, choices_n


def canonical_training_text(text: str) -> str:
    """A training text normalised, with each run of two or more labelled choice lines sorted as a
    question's choices are (labels dropped); every other line is kept in place."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    run: list[tuple[str, str]] = []  # (line as written, its text after the label)

    def flush() -> None:
        if len(run) >= 2:
            out.extend(sorted((normalise(choice) for _, choice in run), key=_choice_key))
        else:
            out.extend(normalise(line) for line, _ in run)
        run.clear()

    for line in text.casefold().splitlines():
        label = _CHOICE_LINE.match(line)
        if label:
            run.append((line, line[label.end() :]))
            continue
        flush()
        out.append(normalise(line))
    flush()
    return " ".join(part for part in out if part)


def contains_words(haystack: str, needle: str) -> bool:
    """Whether the normalised word text `needle` occurs in `haystack` on word boundaries."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def excerpt(text: str, start: int, end: int, width: int) -> str:
    """About `width` characters of `text` around [start, end), with "…" where it was cut."""
    spare = max(0, width - (end - start)) // 2
    left, right = max(0, start - spare), min(len(text), end + spare)
    if right - left > width:
        right = left + width
    return ("…" if left > 0 else "") + text[left:right] + ("…" if right < len(text) else "")
