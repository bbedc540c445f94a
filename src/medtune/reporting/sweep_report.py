"""Report of an experiment sweep: the paper's Table 2, Figure 2 and Table 3 (plus McNemar) as files.

A sweep hands over one `CellOutcome` per grid cell; `write_report` turns them into table2.md/.csv,
figure2.png, table3.md, report.md and summary.json in one folder. Failed and pending cells never
stop the report: they are listed with their error, and whatever depends on them is marked missing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.io import write_json_atomic, write_text_atomic
from medtune.reporting.figure2 import draw_figure2
from medtune.reporting.intervals import Interval, PairedDifference, correct_map, paired_difference, wilson
from medtune.reporting.paired_report import compare_pairs, read_statuses, table3_markdown
from medtune.reporting.seed_summary import has_seeds, seed_csv, seed_markdown, seed_rows

DONE = "done"
ROW_COLUMNS = (
    "cell",
    "base",
    "seed",
    "label",
    "model",
    "tuning",
    "prompt",
    "correct",
    "invalid",
    "wrong",
    "n",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "accuracy_se",
    "improvement",
    "improvement_low",
    "improvement_high",
    "improvement_verdict",
    "reference",
    "improvement_text",
    "strict_correct",
    "strict_invalid",
    "strict_wrong",
    "strict_accuracy",
    "strict_accuracy_low",
    "strict_accuracy_high",
    "ece",
    "brier",
    "calibration_source",
)
MD_HEADER = (
    "Cell",
    "Model",
    "Tuning",
    "Prompt",
    "Correct",
    "Invalid",
    "Wrong",
    "Accuracy",
    "95% interval",
    "Improvement",
    "Strict invalid",
    "Strict accuracy",
)
CALIBRATION_HEADER = ("ECE", "Brier")  # added to the table when a cell's metrics.json has `calibration`


@dataclass
class CellOutcome:
    """What one grid cell of a sweep produced (or why it produced nothing)."""

    name: str
    label: str = ""
    model: str = ""
    tuning: str = ""
    prompt: str = ""
    reference: str | None = None
    status: str = "pending"
    metrics: dict | None = None
    predictions_path: Path | None = None
    error: str = ""
    natural_reference: bool = True
    base: str = ""  # the declared cell this is one seed of (sweep.seeds); "" when it runs once
    seed: int | None = None

    @property
    def display(self) -> str:
        shown = self.label or self.base or self.name
        return f"{shown} seed {self.seed}" if self.seed is not None else shown


def _index(cells: Sequence[CellOutcome]) -> dict[str, CellOutcome]:
    index: dict[str, CellOutcome] = {}
    for cell in cells:
        # References are looked up by name, so two cells with one name would make them ambiguous.
        if cell.name in index:
            raise ValueError(f"two sweep cells are named {cell.name!r}")
        index[cell.name] = cell
    return index


def _counts(cell: CellOutcome) -> dict[str, Any]:
    if cell.metrics is None:
        raise ValueError(f"cell {cell.name!r} is marked done but has no metrics")
    m = cell.metrics
    correct, invalid, wrong = int(m.get("correct", 0)), int(m.get("invalid", 0)), int(m.get("wrong", 0))
    n = int(m.get("n", correct + invalid + wrong))
    # Prefer the evaluator's own accuracy: it already knows about voided questions and the like.
    accuracy = m.get("accuracy")
    accuracy = float(accuracy) if accuracy is not None else (correct / n if n else 0.0)
    counts = {"correct": correct, "invalid": invalid, "wrong": wrong, "n": n, "accuracy": accuracy}
    interval = _accuracy_interval(correct, n, accuracy)
    counts.update(accuracy_low=interval.low, accuracy_high=interval.high, accuracy_se=interval.standard_error)
    strict = m.get("strict") or {}  # the strict reading; absent from metrics written before it existed
    for key in ("correct", "invalid", "wrong", "accuracy"):
        counts[f"strict_{key}"] = strict.get(key)
    counts["strict_accuracy_low"] = counts["strict_accuracy_high"] = None
    if strict.get("correct") is not None:
        strict_n = int(strict.get("n", n))
        strict_interval = wilson(int(strict["correct"]), strict_n)
        counts.update(strict_accuracy_low=strict_interval.low, strict_accuracy_high=strict_interval.high)
    calibration = m.get("calibration") or {}  # loglik or voted answers only (evaluation.calibration)
    counts.update(
        ece=calibration.get("ece"), brier=calibration.get("brier"), calibration_source=calibration.get("source")
    )
    return counts


def _accuracy_interval(correct: int, n: int, accuracy: float) -> Interval:
    """Wilson's interval of correct / n. When the evaluator's accuracy is not correct / n (questions
    voided or counted another way), the interval is shifted to sit around that accuracy."""
    interval = wilson(min(correct, n), n)
    shift = accuracy - interval.value
    if abs(shift) < 1e-12:
        return interval
    return Interval(
        accuracy,
        max(0.0, interval.low + shift),
        min(1.0, interval.high + shift),
        interval.standard_error,
        "wilson",
        n,
    )


def _strict_text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(f"strict_{key}")
    if value is None:
        return "-"
    return f"{value:.3f}" if key == "accuracy" else str(value)


def _interval_text(row: Mapping[str, Any]) -> str:
    return f"[{row['accuracy_low']:.3f}, {row['accuracy_high']:.3f}]"


def _short_label(cell: CellOutcome) -> str:
    # The paper cites a reference by its cell number only ("#1-1"), not with the prompt "(A)".
    return cell.display.split()[0] if cell.display.split() else cell.name


def _usable_reference(cell: CellOutcome, index: Mapping[str, CellOutcome]) -> CellOutcome | None:
    ref = index.get(cell.reference) if cell.reference else None
    return ref if ref is not None and ref.status == DONE and ref.metrics is not None else None


def _improvement(
    cell: CellOutcome, accuracy: float, index: Mapping[str, CellOutcome], paired: PairedDifference | None
) -> tuple[float | None, str]:
    if not cell.reference:
        return None, "-"
    ref = _usable_reference(cell, index)
    if ref is None:
        return None, f"- (reference {cell.reference} missing)"
    delta = accuracy - _counts(ref)["accuracy"]
    text = f"{delta:+.3f}"
    if paired is not None:
        text += f" [{paired.low:+.3f}, {paired.high:+.3f}]" + (" within noise" if paired.within_noise else "")
    return delta, text if cell.natural_reference else f"(#{_short_label(ref)}) {text}"


def _predictions_of(cell: CellOutcome) -> Path | None:
    path = cell.predictions_path
    return Path(path) if path is not None and Path(path).is_file() else None


def _paired_with_reference(cell: CellOutcome, ref: CellOutcome) -> PairedDifference | None:
    """The cell minus its reference on the questions both answered, when both predictions files exist."""
    mine, theirs = _predictions_of(cell), _predictions_of(ref)
    if mine is None or theirs is None:
        return None
    return paired_difference(correct_map(read_statuses(theirs)), correct_map(read_statuses(mine)))


def table2_rows(cells: Sequence[CellOutcome]) -> list[dict]:
    """One row per finished cell, in sweep order, with its improvement over its reference."""
    index = _index(cells)
    rows = []
    for cell in cells:
        if cell.status != DONE:
            continue
        counts = _counts(cell)
        ref = _usable_reference(cell, index)
        paired = _paired_with_reference(cell, ref) if ref is not None else None
        improvement, text = _improvement(cell, counts["accuracy"], index, paired)
        rows.append(
            {
                "cell": cell.name,
                "base": cell.base or cell.name,
                "seed": cell.seed,
                "base_label": cell.label or cell.base or cell.name,
                "label": cell.display,
                "model": cell.model,
                "tuning": cell.tuning,
                "prompt": cell.prompt,
                **counts,
                "improvement": improvement,
                "improvement_low": paired.low if paired else None,
                "improvement_high": paired.high if paired else None,
                "improvement_verdict": paired.verdict() if paired else None,
                "reference": cell.reference,
                "improvement_text": text,
            }
        )
    return rows


def _md_cell(value: Any) -> str:
    # A "|" inside a value would split the Markdown row.
    return str(value).replace("|", "\\|")


def has_calibration(rows: Sequence[dict]) -> bool:
    return any(row.get("ece") is not None for row in rows)


def _calibration_cells(row: Mapping[str, Any]) -> tuple[str, str]:
    ece, brier = row.get("ece"), row.get("brier")
    return ("-", "-") if ece is None else (f"{ece:.3f}", f"{brier:.3f}")


def table2_markdown(rows: Sequence[dict]) -> str:
    calibrated = has_calibration(rows)
    header = MD_HEADER + (CALIBRATION_HEADER if calibrated else ())
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(header) - 4)) + "|"]
    for row in rows:
        values = (
            row["label"],
            row["model"],
            row["tuning"],
            row["prompt"],
            row["correct"],
            row["invalid"],
            row["wrong"],
            f"{row['accuracy']:.3f}",
            _interval_text(row),
            row["improvement_text"],
            _strict_text(row, "invalid"),
            _strict_text(row, "accuracy"),
        ) + (_calibration_cells(row) if calibrated else ())
        lines.append("| " + " | ".join(_md_cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def table2_csv(rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # Empty rather than "None" so spreadsheets and pandas read a missing value.
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in ROW_COLUMNS})
    return buffer.getvalue()


def write_table2(rows: Sequence[dict], out_dir: Path) -> tuple[Path, Path]:
    """table2.md for people (shaped like the paper) and table2.csv for programs (every column)."""
    out_dir = Path(out_dir)
    md_path, csv_path = out_dir / "table2.md", out_dir / "table2.csv"
    markdown = table2_markdown(rows)
    if has_seeds(rows):  # the seeds folded into one row per cell first, every run below
        folded = seed_rows(rows)
        markdown = seed_markdown(folded) + "\n### Every seed\n\n" + markdown
        write_text_atomic(out_dir / "table2_seeds.csv", seed_csv(folded))
    write_text_atomic(md_path, markdown)
    write_text_atomic(csv_path, table2_csv(rows))
    return md_path, csv_path


def print_table2(rows: Sequence[dict], title: str = "Table 2") -> None:
    """Table 2 on the shared rich console."""
    from rich.table import Table

    # Imported here: the console module pulls in the config schema, which a file report does not need.
    from medtune.reporting.console import console

    table = Table(title=title)
    calibrated = has_calibration(rows)
    for column in MD_HEADER + (CALIBRATION_HEADER if calibrated else ()):
        table.add_column(column, justify="left" if column in MD_HEADER[:4] else "right")
    for row in rows:
        table.add_row(
            row["label"],
            row["model"],
            row["tuning"],
            row["prompt"],
            str(row["correct"]),
            str(row["invalid"]),
            str(row["wrong"]),
            f"{row['accuracy']:.3f}",
            _interval_text(row),
            row["improvement_text"],
            _strict_text(row, "invalid"),
            _strict_text(row, "accuracy"),
            *(_calibration_cells(row) if calibrated else ()),
        )
    console.print(table)


def plot_figure2(cells: Sequence[CellOutcome], path: Path) -> Path:
    """Figure 2 of the finished cells (`reporting.figure2`)."""
    return draw_figure2(table2_rows(cells), path)


def _unfinished(cells: Sequence[CellOutcome]) -> list[dict]:
    return [
        {"cell": c.name, "label": c.display, "status": c.status, "error": c.error} for c in cells if c.status != DONE
    ]


def _report_markdown(title: str, rows: Sequence[dict], unfinished: Sequence[dict], table3: str) -> str:
    parts = [f"# {title}\n", "## Table 2\n", table2_markdown(rows)]
    if unfinished:
        parts.append("## Cells without results\n")
        parts.extend(f"- {u['label']} ({u['status']})" + (f": {u['error']}" if u["error"] else "") for u in unfinished)
        parts.append("")
    parts += ["## Figure 2\n", "![Figure 2](figure2.png)\n"]
    # Table 3 has its own top heading; nest it one level under the report's title.
    parts.append(table3.replace("\n## ", "\n### ").replace("# Table 3", "## Table 3", 1))
    return "\n".join(parts)


def write_report(cells: Sequence[CellOutcome], pairs: Sequence[tuple[str, str]], out_dir: Path, title: str) -> dict:
    """Every report file in out_dir; returns what summary.json holds."""
    out_dir = Path(out_dir)
    index = _index(cells)
    rows = table2_rows(cells)
    md_path, csv_path = write_table2(rows, out_dir)
    figure = plot_figure2(cells, out_dir / "figure2.png")
    compared, skipped = compare_pairs(pairs, index)
    table3 = table3_markdown(compared, skipped)
    write_text_atomic(out_dir / "table3.md", table3)
    unfinished = _unfinished(cells)
    write_text_atomic(out_dir / "report.md", _report_markdown(title, rows, unfinished, table3))
    best = max(rows, key=lambda row: row["accuracy"], default=None)  # max keeps the first of a tie
    summary = {
        "title": title,
        "rows": rows,
        "pairs": [{k: v for k, v in pair.items() if k != "table"} for pair in compared],
        "skipped_pairs": skipped,
        "seed_rows": seed_rows(rows) if has_seeds(rows) else [],
        "best": best["cell"] if best else None,
        "best_accuracy": best["accuracy"] if best else None,
        "failed": [u for u in unfinished if u["status"] == "failed"],
        "pending": [u for u in unfinished if u["status"] != "failed"],
        "files": {
            key: str(path)
            for key, path in (
                ("table2_md", md_path),
                ("table2_csv", csv_path),
                ("figure2", figure),
                ("table3", out_dir / "table3.md"),
                ("report", out_dir / "report.md"),
                ("summary", out_dir / "summary.json"),
            )
        },
    }
    write_json_atomic(out_dir / "summary.json", summary)
    return summary
