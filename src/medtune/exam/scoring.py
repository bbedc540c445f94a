"""Scoring: judge a model response to an exam question (Algorithm 1); totals are `medtune.exam.aggregation`'s.

`score_response` reads the final answer (see `medtune.exam.parsing`) twice. The paper's
reading (Algorithm 1) matches each part of it to a choice — by its label when it has one, else by
the choice text most similar to it, above `threshold` — and judges the set of matched letters: a
different number of answers than the question asks for is invalid, a set equal to the gold set
(or an accepted alternative) is correct, anything else is wrong. The strict reading (see
`medtune.exam.strict`) counts only what the response commits to — marked labels, or choice
text at `strict_threshold` or above — and is judged the same way. It also computes JMedLoRA's
Exact match and Gestalt score.

The two similarity options differ. `Similarity.rapidfuzz` is `rapidfuzz.fuzz.ratio`, the
normalised Indel similarity 2·LCS/(|a|+|b|), where LCS is the longest common *subsequence*.
`Similarity.difflib` is `difflib.SequenceMatcher.ratio`, Ratcliff/Obershelp "gestalt pattern
matching": it greedily takes the longest common *contiguous block*, then recurses only on the
text left of it and right of it, so it never counts more than the LCS. When that longest block
sits in crossed positions ("X Y" against "Y Z"), difflib matches it alone and loses everything
else, while the Indel ratio still finds the long subsequence. The two can therefore rank choices
differently; tests/test_scoring.py pins a concrete case.

Both take time linear in the answer's length for a choice text of bounded length (rapidfuzz's bit-
parallel LCS; difflib's longest-block search over the answer, with the short choice as its second
sequence). One response compares each distinct (part, choice) pair once, so a looping answer whose
parts repeat costs no more than its distinct parts.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Sequence

from rapidfuzz import fuzz

from medtune.exam.answer_forms import canonical, fold, normalize
from medtune.exam.answer_location import LocatedAnswer, locate_answer
from medtune.exam.parsing import Part, Reading, extract_numbers, read_statement
from medtune.exam.strict import best_choice, folded_choices, strict_commitment
from medtune.vocabulary import (
    ExamQuestion,
    ScoredAnswer,
    Similarity,
    Status,
)

SimilarityFn = Callable[[str, str], float]


def _indel_ratio(a: str, b: str) -> float:
    return fuzz.ratio(a, b) / 100.0


def _gestalt_ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def similarity_fn(kind: Similarity) -> SimilarityFn:
    """The function behind a `Similarity` option: (a, b) -> similarity in [0, 1]."""
    kind = Similarity(kind)
    return _indel_ratio if kind is Similarity.rapidfuzz else _gestalt_ratio


def _remembering(similarity: SimilarityFn) -> SimilarityFn:
    """`similarity` computing each pair once: a looping answer compares the same part with the same
    choices over and over (used for one response, so what it keeps is freed with it)."""
    known: dict[tuple[str, str], float] = {}

    def remembered(a: str, b: str) -> float:
        if (a, b) not in known:
            known[(a, b)] = similarity(a, b)
        return known[(a, b)]

    return remembered


# ---------------------------------------------------------------------------------------------
# Judging a set of letters
# ---------------------------------------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _judge(
    question: ExamQuestion, parsed: Sequence[str], given: frozenset, golds: list[frozenset]
) -> tuple[Status, str]:
    """Status and reason for an answer read as `parsed`, whose distinct values are `given`."""
    if not given:
        return Status.invalid, "no answer found"
    if len(given) != question.num_answers:
        return Status.invalid, (f"gave {_plural(len(given), 'answer')}, the question asks for {question.num_answers}")
    if question.voided:
        return Status.correct, "voided question: every answer counts as correct"
    if given in golds:
        return Status.correct, ""
    return Status.wrong, f"read as {','.join(parsed)}, the answer is {','.join(question.answers)}"


def _judge_letters(question: ExamQuestion, letters: Sequence[str]) -> tuple[Status, str]:
    return _judge(question, letters, frozenset(letters), question.gold_sets())


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    """Distinct items in the order they first appear."""
    return tuple(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------
# JMedLoRA metrics
# ---------------------------------------------------------------------------------------------


def _gold_writings(question: ExamQuestion, gold: Sequence[str]) -> set[str]:
    """Every way an exact answer may be written: texts, "letter. text", or "a,c"; any order."""
    writings: set[str] = set()
    for order in itertools.permutations(sorted(gold)):
        texts = [question.choice_of(letter) for letter in order]
        writings.add(canonical("\n".join(texts)))
        writings.add(canonical("\n".join(f"{letter}. {text}" for letter, text in zip(order, texts))))
        writings.add(canonical(",".join(order)))
    return writings


def _gold_letter_sets(question: ExamQuestion) -> list[frozenset[str]]:
    # An out-of-range letter in the metadata must not crash the metric; it just never matches.
    labels = set(question.labels())
    return [gold for gold in question.gold_sets() if gold <= labels]


def exact_match(question: ExamQuestion, segment: str) -> bool:
    """JMedLoRA's Exact match: the whole answer segment is the gold answer, written out."""
    written = canonical(segment)
    return any(written in _gold_writings(question, gold) for gold in _gold_letter_sets(question))


