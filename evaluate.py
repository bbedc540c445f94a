"""Evaluate a base model, a trained adapter, or a published predictions file on a medical exam.

python evaluate.py                                          # tiny base model, bundled sample exam
python evaluate.py run=outputs/train/runs/<time>            # the run's adapter on its base
python evaluate.py exam=igakuqa exam.years=[2018] prompt=alpaca_cot   # 277 questions, prompt (B)
python evaluate.py -m prompt=medpalm2_cot,alpaca_cot eval=generate,loglik
"""

import hydra
from omegaconf import DictConfig

from medtune.config.store import register_configs
from medtune.entry import run_cli, run_task
from medtune.jobs import EVALUATE

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    return run_task(EVALUATE, cfg)  # the task module (torch, transformers) is imported only now


if __name__ == "__main__":
    run_cli(main, EVALUATE)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
