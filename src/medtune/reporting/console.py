"""Rich console output: the plan of a dry run and the summary table at the end of a run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from medtune.config.job import JobContext
from medtune.config.schema import AdapterKind, TrainRunConfig
from medtune.data.training_data import training_data_for

console = Console(stderr=False, highlight=False)
if not console.is_terminal:  # logs and pipes: wide enough for Table 2 and whole commands
    console.width = 140


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_plan(cfg: TrainRunConfig, job: JobContext, described) -> None:
    """What a run would do, from the config and the model's description (`describe_model(...,
    materialize=False)`): nothing is loaded, no GPU is needed."""
    table = Table(title="medtune dry run: nothing is loaded", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("model", f"{cfg.model.name} ({described.origin}; {described.model_type})")
    count = described.num_parameters()
    table.add_row(f"parameters ({described.counted_from})", format_number(count) if count else "unknown")
    for note in described.notes:
        table.add_row("note", note)
    adapter = cfg.adapter
    detail = (
        ""
        if adapter.kind != AdapterKind.lora
        else (
            f" r={adapter.r} alpha={adapter.alpha} dropout={adapter.dropout} targets={list(adapter.target_modules) or 'PEFT default'}"
        )
    )
    table.add_row("adapter", f"{adapter.name}{detail}; base in {adapter.quantization.method.value}")
    table.add_row("dataset / prompt", f"{cfg.dataset.name} ({cfg.dataset.path or 'bundled'}) / {cfg.prompt.name}")
    hw = cfg.hardware
    table.add_row(
        "hardware",
        f"{hw.name}: {hw.num_nodes} node(s) x {hw.devices_per_node} {hw.device_name}, "
        f"{hw.compute_dtype.value}, ZeRO stage {hw.deepspeed.zero_stage}",
    )
    t = cfg.train
    steps = f"{t.epochs:g} epochs" if t.epochs is not None else f"{t.max_steps} steps"
    lengths = training_data_for(cfg).lengths_line()
    table.add_row("task", cfg.task.value)
    table.add_row("schedule", f"{steps}, lr {t.learning_rate:g}, global batch {t.global_batch_size}, {lengths}")
    table.add_row("run dir", str(job.run_dir))
    console.print(table)


def _accuracy_cell(tally: dict[str, Any]) -> str:
    """`0.412 [0.355, 0.471]`: the accuracy and its 95% interval (metrics written before intervals: the value)."""
    interval = tally.get("accuracy_interval")
    if not interval:
        return f"{tally['accuracy']:.3f}"
    return f"{tally['accuracy']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _points(row: dict[str, Any]) -> str:
    """The points cell, e.g. 56/74; empty for an exam without points (`points` not in exam.aggregates)."""
    return f"{row['points']}/{row['points_total']}" if "points" in row else ""


def print_exam_metrics(metrics: dict[str, Any], out_dir) -> None:
    """The paper's Table 2 columns for one evaluation under both readings, then blocks, votes and
    the questions left out."""
    title = f"{metrics.get('system', '')} on {metrics['exam']} ({metrics['mode']}, prompt {metrics['prompt']})"
    table = Table(title=title)
    for column in ("reading", "n", "correct", "invalid", "wrong", "accuracy [95%]", "points", "exact match", "Gestalt"):
        table.add_column(column, justify="right")
    table.add_row(
        "paper (Algorithm 1)",
        format_number(metrics["n"]),
        format_number(metrics["correct"]),
        format_number(metrics["invalid"]),
        format_number(metrics["wrong"]),
        _accuracy_cell(metrics),
        _points(metrics),
        f"{metrics['exact_match']:.3f}",
        f"{metrics['gestalt_score']:.3f}",
    )
    strict = metrics.get("strict")
    if strict:
        table.add_row(
            "strict",
            format_number(strict["n"]),
            format_number(strict["correct"]),
            format_number(strict["invalid"]),
            format_number(strict["wrong"]),
            _accuracy_cell(strict),
            "",
            "",
            "",
        )
    console.print(table)
    if strict:
        console.print(
            f"paper minus strict accuracy: {metrics['accuracy'] - strict['accuracy']:+.3f} "
            "(answers credited only by fuzzy matching of text that commits to no choice)"
        )
    blocks = metrics.get("by_block") or {}
    if blocks:
        detail = Table(title="by block")
        for column in ("block", "n", "correct", "accuracy", "points"):
            detail.add_column(column, justify="right")
        for block, row in sorted(blocks.items()):
            detail.add_row(
                block, format_number(row["n"]), format_number(row["correct"]), f"{row['accuracy']:.3f}", _points(row)
            )
        console.print(detail)
    if metrics.get("kinki_questions"):
        console.print(
            f"contraindicated (kinki) choices picked: {metrics['kinki_picked']} "
            f"of {metrics['kinki_questions']} questions that have one"
        )
    ensemble = metrics.get("ensemble")
    if ensemble and ensemble.get("questions"):
        console.print(
            f"votes: {ensemble['samples']} sample(s) x {ensemble['shuffles']} choice order(s) per question; "
            f"mean agreement {ensemble['mean_agreement']:.2f}, unanimous {ensemble['unanimous']} "
            f"of {ensemble['questions']}"
        )
        if "position_share" in ensemble:
            shares = ", ".join(f"{k} {v:.2f}" for k, v in ensemble["position_share"].items())
            console.print(
                f"shown positions picked: {shares}; same position under every order although the "
                f"choice there changed: {ensemble['same_position_questions']} question(s)"
            )
    letters = metrics.get("loglik_letters")
    if letters:
        shares = ", ".join(f"{k} {v:.2f}" for k, v in letters.get("share", {}).items())
        console.print(f"log-likelihood picks by letter: {shares}")
    excluded = metrics.get("excluded") or {}
    if excluded.get("n"):
        console.print(
            f"[yellow]{excluded['n']} question(s) left out[/yellow]: "
            + ", ".join(f"{k} {v}" for k, v in excluded.get("by_reason", {}).items())
        )
    console.print(f"results: [bold]{out_dir}[/bold]  (predictions.jsonl, metrics.json)")
