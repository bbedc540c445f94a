"""contamination.py's files and console report: one row per question, the counts, the first flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from medtune.exam.contamination_report import ContaminationReport
from medtune.reporting.console import console
from medtune.vocabulary import ExamQuestion

STEM_CHARS = 120  # of each question, in the rows and the console


def question_rows(report: ContaminationReport, questions: list[ExamQuestion]) -> list[dict[str, Any]]:
    """contamination.jsonl: id, flag, evidence and closest training record of every question, in exam order."""
    stems = {q.qid: q.question for q in questions}
    rows = []
    for result in report.results:
        verdict = result.as_dict()
        rows.append(
            {
                "id": result.qid,
                "flag": verdict["contamination"],
                "evidence": verdict["contamination_evidence"],
                "closest_training_record": verdict["closest_training_record"],
                "question": shortened(stems.get(result.qid, ""), STEM_CHARS),
            }
        )
    return rows


def print_audit(
    summary: dict[str, Any], report: ContaminationReport, questions: list[ExamQuestion], show: int, out: Path
) -> None:
    """The counts per flag, the first `show` flagged questions with their closest record, the warning."""
    counts = Table(title=f"contamination of exam={summary['exam']} ({summary['training_records']} training texts)")
    for column in ("flag", "questions", "share"):
        counts.add_column(column, justify="right")
    total = summary["questions"] or 1
    for flag, count in summary["by_flag"].items():
        counts.add_row(flag, str(count), f"{count / total:.1%}")
    counts.add_row("contaminated", str(summary["contaminated"]), f"{summary['contaminated_fraction']:.1%}")
    console.print(counts)
    flagged = [result for result in report.results if result.contaminated][:show]
    if flagged:
        stems = {q.qid: q.question for q in questions}
        table = Table(title=f"the first {len(flagged)} flagged question(s) of {summary['contaminated']}")
        for column in ("id", "flag", "n-grams", "similarity", "question", "closest training record"):
            table.add_column(column)
        for result in flagged:
            closest = result.closest
            table.add_row(
                result.qid,
                result.flag.value,
                f"{result.ngram_matches}/{result.ngrams}",
                f"{result.similarity:.0f}",
                shortened(stems.get(result.qid, ""), 80),
                f"{closest.source}: {shortened(closest.excerpt, 100)}" if closest else "-",
            )
        console.print(table)
    if summary.get("warning"):
        console.print(f"[bold red]{summary['warning']}[/bold red]")
    console.print(f"results: {out}  (contamination.jsonl, contamination.json)")


def shortened(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
