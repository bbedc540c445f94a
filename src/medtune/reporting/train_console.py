"""The end of a training run on the console: the summary table, the exam check's tables, where the run is."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from medtune.config.job import JobContext
from medtune.config.schema import AdapterKind, TrainRunConfig
from medtune.reporting.console import console, format_number
from medtune.reporting.exam_check_console import print_exam_tables


def print_summary(cfg: TrainRunConfig, job: JobContext, summary: dict[str, Any]) -> None:
    table = Table(title=f"medtune train: {cfg.model.name} + {cfg.adapter.name} on {cfg.dataset.name}")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key in (
        "train/loss_first",
        "train/loss_last",
        "eval/loss_before",
        "eval/loss_after",
        "train/steps",
        "train/tokens_per_second",
        "train/peak_memory_mib",
        "train/seconds",
        "model/trainable_params",
        "data/train_kept",
        "data/train_dropped_long_targets",
        "data/train_truncated_inputs",
        "exam/best_accuracy",
        "exam/best_step",
    ):
        if summary.get(key) is not None:
            table.add_row(key, format_number(summary[key]))
    console.print(table)
    print_exam_before_after(cfg, summary)
    if "exam/accuracy_after" in summary and cfg.exam.name == "sample" and cfg.dataset.name == "sample":
        console.print(
            "[yellow]Note: the bundled sample exam is part of the bundled training set, so exam accuracy here "
            "measures memorisation of leaked questions (the 70B paper's ablation D.1), not medical skill.[/yellow]"
        )
    saved = "model" if cfg.adapter.kind == AdapterKind.full else "adapter"
    kept = (
        sorted(p.name + ("/" if p.is_dir() else "") for p in job.run_dir.iterdir() if not p.name.startswith("."))
        if job.run_dir.is_dir()
        else [saved]
    )
    console.print(f"run dir: [bold]{job.run_dir}[/bold]  ({', '.join(kept)})")


def print_exam_before_after(cfg: TrainRunConfig, summary: dict[str, Any]) -> None:
    """The exam check of a training run (the target and any retention exams), before and after."""
    if summary.get("exam/accuracy_after") is None:
        return
    held_out = (("eval loss (held-out records)", "eval/loss_before", "eval/loss_after"),)
    print_exam_tables(summary, cfg.prompt.name, held_out)
