"""Calibration of a run's answers (`reporting.calibration`), checked against values worked out by hand."""

from __future__ import annotations

from math import log

import pytest

from medtune.reporting.calibration import (
    BINS,
    calibration,
    calibration_of_rows,
    confidence_of,
    plot_reliability,
    softmax,
)


def test_ten_answers_at_95_percent_with_nine_right():
    result = calibration([0.95] * 10, [True] * 9 + [False], "loglik")
    assert result.ece == pytest.approx(0.05)  # one bin: |0.9 - 0.95|
    assert result.brier == pytest.approx((9 * 0.05**2 + 0.95**2) / 10)
    filled = [b for b in result.bins if b.count]
    assert len(result.bins) == BINS == 15 and len(filled) == 1
    assert (filled[0].low, filled[0].count, filled[0].accuracy) == (14 / 15, 10, 0.9)


def test_ece_weights_each_bin_by_its_questions():
    # bin [0.2, 0.267): 4 answers at 0.25, 1 right (acc 0.25, gap 0); bin [0.933, 1]: 6 at 1.0, 3 right (gap 0.5)
    result = calibration([0.25] * 4 + [1.0] * 6, [True, False, False, False] + [True] * 3 + [False] * 3, "votes")
    assert result.ece == pytest.approx(6 / 10 * 0.5)
    assert result.brier == pytest.approx((0.75**2 + 3 * 0.25**2 + 3 * 0.0 + 3 * 1.0) / 10)
    assert result.mean_confidence == pytest.approx(0.7) and result.accuracy == pytest.approx(0.4)
    assert "overconfident" in result.text()


def test_perfect_calibration_has_zero_ece():
    assert calibration([0.5, 0.5, 1.0], [True, False, True], "votes").ece == pytest.approx(0.0)


def test_confidences_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match="outside"):
        calibration([1.2], [True], "votes")


def test_softmax_of_choice_logprobs():
    assert softmax([log(0.2), log(0.6), log(0.2)]) == pytest.approx([0.2, 0.6, 0.2])
    assert softmax([float("-inf"), 0.0]) == pytest.approx([0.0, 1.0])


def test_rows_give_their_confidence_from_loglik_or_votes_and_others_are_left_out(tmp_path):
    rows = [
        {"status": "correct", "choice_logprobs": [log(0.7), log(0.1), log(0.2)]},
        {"status": "wrong", "choice_logprobs": [log(0.4), log(0.6)]},
        {"status": "correct"},  # one generated answer: no confidence
    ]
    assert confidence_of(rows[0]) == ("loglik", pytest.approx(0.7))
    assert confidence_of({"agreement": 0.8}) == ("votes", 0.8)
    assert confidence_of(rows[2]) is None
    result = calibration_of_rows(rows)
    assert result.n == 2 and result.source == "loglik"
    assert result.brier == pytest.approx((0.3**2 + 0.6**2) / 2)
    assert calibration_of_rows([{"status": "correct"}]) is None
    png = plot_reliability(result, tmp_path / "reliability.png", "tiny on sample")
    assert png.read_bytes().startswith(b"\x89PNG")
    counts = [b["count"] for b in result.to_dict()["bins"]]
    assert counts[9] == counts[10] == 1 and sum(counts) == 2  # 0.6 * 15 = 9, 0.7 * 15 = 10.5
