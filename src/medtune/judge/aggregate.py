"""Judgments -> the paper's category table: each system's scores per category, normalised to 100.

A question's score for a system is the mean over its readable judgments (both orders with swap).
A category's score is the sum of its questions' scores / (10 x questions scored) x 100, as in the
paper's Tables III and IV; Total does the same over every question, so it weighs categories by
their size (the paper's totals, e.g. Bloomz-Chat's 73.55, are this weighted figure). A question
with no readable judgment is counted as unparsable and left out of the sums, not scored 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean

from medtune.judge.parsing import MAX_SCORE


@dataclass
class QuestionScore:
    qid: str
    category: str
    a: float | None = None  # mean over readable judgments; None when there is none
    b: float | None = None
    judgments: int = 0
    unparsable_judgments: int = 0
    orders_disagree: bool = False  # both orders read, and they name different winners (a tie counts)


def winner(score_a: float, score_b: float) -> str:
    return "a" if score_a > score_b else "b" if score_b > score_a else "tie"


def question_scores(rows: Sequence[dict]) -> list[QuestionScore]:
    """One QuestionScore per question id, in first-seen order, from scored judgment rows."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[str(row["id"])].append(row)
    scores = []
    for qid, judgments in grouped.items():
        read = [r for r in judgments if r["status"] == "scored"]
        q = QuestionScore(
            qid, judgments[0]["category"], judgments=len(judgments), unparsable_judgments=len(judgments) - len(read)
        )
        if read:
            q.a = mean(r["score_a"] for r in read)
            q.b = mean(r["score_b"] for r in read)
        verdicts = {winner(r["score_a"], r["score_b"]) for r in read}
        q.orders_disagree = len(read) > 1 and len(verdicts) > 1
        scores.append(q)
    return scores


@dataclass
class CategoryRow:
    category: str
    samples: int = 0
    scored: int = 0
    a: float | None = None  # /100
    b: float | None = None
    unparsable: int = 0  # questions with no readable judgment
    unparsable_judgments: int = 0
    order_disagreements: int = 0
    wins: dict = field(default_factory=lambda: {"a": 0, "b": 0, "tie": 0})

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def normalised(total: float, scored: int, max_score: float = MAX_SCORE) -> float | None:
    """Sum of scores over `scored` questions on a 100-point scale: sum / (max_score x scored) x 100."""
    return total / (max_score * scored) * 100 if scored else None


def category_row(name: str, questions: Sequence[QuestionScore]) -> CategoryRow:
    row = CategoryRow(name, samples=len(questions))
    scored = [q for q in questions if q.a is not None]
    row.scored = len(scored)
    row.a = normalised(sum(q.a for q in scored), len(scored))
    row.b = normalised(sum(q.b for q in scored), len(scored))
    row.unparsable = len(questions) - len(scored)
    row.unparsable_judgments = sum(q.unparsable_judgments for q in questions)
    row.order_disagreements = sum(q.orders_disagree for q in questions)
    for q in scored:
        row.wins[winner(q.a, q.b)] += 1
    return row


def position_bias(rows: Sequence[dict]) -> float | None:
    """Mean of (Assistant 1's score - Assistant 2's) over readable judgments: how much the judge favours
    the first position. With swap, each system sits first equally often, so this is the judge's own lean."""
    diffs = [r["score_1"] - r["score_2"] for r in rows if r["status"] == "scored"]
    return mean(diffs) if diffs else None


def category_table(rows: Sequence[dict], categories: Sequence[str]) -> dict:
    """{"categories": [CategoryRow...], "total": CategoryRow, ...} from scored judgment rows."""
    questions = question_scores(rows)
    by_category: dict[str, list[QuestionScore]] = defaultdict(list)
    for q in questions:
        by_category[q.category].append(q)
    ordered = list(categories) + [c for c in by_category if c not in categories]
    return {
        "categories": [category_row(c, by_category[c]) for c in ordered if by_category.get(c)],
        "total": category_row("Total", questions),
        "judgments": len(rows),
        "unparsable_judgments": sum(r["status"] != "scored" for r in rows),
        "position_bias": position_bias(rows),
    }
