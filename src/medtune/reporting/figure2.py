"""The paper's Figure 2 for a sweep: accuracy per cell and its improvement over the reference, as a PNG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtune.io import write_bytes_atomic
from medtune.reporting.seed_summary import draw_seed_bars, has_seeds, seed_rows


def _draw_bars(ax: Any, rows: Sequence[dict]) -> None:
    for x, row in enumerate(rows):
        accuracy, delta = row["accuracy"], row["improvement"]
        base = accuracy if delta is None else accuracy - delta
        if delta is None and row["reference"]:
            # Tuned but its reference is gone: do not pass the bar off as an untuned base.
            ax.bar(x, base, color="white", edgecolor="gray", hatch="//", label="reference missing")
        else:
            ax.bar(x, base, color="lightgray", edgecolor="gray", label="reference / untuned")
        if delta is not None:
            # A negative height draws downward from the reference, so a decline stays visible on the gray bar.
            ax.bar(
                x,
                delta,
                bottom=base,
                color="tab:blue" if delta >= 0 else "tab:red",
                label="improvement" if delta >= 0 else "decline",
            )
        # The 95% interval of the cell's accuracy (Wilson), drawn at the top of its bar.
        below, above = accuracy - row["accuracy_low"], row["accuracy_high"] - accuracy
        ax.errorbar(x, accuracy, yerr=[[below], [above]], fmt="none", ecolor="black", capsize=3, linewidth=1)
        top = max(row["accuracy_high"], base)
        ax.text(x, top + 0.01, f"{accuracy:.3f}", ha="center", va="bottom", fontsize=8)


def draw_figure2(rows: Sequence[dict], path: Path) -> Path:
    """Accuracy per finished cell (Table 2's rows): the reference's accuracy in gray, the change from it
    in colour, the 95% interval as an error bar; with seeds, the mean, its spread and every seed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on an Agg canvas: no pyplot, so no global backend switch and no GUI.
    fig = Figure(figsize=(max(4.0, 0.8 * len(rows) + 2.0), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if rows and has_seeds(rows):
        folded = seed_rows(rows)
        draw_seed_bars(ax, folded)
        ax.set_xticks(range(len(folded)), [row["label"] for row in folded], rotation=45, ha="right", fontsize=8)
    elif rows:
        _draw_bars(ax, rows)
        ax.set_xticks(range(len(rows)), [row["label"] for row in rows], rotation=45, ha="right", fontsize=8)
    if rows:
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))  # one legend entry per kind, not per bar
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    seeds = bool(rows) and has_seeds(rows)
    ax.set_title(
        "Figure 2: accuracy, mean ± sd over seeds"
        if seeds
        else "Figure 2: accuracy (95% interval) and improvement over the reference"
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path
