"""Asking one question several times: self-consistency and the choice-shuffle ensemble.

A question becomes *variants*: `eval.shuffles` orders of its choices (the first is the exam's own)
times `eval.samples` sampled chains of thought each. Every variant is scored on its own, in both
readings (the paper's and the strict one), and its answer is mapped back to the original choice
labels. The question's answer is the majority vote over the variants that gave an answer of the
right size (ties go to the answer seen first); how many variants agree is kept beside it.

With shuffled choices the picks are also read by *position*: a model that answers "a" whatever
stands there picks the same shown label across permutations while the answer behind it changes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from medtune.vocabulary import ExamQuestion, ScoredAnswer, Status


@dataclass(frozen=True)
class Variant:
    """One way of asking a question: its choices in `order` (shown position -> original index)."""

    question: ExamQuestion  # as asked: choices (and gold labels) permuted
    order: tuple[int, ...]
    shuffle: int
    sample: int

    def to_original(self, labels: Sequence[str]) -> tuple[str, ...]:
        """Labels read against the shown choices, as labels of the original question."""
        if not self.order:  # a numeric question: nothing was permuted
            return tuple(labels)
        shown = _labels(self.question)
        original = [self.order[shown.index(label)] for label in labels if label in shown]
        return tuple(sorted(_labels(self.question)[i] for i in original))


def _labels(question: ExamQuestion) -> list[str]:
    return [question.letter(i) for i in range(len(question.choices))]


def choice_orders(n_choices: int, shuffles: int, rng: random.Random) -> list[tuple[int, ...]]:
    """The exam's own order first, then distinct random orders while there are new ones to draw."""
    identity = tuple(range(n_choices))
    orders = [identity]
    distinct = math.factorial(n_choices)
    while len(orders) < shuffles:
        order = list(identity)
        rng.shuffle(order)
        if tuple(order) not in orders or len(orders) >= distinct:
            orders.append(tuple(order))
    return orders


def permuted(question: ExamQuestion, order: Sequence[int]) -> ExamQuestion:
    """`question` with its choices shown in `order`; gold, accepted and contraindicated labels follow."""
    labels = _labels(question)
    shown_at = {original: position for position, original in enumerate(order)}

    def remap(letters: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(labels[shown_at[labels.index(x)]] for x in letters if x in labels))

    return dataclasses.replace(
        question,
        choices=tuple(question.choices[i] for i in order),
        answers=remap(question.answers),
        accepted=tuple(remap(s) for s in question.accepted),
        kinki=remap(question.kinki),
    )


def plan_variants(question: ExamQuestion, shuffles: int, samples: int, seed: int) -> list[Variant]:
    """Every variant of `question`, in a fixed order; the permutations depend on `seed` and the id only."""
    if question.is_numeric:
        orders: list[tuple[int, ...]] = [()]
    else:
        orders = choice_orders(len(question.choices), shuffles, random.Random(f"{seed}:{question.qid}"))
    return [
        Variant(permuted(question, order) if order else question, order, shuffle, sample)
        for (shuffle, order), sample in itertools.product(enumerate(orders), range(samples))
    ]


@dataclass
class Vote:
    """One variant's answer, in original labels, under both readings."""

    variant: Variant
    output: str
    scored: ScoredAnswer
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. loglik's choice log-probabilities

    @property
    def parsed(self) -> tuple[str, ...]:
        return self.variant.to_original(self.scored.parsed)

    @property
    def strict_parsed(self) -> tuple[str, ...]:
        return self.variant.to_original(self.scored.strict_parsed)

    def row(self) -> dict[str, Any]:
        question = self.variant.question
        return {
            "shuffle": self.variant.shuffle,
            "sample": self.variant.sample,
            "order": "".join(_labels(question)[i] for i in self.variant.order),
            "shown": list(self.scored.parsed),
            "parsed": list(self.parsed),
            "status": self.scored.status.value,
            "strict_parsed": list(self.strict_parsed),
            "strict_status": self.scored.strict_status.value,
            "output": self.output,
            **self.extra,
        }


