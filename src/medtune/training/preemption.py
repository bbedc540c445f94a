"""Preemption: SIGTERM, SIGUSR1 or SIGUSR2 (what SLURM / submitit send before a job stops) save a checkpoint and exit.

Ctrl-C (SIGINT) takes the same path: the step finishes, a checkpoint is saved, the run exits with a
message. A second Ctrl-C stops at once, without saving (a save it cuts short leaves only a `.tmp-*`
folder, which the next run removes).

The handler only notes the signal; the callback acts at the next optimizer-step boundary, where the
Trainer can save a consistent checkpoint (model, optimizer, scheduler, RNG, data position). With
several ranks the note is shared by an all-reduce each step, so every rank saves and stops at the
same step even if only one was signalled.

After the save the run raises `Preempted`. The entry layer then hands the signal to the handler that
was installed before medtune's (submitit's, under the SLURM launcher: it requeues the job), or exits
with `PREEMPTED_EXIT_CODE` (75, EX_TEMPFAIL: "try again") for any other scheduler to requeue on.
Rerunning the same command in the same run dir resumes from that checkpoint.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from transformers import TrainerCallback

from medtune.errors import PREEMPTED_EXIT_CODE, Preempted  # noqa: F401  (re-exported)

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)  # submitit's default preemption signal is USR2


def preemption_signals() -> tuple[int, ...]:
    """SIGTERM, SIGUSR1, SIGUSR2, and whatever SUBMITIT_PREEMPT_SIGNAL names."""
    extra = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    return tuple(dict.fromkeys([*SIGNALS, *([extra] if extra else [])]))


def signal_name(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"{name} (Ctrl-C)" if signum == signal.SIGINT else name


class PreemptionCallback(TrainerCallback):
    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}
        self.stopped_at: int | None = None

    def install(self) -> PreemptionCallback:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for signum in dict.fromkeys([*preemption_signals(), signal.SIGINT]):
                self.previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._note)
        return self

    def uninstall(self) -> None:
        for signum, handler in self.previous.items():  # kept: `preempted` hands the signal on to them
            signal.signal(signum, handler)

    def _note(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._stop_now)  # the next Ctrl-C does not wait for the save
        if self.signum is None:
            self.signum = signum
            again = " (Ctrl-C again stops at once, without saving)" if signum == signal.SIGINT else ""
            print(
                f"\nmedtune: received {signal_name(signum)}; saving a checkpoint at the end of this step{again}",
                flush=True,
            )

    def _stop_now(self, signum, frame) -> None:
        print(
            "\nmedtune: second Ctrl-C: stopping now without saving this step; "
            "the run continues from its newest checkpoint when run again",
            flush=True,
        )
        raise KeyboardInterrupt

    def _anyone_signalled(self) -> bool:
        import torch.distributed as dist

        flag = self.signum is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            value = torch.tensor([self.signum or 0], device=device)
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
            if value.item() and self.signum is None:
                self.signum = int(value.item())
            flag = bool(value.item())
        return flag

    def on_step_end(self, args, state, control, **kwargs):
        if self._anyone_signalled():
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False
            self.stopped_at = state.global_step

    def preempted(self, checkpoint_dir: str) -> Preempted:
        interrupted = self.signum == signal.SIGINT
        slurm = "" if interrupted else "; under the SLURM launcher the job is requeued and continues by itself"
        return Preempted(
            f"stopped by {signal_name(self.signum)} after step {self.stopped_at}; the checkpoint is in {checkpoint_dir}. "
            f"Run the same command in the same run dir (hydra.run.dir=<this run dir>) to continue from it{slurm}.",
            self.signum,
            self.handler_to_call(),
        )

    def handler_to_call(self):
        """The handler medtune replaced, for the entry layer to hand the signal on to; None for Ctrl-C,
        whose earlier handler (Python's own, or SIG_IGN in a background job) has nothing to add to the
        clean exit."""
        if self.signum == signal.SIGINT:
            return None
        return self.previous.get(self.signum)
