"""The judge's category table as Markdown, CSV and a rich console table (the paper's Tables III/IV)."""

from __future__ import annotations

import csv
import io

from medtune.judge.aggregate import CategoryRow


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table_rows(table: dict, swap: bool) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, category rows, total row) of the table, with the two systems' names as columns."""
    names = table["names"]
    header = ["Tasks", "Samples", names["a"], names["b"], "Unparsable"] + (["Order disagreements"] if swap else [])

    def cells(row: CategoryRow) -> list[str]:
        return [row.category, str(row.samples), fmt(row.a), fmt(row.b), str(row.unparsable)] + (
            [str(row.order_disagreements)] if swap else []
        )

    return header, [cells(r) for r in table["categories"]], cells(table["total"])


def markdown(table: dict, swap: bool, title: str) -> str:
    header, rows, total = table_rows(table, swap)
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("| " + " | ".join(f"**{c}**" for c in total) + " |")
    lines += [
        "",
        "Scores: the sum of a system's 1-10 scores over a category's questions / (10 x questions) x 100. "
        "Unparsable: questions with no readable judgment, left out of the sums.",
    ]
    if swap:
        lines.append(
            "Every question is judged in both orders and the two scores averaged; an order disagreement "
            "is a question whose two orders name different winners."
        )
    return "\n".join(lines) + "\n"


def csv_text(table: dict, swap: bool) -> str:
    header, rows, total = table_rows(table, swap)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([header, *rows, total])
    return buffer.getvalue()


def print_table(table: dict, swap: bool, title: str, out_dir) -> None:
    from rich.table import Table

    from medtune.reporting.console import console

    header, rows, total = table_rows(table, swap)
    rich_table = Table(title=title)
    for index, column in enumerate(header):
        rich_table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        rich_table.add_row(*row)
    rich_table.add_row(*total, style="bold")
    console.print(rich_table)
    bias = table.get("position_bias")
    if bias is not None:
        console.print(f"position bias (Assistant 1 minus Assistant 2, mean over readable judgments): {bias:+.2f}")
    files = "judge_table.md/.csv, judgments.jsonl, answers_*.jsonl, metrics.json"
    console.print(f"results: [bold]{out_dir}[/bold]  ({files})")
