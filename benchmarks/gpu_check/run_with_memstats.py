"""Run a Python script (train.py, evaluate.py, `-m medtune`) unchanged and, when it exits, write the process's
CUDA allocator peaks to a JSON file: medtune's train_summary.json has max_memory_allocated only.

    python benchmarks/gpu_check/run_with_memstats.py OUT.json train.py key=value ...
    python benchmarks/gpu_check/run_with_memstats.py OUT.json -m medtune export RUN_DIR ...
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import sys
import time


def main() -> None:
    out, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    started = time.time()

    def dump() -> None:
        info = {
            "wall_seconds": time.time() - started,
            "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
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
