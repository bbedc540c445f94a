"""Contamination audit: which exam questions appear in the training data, and how closely.

Each exam question is checked against every training text (instruction records, generated QA,
pretraining documents, the prompt's worked examples; `medtune.exam.contamination_sources` reads
them) and gets one flag, the strongest that applies:

- `exact`: its normalised stem and every normalised choice occur in one training text (any order,
  any spacing, punctuation or case; see `medtune.exam.contamination_text`);
- `ngram`: one training text holds at least `min_ngram_matches` of its long n-grams: 13 words, the
  rule of GPT-3 and lm-evaluation-harness, or for Japanese and Chinese 20 characters (below);
- `near_duplicate`: one training text is at least `similarity_threshold` similar to it (rapidfuzz,
  0-100: `partial_ratio` against a text at least as long as the question, `ratio` against a shorter);
- `clean`: none of these.

Why 20 characters for Japanese and Chinese. IgakuQA's 2018 questions run to 219 characters in
Japanese and 122 words in their English translation: 1.8 characters a word, so 13 words are about
23 characters. Shorter n-grams catch common phrasing in unrelated questions: against the 460 JJSimQA
questions, 57 of IgakuQA's 400 share a 13-character n-gram (について正しいのはどれか1つ選べ), 25 a
15-character one, 2 an 18-character one (呼吸音にfinecracklesを聴取する) and none a 20-character one
(benchmarks/results/contamination_real_data.md).
Character n-grams without a single Han or kana character (an English term spelled out inside
Japanese) are not indexed: they are two or three words, far below the 13-word rule.

N-grams shared by more than max(3, `boilerplate_share` × questions) of the exam's own questions are
its boilerplate (a vital-signs sentence, "Which of the following"), evidence against no one question,
and are not indexed (a question left with none keeps all of its own). N-grams are taken within the
stem and within each choice, never across them, so a copy with its choices reordered matches in full.

Speed: the exam is indexed once (n-gram -> question numbers, in dicts keyed by the n-gram strings),
and each training text is read once and normalised. A text is cut into all its n-grams only when it
holds a probe: the (n - 3)-grams inside the exam's n-grams, read from the text at every 4th position
(a text that shares n units with a question holds one there, so no match is missed, and the full cut
is left for the few texts that may match). Its short shingles (3 words or 5 characters, read at
every 2nd position) are counted per question in one set intersection; only the questions a text
shares at least `candidate_share` of their shingles with are compared with it by rapidfuzz and
checked for an exact match, so the slow comparisons run on a handful of pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

from rapidfuzz import fuzz

from medtune.config.contamination_schema import ContaminationConfig
from medtune.errors import ConfigError
from medtune.exam.contamination_report import ClosestRecord, ContaminationReport, Flag, QuestionContamination
from medtune.exam.contamination_text import (
    canonical_question,
    canonical_training_text,
    char_ngrams,
    characters,
    cjk_char_ngrams,
    cjk_share_of,
    contains_words,
    excerpt,
    has_cjk,
    normalise,
    strided_char_ngrams,
    strided_word_ngrams,
    word_ngrams,
)
from medtune.vocabulary import ExamQuestion

KINDS = ("word", "char", "word_shingle", "char_shingle")
NGRAM_KINDS = ("word", "char")
NGRAM_STRIDE = 4  # a text's probe n-grams are read at every 4th position (see ExamIndex.probes)
SHINGLE_STRIDE = 2  # a text's short shingles are read at every 2nd position


class TrainingText(NamedTuple):
    source: str  # file:line (or file:item N) of the record
    text: str


@dataclass
class _Best:
    """What the scan has found for one question so far."""

    exact: ClosestRecord | None = None
    ngram_matches: int = 0
    ngram_record: ClosestRecord | None = None
    similarity: float = 0.0
    similar_record: ClosestRecord | None = None


@dataclass
class _Question:
    qid: str
    cjk: bool  # compared in the character form
    whole: str  # stem then sorted choices, in its form
    stem: str
    choices: tuple[str, ...]
    ngrams: int = 0  # indexed n-grams
    shingles: int = 0  # indexed short shingles


class ExamIndex:
    """The exam's n-grams and shingles, indexed once; `scan` each training text, then `report`."""

    def __init__(self, questions: Sequence[ExamQuestion], settings: ContaminationConfig | None = None):
        self.settings = settings = settings or ContaminationConfig()
        if settings.problems():
            raise ConfigError(settings.problems())
        own: dict[str, list[set]] = {kind: [] for kind in KINDS}
        self.questions: list[_Question] = []
        for question in questions:
            whole, stem, choices = canonical_question(question.question, question.choices)
            cjk = cjk_share_of(whole) >= settings.cjk_share
            for kind, grams in _question_grams([stem, *choices], cjk, settings).items():
                own[kind].append(grams)
            form = characters if cjk else str
            self.questions.append(_Question(question.qid, cjk, form(whole), form(stem), tuple(map(form, choices))))
        limit = max(3, settings.boilerplate_share * len(self.questions))
        self.index = {kind: _posting_lists(grams, limit) for kind, grams in own.items()}
        self.keys = {kind: frozenset(index) for kind, index in self.index.items()}
        for kind, index in self.index.items():
            for number in chain.from_iterable(index.values()):
                if kind in NGRAM_KINDS:
                    self.questions[number].ngrams += 1
                else:
                    self.questions[number].shingles += 1
        # Every (n - stride + 1)-gram inside an indexed n-gram: a text holds one of them at a multiple of
        # the stride wherever it shares n units with a question, so a text without one is skipped whole.
        self.stride = {"word": min(NGRAM_STRIDE, settings.ngram_words), "char": min(NGRAM_STRIDE, settings.ngram_chars)}
        self.probe_size = {
            "word": settings.ngram_words - self.stride["word"] + 1,
            "char": settings.ngram_chars - self.stride["char"] + 1,
        }
        self.probes = {
            kind: frozenset(chain.from_iterable(_all_ngrams(gram, self.probe_size[kind]) for gram in self.index[kind]))
            for kind in NGRAM_KINDS
        }
        # shingles are read at every SHINGLE_STRIDE-th position, so a text meets 1/stride of those it shares
        self.needed = [settings.candidate_share * q.shingles / SHINGLE_STRIDE for q in self.questions]
        self.best = [_Best() for _ in self.questions]
        self.records = 0

    def scan(self, record: TrainingText) -> None:
        """Compare one training text with every question, keeping each question's best evidence."""
        self.records += 1
        settings = self.settings
        normalised = normalise(record.text)
        words = normalised.split()
        chars = characters(normalised) if has_cjk(normalised) else ""
        hits = {"word": set(), "char": set()}
        if words and not self.probes["word"].isdisjoint(
            strided_word_ngrams(words, self.probe_size["word"], self.stride["word"])
        ):
            hits["word"] = self.keys["word"] & word_ngrams(words, settings.ngram_words)
        if chars and not self.probes["char"].isdisjoint(
            strided_char_ngrams(chars, self.probe_size["char"], self.stride["char"])
        ):
            hits["char"] = self.keys["char"] & char_ngrams(chars, settings.ngram_chars)
        if hits["word"] or hits["char"]:
            counts = Counter(chain.from_iterable(self.index[kind][g] for kind in NGRAM_KINDS for g in hits[kind]))
            for number, count in counts.items():
                best = self.best[number]
                if count > best.ngram_matches:
                    best.ngram_matches = count
                    best.ngram_record = self._ngram_record(number, record.source, hits, normalised, chars)
        shared = Counter()
        if self.keys["word_shingle"]:
            found = self.keys["word_shingle"].intersection(
                strided_word_ngrams(words, settings.shingle_words, SHINGLE_STRIDE)
            )
            shared.update(chain.from_iterable(map(self.index["word_shingle"].__getitem__, found)))
        if chars and self.keys["char_shingle"]:
            found = self.keys["char_shingle"].intersection(
                strided_char_ngrams(chars, settings.shingle_chars, SHINGLE_STRIDE)
            )
            shared.update(chain.from_iterable(map(self.index["char_shingle"].__getitem__, found)))
        needed = self.needed
        candidates = [number for number, count in shared.items() if count >= needed[number]]
        if candidates:
            canonical = canonical_training_text(record.text)
            for number in candidates:
                self._compare(number, record.source, normalised, chars, canonical)

    def _ngram_record(self, number: int, source: str, hits: dict, normalised: str, chars: str) -> ClosestRecord:
        """The record of a text holding n-grams of question `number`, its excerpt around the first of them."""
        gram = next(g for kind in NGRAM_KINDS for g in hits[kind] if number in self.index[kind][g])
        text, shown = (chars, gram) if isinstance(gram, str) else (normalised, " ".join(gram))
        at = text.find(shown)
        return ClosestRecord(source, excerpt(text, at, at + len(shown), self.settings.excerpt_chars))

    def _compare(self, number: int, source: str, normalised: str, chars: str, canonical: str) -> None:
        """The exact check and the similarity of a candidate pair."""
        question, best = self.questions[number], self.best[number]
        width = self.settings.excerpt_chars
        if best.exact is None:
            if question.cjk:
                found = question.stem in chars and all(c in chars for c in question.choices)
                text = chars
            else:
                found = contains_words(normalised, question.stem) and all(
                    contains_words(normalised, c) for c in question.choices if c
                )
                text = normalised
            if found:
                at = text.find(question.stem)
                best.exact = ClosestRecord(source, excerpt(text, at, at + len(question.stem), width))
        text = characters(canonical) if question.cjk else canonical
        if len(text) >= len(question.whole):
            aligned = fuzz.partial_ratio_alignment(question.whole, text)
            score, start, end = aligned.score, aligned.dest_start, aligned.dest_end
        else:
            score, start, end = fuzz.ratio(question.whole, text), 0, len(text)
        if score > best.similarity:
            best.similarity = score
            best.similar_record = ClosestRecord(source, excerpt(text, start, end, width))

    def report(self) -> ContaminationReport:
        """Each question's flag and closest record, from what the scan found."""
        settings = self.settings
        results = []
        for question, best in zip(self.questions, self.best):
            if best.exact:
                flag, closest = Flag.exact, best.exact
            elif best.ngram_matches >= settings.min_ngram_matches:
                flag, closest = Flag.ngram, best.ngram_record
            elif best.similarity >= settings.similarity_threshold:
                flag, closest = Flag.near_duplicate, best.similar_record
            else:
                flag, closest = Flag.clean, best.similar_record or best.ngram_record
            results.append(
                QuestionContamination(question.qid, flag, best.ngram_matches, question.ngrams, best.similarity, closest)
            )
        return ContaminationReport(tuple(results), self.records, settings.warn_fraction)