def gestalt_score(question: ExamQuestion, segment: str, similarity: SimilarityFn) -> float:
    """JMedLoRA's Gestalt score: similarity of the segment to the gold choice texts, "\\n"-joined."""
    scores = [
        similarity(normalize(segment), normalize("\n".join(question.choice_of(letter) for letter in sorted(gold))))
        for gold in _gold_letter_sets(question)
    ]
    return max(scores, default=0.0)


# ---------------------------------------------------------------------------------------------
# Scoring one response
# ---------------------------------------------------------------------------------------------


def _match_parts(
    question: ExamQuestion, parts: Sequence[Part], similarity: SimilarityFn, threshold: float
) -> tuple[tuple[str, ...], dict[str, float]]:
    """Letters matched by the parts, and each choice letter's best similarity over the parts."""
    letters = list(question.labels())
    choice_texts = folded_choices(tuple(question.choices))
    best = dict.fromkeys(letters, 0.0)
    matched: list[str] = []
    for part in parts:
        if part.label is not None:
            matched.append(part.label)
            best[part.label] = 1.0
            continue
        folded = fold(part.text)
        scores = [similarity(folded, text) for text in choice_texts]
        for letter, score in zip(letters, scores):
            best[letter] = max(best[letter], score)
        top = scores.index(max(scores))  # index() finds the first maximum: ties go to the earlier choice
        if scores[top] >= threshold:
            matched.append(letters[top])
    return _unique(matched), best


def _paper_parts(question: ExamQuestion, reading: Reading, similarity: SimilarityFn) -> list[Part]:
    """The parts Algorithm 1 matches: labelled parts, else the text fragments when cutting helps.

    Text without labels is cut on list separators ("酸素欠乏症、硫化水素中毒"), but only when every
    fragment is at least as close to some choice as the whole text is: a choice text reworded
    around "and" or "/" ("inflammation limited to mucosa and submucosa") stays one answer.
    """
    parts = list(reading.parts)
    if reading.labelled or len(parts) < 2:
        return parts
    whole = best_choice(question, reading.text, similarity)[1]
    if all(best_choice(question, part.text, similarity)[1] >= whole for part in parts):
        return parts
    return [Part(reading.text)]


def _no_answer_reason(located: LocatedAnswer) -> str:
    if located.echoed_lines:
        return "no answer found: the response only re-types the question or the choices"
    return "no answer found"


