"""Instruction-tune a causal LM with LoRA / QLoRA / int8 LoRA, composed by Hydra, logged to W&B.

    python train.py                                   # tiny local model, bundled data, CPU, W&B offline
    python train.py model=swallow70b adapter=qlora --cfg job
    python train.py -m adapter=lora,qlora             # one W&B run per job, one group per multirun
"""

import hydra
from omegaconf import DictConfig

from medtune.config.schema import TrainRunConfig
from medtune.config.store import register_configs
from medtune.entry import run_cli, run_task

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from medtune.training.task import train  # heavy imports (torch, transformers) stay off --cfg / --help

    return run_task(train, cfg, TrainRunConfig)


if __name__ == "__main__":
    run_cli(main, TrainRunConfig)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
