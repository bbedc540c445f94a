"""How far a model's confidence can be trusted: expected calibration error, Brier score, reliability diagram.

A confidence comes from one of two places in predictions.jsonl:
- `loglik`: the softmax of the row's `choice_logprobs` (evaluate.py eval.mode=loglik); the confidence
  is the probability of the chosen answer;
- `votes`: the share of votes that agreed with the answer (self-consistency samples and/or shuffled
  choice orders: the row's `agreement`).
Rows with neither (a single generated answer) carry no confidence and are left out.

The scores are of the top answer: `correct` is whether the row's status is correct. ECE uses 15
equal-width bins over [0, 1] (the usual choice since Guo et al., 2017): the question-weighted mean of
|accuracy - mean confidence| per bin. Brier is the mean of (confidence - correct)^2 over questions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import exp, isfinite
from pathlib import Path
from typing import Any

BINS = 15


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    confidence: float  # mean confidence of the questions in the bin (0 when empty)
    accuracy: float  # share of them answered correctly (0 when empty)


@dataclass(frozen=True)
class Calibration:
    """Calibration of one run's answers."""

    source: str  # "loglik" or "votes"
    n: int
    ece: float
    brier: float
    mean_confidence: float
    accuracy: float
    bins: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n": self.n,
            "ece": self.ece,
            "brier": self.brier,
            "mean_confidence": self.mean_confidence,
            "accuracy": self.accuracy,
            "bins": [vars(b) for b in self.bins],
        }

    def text(self) -> str:
        gap = self.mean_confidence - self.accuracy
        lean = "overconfident" if gap > 0 else "underconfident" if gap < 0 else "neither over- nor underconfident"
        return (
            f"calibration ({self.source}, {self.n} questions): ECE {self.ece:.3f} ({BINS} bins), Brier {self.brier:.3f}; "
            f"mean confidence {self.mean_confidence:.3f} vs accuracy {self.accuracy:.3f}: {lean}"
        )


def softmax(logprobs: Sequence[float]) -> list[float]:
    """Probabilities from log-probabilities of the choices (they need not sum to 1 before)."""
    finite = [x for x in logprobs if isfinite(x)]
    if not finite:
        return [1.0 / len(logprobs)] * len(logprobs) if logprobs else []
    top = max(finite)
    weights = [exp(x - top) if isfinite(x) else 0.0 for x in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def confidence_of(row: Mapping[str, Any]) -> tuple[str, float] | None:
    """(source, confidence) of one predictions.jsonl row, or None when it carries none."""
    logprobs = row.get("choice_logprobs")
    if isinstance(logprobs, list) and logprobs:
        return "loglik", max(softmax([float(x) for x in logprobs]))
    agreement = row.get("agreement")
    if isinstance(agreement, (int, float)) and not isinstance(agreement, bool):
        return "votes", float(agreement)
    return None


def calibration(confidences: Sequence[float], correct: Sequence[bool], source: str, bins: int = BINS) -> Calibration:
    """ECE, Brier and the reliability bins of paired (confidence, correct) values."""
    if len(confidences) != len(correct):
        raise ValueError(f"calibration(): {len(confidences)} confidences for {len(correct)} answers")
    for value in confidences:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"calibration(): a confidence of {value!r} is outside [0, 1]")
    n = len(confidences)
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, value in enumerate(confidences):
        members[min(int(value * bins), bins - 1)].append(i)  # 1.0 falls in the last bin
    table, ece = [], 0.0
    for b, indices in enumerate(members):
        count = len(indices)
        mean_conf = sum(confidences[i] for i in indices) / count if count else 0.0
        acc = sum(1 for i in indices if correct[i]) / count if count else 0.0
        table.append(ReliabilityBin(b / bins, (b + 1) / bins, count, mean_conf, acc))
        ece += count / n * abs(acc - mean_conf) if n else 0.0
    brier = sum((c - float(ok)) ** 2 for c, ok in zip(confidences, correct)) / n if n else 0.0
    mean_confidence = sum(confidences) / n if n else 0.0
    accuracy = sum(1 for ok in correct if ok) / n if n else 0.0
    return Calibration(source, n, ece, brier, mean_confidence, accuracy, tuple(table))


def calibration_of_rows(rows: Iterable[Mapping[str, Any]]) -> Calibration | None:
    """Calibration of the rows that carry a confidence, or None when none does.

    Rows mixing both sources (never written by one run) are read by the first source seen."""
    source, confidences, correct = None, [], []
    for row in rows:
        found = confidence_of(row)
        if found is None or (source is not None and found[0] != source):
            continue
        source = found[0]
        confidences.append(found[1])
        correct.append(row.get("status") == "correct")
    if source is None:
        return None
    return calibration(confidences, correct, source)


def plot_reliability(result: Calibration, path: Path, title: str) -> Path:
    """The reliability diagram: accuracy per confidence bin against the diagonal, counts underneath."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from medtune.io import write_bytes_atomic

    fig = Figure(figsize=(4.5, 5.0))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / len(result.bins)
    filled = [b for b in result.bins if b.count]
    top.bar(
        [b.low for b in filled],
        [b.accuracy for b in filled],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        label="accuracy",
    )
    top.bar(
        [b.low for b in filled],
        [b.confidence - b.accuracy for b in filled],
        bottom=[b.accuracy for b in filled],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(
        f"{title}\nECE {result.ece:.3f}, Brier {result.brier:.3f} ({result.source}, n={result.n})", fontsize=9
    )
    top.legend(fontsize=7, loc="upper left")
    bottom.bar([b.low for b in result.bins], [b.count for b in result.bins], width=width, align="edge", color="gray")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("questions")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path
