"""Registers the typed schemas in Hydra's ConfigStore so every YAML option is checked against them."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from medtune.config.audit_schema import ContaminationRunConfig
from medtune.config.eval_schema import EvalRunConfig
from medtune.config.judge_schema import JudgeRunConfig
from medtune.config.qa_schema import GenerateQARunConfig
from medtune.config.schema import TrainRunConfig
from medtune.config.sweep_schema import SweepRunConfig

SCHEMAS = {
    "train_schema": TrainRunConfig,
    "evaluate_schema": EvalRunConfig,
    "sweep_schema": SweepRunConfig,
    "generate_qa_schema": GenerateQARunConfig,
    "judge_schema": JudgeRunConfig,
    "contamination_schema": ContaminationRunConfig,
}


def launch_stamp() -> str:
    """A timestamp every rank of one launch agrees on: the launcher's start time under torchrun /
    deepspeed / accelerate (the ranks' shared parent), else now. Used in run dir names."""
    import datetime
    import os

    started = datetime.datetime.now()
    if "LOCAL_RANK" in os.environ:
        try:
            ticks = int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[19])
            boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
            started = datetime.datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return started.strftime("%Y-%m-%d_%H-%M-%S")


def bundled(relative: str) -> str:
    """`${bundled:sample_en}`: a file or folder of medtune's bundled resources, wherever medtune is installed."""
    from importlib import resources

    return str(resources.files("medtune") / "resources" / relative)


def register_configs() -> None:
    """Store the schemas that the primary configs (train, evaluate, sweep, generate_qa, judge, contamination) list first;
    safe to call twice."""
    for name, node in SCHEMAS.items():
        ConfigStore.instance().store(name=name, node=node)
    if not OmegaConf.has_resolver("launch_stamp"):
        OmegaConf.register_new_resolver("launch_stamp", launch_stamp, use_cache=True)
    if not OmegaConf.has_resolver("bundled"):
        OmegaConf.register_new_resolver("bundled", bundled)
