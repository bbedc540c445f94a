"""Planner time: how long the dry-run planner takes to count a 70B model on the meta device and plan a run.

Three timings in this process, each `--runs` times after one untimed warm-up (the warm-up also pays the
imports of torch, transformers and PEFT, which is reported on its own):

* counting: `count_parameters` of Llama-2-70B (conf/model/llama2_70b.yaml) with adapter=qlora, i.e. the
  decoder built on the meta device, wrapped by PEFT with r 64 on all linear layers, and counted;
* plan: `plan(cfg)` of model=swallow70b adapter=qlora hardware=a100x4_zero3, micro batch 1 x 1024 tokens,
  what `train.py ... dry_run=true` does once its config is composed (counts, then the memory budget);
* budget: `estimate_memory` alone, for the same counts (arithmetic only).

The median of the counting runs is compared with `--limit` (10 s, the bound tests/test_planner.py once
asserted); the script exits 1 when it is over, so it can serve as a check on a quiet machine.

    .venv/bin/python benchmarks/planner_time.py   # about 1 minute on 2 idle CPU cores; --help for options

Writes benchmarks/results/planner_time.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from generation_batching import others_cpu_seconds  # this folder is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def typed(cls, yaml: Path, **overrides):
    """`cls` from a conf/ YAML file, with `overrides` merged over it (interpolations replaced first)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(yaml), overrides))


def run_config(model: str):
    """The TrainRunConfig of `model` + qlora on a100x4_zero3, micro batch 1 x (512 + 512) tokens, dry_run=true."""
    from medtune.config.schema import AdapterConfig, HardwareConfig, ModelConfig, TrainingConfig, TrainRunConfig

    hardware = typed(HardwareConfig, REPO / "conf/hardware/a100x4_zero3.yaml")
    adapter = typed(
        AdapterConfig, REPO / "conf/adapter/qlora.yaml", quantization={"compute_dtype": hardware.compute_dtype.value}
    )
    return TrainRunConfig(
        model=typed(ModelConfig, REPO / f"conf/model/{model}.yaml"),
        adapter=adapter,
        hardware=hardware,
        train=TrainingConfig(micro_batch_size=1, max_input_tokens=512, max_target_tokens=512),
        dry_run=True,
    )


def timed(work: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    """(seconds of one warm-up call, seconds of each of `runs` further calls)."""
    start = time.perf_counter()
    work()
    warm_up = time.perf_counter() - start
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return warm_up, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each measurement after a warm-up (5)")
    parser.add_argument(
        "--limit",
        type=float,
        default=10.0,
        help="seconds the median counting run may take (10); over it the script exits 1",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default 0: torch's choice)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "planner_time.md")
    args = parser.parse_args()

    others_before = others_cpu_seconds()
    start = time.perf_counter()
    import torch

    from medtune.modeling.planner import count_parameters, estimate_memory, plan

    imports = time.perf_counter() - start
    if args.threads:
        torch.set_num_threads(args.threads)
    llama = run_config("llama2_70b")
    swallow = run_config("swallow70b")
    count_warm, count_runs = timed(lambda: count_parameters(llama.model.architecture, llama.adapter), args.runs)
    plan_warm, plan_runs = timed(lambda: plan(swallow), args.runs)
    counts = count_parameters(llama.model.architecture, llama.adapter)
    budget_warm, budget_runs = timed(
        lambda: estimate_memory(
            llama.model.architecture, llama.adapter, llama.hardware, llama.train, llama.model.dtype, counts
        ),
        args.runs,
    )

    rows = [
        ("counting: Llama-2-70B + qlora on the meta device", count_warm, count_runs),
        ("plan: swallow70b + qlora on a100x4_zero3 (dry_run)", plan_warm, plan_runs),
        ("budget: estimate_memory for given counts", budget_warm, budget_runs),
    ]
    median_count = statistics.median(count_runs)
    within = median_count <= args.limit
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    others = max(0.0, others_cpu_seconds() - others_before)
    lines = [
        "# Planner time",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/planner_time.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, torch threads: {torch.get_num_threads()}; "
        f"1-minute load average at the end {load:.2f}; other processes used {others:.1f} CPU-seconds during "
        "the run (near 0 = idle machine).",
        "",
        f"Importing torch and the planner (transformers and PEFT load on first use, in the warm-ups): {imports:.2f} s.",
        "",
        f"| measurement | warm-up s | median of {args.runs} s | min s | max s |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {warm:.3g} | {statistics.median(runs):.3g} | {min(runs):.3g} | {max(runs):.3g} |"
            for name, warm, runs in rows
        ),
        "",
        f"Counting, median {median_count:.2f} s: {'within' if within else 'OVER'} the {args.limit:g} s limit.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