def _paper_reading(
    question: ExamQuestion, located: LocatedAnswer, reading: Reading | None, similarity: SimilarityFn, threshold: float
) -> tuple[tuple[str, ...], dict[str, float], str]:
    """Algorithm 1 on the final statement, whose `reading` is given: (letters, best similarity per
    letter, reason if none)."""
    empty = dict.fromkeys(question.labels(), 0.0)
    if reading is None:
        return (), empty, _no_answer_reason(located)
    if reading.no_choice:
        return (), empty, f"says {reading.no_choice!r}, which is not one of the choices"
    if reading.negated and not reading.parts:
        return (), empty, f"rules out {', '.join(reading.negated)} and names no answer"
    parts = _paper_parts(question, reading, similarity)
    letters, similarities = _match_parts(question, parts, similarity, threshold)
    if letters:
        return letters, similarities, ""
    if reading.unknown_labels:
        return (), similarities, f"names {', '.join(reading.unknown_labels)}, which is no choice label here"
    if not parts:
        return (), similarities, "no answer found"
    return (), similarities, f"no part of the answer is at least {threshold:g} similar to a choice"


def _score_numeric(question: ExamQuestion, segment: str) -> ScoredAnswer:
    """A numeric question: the distinct numbers in the segment, compared as floats ("3.50" == "3.5")."""
    numbers = _unique(extract_numbers(segment))
    golds = [frozenset(float(x) for x in gold) for gold in question.gold_sets()]
    status, reason = _judge(question, numbers, frozenset(float(x) for x in numbers), golds)
    if not numbers:
        reason = "no number found"
    correct = status is Status.correct
    return ScoredAnswer(
        status, numbers, segment, exact_match=correct, gestalt_score=1.0 if correct else 0.0, reason=reason
    )


def score_response(
    question: ExamQuestion,
    response: str,
    similarity: Similarity = Similarity.rapidfuzz,
    threshold: float = 0.2,
    strict_threshold: float = 0.8,
) -> ScoredAnswer:
    """Score a free-text model response to `question`: the paper's reading (Algorithm 1 of the 70B
    paper, `threshold`) in `status` / `parsed` / `reason`, the strict reading (`strict_threshold`)
    in `strict_status` / `strict_parsed` / `strict_reason`. A numeric question reads the same both ways.
    """
    located = locate_answer(response, question.question, question.choices, max(1, question.num_answers))
    segment = located.text
    if question.is_numeric:
        return _score_numeric(question, segment)
    sim = _remembering(similarity_fn(similarity))
    final = located.final
    reading = read_statement(final.text, question.choices, final.marked) if final else None
    letters, similarities, why_none = _paper_reading(question, located, reading, sim, threshold)
    status, reason = _judge_letters(question, letters)
    committed = strict_commitment(question, located, sim, strict_threshold, reading)
    if committed.problem:
        strict_status, strict_reason = Status.invalid, committed.problem
    else:
        strict_status, strict_reason = _judge_letters(question, committed.labels)
    return ScoredAnswer(
        status=status,
        parsed=letters,
        answer_text=segment,
        similarities=similarities,
        exact_match=exact_match(question, segment),
        gestalt_score=gestalt_score(question, segment, sim),
        reason=why_none or reason,
        strict_status=strict_status,
        strict_parsed=committed.labels,
        strict_reason=strict_reason,
    )


def score_letters(question: ExamQuestion, letters: Sequence[str]) -> ScoredAnswer:
    """Score predictions already given as letters (e.g. "a,b".split(",")): no fuzzy matching.

    Letters are normalised (ｅ, E, ⑤ → e); anything that is not a label of one of the question's
    choices is dropped, so it can only make the answer invalid, never correct.
    """
    answer_text = ",".join(letters)
    if question.is_numeric:
        return _score_numeric(question, answer_text)
    labels = question.labels()
    parsed = _unique([x for x in (_as_written_label(raw) for raw in letters) if x in labels])
    status, reason = _judge_letters(question, parsed)
    exact = any(set(parsed) == gold for gold in question.gold_sets())
    return ScoredAnswer(
        status,
        parsed,
        answer_text,
        exact_match=exact,
        gestalt_score=1.0 if exact else 0.0,
        reason=reason,
        strict_status=status,
        strict_parsed=parsed,
        strict_reason=reason,
    )


def _as_written_label(raw: str) -> str:
    """A label as given ("Ｅ", " e ", "⑤", "07"), in the form `choice_labels` uses ("e", "7")."""
    label = normalize(raw).strip().lower()
    return str(int(label)) if label.isdigit() else label
