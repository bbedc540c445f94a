"""Audit an exam against training data: which questions the training files already hold.

python contamination.py exam=medqa_en contamination.files=[data/train.jsonl]
python contamination.py run=outputs/train/runs/<time>            # the files that run trained on
python contamination.py exam=igakuqa contamination.files=[../shared/data/jjsimqa/jjsimqa.jsonl]
"""

import hydra
from omegaconf import DictConfig

from medtune.config.store import register_configs
from medtune.entry import run_cli, run_task
from medtune.jobs import CONTAMINATION

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="contamination")
def main(cfg: DictConfig) -> float | None:
    return run_task(CONTAMINATION, cfg)  # the task module is imported only now


if __name__ == "__main__":
    run_cli(main, CONTAMINATION)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
