"""Process rank facts from the launcher's environment (torchrun, deepspeed, SLURM), without torch."""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Rank 0 alone writes W&B, files and progress bars."""
    return rank() == 0
