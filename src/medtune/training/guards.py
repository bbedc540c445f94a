"""Stop a run whose loss has become NaN or infinite, with a checkpoint and a message, not silently.

The guard reads the losses the Trainer logs (`loss`, `eval_loss`): they are gathered across ranks,
so every process of a distributed job sees the same value and stops at the same step. The
Trainer's NaN filter is switched off in `training_arguments`, or a NaN step would be averaged away.
A non-finite gradient norm alone is not a divergence: fp16 loss scaling skips such steps on purpose.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medtune.errors import TrainingDivergedError

WATCHED = {"loss": "training loss", "eval_loss": "eval loss"}


class NonFiniteLossGuard(TrainerCallback):
    """On a NaN/inf logged loss: save a checkpoint (`checkpoint-<step>`), then raise TrainingDivergedError."""

    def __init__(self, learning_rate: float, max_grad_norm: float):
        self.learning_rate = learning_rate
        self.max_grad_norm = max_grad_norm
        self.last_finite: tuple[int, float] | None = None  # (step, training loss)
        self.diverged: dict[str, Any] | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.diverged is not None:
            return
        for key, what in WATCHED.items():
            value = logs.get(key)
            if value is None:
                continue
            if not math.isfinite(value):
                self.diverged = {"step": state.global_step, "what": what, "value": value}
                control.should_save = True  # the Trainer saves checkpoint-<step>, then calls on_save
                control.should_evaluate = False  # an evaluation of NaN weights tells nothing
                return
        if "loss" in logs:
            self.last_finite = (state.global_step, float(logs["loss"]))

    def on_save(self, args, state, control, **kwargs):
        if self.diverged is None:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        raise TrainingDivergedError(self.message(checkpoint))

    def message(self, checkpoint: Path) -> str:
        d = self.diverged
        if self.last_finite is None:
            before = "no finite training loss was logged before it"
        else:
            before = f"the last finite training loss was {self.last_finite[1]:.4g} at step {self.last_finite[0]}"
        clip = (
            f"keep gradient clipping on (train.max_grad_norm={self.max_grad_norm:g} now; e.g. 1.0)"
            if self.max_grad_norm <= 0
            else f"clip harder (train.max_grad_norm={self.max_grad_norm:g} now, e.g. 0.3)"
        )
        return (
            f"training diverged at step {d['step']}: the {d['what']} is {d['value']} ({before}). "
            f"Training stopped; the state at step {d['step']} is saved in {checkpoint} for inspection, and no "
            f"adapter or train_summary.json was written. Fix: lower train.learning_rate (now {self.learning_rate:g}), "
            f"{clip}, or check the data for empty or broken records; then train again."
        )
