"""evaluate.py's contamination audit: the scored questions against the training data.

It runs when there is training data to audit: the files run=<train run dir> trained on (read from
the run's config.yaml; where they cannot be read on this machine, a warning and no audit of them)
and/or contamination.files; with eval.num_shots > 0 and
contamination.worked_examples, the worked examples the prompt shows are audited beside them.
contamination.enabled=false turns it off. Every scored question gets its verdict
(`medtune.exam.contamination`):

- each predictions.jsonl row: `contamination` (exact / ngram / near_duplicate / clean), its evidence
  and `closest_training_record` (file:line and an excerpt);
- metrics.json `contamination`: the counts per flag, the contaminated fraction, the accuracy on all,
  clean and contaminated questions under both readings with Wilson intervals, and `warning` (null,
  or the message printed in bold red when the fraction is above contamination.warn_fraction).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, islice
from typing import Any

from rich.table import Table

from medtune.config.eval_schema import EvalRunConfig
from medtune.data.training_data import training_data_for
from medtune.errors import DataError
from medtune.exam.contamination import TrainingText, audit_contamination
from medtune.exam.contamination_report import ContaminationReport, accuracy_by_contamination
from medtune.exam.contamination_sources import training_files, training_texts, worked_example_texts
from medtune.reporting.console import console
from medtune.run_dir import TrainRunDir
from medtune.vocabulary import ExamQuestion

GROUPS = ("all", "clean", "contaminated")


def audit_sources(cfg: EvalRunConfig) -> tuple[list[str], list[Iterator[TrainingText]]]:
    """What the audit reads, in words and as text streams; none without a run or contamination.files."""
    names, streams = [], []
    settings = cfg.contamination
    if not settings.enabled:
        return names, streams
    if cfg.run:
        texts = readable_run_texts(cfg.run)
        if texts is not None:
            names.append(f"the training data of run={cfg.run}")
            streams.append(texts)
    if settings.files:
        names.append(f"contamination.files={list(settings.files)}")
        streams.append(training_texts(settings.files))
    shots = cfg.eval.num_shots if not cfg.predictions else 0
    if streams and shots > 0 and settings.worked_examples:
        names.append(f"the prompt's {shots} worked example(s)")
        streams.append(islice(worked_example_texts(cfg.exam), shots))
    return names, streams


def readable_run_texts(run: str) -> Iterator[TrainingText] | None:
    """The texts of the files run= trained on; None, with a warning, where they cannot be read here (an
    evaluation on another machine than the training's): the evaluation goes on without that audit."""
    try:
        trained = TrainRunDir(run).read_config()
        files = training_files(training_data_for(trained).source_files())
    except (DataError, OSError) as error:
        console.print(
            f"[yellow]run={run}'s training data cannot be read here ({error}); it is not audited for "
            "contamination. contamination.files=[<a copy of it>] audits a copy; contamination.enabled=false "
            "turns the audit off.[/yellow]"
        )
        return None
    return training_texts(files, trained.dataset.text_field)


def audit_scored(cfg: EvalRunConfig, questions: list[ExamQuestion]) -> ContaminationReport | None:
    """The verdict of every scored question, or None when there is nothing to audit."""
    names, streams = audit_sources(cfg)
    if not streams:
        return None
    report = audit_contamination(questions, chain(*streams), cfg.contamination)
    summary = report.summary()
    console.print(
        f"contamination audit: {summary['contaminated']} of the {summary['questions']} questions appear among "
        f"{summary['training_records']} training texts ({', '.join(names)})"
    )
    return report


def marked_rows(rows: list[dict[str, Any]], report: ContaminationReport) -> list[dict[str, Any]]:
    """Each predictions.jsonl row with its question's flag, evidence and closest training record."""
    verdicts = report.by_id()
    return [{**row, **verdicts[row["id"]].as_dict()} for row in rows]


def contamination_metrics(report: ContaminationReport, rows: list[dict[str, Any]], exam: str) -> dict[str, Any]:
    """metrics.json's `contamination`: the summary, the accuracy split by verdict (both readings), the warning."""
    paper = {row["id"]: row["status"] for row in rows}
    strict = {row["id"]: (row.get("strict") or {}).get("status", row["status"]) for row in rows}
    return {
        **report.summary(),
        "accuracy": accuracy_by_contamination(report, paper),
        "strict_accuracy": accuracy_by_contamination(report, strict),
        "warning": report.warning(exam),
    }


def print_contamination(block: dict[str, Any]) -> None:
    """The accuracy on all / clean / contaminated questions under both readings, then the warning."""
    flags = ", ".join(f"{flag} {count}" for flag, count in block["by_flag"].items())
    table = Table(title=f"contamination ({flags}; {block['training_records']} training texts)")
    for column in ("questions", "n", "accuracy [95%]", "strict accuracy [95%]"):
        table.add_column(column, justify="right")
    for group in GROUPS:
        paper, strict = block["accuracy"][group], block["strict_accuracy"][group]
        table.add_row(group, str(paper["n"]), accuracy_cell(paper), accuracy_cell(strict))
    console.print(table)
    if block.get("warning"):
        console.print(f"[bold red]{block['warning']}[/bold red]")


def accuracy_cell(group: dict[str, Any]) -> str:
    if group["accuracy"] is None:
        return "-"
    interval = group["accuracy_interval"]
    return f"{group['accuracy']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"
