"""Registers the typed schemas in Hydra's ConfigStore so every YAML option is checked against them."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from medtune.config.schema import TrainRunConfig

TRAIN_SCHEMA = "train_schema"


def register_configs() -> None:
    """Store the schema that `conf/train.yaml` lists first in its defaults; safe to call twice."""
    ConfigStore.instance().store(name=TRAIN_SCHEMA, node=TrainRunConfig)
