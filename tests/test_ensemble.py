"""Self-consistency and the choice-shuffle ensemble: permutations, mapping votes back, majority, position bias."""

from __future__ import annotations

import pytest

from medtune.evaluation.ensemble import (
    Variant,
    Vote,
    choice_orders,
    combine,
    ensemble_summary,
    majority,
    permuted,
    plan_variants,
)
from medtune.exam.scoring import score_response
from medtune.vocabulary import ExamQuestion, Status

QUESTION = ExamQuestion(
    qid="Q1",
    question="Which is a symptom of influenza?",
    choices=("fever", "fracture", "freckles", "myopia", "tinnitus"),
    answers=("a",),
    kinki=("b",),
)


def vote(variant: Variant, output: str) -> Vote:
    return Vote(variant, output, score_response(variant.question, output))


def test_orders_start_with_the_exams_own_and_are_distinct_and_seeded():
    import random

    orders = choice_orders(5, 4, random.Random("7:Q1"))
    assert orders[0] == (0, 1, 2, 3, 4)
    assert len(set(orders)) == 4
    assert orders == choice_orders(5, 4, random.Random("7:Q1"))
    # Two choices have only two orders: more shuffles repeat them rather than loop forever.
    assert len(choice_orders(2, 5, random.Random(0))) == 5


def test_permuted_question_moves_gold_and_contraindicated_labels_with_their_choices():
    shown = permuted(QUESTION, (2, 0, 4, 1, 3))
    assert shown.choices == ("freckles", "fever", "tinnitus", "fracture", "myopia")
    assert shown.answers == ("b",)  # fever now stands at b
    assert shown.kinki == ("d",)  # fracture now stands at d


def test_plan_variants_counts_shuffles_times_samples_and_maps_answers_back():
    variants = plan_variants(QUESTION, shuffles=3, samples=2, seed=0)
    assert [(v.shuffle, v.sample) for v in variants] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    for variant in variants:
        gold_shown = variant.question.answers
        assert variant.to_original(gold_shown) == ("a",)
        assert variant.question.choice_of(gold_shown[0]) == "fever"


def test_majority_keeps_the_first_seen_among_equals():
    assert majority([("b",), ("a",), ("a",), ("b",)]) == (("b",), 2)
    assert majority([]) == ((), 0)


def test_votes_in_shown_labels_become_a_vote_in_original_labels():
    variants = plan_variants(QUESTION, shuffles=3, samples=1, seed=3)
    # Each variant answers with the shown label of "fever": the right choice under every order.
    votes = [vote(v, f"Answer: {v.question.answers[0]}. fever") for v in variants]
    scored, record = combine(QUESTION, votes)
    assert scored.status is Status.correct and scored.parsed == ("a",)
    assert scored.strict_status is Status.correct
    assert record["agreement"] == 1.0
    assert [row["parsed"] for row in record["votes"]] == [["a"]] * 3
    assert record["position_bias"]["answer_agreement"] == 1.0
    assert record["position_bias"]["same_position"] is False


def test_a_model_that_always_answers_the_first_label_shows_position_bias():
    variants = plan_variants(QUESTION, shuffles=4, samples=1, seed=1)
    votes = [vote(v, "Answer: a") for v in variants]
    scored, record = combine(QUESTION, votes)
    bias = record["position_bias"]
    assert bias["shown"] == ["a"] * 4
    assert bias["same_position"] is True
    assert bias["position_agreement"] == 1.0 and bias["answer_agreement"] < 1.0
    summary = ensemble_summary([{"id": "Q1", **record}], samples=1, shuffles=4)
    assert summary["position_share"] == {"a": 1.0}
    assert summary["same_position_questions"] == 1


def test_unreadable_votes_do_not_count_and_all_unreadable_is_invalid():
    variants = plan_variants(QUESTION, shuffles=1, samples=3, seed=0)
    votes = [vote(variants[0], "Answer: b"), vote(variants[1], ""), vote(variants[2], "Answer: b")]
    scored, record = combine(QUESTION, votes)
    assert scored.parsed == ("b",) and scored.status is Status.wrong
    assert record["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    nothing = [vote(v, "") for v in variants]
    scored, record = combine(QUESTION, nothing)
    assert scored.status is Status.invalid and "none of the 3 variants" in scored.reason
    assert scored.strict_status is Status.invalid


def test_a_hedge_counts_for_the_paper_vote_but_not_the_strict_one():
    variants = plan_variants(QUESTION, shuffles=1, samples=2, seed=0)
    votes = [vote(variants[0], "Answer: a or b"), vote(variants[1], "Answer: a or b")]
    scored, record = combine(QUESTION, votes)
    assert scored.strict_status is Status.invalid
    assert record["strict_agreement"] == 0.0
