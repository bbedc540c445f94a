"""Hydra callbacks of every entry script (conf/hydra/default.yaml).

`SeedSummary`: when a multirun ends and its jobs differ in seed= (`train.py -m seed=1,2,3`), fold the
jobs that share every other setting into mean ± sd and per-seed values (`medtune.reporting.seed_runs`):
seeds.md / seeds.csv / seeds.json in the multirun dir, a table on the console, and a W&B run of
job_type "seeds" in the jobs' group with the means, the standard deviations and the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from medtune.config.job import JobContext
from medtune.config.schema import LoggerConfig
from medtune.reporting.console import console
from medtune.reporting.seed_runs import (
    fold_seeds,
    has_several_seeds,
    job_summaries,
    print_seed_summary,
    write_seed_summary,
)


class SeedSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        jobs = job_summaries(sweep_dir)
        folded = fold_seeds(jobs)
        if not has_several_seeds(folded):
            return
        print_seed_summary(folded)
        written = write_seed_summary(sweep_dir, folded)
        console.print(f"seeds: {', '.join(str(p) for p in written)}")
        log_seed_run(config, sweep_dir, jobs, folded)


def log_seed_run(config: DictConfig, sweep_dir: Path, jobs: list[dict], folded: list[dict]) -> None:
    """The folded values as one W&B run in the group of the jobs (offline files where W&B is offline)."""
    from medtune.tracking.wandb_run import start_run

    if "logger" not in config:
        return
    logger = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LoggerConfig), config.logger))
    info = jobs[0]["dir"] / "run_info.json"
    group = json.loads(info.read_text(encoding="utf-8")).get("wandb_group") if info.is_file() else None
    job = JobContext(
        run_dir=sweep_dir,
        task_name=str(config.get("task_name", "train")),
        override_dirname="seeds",
        choices={},
        overrides=(),
    )
    tracker = start_run(logger, job, {"seeds": [row["seeds"] for row in folded]}, "seeds", group=group)
    values: dict[str, Any] = {}
    rows = []
    for row in folded:
        prefix = f"seeds/{row['setting']}/" if len(folded) > 1 else "seeds/"
        for key, m in row["metrics"].items():
            values[f"{prefix}{key}_mean"] = m["mean"]
            values[f"{prefix}{key}_sd"] = m["sd"]
            rows.append([row["setting"], key, m["mean"], m["sd"], " ".join(f"{v:.4g}" for v in m["per_seed"])])
    tracker.summarize(values)
    tracker.log_table("seeds/table", ["setting", "metric", "mean", "sd", "per seed"], rows)
    tracker.finish()
