"""Run a named grid of train + evaluate cells (conf/sweep/), resumably, and report it like the paper.

    python sweep.py sweep=smoke                        # tiny models on CPU, a few minutes
    python sweep.py sweep=table2 sweep.dry_run=true    # list the 70B paper's cells
    python sweep.py sweep=smoke sweep.launcher=parallel
    python sweep.py summarize=outputs/sweeps/smoke     # rebuild the report from the finished cells
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from medtune.config.store import register_configs
from medtune.config.sweep_schema import SweepRunConfig
from medtune.entry import run_cli, run_task

register_configs()
SCRIPTS = Path(__file__).resolve().parent


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> float | None:
    from medtune.sweep.task import sweep

    return run_task(lambda typed, job: sweep(typed, job, SCRIPTS), cfg, SweepRunConfig)


if __name__ == "__main__":
    run_cli(main, SweepRunConfig)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
