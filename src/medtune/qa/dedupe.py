"""Drop repeated questions: exact repeats after normalisation, and near repeats by rapidfuzz similarity.

Normalisation folds width and case (NFKC + casefold) and removes spaces, punctuation and symbols,
so "高血圧とは？" and "高血圧とは?" are one question. A question is a near repeat when its
normalised Indel similarity (`rapidfuzz.fuzz.ratio` / 100) to a kept question is at least the
threshold; only kept questions of a compatible length are compared, so a large corpus stays fast.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right, insort

from rapidfuzz import fuzz, process

DROPPED_CATEGORIES = ("P", "S", "Z", "C")  # punctuation, symbols, separators, control characters


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] not in DROPPED_CATEGORIES)


class Deduper:
    """Remembers kept questions; `check` says whether a question repeats one (and remembers it if not)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.exact: set[str] = set()
        self.by_length: dict[int, list[str]] = {}
        self.lengths: list[int] = []  # sorted distinct lengths of kept keys

    def add(self, question: str) -> None:
        key = normalize(question)
        if key in self.exact:
            return
        self.exact.add(key)
        if len(key) not in self.by_length:
            insort(self.lengths, len(key))
            self.by_length[len(key)] = []
        self.by_length[len(key)].append(key)

    def _candidates(self, length: int) -> list[str]:
        # ratio = 2 * matches / (a + b) <= 2 * min(a, b) / (a + b): only these lengths can reach the threshold
        t = self.threshold
        low, high = length * t / (2 - t), length * (2 - t) / t
        lengths = self.lengths[bisect_left(self.lengths, low) : bisect_right(self.lengths, high)]
        return [key for n in lengths for key in self.by_length[n]]

    def check(self, question: str) -> str | None:
        """ "exact" or "near" for a repeat; None for a new question, which is then kept."""
        key = normalize(question)
        if key in self.exact:
            return "exact"
        if self.threshold < 1.0 and key:
            best = process.extractOne(
                key, self._candidates(len(key)), scorer=fuzz.ratio, score_cutoff=self.threshold * 100
            )
            if best is not None:
                return "near"
        self.add(question)
        return None