def majority(answers: Sequence[tuple[str, ...]]) -> tuple[tuple[str, ...], int]:
    """The most common answer (the first seen among equals) and how many gave it; ((), 0) if none."""
    if not answers:
        return (), 0
    counts = Counter(answers)
    top = max(counts.values())
    winner = next(answer for answer in answers if counts[answer] == top)
    return winner, top


def _valid(votes: Sequence[Vote], strict: bool) -> list[tuple[str, ...]]:
    if strict:
        return [v.strict_parsed for v in votes if v.scored.strict_status is not Status.invalid]
    return [v.parsed for v in votes if v.scored.status is not Status.invalid]


def combine(question: ExamQuestion, votes: Sequence[Vote]) -> tuple[ScoredAnswer, dict[str, Any]]:
    """The question's answer by majority vote (both readings) and what the row records about the votes."""
    from medtune.exam.scoring import score_letters

    paper_answer, paper_count = majority(_valid(votes, strict=False))
    strict_answer, strict_count = majority(_valid(votes, strict=True))
    paper = score_letters(question, paper_answer)
    strict = score_letters(question, strict_answer)
    if not paper_answer:
        paper.reason = f"none of the {len(votes)} variants gave a readable answer"
    if not strict_answer:
        strict.reason = f"none of the {len(votes)} variants committed to an answer (strict reading)"
    agreeing = [v for v in votes if paper_answer and v.parsed == paper_answer]
    first = agreeing[0] if agreeing else votes[0]
    combined = dataclasses.replace(
        paper,
        answer_text=first.scored.answer_text,
        exact_match=first.scored.exact_match,
        gestalt_score=sum(v.scored.gestalt_score for v in votes) / len(votes),
        strict_status=strict.status,
        strict_parsed=strict.parsed,
        strict_reason=strict.reason,
    )
    record: dict[str, Any] = {
        "votes": [v.row() for v in votes],
        "agreement": round(paper_count / len(votes), 4),
        "strict_agreement": round(strict_count / len(votes), 4),
    }
    shuffled = [v for v in votes if v.variant.order and len(v.scored.parsed) == 1]
    if len({v.variant.order for v in shuffled}) > 1:
        record["position_bias"] = position_record(shuffled)
    return combined, record


def position_record(votes: Sequence[Vote]) -> dict[str, Any]:
    """Which shown labels the single-answer picks fell on, and whether position or content was stable."""
    shown = [v.scored.parsed[0] for v in votes]
    answers = [v.parsed for v in votes]
    position, position_count = Counter(shown).most_common(1)[0]
    return {
        "shown": shown,
        "position_agreement": round(position_count / len(votes), 4),
        "answer_agreement": round(Counter(answers).most_common(1)[0][1] / len(votes), 4),
        # The same shown label every time although it held different choices: the label, not the text, was picked.
        "same_position": position_count == len(votes) and len(set(answers)) > 1,
    }


def ensemble_summary(rows: Sequence[dict[str, Any]], samples: int, shuffles: int) -> dict[str, Any]:
    """metrics.json's `ensemble` block: vote agreement, and with shuffles the position bias."""
    voted = [row for row in rows if "votes" in row]
    summary: dict[str, Any] = {"samples": samples, "shuffles": shuffles, "questions": len(voted)}
    if not voted:
        return summary
    summary["mean_agreement"] = round(sum(r["agreement"] for r in voted) / len(voted), 4)
    summary["mean_strict_agreement"] = round(sum(r["strict_agreement"] for r in voted) / len(voted), 4)
    summary["unanimous"] = sum(r["agreement"] == 1.0 for r in voted)
    biased = [r["position_bias"] for r in voted if "position_bias" in r]
    if biased:
        shown = Counter(label for record in biased for label in record["shown"])
        total = sum(shown.values())
        summary["position_share"] = {label: round(count / total, 4) for label, count in sorted(shown.items())}
        summary["same_position_questions"] = sum(record["same_position"] for record in biased)
        summary["mean_position_agreement"] = round(sum(r["position_agreement"] for r in biased) / len(biased), 4)
        summary["mean_answer_agreement"] = round(sum(r["answer_agreement"] for r in biased) / len(biased), 4)
    return summary
