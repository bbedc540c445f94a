"""The one progress display of a training run: step, loss, tokens/s, elapsed time and ETA (main process only).

On a terminal it is one tqdm bar whose postfix holds the last logged loss and the token rate, with
each evaluation's loss written above it. Redirected (a SLURM log, `> out.txt`, a pipe) it is plain
lines without carriage returns: one at the first logged step, one at a logged step once
`every_seconds` have passed since the last line, one with the last known loss when `quiet_seconds`
pass without a logged step, one at the end, and each evaluation's loss as it comes.

It replaces transformers' own display (MedtuneTrainer removes it), which printed every log dict
(`{'loss': ..., 'grad_norm': ...}`) and nested the evaluation bars in the training bar.
"""

from __future__ import annotations

import sys
import time

from transformers import TrainerCallback

from medtune.reporting.progress_bar import duration, on_a_terminal

EVERY_SECONDS = 10.0
QUIET_SECONDS = 60.0


class TrainingProgress(TrainerCallback):
    def __init__(
        self,
        interactive: bool | None = None,
        every_seconds: float = EVERY_SECONDS,
        quiet_seconds: float = QUIET_SECONDS,
    ):
        self.interactive = interactive
        self.every_seconds = every_seconds
        self.quiet_seconds = quiet_seconds
        self.bar = None
        self.loss: float | None = None
        self.lines: list[str] = []  # the plain lines printed (redirected output)
        self._started = 0.0
        self._first_step = 0
        self._last_line_at = 0.0
        self._last_line_step: int | None = None
        self._rate_mark: tuple[float, int] = (0.0, 0)  # (time, tokens seen) the token rate counts from
        self._rate: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.interactive is None:
            self.interactive = on_a_terminal(sys.stdout)
        now = time.monotonic()
        self._started = self._last_line_at = now
        self._first_step = state.global_step
        self._rate_mark = (now, state.num_input_tokens_seen)
        if self.interactive:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc="training",
                unit="step",
                dynamic_ncols=True,
                file=sys.stdout,
            )

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        elif not control.should_log and time.monotonic() - self._last_line_at >= self.quiet_seconds:
            self._line(state)  # a long stretch between logged steps: the last known loss, and where it is

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        if "eval_loss" in logs:
            self._say(f"eval at step {state.global_step}: loss {logs['eval_loss']:.4g}")
        if "loss" not in logs:
            return
        self.loss = float(logs["loss"])
        if self.bar is not None:
            self._measure_rate(state)
            rate = f", {self._rate:,.0f} tokens/s" if self._rate else ""
            self.bar.set_postfix_str(f"loss {self.loss:.4g}{rate}", refresh=False)
        elif (
            self._last_line_step is None
            or state.global_step >= state.max_steps
            or time.monotonic() - self._last_line_at >= self.every_seconds
        ):
            self._line(state)

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # the token rate counts training time, not the evaluation's
            self._rate_mark = (time.monotonic(), state.num_input_tokens_seen)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
            self.bar.close()
            self.bar = None
        elif self._last_line_step != state.global_step:
            self._line(state)

    def _measure_rate(self, state) -> None:
        """Tokens per second since the last measure (all ranks' tokens: the Trainer gathers them)."""
        now, tokens = time.monotonic(), state.num_input_tokens_seen
        then, before = self._rate_mark
        if now > then and tokens > before:
            self._rate = (tokens - before) / (now - then)
            self._rate_mark = (now, tokens)

    def _line(self, state) -> None:
        self._measure_rate(state)
        step, total = state.global_step, state.max_steps
        now = time.monotonic()
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self._rate:
            parts.append(f"{self._rate:,.0f} tokens/s")
        elapsed = now - self._started
        parts.append(f"elapsed {duration(elapsed)}")
        done = step - self._first_step
        if done > 0 and total and step < total:
            parts.append(f"ETA {duration(elapsed / done * (total - step))}")
        self._say("  ".join(parts))
        self._last_line_at, self._last_line_step = now, step

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            self.lines.append(line)
            print(line, flush=True)
