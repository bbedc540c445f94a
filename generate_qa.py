"""Write question/answer pairs from documents with a generator model, for training on with dataset=generated_qa.

python generate_qa.py qa.documents=articles/ qa.generator.kind=endpoint qa.generator.url=http://127.0.0.1:8000/v1
python generate_qa.py qa.documents=articles/ qa.generator.run=outputs/train/runs/<time>   # a local model
python generate_qa.py experiment=jmedlora_qa_generation qa.documents=/data/jcs_articles/
python generate_qa.py dry_run=true        # the chunks and the first prompt; nothing is asked
"""

import hydra
from omegaconf import DictConfig

from medtune.config.store import register_configs
from medtune.entry import run_cli, run_task
from medtune.jobs import GENERATE_QA

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="generate_qa")
def main(cfg: DictConfig) -> float | None:
    return run_task(GENERATE_QA, cfg)  # the task module is imported only now


if __name__ == "__main__":
    run_cli(main, GENERATE_QA)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
