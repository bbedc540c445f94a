"""contamination.py: which questions of an exam the training data already holds.

The questions are those evaluate.py would score (the exam's filters). The training texts are the
files run=<train run dir> trained on (read from its config.yaml) and contamination.files, plus the
worked examples of the exam's prompt when contamination.worked_examples. No model is loaded.

Writes into the run dir (outputs/contamination/runs/<time>/):

    contamination.jsonl   one row per question: id, flag, evidence, closest training record
    contamination.json    the counts per flag, the contaminated fraction, the sources and the warning

and prints the counts, the first flagged questions with their closest record, and the warning in bold
red when the contaminated fraction is above contamination.warn_fraction.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from medtune.audit.report import print_audit, question_rows
from medtune.config.audit_schema import ContaminationRunConfig
from medtune.config.job import JobContext, Workspace
from medtune.errors import ConfigError
from medtune.exam.contamination import TrainingText, audit_contamination
from medtune.exam.contamination_sources import run_training_texts, training_texts, worked_example_texts
from medtune.exam.loading import select_exam
from medtune.io import write_json_atomic
from medtune.jsonl_store import write_jsonl_atomic
from medtune.nested import flatten
from medtune.reporting.console import console
from medtune.run_dir import TrainRunDir

ROWS = "contamination.jsonl"
SUMMARY = "contamination.json"


def workspace(cfg: ContaminationRunConfig, job: JobContext) -> tuple[ContaminationRunConfig, Workspace]:
    return cfg, Workspace(
        job.run_dir, setting="hydra.run.dir", activity="contamination audit", job_type="contamination"
    )


def sources(cfg: ContaminationRunConfig) -> tuple[list[str], list[Iterator[TrainingText]]]:
    """What is audited, in words and as text streams."""
    names, streams = [], []
    if cfg.run:
        names.append(f"the training data of run={cfg.run}")
        streams.append(run_training_texts(TrainRunDir(cfg.run).read_config()))
    if cfg.contamination.files:
        names.append(f"contamination.files={list(cfg.contamination.files)}")
        streams.append(training_texts(cfg.contamination.files))
    if cfg.contamination.worked_examples:
        names.append(f"the worked examples of exam={cfg.exam.name}'s prompt")
        streams.append(worked_example_texts(cfg.exam))
    return names, streams


def run(cfg: ContaminationRunConfig, job: JobContext, tracker) -> dict[str, Any]:
    """Audit the exam's questions, write both files into the run dir, print the report."""
    questions = select_exam(cfg.exam).questions
    if not questions:
        raise ConfigError([f"exam={cfg.exam.name} selects no question with these exam.* filters; relax them."])
    names, streams = sources(cfg)
    console.print(f"auditing {len(questions)} questions of exam={cfg.exam.name} against {', '.join(names)}")
    report = audit_contamination(questions, chain(*streams), cfg.contamination)
    summary = {
        "exam": cfg.exam.name,
        "sources": names,
        **report.summary(),
        "warning": report.warning(cfg.exam.name, ROWS),
    }
    out = Path(job.run_dir)
    write_jsonl_atomic(out / ROWS, question_rows(report, questions))
    write_json_atomic(out / SUMMARY, summary)
    tracker.summarize(flatten({k: v for k, v in summary.items() if k != "sources"}, "contamination/", sep="/"))
    print_audit(summary, report, questions, cfg.show, out)
    return summary


def metrics(result: dict[str, Any]) -> dict[str, Any]:
    """contamination.json's numbers."""
    return result
