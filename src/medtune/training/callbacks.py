"""A Trainer callback that sends losses, learning rate, grad norm, tokens/s and peak memory to the tracker
and to `<run dir>/metrics.jsonl` (main process only).

A resumed run appends to the same file; `drop_rows_to_relog` first removes what it will log again
(the steps after its checkpoint, and the evaluation at the checkpoint's step), so no step is there twice.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medtune.distributed import is_main_process
from medtune.io import append_jsonl, write_text_atomic
from medtune.tracking.wandb_run import Tracker

RENAMES = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/learning_rate",
    "epoch": "train/epoch",
    "eval_loss": "eval/loss",
}


def peak_memory_mib() -> float:
    """Peak accelerator memory if CUDA is in use, else the process's peak resident memory."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def drop_rows_to_relog(path: Path, resumed_step: int) -> int:
    """Before a run continues from checkpoint-`resumed_step`: keep the rows logged up to that step
    (at the step itself only its training row; its evaluation runs again, eval_on_start); returns how
    many rows were dropped. A line cut short by a kill is dropped too."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        step = row.get("step", 0)
        if step < resumed_step or (step == resumed_step and "train/loss" in row):
            kept.append(line)
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return len(lines) - len(kept)


class MetricsCallback(TrainerCallback):
    def __init__(
        self,
        tracker: Tracker,
        metrics_path: Path,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
    ):
        self.tracker = tracker
        self.metrics_path = metrics_path
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops  # all devices together
        self.history: list[dict[str, Any]] = []
        self._last_time: float | None = None
        self._last_tokens = 0
        self._train_start: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._train_start = self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not is_main_process():
            return
        row: dict[str, Any] = {"step": state.global_step}
        for key, value in logs.items():
            if key in RENAMES:
                row[RENAMES[key]] = value
        if "train/loss" in row and self._last_time is not None:
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen
            if now > self._last_time and tokens > self._last_tokens:
                speed = (tokens - self._last_tokens) / (now - self._last_time)
                row["train/tokens_per_second"] = speed
                if self.flops_per_token and self.peak_flops:
                    row["train/mfu"] = speed * self.flops_per_token / self.peak_flops
            self._last_time, self._last_tokens = now, tokens
            row["train/tokens_seen"] = tokens
            row["train/peak_memory_mib"] = peak_memory_mib()
        if len(row) == 1:
            return
        self.history.append(row)
        append_jsonl(self.metrics_path, [row])
        self.tracker.log({k: v for k, v in row.items() if k != "step"}, step=state.global_step)

    def series(self, key: str) -> list[float]:
        return [row[key] for row in self.history if key in row]

    def train_seconds(self) -> float:
        return time.perf_counter() - self._train_start if self._train_start else 0.0
