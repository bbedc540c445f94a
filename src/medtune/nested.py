"""Nested dicts as flat `a.b.c` keys: for W&B config filters, summaries and config comparisons."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any


def flatten(tree: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """`{"adapter": {"r": 8}}` -> `{"adapter.r": 8}` (with `prefix` before every key); enums become their values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}{sep}", sep))
        else:
            flat[name] = value.value if isinstance(value, Enum) else value
    return flat
