"""Judge two systems' answers side by side with a judge model (the Vietnamese chatbot paper's Tables III/IV).

    python judge.py judge.a.answers=base.jsonl judge.b.answers=chat.jsonl judge.judge.url=http://127.0.0.1:8000/v1
    python judge.py model=bloomz7b1_mt model.path=/models/bloomz-7b1-mt \
        judge.b.generator.run=outputs/train/runs/<time> judge.judge.url=http://127.0.0.1:8000/v1
    python judge.py judge.output_dir=outputs/judge/runs/<time> ...   # continue a stopped judge run
"""

import hydra
from omegaconf import DictConfig

from medtune.config.store import register_configs
from medtune.entry import run_cli, run_task
from medtune.jobs import JUDGE

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="judge")
def main(cfg: DictConfig) -> float | None:
    return run_task(JUDGE, cfg)  # the task module is imported only now


if __name__ == "__main__":
    run_cli(main, JUDGE)  # Hydra's own errors (unknown keys, options, paths) as medtune messages
