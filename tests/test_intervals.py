"""Intervals on exam numbers (`reporting.intervals`), checked against values worked out by hand."""

from __future__ import annotations

from math import sqrt

import pytest

from medtune.reporting.intervals import Z95, bootstrap_ratio, correct_map, paired_difference, wilson


def test_wilson_matches_the_formula_worked_by_hand():
    # 81 of 100: centre (0.81 + z^2/200) / (1 + z^2/100), half-width z*sqrt(0.81*0.19/100 + z^2/40000) / (1 + z^2/100)
    z2 = Z95 * Z95
    centre = (0.81 + z2 / 200) / (1 + z2 / 100)
    half = Z95 * sqrt(0.81 * 0.19 / 100 + z2 / 40000) / (1 + z2 / 100)
    interval = wilson(81, 100)
    assert interval.value == pytest.approx(0.81)
    assert interval.low == pytest.approx(centre - half, abs=1e-12)
    assert interval.high == pytest.approx(centre + half, abs=1e-12)
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.7222, 0.8749)
    assert interval.standard_error == pytest.approx(sqrt(0.81 * 0.19 / 100))
    assert interval.text() == "0.810 [0.722, 0.875]"


def test_wilson_at_the_edges_stays_inside_zero_and_one():
    none_right = wilson(0, 10)
    assert none_right.low == 0.0
    assert none_right.high == pytest.approx(Z95**2 / (10 + Z95**2))  # 0.2775: the upper end at 0 of 10
    all_right = wilson(10, 10)
    assert all_right.high == 1.0
    assert all_right.low == pytest.approx(10 / (10 + Z95**2))
    empty = wilson(0, 0)
    assert (empty.low, empty.high) == (0.0, 1.0)


def test_wilson_on_the_papers_exam_size_is_about_six_points_wide():
    # 277 questions at 50%: one standard error is 3.0 points, the interval ~±5.8 points
    interval = wilson(138, 277)
    assert interval.standard_error == pytest.approx(0.0300, abs=2e-4)
    assert interval.high - interval.low == pytest.approx(0.1170, abs=5e-4)


@pytest.mark.parametrize("bad", [(-1, 10), (11, 10), (1.5, 10), (True, 10)])
def test_wilson_refuses_counts_that_are_not_counts(bad):
    with pytest.raises(ValueError, match="wilson"):
        wilson(*bad)


def test_points_bootstrap_of_two_questions_has_the_three_values_known_by_hand():
    # question 1: 1 of 1 point; question 2: 0 of 3 points. A resample of two draws is {1,1}: 1.0 (p 1/4),
    # {2,2}: 0.0 (p 1/4), or one of each: 1/4 (p 1/2). So the 2.5% and 97.5% percentiles are 0 and 1.
    interval = bootstrap_ratio([1, 0], [1, 3], resamples=4000, seed=3)
    assert interval.value == pytest.approx(0.25)
    assert (interval.low, interval.high) == (0.0, 1.0)
    assert interval.method == "bootstrap"


def test_points_bootstrap_is_seeded_and_its_error_is_near_the_analytic_one():
    earned = [1.0 if i % 3 else 0.0 for i in range(300)]
    possible = [1.0] * 300
    first, again = bootstrap_ratio(earned, possible, seed=7), bootstrap_ratio(earned, possible, seed=7)
    assert first == again
    p = sum(earned) / 300
    assert first.standard_error == pytest.approx(sqrt(p * (1 - p) / 300), rel=0.1)
    assert first.low < p < first.high


def test_paired_difference_of_identical_systems_is_zero_and_within_noise():
    a = {str(i): float(i % 2) for i in range(50)}
    diff = paired_difference(a, dict(a))
    assert (diff.difference, diff.low, diff.high) == (0.0, 0.0, 0.0)
    assert diff.within_noise and diff.verdict() == "within noise"
    assert diff.p_value == 1.0


def test_paired_difference_counts_the_discordant_questions_and_says_better_beyond_noise():
    # 100 questions: B right on 30 that A missed, A right on 2 that B missed, the rest equal
    a = {f"q{i}": 0.0 for i in range(100)}
    b = dict(a)
    for i in range(30):
        b[f"q{i}"] = 1.0
    for i in range(30, 32):
        a[f"q{i}"] = 1.0
    diff = paired_difference(a, b, seed=1)
    assert diff.difference == pytest.approx(0.28)
    assert (diff.a_only, diff.b_only, diff.n) == (2, 30, 100)
    # the paired standard error by hand: sd of the per-question differences / sqrt(n)
    d = [1.0] * 30 + [-1.0] * 2 + [0.0] * 68
    mean = sum(d) / 100
    sd = sqrt(sum((x - mean) ** 2 for x in d) / 99)
    assert diff.standard_error == pytest.approx(sd / 10, rel=0.1)
    assert diff.low > 0 and not diff.within_noise
    assert "so after is better beyond noise" in diff.words("before", "after")
    assert diff.to_dict()["within_noise"] is False


def test_paired_difference_within_noise_is_said_in_words():
    a = {f"q{i}": float(i % 2) for i in range(40)}
    b = dict(a)
    b["q0"], b["q1"] = 1.0, 0.0  # one gained, one lost
    diff = paired_difference(a, b)
    assert diff.within_noise
    assert "covers 0, so the difference is within noise" in diff.words("base", "tuned")
    assert "McNemar p = 1" in diff.words()


def test_paired_difference_uses_only_shared_questions():
    diff = paired_difference({"a": 1.0, "b": 0.0}, {"b": 1.0, "c": 1.0})
    assert diff.n == 1 and diff.difference == 1.0
    assert paired_difference({"a": 1.0}, {"b": 1.0}).words().endswith("no difference can be measured")


def test_correct_map_counts_invalid_as_not_correct():
    assert correct_map({"1": "correct", "2": "invalid", "3": "wrong"}) == {"1": 1.0, "2": 0.0, "3": 0.0}
