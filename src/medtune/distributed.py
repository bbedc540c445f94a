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


def ensure_process_group(on_cpu: bool, deepspeed: bool = False) -> None:
    """Join the launcher's process group now (gloo on CPU, NCCL on GPUs), before any model loads.

    DeepSpeed's ZeRO-3 loading (zero.Init) checks the batch sizes against the world size while
    the weights load, so the group must exist by then; Trainer would only create it later.
    """
    if world_size() <= 1:
        return
    backend = "gloo" if on_cpu else "nccl"
    if deepspeed:  # DeepSpeed keeps its own handle on the group (deepspeed.comm); it must know it too
        import deepspeed as ds

        ds.init_distributed(dist_backend=backend)
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
