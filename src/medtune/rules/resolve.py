"""The resolve phase: between composition and the rules, every value a job derives from others is
settled once, so the rules check the config the task will run with, and the task receives it frozen
(`medtune.config.read_only`) and changes nothing. Each job lists its steps (`medtune.jobs`):

- `run_prompt` (evaluate.py run=<dir> without prompt= on the command line): the run is asked in the
  prompt it was trained with (its saved config), so the prompt-language rule checks that prompt too.
- `described_model`: the checkpoint's own architecture numbers replace the YAML ones. It reads
  configs only (a GGUF's metadata, a LoRA run's base config): nothing is converted, joined, built
  or merged while a config is checked; the task does that when it loads the model.
- `micro_batch` (train.micro_batch_size=auto): the micro batch (and gradient checkpointing) from the
  memory plan, printed once.

A step returns the config it settled and the problems it met; a step with problems ends the phase
(the steps after it need what it could not settle), and the rules still run, so every problem is
reported at once. What is settled only once the data is read stays with the task that reads it:
train.epochs becomes train.max_steps in the training recipe's own copy of the config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

from medtune.config.eval_schema import EvalRunConfig
from medtune.config.schema import ModelConfig, TrainRunConfig
from medtune.errors import ModelUnavailableError
from medtune.reporting.console import console
from medtune.run_dir import TrainRunDir

Step = Callable[[Any, Sequence[str]], tuple[Any, list[str]]]


def settle(cfg: Any, overrides: Sequence[str], steps: Sequence[Step]) -> tuple[Any, list[str]]:
    """`cfg` after every step (a new object; `cfg` itself is unchanged), and the problems met."""
    for step in steps:
        cfg, problems = step(cfg, overrides)
        if problems:
            return cfg, problems
    return cfg, []


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


def run_prompt(cfg: EvalRunConfig, overrides: Sequence[str]) -> tuple[EvalRunConfig, list[str]]:
    """With run=<dir> and no prompt on the command line, the prompt the run was trained with."""
    if not cfg.run or cfg.predictions or typed_group(overrides, "prompt") or not Path(cfg.run).is_dir():
        return cfg, []  # a run dir that is not there is the rules' to report
    try:
        trained = TrainRunDir(Path(cfg.run)).read_config().prompt
    except Exception:  # an unreadable run config: check_train_run names the problem
        return cfg, []
    if trained.name != cfg.prompt.name:
        console.print(
            f"run={cfg.run} was trained with prompt={trained.name}: evaluating with it "
            f"(add prompt=<name> to choose another)"
        )
    return dataclasses.replace(cfg, prompt=trained), []


def described_model(loads_model: Callable[[Any], bool]) -> Step:
    """The step that describes `cfg.model` from its checkpoint, for a job whose config `loads_model`."""

    def step(cfg: Any, overrides: Sequence[str]) -> tuple[Any, list[str]]:
        if not loads_model(cfg):
            return cfg, []
        model, problems = checkpoint_architecture(cfg.model, cfg.paths.cache_dir)
        return dataclasses.replace(cfg, model=model), problems

    return step


def checkpoint_architecture(model: ModelConfig, cache_dir: str) -> tuple[ModelConfig, list[str]]:
    """`model` with the checkpoint's own architecture numbers (the YAML ones where it is not on this
    machine), read without side effects; a missing or unreadable model is the problem returned."""
    from medtune.modeling.description import describe_model

    try:
        described = describe_model(model, cache_dir, materialize=False)
    except ModelUnavailableError as error:
        return model, [str(error)]
    for line in described.disagreements:
        console.print(f"[yellow]note:[/yellow] {line}; the checkpoint's number is used.")
    if not described.from_checkpoint:
        return model, []
    return dataclasses.replace(model, architecture=described.architecture), []


def micro_batch(cfg: TrainRunConfig, overrides: Sequence[str]) -> tuple[TrainRunConfig, list[str]]:
    """train.micro_batch_size=auto: the largest micro batch the memory plan fits (and gradient
    checkpointing only if needed), printed. A global batch that no micro batch divides evenly is left
    as `auto` for the schedule rule to report."""
    from medtune.distributed import is_main_process
    from medtune.modeling.planner.auto_batch import choose_micro_batch

    t, hardware = cfg.train, cfg.hardware
    world = hardware.devices_per_node * hardware.num_nodes
    if t.micro_batch_size != "auto" or t.global_batch_size <= 0 or world <= 0 or t.global_batch_size % world:
        return cfg, []
    try:
        with console.status("Planning the micro batch (train.micro_batch_size=auto)"):
            choice = choose_micro_batch(cfg)
    except ValueError as error:
        return cfg, [str(error)]
    if is_main_process():
        color = "yellow" if choice.fits is False else "bold"
        console.print(f"[{color}]{choice.line()}[/{color}]")
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(t, micro_batch_size=choice.micro_batch_size),
        hardware=dataclasses.replace(hardware, gradient_checkpointing=choice.gradient_checkpointing),
    ), []
