"""Composed config -> typed config: the checks every job shares, before its own rules.

Single-key problems (unknown keys, wrong types, bad enum values) fail at composition through the
typed schema; here: required values left unset (`???`), keys added with `+key=value` that the
schema does not know. The cross-group rules of each job live in `medtune.rules`.
"""

from __future__ import annotations

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medtune.errors import ConfigError

# Fixes for keys a config option leaves for the user (`???` in YAML).
MISSING_HINTS = {
    "dataset.path": "point it at your copy, e.g. dataset.path=/data/{name}.jsonl",
    "model.path": "point it at a local checkpoint directory, e.g. model.path=/models/{name}",
    "exam.path": "point it at your exam file or folder, e.g. exam.path=/data/{name}.jsonl",
}


def missing_value_problems(cfg: DictConfig) -> list[str]:
    problems = []
    for key in sorted(OmegaConf.missing_keys(cfg)):
        group = key.split(".")[0]
        option = OmegaConf.select(cfg, f"{group}.name", default=group)
        hint = MISSING_HINTS.get(key, f"set it on the command line, e.g. {key}=...").format(name=option)
        if key.startswith("dataset.mixture.") and key.endswith(".path"):
            hint = f"point it at your copy of that source, e.g. {key}=/data/{key.split('.')[2]}.json"
        problems.append(f"{key} is required by {group}={option} and has no value: {hint}.")
    return problems


def unknown_key_problem(cfg: DictConfig, schema: type) -> str | None:
    """Keys added with `+key=value` slip past Hydra's struct check; merging into the schema catches them."""
    try:
        OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(cfg, resolve=False))
    except OmegaConfBaseException as error:
        key = error.full_key or "?"
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(OmegaConf.structured(schema), parent) if parent else OmegaConf.structured(schema)
        known = list(node.keys()) if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(leaf, known, n=1)
        hint = (
            f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else f"known keys: {', '.join(known)}"
        )
        return f"{key} is not a key medtune knows ({error.msg.splitlines()[0]}); {hint}"
    return None


def typed_config(cfg: DictConfig, schema: type) -> Any:
    """The composed config as `schema` (a dataclass with real enums): unset required values, keys added
    with `+` and the wrong schema are reported together. The job's cross-group rules run after this
    (`medtune.jobs.Job.validate`)."""
    problems = missing_value_problems(cfg)
    unknown = unknown_key_problem(cfg, schema)
    if unknown:
        problems.append(unknown)
    if problems:
        raise ConfigError(problems)
    typed = OmegaConf.to_object(cfg)
    if not isinstance(typed, schema):
        raise ConfigError([f"the composed config is a {type(typed).__name__}, expected {schema.__name__}"])
    return typed
