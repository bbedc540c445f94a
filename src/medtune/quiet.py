"""Silence third-party messages that say nothing to a medtune user, keep everything else."""

from __future__ import annotations

import logging
import os
import warnings

NOISY_LOGGERS = {
    # bitsandbytes looks for an optional hub-downloaded CPU kernel and falls back by itself.
    "bitsandbytes.backends.cpu.ops": logging.ERROR,
    # LLM.int8 on CPU casts activations to fp16 on every matmul and says so every time.
    "bitsandbytes.autograd._functions": logging.ERROR,
}


def quiet_third_party(cpu_only: bool) -> None:
    if cpu_only:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed would otherwise probe and warn
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
