"""A Trainer callback that sends losses, learning rate, grad norm, tokens/s and peak memory to the tracker
and to `<run dir>/metrics.jsonl` (main process only).

Tokens/s counts the real (non-padding) training tokens the Trainer saw over the seconds spent inside
optimizer steps: evaluation, the exam check and checkpoint saves between steps do not lower it.

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
        self._train_start: float | None = None
        # Seconds inside optimizer steps (forward, backward, optimizer): evaluation, the exam check and
        # checkpoint saves between steps are not training throughput.
        self._step_seconds = 0.0
        self._step_started: float | None = None
        self._first_tokens = 0
        self._last_tokens = 0
        self._last_step_seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._train_start = time.perf_counter()
        self._first_tokens = self._last_tokens = state.num_input_tokens_seen

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            self._step_seconds += time.perf_counter() - self._step_started
            self._step_started = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not is_main_process():
            return
        row: dict[str, Any] = {"step": state.global_step}
        for key, value in logs.items():
            if key in RENAMES:
                row[RENAMES[key]] = value
        if "train/loss" in row and self._train_start is not None:
            tokens, seconds = state.num_input_tokens_seen, self._step_seconds
            if seconds > self._last_step_seconds and tokens > self._last_tokens:
                speed = (tokens - self._last_tokens) / (seconds - self._last_step_seconds)
                row["train/tokens_per_second"] = speed
                if self.flops_per_token and self.peak_flops:
                    row["train/mfu"] = speed * self.flops_per_token / self.peak_flops
            self._last_step_seconds, self._last_tokens = seconds, tokens
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
        """Wall seconds since training began (evaluations and saves included)."""
        return time.perf_counter() - self._train_start if self._train_start else 0.0

    def step_seconds(self) -> float:
        """Seconds spent inside optimizer steps."""
        return self._step_seconds

    def tokens_per_second(self, tokens_seen: int) -> float | None:
        """This run's real (non-padding) training tokens over its seconds inside optimizer steps: one ratio
        over the whole run, not a mean of per-interval rates."""
        tokens = tokens_seen - self._first_tokens
        return tokens / self._step_seconds if self._step_seconds > 0 and tokens > 0 else None
