"""The console side of training's exam check: the contamination audit before it, and after training
one table per exam (before and after, 95% intervals) plus the paired differences in words.

Reads train_summary.json's flat keys (exam/... for the target, retention/<name>/... for the others),
so a finished run's summary prints the same tables again.
"""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

from medtune.reporting.console import console

ROWS = (
    ("accuracy (paper reading)", "accuracy"),
    ("invalid answers (paper reading)", "invalid"),
    ("accuracy (strict reading)", "strict_accuracy"),
    ("invalid answers (strict reading)", "strict_invalid"),
    ("answer loss (gold answers)", "answer_loss"),
    ("ECE (loglik confidence, 15 bins)", "ece"),
    ("Brier score", "brier"),
    ("accuracy on clean questions", "accuracy_{when}_clean"),
    ("accuracy on contaminated questions", "accuracy_{when}_contaminated"),
)


def print_contamination(exams: Sequence[Any]) -> None:
    """One line per audited exam of the check; the loud warning where one is above the threshold."""
    for exam in exams:
        report = exam.contamination
        if report is None:
            continue
        summary = report.summary()
        flags = ", ".join(f"{count} {flag}" for flag, count in summary["by_flag"].items() if flag != "clean" and count)
        console.print(
            f"contamination audit: exam={exam.name} ({exam.role}), {summary['questions']} questions against "
            f"{summary['training_records']} training records: {summary['contaminated']} contaminated"
            + (f" ({flags})" if flags else "")
        )
        warning = report.warning(exam.name, "exam_check.jsonl")
        if warning:
            console.print(f"[bold red]{warning}[/bold red]")


def prefixes(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(key prefix, exam name) of every exam in a summary: the target first, then the retention exams."""
    found = [("exam/", str(summary.get("exam/name", "")))] if "exam/accuracy_after" in summary else []
    for key, value in summary.items():
        if key.startswith("retention/") and key.endswith("/name"):
            found.append((key[: -len("name")], str(value)))
    return found


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(summary: dict[str, Any], p: str, key: str, when: str) -> str:
    name = key.format(when=when) if "{when}" in key else f"{key}_{when}"
    value = summary.get(f"{p}{name}")
    if value is None:
        return ""
    low, high = summary.get(f"{p}{name}_low"), summary.get(f"{p}{name}_high")
    if low is not None and high is not None:
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return _number(value)


def print_exam_tables(summary: dict[str, Any], prompt: str, extra_rows: Sequence[tuple[str, str, str]] = ()) -> None:
    """Per exam, before and after with 95% intervals; then every after - before difference in words."""
    for p, name in prefixes(summary):
        n = summary.get(f"{p}n")
        role = "" if p == "exam/" else "retention, "
        table = Table(title=f"exam={name} ({role}{n} questions), prompt={prompt}: before and after training")
        for column in ("", "before [95%]", "after [95%]"):
            table.add_column(column, justify="right" if column else "left")
        for label, key in ROWS:
            before, after = _cell(summary, p, key, "before"), _cell(summary, p, key, "after")
            subset = key.rsplit("_", 1)[-1] if "{when}" in key else None
            if subset and summary.get(f"{p}n_{subset}") is not None:
                label = f"{label} ({summary[f'{p}n_{subset}']})"
            if before or after:
                table.add_row(label, before, after)
        if p == "exam/":
            for label, before_key, after_key in extra_rows:
                if summary.get(before_key) is not None:
                    table.add_row(label, _number(summary[before_key]), _number(summary.get(after_key)))
        console.print(table)
    print_differences(summary)


def print_differences(summary: dict[str, Any]) -> None:
    """after - before per exam and reading: the paired-bootstrap interval, McNemar's p and the verdict."""
    rows = []
    for p, name in prefixes(summary):
        for reading, label in (("", "paper"), ("strict_", "strict")):
            difference = summary.get(f"{p}{reading}difference")
            if difference is None:
                continue
            low, high = summary[f"{p}{reading}difference_low"], summary[f"{p}{reading}difference_high"]
            rows.append(
                (
                    name,
                    label,
                    f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]",
                    f"{summary[f'{p}{reading}mcnemar_p']:.3g}",
                    summary[f"{p}{reading}difference_verdict"],
                )
            )
    if not rows:
        return
    table = Table(title="after - before, paired on the same questions (95% paired bootstrap)")
    for column in ("exam", "reading", "after - before [95%]", "McNemar p", "verdict"):
        table.add_column(column, justify="left" if column in ("exam", "reading", "verdict") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for p, _name in prefixes(summary):
        warning = summary.get(f"{p}contamination_warning")
        if warning:
            console.print(f"[bold red]{warning}[/bold red]")
