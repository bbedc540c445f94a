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


def changes(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every flat key whose value differs (`(absent)` where one side lacks it).

    What a resumed run (training, QA generation, judging) reports when its settings are not the ones
    the earlier run used."""
    old, new = flatten(before, prefix), flatten(after, prefix)
    return [
        f"{key}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
    ]


_ABSENT = object()


def numeric_keys(metrics: dict) -> str:
    """The keys of `metrics` that hold a number, sorted and comma-separated: what a metric name may pick."""
    return ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)))
