"""Instruction-tune a causal LM with LoRA / QLoRA / int8 LoRA, composed by Hydra, logged to W&B.

python train.py                                   # the embedded SmolLM2-135M-Instruct, bundled English QA, CPU, W&B offline
python train.py model=tiny                        # the random-init tiny model: seconds, for trying settings
python train.py model=swallow70b adapter=qlora --cfg job
python train.py -m adapter=lora,qlora             # one W&B run per job, one group per multirun
"""

import hydra
from omegaconf import DictConfig

from medtune.config.store import register_configs
from medtune.entry import run_cli, run_task
from medtune.jobs import TRAIN

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(TRAIN, cfg)  # the task module (torch, transformers) is imported only now


if __name__ == "__main__":
    run_cli(main, TRAIN)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
