"""evaluate.py's calibration: how far the confidence behind each answer can be trusted.

A confidence comes from eval.mode=loglik (the softmax over the choices' log-probabilities: the
probability of the picked answer) or from a vote (eval.samples / eval.shuffles: the share of votes
for the winning answer); `medtune.reporting.calibration` reads it from each predictions.jsonl row.
With one: metrics.json `calibration` (ECE over 15 bins, Brier, n, source, the bins), reliability.png
in the output dir, and the line "calibration: ECE x, Brier y (n, source)". A single generated answer
(or a replayed predictions file) carries no confidence: the console says so and nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtune.config.eval_schema import EvalRunConfig
from medtune.evaluation.state import RELIABILITY
from medtune.reporting.calibration import BINS, calibration_of_rows, plot_reliability
from medtune.reporting.console import console


def calibration_metrics(cfg: EvalRunConfig, rows: list[dict[str, Any]], out: Path, title: str) -> dict | None:
    """metrics.json's `calibration` of the rows, after drawing `out`/reliability.png; None without confidences."""
    result = calibration_of_rows(rows)
    if result is None:
        return None
    plot_reliability(result, Path(out) / RELIABILITY, title)
    return {**result.to_dict(), "ece_bins": BINS}


def print_calibration(cfg: EvalRunConfig, block: dict | None) -> None:
    if block is None:
        why = (
            "a predictions file carries no confidence"
            if cfg.predictions
            else "greedy answers carry no confidence"
            if not cfg.eval.do_sample
            else "a single sampled answer carries no confidence; eval.samples>1 gives a vote share"
        )
        console.print(f"calibration: none ({why})")
        return
    console.print(
        f"calibration: ECE {block['ece']:.3f}, Brier {block['brier']:.3f} ({block['n']} questions, "
        f"{block['source']}); mean confidence {block['mean_confidence']:.3f} vs accuracy {block['accuracy']:.3f}"
    )


def tracked(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json without the per-bin table (W&B's summary keeps the numbers; the PNG shows the bins)."""
    if "calibration" not in metrics:
        return metrics
    return {**metrics, "calibration": {k: v for k, v in metrics["calibration"].items() if k != "bins"}}
