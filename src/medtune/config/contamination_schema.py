"""The contamination audit's keys (`contamination.*` in train.py, evaluate.py and contamination.py).

The audit itself is `medtune.exam.contamination`; its module docstring explains each default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode


@dataclass
class ContaminationConfig(ConfigNode):
    """Which exam questions appear in the training data, checked before the exam is scored."""

    enabled: bool = help_field(
        True,
        "Audit the training data against the exam (train.py: before its exam check; evaluate.py: with run= or "
        "contamination.files); false: no audit.",
    )
    files: List[str] = help_field(
        help="More training files or folders to audit, beyond a run's own data (.jsonl, .json, .txt, .md).",
        factory=list,
    )
    worked_examples: bool = help_field(
        True, "Also audit the worked examples the exam's prompt shows before each question (its fewshot file)."
    )
    ngram_words: int = help_field(13, "Words per n-gram for space-separated text (GPT-3's 13-gram rule).")
    ngram_chars: int = help_field(20, "Characters per n-gram for Japanese and Chinese text (no spaces).")
    min_ngram_matches: int = help_field(1, "N-grams of a question one training text must hold to flag it `ngram`.")
    shingle_words: int = help_field(3, "Words per short shingle (near-duplicate candidates).")
    shingle_chars: int = help_field(5, "Characters per short shingle for Japanese and Chinese questions.")
    candidate_share: float = help_field(
        0.3, "Share of a question's short shingles a text needs before rapidfuzz compares it with the question."
    )
    similarity_threshold: float = help_field(
        85.0, "rapidfuzz similarity (0-100) from which a training text is a near-duplicate of a question."
    )
    cjk_share: float = help_field(
        0.3, "Share of Han/kana letters from which a question is compared by characters, not words."
    )
    boilerplate_share: float = help_field(
        0.01, "N-grams shared by more than max(3, this share) of the exam's questions are its boilerplate: not indexed."
    )
    warn_fraction: float = help_field(
        0.01,
        "Warn loudly when more than this fraction of the questions is contaminated (0.01: accuracy could be a "
        "point too high; 0: warn at the first).",
    )
    excerpt_chars: int = help_field(200, "Characters of each question's closest training record kept in reports.")

    def problems(self) -> list[str]:
        """Every setting out of its range, as `contamination.<key>=<value>: ...` sentences."""
        found = []
        for key in ("ngram_words", "ngram_chars", "min_ngram_matches", "shingle_words", "shingle_chars"):
            if getattr(self, key) < 1:
                found.append(f"contamination.{key}={getattr(self, key)}: must be 1 or more.")
        for key in ("candidate_share", "cjk_share", "boilerplate_share", "warn_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                found.append(f"contamination.{key}={getattr(self, key)}: a fraction, give a value from 0 to 1.")
        if not 0.0 <= self.similarity_threshold <= 100.0:
            found.append(
                f"contamination.similarity_threshold={self.similarity_threshold}: rapidfuzz scores run 0-100; "
                "give a value in that range (e.g. 85)."
            )
        return found
