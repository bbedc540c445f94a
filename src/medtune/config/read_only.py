"""Configs are read-only once they are resolved and checked.

Every config dataclass derives from `ConfigNode`. While a config is being composed and resolved
(`medtune.jobs.Job.validate`) it can be built and replaced freely; the config a task receives is
frozen, so no task can change a value after the rules have checked it. A task that needs a
variant makes a copy with `dataclasses.replace` (a copy is not frozen).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

_FROZEN = "_medtune_read_only"

T = TypeVar("T")


class ReadOnlyConfigError(dataclasses.FrozenInstanceError):
    """An assignment to a config after it was resolved and checked."""


class ConfigNode:
    """The base of the config dataclasses: assignable until `freeze` marks the instance read-only."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get(_FROZEN, False):
            raise ReadOnlyConfigError(
                f"{type(self).__name__}.{name}: the config is read-only once it is resolved and checked "
                "(medtune.jobs.Job.validate); settle derived values in the resolve phase "
                "(medtune.rules.resolve), or make a copy with dataclasses.replace."
            )
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self.__dict__.get(_FROZEN, False):
            raise ReadOnlyConfigError(f"{type(self).__name__}.{name}: the config is read-only; it cannot be deleted.")
        object.__delattr__(self, name)


def freeze(config: T) -> T:
    """`config` and every config inside it (fields, list items, dict values) made read-only; returned."""
    if isinstance(config, ConfigNode):
        for field in dataclasses.fields(config):  # type: ignore[arg-type]
            freeze(getattr(config, field.name))
        object.__setattr__(config, _FROZEN, True)
    elif isinstance(config, (list, tuple)):
        for item in config:
            freeze(item)
    elif isinstance(config, dict):
        for item in config.values():
            freeze(item)
    return config


def is_frozen(config: Any) -> bool:
    return isinstance(config, ConfigNode) and config.__dict__.get(_FROZEN, False)
