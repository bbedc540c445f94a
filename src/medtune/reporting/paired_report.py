"""The paper's Table 3 for a sweep: per-question agreement of two cells, McNemar's p and the paired
difference with its bootstrap interval, for each pair the sweep names (`sweep.pairs`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medtune.reporting.intervals import correct_map, paired_difference
from medtune.reporting.stats import contingency, format_p

DONE = "done"


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|")


def read_statuses(path: Path) -> dict[str, str]:
    """Question id -> status from predictions.jsonl; only a torn last line (a crash) is forgiven."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    statuses: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}: line {number} is not JSON") from None
        # A resumed evaluation may repeat an id; the later line is the one it kept.
        statuses[str(row["id"])] = row["status"]
    return statuses


def _pair_problem(name: str, index: Mapping[str, Any]) -> str:
    cell = index.get(name)
    if cell is None:
        return f"{name}: no such cell"
    if cell.status != DONE:
        return f"{name}: {cell.status}" + (f" ({cell.error})" if cell.error else "")
    if cell.predictions_path is None or not Path(cell.predictions_path).is_file():
        return f"{name}: no predictions file"
    return ""


def compare_pairs(pairs: Sequence[tuple[str, str]], index: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """(compared, skipped): the contingency and McNemar p of each pair whose two cells are usable."""
    compared, skipped = [], []
    for a, b in pairs:
        problems = [p for p in (_pair_problem(a, index), _pair_problem(b, index)) if p]
        if problems:
            skipped.append({"a": a, "b": b, "reason": "; ".join(problems)})
            continue
        a_status, b_status = read_statuses(index[a].predictions_path), read_statuses(index[b].predictions_path)
        table = contingency(a_status, b_status)
        paired = paired_difference(correct_map(a_status), correct_map(b_status))
        compared.append(
            {
                "a": a,
                "b": b,
                "a_label": index[a].display,
                "b_label": index[b].display,
                "both_correct": table.both_correct,
                "a_only": table.a_only,
                "b_only": table.b_only,
                "neither": table.neither,
                "n": table.n,
                "p_value": table.p_value(),
                "difference": paired.difference,
                "difference_low": paired.low,
                "difference_high": paired.high,
                "difference_standard_error": paired.standard_error,
                "within_noise": paired.within_noise,
                "difference_text": paired.words(index[a].display, index[b].display),
                "table": table,
            }
        )
    return compared, skipped


def table3_markdown(compared: Sequence[dict], skipped: Sequence[dict]) -> str:
    parts = ["# Table 3: paired correctness\n"]
    for pair in compared:
        parts.append(f"## {_md_cell(pair['a_label'])} vs {_md_cell(pair['b_label'])}\n")
        parts.append(pair["table"].to_markdown(pair["a_label"], pair["b_label"]))
        parts.append(
            f"{pair['n']} questions answered by both; exact McNemar on "
            f"b={pair['a_only']}, c={pair['b_only']}: p = {format_p(pair['p_value'])}\n"
        )
        parts.append(f"Paired bootstrap (95%, questions resampled): {_md_cell(pair['difference_text'])}.\n")
    if skipped:
        parts.append("## Skipped pairs\n")
        parts.extend(f"- {p['a']} vs {p['b']}: {p['reason']}" for p in skipped)
        parts.append("")
    return "\n".join(parts)
