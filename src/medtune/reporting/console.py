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


def _fmt(value: Any) -> str:
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
    table.add_row(f"parameters ({described.counted_from})", _fmt(count) if count else "unknown")
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
            table.add_row(key, _fmt(summary[key]))
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
    """The exam check of a training run, before and after, side by side."""
    if summary.get("exam/accuracy_after") is None:
        return
    n = summary.get("exam/n")
    table = Table(title=f"exam={cfg.exam.name} ({n} questions), prompt={cfg.prompt.name}: before and after training")
    for column in ("", "before", "after"):
        table.add_column(column, justify="right" if column else "left")
    rows = (
        ("accuracy (paper reading)", "exam/accuracy_before", "exam/accuracy_after"),
        ("invalid answers (paper reading)", "exam/invalid_before", "exam/invalid_after"),
        ("accuracy (strict reading)", "exam/strict_accuracy_before", "exam/strict_accuracy_after"),
        ("invalid answers (strict reading)", "exam/strict_invalid_before", "exam/strict_invalid_after"),
        ("answer loss (gold answers)", "exam/answer_loss_before", "exam/answer_loss_after"),
        ("eval loss (held-out records)", "eval/loss_before", "eval/loss_after"),
    )
    for label, before, after in rows:
        if summary.get(before) is not None:
            table.add_row(label, _fmt(summary[before]), _fmt(summary.get(after)))
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
        _fmt(metrics["n"]),
        _fmt(metrics["correct"]),
        _fmt(metrics["invalid"]),
        _fmt(metrics["wrong"]),
        _accuracy_cell(metrics),
        _points(metrics),
        f"{metrics['exact_match']:.3f}",
        f"{metrics['gestalt_score']:.3f}",
    )
    strict = metrics.get("strict")
    if strict:
        table.add_row(
            "strict",
            _fmt(strict["n"]),
            _fmt(strict["correct"]),
            _fmt(strict["invalid"]),
            _fmt(strict["wrong"]),
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
            detail.add_row(block, _fmt(row["n"]), _fmt(row["correct"]), f"{row['accuracy']:.3f}", _points(row))
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
