"""Totals over an exam's scored answers (`aggregate`): accuracy, JMedLoRA's metrics, the strict reading's
counts and the breakdowns an exam's data has (`BREAKDOWNS`: points, essential / general, by block, by
category, kinki picked), JSON-ready for metrics.json and W&B. Scoring each answer is `medtune.exam.scoring`'s.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from medtune.reporting.intervals import bootstrap_ratio, wilson
from medtune.vocabulary import ExamQuestion, ScoredAnswer, Status


def _tally(pairs: Sequence[tuple[ExamQuestion, ScoredAnswer]], with_points: bool = True) -> dict:
    n = len(pairs)
    correct = sum(result.status is Status.correct for _, result in pairs)
    summary: dict = {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0}
    if with_points:
        summary["points"] = sum(q.points for q, r in pairs if r.status is Status.correct)
        summary["points_total"] = sum(q.points for q, _ in pairs)
    return summary


def _grouped(pairs: Sequence[tuple[ExamQuestion, ScoredAnswer]], key: str, with_points: bool) -> dict:
    """Tallies per value of a question attribute (`block`, `category`), leaving out the empty one."""
    groups: dict[str, list[tuple[ExamQuestion, ScoredAnswer]]] = {}
    for question, result in pairs:
        value = getattr(question, key)
        if value:
            groups.setdefault(value, []).append((question, result))
    return {value: _tally(groups[value], with_points) for value in sorted(groups)}


# The breakdowns `aggregate` can add beyond accuracy (`ExamAggregate`); an exam names those its data has.
BREAKDOWNS = ("points", "essential", "block", "category", "kinki")


def _breakdowns(pairs: Sequence[tuple[ExamQuestion, ScoredAnswer]], chosen: set[str], with_points: bool) -> dict:
    """The chosen breakdowns, in the order metrics.json has always listed them."""
    parts: dict = {}
    if "essential" in chosen:
        parts["essential"] = _tally([p for p in pairs if p[0].essential], with_points)
        parts["general"] = _tally([p for p in pairs if not p[0].essential], with_points)
    if "block" in chosen:
        parts["by_block"] = _grouped(pairs, "block", with_points)
    if "category" in chosen:
        parts["by_category"] = _grouped(pairs, "category", with_points=False)
    if "kinki" in chosen:
        parts["kinki_picked"] = sum(bool(set(r.parsed) & set(q.kinki)) for q, r in pairs)
        parts["kinki_questions"] = sum(bool(q.kinki) for q, _ in pairs)
    return parts


def _strict_tally(results: Sequence[ScoredAnswer]) -> dict:
    """Counts and accuracy of the strict reading."""
    n = len(results)
    counts = {status: sum(r.strict_status is status for r in results) for status in Status}
    return {
        "n": n,
        "correct": counts[Status.correct],
        "invalid": counts[Status.invalid],
        "wrong": counts[Status.wrong],
        "accuracy": counts[Status.correct] / n if n else 0.0,
    }


def aggregate(
    questions: Sequence[ExamQuestion],
    results: Sequence[ScoredAnswer],
    breakdowns: Collection[str] = BREAKDOWNS,
) -> dict:
    """JSON-ready totals over scored questions: accuracy, JMedLoRA metrics, strict reading, breakdowns.

    `breakdowns` (names of `BREAKDOWNS`, e.g. an exam's `exam.aggregates`) picks what is added:
    points (and points inside the other tallies), essential / general, by_block, by_category, kinki.
    `strict` holds the strict reading's counts, `strict_accuracy` its accuracy and
    `paper_minus_strict` how much higher the paper's reading scores (negative when it is lower).
    Each accuracy carries its 95% interval (`accuracy_interval`: Wilson; `points_interval`: bootstrap
    over questions, seeded), so a reader sees how much a difference of a few points can mean.
    """
    if len(questions) != len(results):
        raise ValueError(f"{len(questions)} questions but {len(results)} results")
    chosen = {str(getattr(b, "value", b)) for b in breakdowns}
    unknown = sorted(chosen - set(BREAKDOWNS))
    if unknown:
        raise ValueError(f"unknown breakdown {unknown[0]!r}; the breakdowns are {', '.join(BREAKDOWNS)}")
    pairs = list(zip(questions, results))
    n = len(pairs)
    with_points = "points" in chosen
    summary = _tally(pairs, with_points)
    summary.update(
        invalid=sum(r.status is Status.invalid for r in results),
        wrong=sum(r.status is Status.wrong for r in results),
        exact_match=sum(r.exact_match for r in results) / n if n else 0.0,
        gestalt_score=sum(r.gestalt_score for r in results) / n if n else 0.0,
    )
    summary["accuracy_interval"] = wilson(summary["correct"], n).to_dict()
    if with_points:
        earned = [q.points if r.status is Status.correct else 0 for q, r in pairs]
        summary["points_interval"] = bootstrap_ratio(earned, [q.points for q, _ in pairs]).to_dict()
    summary.update(_breakdowns(pairs, chosen, with_points))
    strict = _strict_tally(results)
    strict["accuracy_interval"] = wilson(strict["correct"], n).to_dict()
    summary.update(
        strict=strict,
        strict_accuracy=strict["accuracy"],
        paper_minus_strict=summary["accuracy"] - strict["accuracy"],
    )
    return summary
