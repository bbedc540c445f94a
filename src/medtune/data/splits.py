"""A seeded train / eval split of records."""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def split_train_eval(records: list[T], eval_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Hold out `eval_fraction` of the records (at least one when the fraction is positive)."""
    if eval_fraction <= 0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(records) - 1, max(1, round(len(records) * eval_fraction)))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]
