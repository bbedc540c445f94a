"""Registers the typed schemas in Hydra's ConfigStore so every YAML option is checked against them."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from medtune.config.eval_schema import EvalRunConfig
from medtune.config.schema import TrainRunConfig
from medtune.config.sweep_schema import SweepRunConfig

SCHEMAS = {"train_schema": TrainRunConfig, "evaluate_schema": EvalRunConfig, "sweep_schema": SweepRunConfig}


def register_configs() -> None:
    """Store the schemas that the primary configs (train, evaluate, sweep) list first; safe to call twice."""
    for name, node in SCHEMAS.items():
        ConfigStore.instance().store(name=name, node=node)
