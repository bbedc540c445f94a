"""The plan for the console: a rich table of counts, memory rows per GPU and the verdict, or its plain text."""

from __future__ import annotations

import os

from medtune.modeling.planner.budget import Plan, gib, verdict


def format_plan(p: Plan):
    """A rich Table: counts, the memory rows per GPU, and the verdict."""
    from rich.table import Table

    c, m = p.counts, p.memory
    title = (
        f"memory plan: {p.model} + {p.adapter} on {p.hardware} "
        f"(micro batch {p.micro_batch_size} x {p.seq_len} tokens, ZeRO {m.zero_stage}, {m.world_size} rank(s))"
    )
    table = Table(title=title, show_header=True)
    table.add_column("item", style="bold")
    table.add_column("value", justify="right")
    table.add_column("detail")
    table.add_row(
        "parameters (exact)", f"{c.total:,}", f"{c.linear_weights_quantizable:,} in quantizable linear weights"
    )
    share = f"{c.trainable / c.total:.3%} of the base" if c.total else ""
    table.add_row(
        "trainable", f"{c.trainable:,}", share + (f"; LoRA on {', '.join(c.lora_targets)}" if c.lora_targets else "")
    )
    table.add_row("precision", "", m.precision)
    for label, value, counted in m.rows():
        detail = "" if counted else "in the step peak, not added"
        if label == "base weights" and m.quant_constants:
            detail = f"{gib(m.quant_constants)} of it quantization constants"
        style = "bold" if label == "total" else (None if counted else "dim")
        table.add_row(label if counted else f"  {label}", gib(value), detail, style=style)
    table.add_row("verdict", "fits" if m.fits else ("unknown" if m.fits is None else "does not fit"), verdict(m))
    for note in m.notes:
        table.add_row("note", "", note)
    table.add_row("planned in", f"{p.seconds:.1f} s", "meta device: nothing loaded")
    return table


def plan_text(p: Plan) -> str:
    """`format_plan` as plain text (logs, tests)."""
    from rich.console import Console

    with open(os.devnull, "w") as sink:
        console = Console(width=160, record=True, file=sink)
        console.print(format_plan(p))
    return console.export_text()