def _question_grams(segments: list[str], cjk: bool, settings: ContaminationConfig) -> dict[str, set]:
    """A question's n-grams and shingles of each kind, taken within each segment (stem, choices)."""
    words = [segment.split() for segment in segments]
    chars = [characters(segment) for segment in segments]
    return {
        "word": set().union(*(word_ngrams(w, settings.ngram_words) for w in words)),
        "char": set().union(*(cjk_char_ngrams(c, settings.ngram_chars) for c in chars)),
        "word_shingle": set() if cjk else set().union(*(word_ngrams(w, settings.shingle_words) for w in words)),
        "char_shingle": set().union(*(char_ngrams(c, settings.shingle_chars) for c in chars)) if cjk else set(),
    }


def _all_ngrams(gram: tuple[str, ...] | str, n: int) -> set:
    return word_ngrams(gram, n) if isinstance(gram, tuple) else char_ngrams(gram, n)


def _posting_lists(per_question: list[set], limit: float) -> dict[Any, tuple[int, ...]]:
    """n-gram -> the numbers of the questions that hold it, without those more than `limit` questions hold
    (a question left with none of its own keeps them all)."""
    holders: dict[Any, list[int]] = {}
    for number, own in enumerate(per_question):
        for gram in own:
            holders.setdefault(gram, []).append(number)
    common = {gram for gram, numbers in holders.items() if len(numbers) > limit}
    index = {gram: tuple(numbers) for gram, numbers in holders.items() if gram not in common}
    for number, own in enumerate(per_question):
        if own and own <= common:
            for gram in own:
                index[gram] = (*index.get(gram, ()), number)
    return index


def audit_contamination(
    questions: Sequence[ExamQuestion], texts: Iterable[TrainingText], settings: ContaminationConfig | None = None
) -> ContaminationReport:
    """Index `questions`, stream `texts` through the index once, and return every question's verdict."""
    index = ExamIndex(questions, settings)
    for text in texts:
        index.scan(text)
    return index.report()
