"""Run a Python script (train.py, evaluate.py, `-m medtune`) unchanged and, when it exits, write the process's
CUDA allocator peaks to a JSON file: medtune's train_summary.json has max_memory_allocated only.

    python benchmarks/gpu_check/run_with_memstats.py OUT.json train.py key=value ...
    python benchmarks/gpu_check/run_with_memstats.py OUT.json -m medtune export RUN_DIR ...

With GPU_CHECK_STEP_LOG=1 in the environment, every transformers Trainer the script makes also gets the step
clock of plain_baseline_gpu.py (the same callback: the CUDA stream synchronized, then (step, tokens seen,
perf_counter) at the start of training and at every logged loss), written as "step_log": medtune and the
plain baseline are then timed by the same clock.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import sys
import time


def step_clock(rows: list) -> None:
    """Add plain_baseline_gpu.py's StepTimes callback to every Trainer made from now on."""
    import torch
    import transformers

    def now() -> float:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return time.perf_counter()

    class StepTimes(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            rows.append((0, state.num_input_tokens_seen, now()))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                rows.append((state.global_step, state.num_input_tokens_seen, now()))

    original = transformers.Trainer.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        self.add_callback(StepTimes())

    transformers.Trainer.__init__ = init


def main() -> None:
    out, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    started, started_perf = time.time(), time.perf_counter()
    rows: list = []
    if os.environ.get("GPU_CHECK_STEP_LOG") == "1":
        step_clock(rows)

    def dump() -> None:
        info = {
            "wall_seconds": time.time() - started,
            "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "step_log": rows,
            "started_perf": started_perf,  # same clock as the step log: start-up and teardown seconds
            "dump_perf": time.perf_counter(),
        }
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                info.update(
                    max_allocated=torch.cuda.max_memory_allocated(),
                    max_reserved=torch.cuda.max_memory_reserved(),
                    device_name=torch.cuda.get_device_name(0),
                )
        except Exception as error:  # noqa: BLE001 - the numbers are a bonus, never a failure
            info["error"] = repr(error)
        with open(out, "w") as f:
            json.dump(info, f)

    atexit.register(dump)
    if target == "-m":
        module, rest = args[0], args[1:]
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = os.path.abspath(target)
        sys.argv = [script, *args]
        sys.path.insert(0, os.path.dirname(script))
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
