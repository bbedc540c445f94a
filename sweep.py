"""Run a named grid of train + evaluate cells (conf/sweep/), resumably, and report it like the paper.

python sweep.py sweep=smoke                        # tiny models on CPU, a few minutes
python sweep.py sweep=table2 sweep.dry_run=true    # list the 70B paper's cells
python sweep.py sweep=smoke sweep.launcher=parallel
python sweep.py summarize=outputs/sweeps/smoke     # rebuild the report from the finished cells
"""

import hydra
from omegaconf import DictConfig

from medtune.config.store import register_configs
from medtune.entry import run_cli, run_task
from medtune.jobs import SWEEP

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> float | None:
    return run_task(SWEEP, cfg)  # the cells run train.py and evaluate.py beside this script


if __name__ == "__main__":
    run_cli(main, SWEEP)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
