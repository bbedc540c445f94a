"""Silence third-party messages that say nothing to a medtune user, keep everything else.

Library INFO lines (DeepSpeed's op builds and accelerator choice, the compiler checks behind them,
transformers' per-shard "Loading weights" bars, bitsandbytes / peft chatter) stay out of the console
unless MEDTUNE_VERBOSE=1 is set: then every library logs at INFO and shows its own bars. Warnings
and errors of every library are shown either way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from typing import Iterator

VERBOSE_ENV = "MEDTUNE_VERBOSE"  # MEDTUNE_VERBOSE=1: library INFO lines and progress bars, as the libraries print them

NOISY_LOGGERS = {
    # bitsandbytes looks for an optional hub-downloaded CPU kernel and falls back by itself.
    "bitsandbytes.backends.cpu.ops": logging.ERROR,
    # LLM.int8 on CPU casts activations to fp16 on every matmul and says so every time.
    "bitsandbytes.autograd._functions": logging.ERROR,
}
# Library messages that are warnings by level but expected on the setups medtune runs (a CPU run).
NOISY_MESSAGES = {
    "DeepSpeed": ("Setting accelerator to CPU",),
}


def verbose() -> bool:
    """Whether the user asked for the libraries' own INFO lines and bars (MEDTUNE_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class DropMessages(logging.Filter):
    """Drops records whose message starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_third_party(cpu_only: bool) -> None:
    if cpu_only:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed would otherwise probe and warn
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    if verbose():
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("DeepSpeed").setLevel(logging.INFO)
        with contextlib.suppress(ImportError):
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_info()
        return
    # Hydra's job logging sets the root logger to INFO: every library that logs through it would
    # show its INFO lines (DeepSpeed's compiler checks print whole gcc command lines).
    logging.getLogger().setLevel(logging.WARNING)
    for name, prefixes in NOISY_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(prefixes))
    # DeepSpeed calls torch.distributed functions torch has renamed; said again at every step.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    quiet_loading_bars()


def quiet_loading_bars() -> None:
    """No per-shard "Loading weights" / "Writing model shards" bars (medtune says what it loads); the
    hub's download bars stay, a first download can take minutes."""
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # also switches the hub's bars off: on again below
        if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() not in ("1", "true", "yes", "on"):
            from huggingface_hub.utils import enable_progress_bars

            enable_progress_bars()


@contextlib.contextmanager
def quiet_prints() -> Iterator[None]:
    """Swallow what a library `print`s to stdout inside the block (kept with MEDTUNE_VERBOSE=1): e.g.
    transformers' "[INFO] Running in WANDB offline mode" when it imports its W&B integration."""
    if verbose():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield
