"""Runs that differ only in their seed, summarised: `train.py -m seed=1,2,3` (or evaluate.py's) gives one
row per setting with the mean, the standard deviation and the per-seed values of what each job
reported (the exam check before and after, its paired difference, retention exams, losses).

    python -m medtune.reporting.seed_runs outputs/train/multiruns/<time>

A multirun does this by itself when it ends (`medtune.hydra_callbacks.SeedSummary`): seeds.md,
seeds.csv and seeds.json in the multirun dir, a table on the console, and a W&B run in the jobs' group.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from medtune.reporting.seed_summary import spread

SUMMARY_FILES = ("train_summary.json", "metrics.json")  # train.py's, evaluate.py's
TRAIN_KEYS = (
    "exam/accuracy_before",
    "exam/accuracy_after",
    "exam/difference",
    "exam/strict_accuracy_after",
    "exam/strict_difference",
    "exam/invalid_after",
    "exam/answer_loss_after",
    "exam/ece_after",
    "eval/loss_after",
    "train/loss_last",
)
RETENTION_ENDINGS = ("/accuracy_after", "/difference", "/answer_loss_after")
EVALUATE_KEYS = ("accuracy", "strict_accuracy", "invalid", "exact_match", "gestalt_score")


def job_summaries(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every finished job of a multirun dir: its seed, its overrides without the seed, and its summary."""
    jobs = []
    for job_dir in sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir()), key=_job_order):
        found = next((job_dir / name for name in SUMMARY_FILES if (job_dir / name).is_file()), None)
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        if found is None or not overrides_file.is_file():
            continue
        overrides = [str(o) for o in OmegaConf.load(overrides_file) or []]
        seed = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("seed=")), None)
        setting = [o for o in overrides if not o.lstrip("+").startswith("seed=") and not o.startswith("paths.")]
        summary = json.loads(found.read_text(encoding="utf-8"))
        jobs.append({"dir": job_dir, "seed": seed, "setting": " ".join(setting) or "(defaults)", "summary": summary})
    return jobs


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (sys.maxsize, path.name)


def reported_keys(summary: dict[str, Any]) -> list[str]:
    """The numbers worth folding over seeds that this job reported, in a stable order."""
    if "accuracy" in summary and "train/steps" not in summary:
        return [k for k in EVALUATE_KEYS if _is_number(summary.get(k))]
    keys = [k for k in TRAIN_KEYS if _is_number(summary.get(k))]
    keys += sorted(
        k for k, v in summary.items() if k.startswith("retention/") and k.endswith(RETENTION_ENDINGS) and _is_number(v)
    )
    return keys


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fold_seeds(jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting: seeds, and per key its mean, sample standard deviation and per-seed values."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        groups.setdefault(job["setting"], []).append(job)
    folded = []
    for setting, runs in groups.items():
        keys = [k for k in reported_keys(runs[0]["summary"]) if all(_is_number(r["summary"].get(k)) for r in runs)]
        spreads = {k: spread([r["summary"][k] for r in runs]) for k in keys}
        folded.append(
            {
                "setting": setting,
                "seeds": [r["seed"] for r in runs],
                "metrics": {k: {"mean": m, "sd": sd, "per_seed": v} for k, (m, sd, v) in spreads.items()},
            }
        )
    return folded


def has_several_seeds(folded: Sequence[dict[str, Any]]) -> bool:
    return any(len({s for s in row["seeds"] if s is not None}) > 1 for row in folded)


def seeds_markdown(folded: Sequence[dict[str, Any]]) -> str:
    """A table per setting: key | mean +/- sd | per seed."""
    parts = []
    for row in folded:
        seeds = ", ".join(str(s) for s in row["seeds"])
        parts += [
            f"### {row['setting']} (seeds {seeds})",
            "",
            "| metric | mean ± sd | per seed |",
            "| --- | --- | --- |",
        ]
        for key, m in row["metrics"].items():
            per_seed = ", ".join(f"{v:.4g}" for v in m["per_seed"])
            parts.append(f"| {key} | {m['mean']:.4g} ± {m['sd']:.2g} | {per_seed} |")
        parts.append("")
    return "\n".join(parts)


def seeds_csv(folded: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["setting", "metric", "n_seeds", "mean", "sd", "seeds", "per_seed"])
    for row in folded:
        for key, m in row["metrics"].items():
            writer.writerow(
                [
                    row["setting"],
                    key,
                    len(m["per_seed"]),
                    f"{m['mean']:.6g}",
                    f"{m['sd']:.6g}",
                    " ".join(str(s) for s in row["seeds"]),
                    " ".join(f"{v:.6g}" for v in m["per_seed"]),
                ]
            )
    return out.getvalue()


def write_seed_summary(sweep_dir: Path, folded: Sequence[dict[str, Any]]) -> list[Path]:
    sweep_dir = Path(sweep_dir)
    written = {
        "seeds.md": seeds_markdown(folded),
        "seeds.csv": seeds_csv(folded),
        "seeds.json": json.dumps(list(folded), indent=2),
    }
    for name, text in written.items():
        (sweep_dir / name).write_text(text, encoding="utf-8")
    return [sweep_dir / name for name in written]


def print_seed_summary(folded: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table

    from medtune.reporting.console import console

    for row in folded:
        seeds = ", ".join(str(s) for s in row["seeds"])
        table = Table(title=f"{row['setting']}: {len(row['seeds'])} seeds ({seeds})")
        for column in ("metric", "mean ± sd", "per seed"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for key, m in row["metrics"].items():
            table.add_row(key, f"{m['mean']:.4g} ± {m['sd']:.2g}", ", ".join(f"{v:.4g}" for v in m["per_seed"]))
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medtune.reporting.seed_runs",
        description="Fold the jobs of a multirun that differ only in seed= into mean ± sd and per-seed values.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir: outputs/train/multiruns/<time>")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"{args.sweep_dir}: no such multirun dir; give the folder that holds the jobs 0/, 1/, ...", file=sys.stderr
        )
        return 2
    folded = fold_seeds(job_summaries(args.sweep_dir))
    if not folded:
        print(
            f"{args.sweep_dir}: no finished jobs (no train_summary.json or metrics.json in its job dirs)",
            file=sys.stderr,
        )
        return 2
    print_seed_summary(folded)
    for path in write_seed_summary(args.sweep_dir, folded):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
