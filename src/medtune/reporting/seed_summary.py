"""Table 2 over seeds: one row per declared cell with mean ± standard deviation and every seed's value.

A sweep with `sweep.seeds=[...]` runs each training cell once per seed (`<cell>__seed<s>`); its
Table 2 rows (`sweep_report.table2_rows`) carry `base` and `seed`. `seed_rows` folds them back into
one row per declared cell; a cell that ran once keeps its value with no spread. The standard
deviation is the sample one (n - 1), 0 with a single seed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from statistics import mean, stdev
from typing import Any

SEED_COLUMNS = (
    "cell",
    "label",
    "model",
    "tuning",
    "prompt",
    "seeds",
    "n_seeds",
    "accuracy_mean",
    "accuracy_sd",
    "accuracy_per_seed",
    "strict_accuracy_mean",
    "strict_accuracy_sd",
    "strict_accuracy_per_seed",
    "invalid_mean",
    "improvement_mean",
    "improvement_sd",
)


def has_seeds(rows: Sequence[dict]) -> bool:
    return any(row.get("seed") is not None for row in rows)


def spread(values: list[float | None]) -> tuple[float | None, float | None, list[float] | None]:
    if not values or any(v is None for v in values):
        return None, None, None
    numbers = [float(v) for v in values]
    return mean(numbers), stdev(numbers) if len(numbers) > 1 else 0.0, numbers


def seed_rows(rows: Sequence[dict]) -> list[dict[str, Any]]:
    """One row per declared cell, in the order its first run appears."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("base") or row["cell"], []).append(row)
    folded = []
    for base, runs in groups.items():
        runs = sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
        first = runs[0]
        accuracy = spread([r["accuracy"] for r in runs])
        strict = spread([r.get("strict_accuracy") for r in runs])
        improvement = spread([r.get("improvement") for r in runs])
        folded.append(
            {
                "cell": base,
                "label": first.get("base_label") or first["label"],
                "model": first.get("model", ""),
                "tuning": first.get("tuning", ""),
                "prompt": first.get("prompt", ""),
                "seeds": [r.get("seed") for r in runs],
                "n_seeds": len(runs),
                "accuracy_mean": accuracy[0],
                "accuracy_sd": accuracy[1],
                "accuracy_per_seed": accuracy[2],
                "strict_accuracy_mean": strict[0],
                "strict_accuracy_sd": strict[1],
                "strict_accuracy_per_seed": strict[2],
                "invalid_mean": mean(float(r["invalid"]) for r in runs),
                "improvement_mean": improvement[0],
                "improvement_sd": improvement[1],
            }
        )
    return folded


def _mean_sd(mean_value: float | None, sd: float | None, n: int, signed: bool = False) -> str:
    if mean_value is None:
        return "-"
    shown = f"{mean_value:+.3f}" if signed else f"{mean_value:.3f}"
    return f"{shown} ± {sd:.3f}" if n > 1 else shown


def _per_seed(values: list[float] | None, seeds: list) -> str:
    if values is None:
        return "-"
    return ", ".join(f"{v:.3f}" + (f" (s{s})" if s is not None else "") for v, s in zip(values, seeds))


def seed_markdown(folded: Sequence[dict]) -> str:
    header = (
        "| Cell | Model | Tuning | Prompt | Seeds | Accuracy (mean ± sd) | Per seed "
        "| Strict accuracy (mean ± sd) | Improvement (mean ± sd) |"
    )
    lines = [header, "|---|---|---|---|---:|---:|---|---:|---:|"]
    for row in folded:
        n = row["n_seeds"]
        cells = (
            row["label"],
            row["model"],
            row["tuning"],
            row["prompt"],
            str(n),
            _mean_sd(row["accuracy_mean"], row["accuracy_sd"], n),
            _per_seed(row["accuracy_per_seed"], row["seeds"]),
            _mean_sd(row["strict_accuracy_mean"], row["strict_accuracy_sd"], n),
            _mean_sd(row["improvement_mean"], row["improvement_sd"], n, signed=True),
        )
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def seed_csv(folded: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SEED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in folded:
        out = {}
        for key in SEED_COLUMNS:
            value = row.get(key)
            if isinstance(value, list):
                value = " ".join("" if v is None else str(v) for v in value)
            out[key] = "" if value is None else value
        writer.writerow(out)
    return buffer.getvalue()


def draw_seed_bars(ax: Any, folded: Sequence[dict]) -> None:
    """Mean accuracy per declared cell, the standard deviation as an error bar, every seed as a dot."""
    for x, row in enumerate(folded):
        ax.bar(x, row["accuracy_mean"], color="tab:blue", edgecolor="gray", alpha=0.7, label="mean over seeds")
        if row["n_seeds"] > 1:
            ax.errorbar(
                x, row["accuracy_mean"], yerr=row["accuracy_sd"], fmt="none", ecolor="black", capsize=4, label="± sd"
            )
        values = row["accuracy_per_seed"] or []
        ax.scatter([x] * len(values), values, color="black", s=10, zorder=3, label="one seed")
        ax.text(
            x,
            max(values or [row["accuracy_mean"]]) + 0.02,
            _mean_sd(row["accuracy_mean"], row["accuracy_sd"], row["n_seeds"]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
