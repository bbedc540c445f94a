"""The resolve phase: between composition and the rules, every value a job derives from others is
settled once, so the rules check the config the task will run with and the task changes nothing.

- evaluate.py run=<dir> without prompt= on the command line: the run is asked in the prompt it was
  trained with (its saved config), so the prompt-language rule checks that prompt too.
- the model description (a checkpoint's own architecture replaces the YAML numbers): each job's
  `describe` step (`medtune.rules.model.adopt_checkpoint_architecture`), run right after this one.

What is settled only once the data is read stays with the task that reads it: train.epochs becomes
train.max_steps in the training recipe's own copy of the config (`medtune.training.recipe`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from medtune.config.eval_schema import EvalRunConfig
from medtune.reporting.console import console
from medtune.run_dir import TrainRunDir


def command_line_overrides() -> tuple[str, ...]:
    """The overrides typed for the running Hydra job (none outside a Hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return tuple(HydraConfig.get().overrides.task)
    except ValueError:
        return ()


def typed_group(overrides: Sequence[str], group: str) -> bool:
    """Whether the command line sets `group` (prompt=..., prompt.template=..., +prompt=...)."""
    return any(o.split("=")[0].lstrip("+~").split(".")[0] == group for o in overrides)


def resolve_evaluate(cfg: EvalRunConfig, overrides: Sequence[str]) -> EvalRunConfig:
    """With run=<dir> and no prompt on the command line, the prompt the run was trained with."""
    if not cfg.run or cfg.predictions or typed_group(overrides, "prompt") or not Path(cfg.run).is_dir():
        return cfg  # a run dir that is not there is the rules' to report
    try:
        trained = TrainRunDir(Path(cfg.run)).read_config().prompt
    except Exception:  # an unreadable run config: check_train_run names the problem
        return cfg
    if trained.name != cfg.prompt.name:
        console.print(
            f"run={cfg.run} was trained with prompt={trained.name}: evaluating with it "
            f"(add prompt=<name> to choose another)"
        )
    return dataclasses.replace(cfg, prompt=trained)
