"""Start-up time of train.py: `--cfg job` (config only, no heavy imports) and the time to the first optimizer step.

Each command runs `--runs` times as a fresh process (median reported), after one untimed warm-up of each
that fills the caches a user's second run has: the tiny model and the tokenized data under --cache-dir,
and Python's bytecode (written under --work-dir via PYTHONPYCACHEPREFIX, not into the repository).
The first step is the moment the first `train/loss` row appears in `<run dir>/metrics.jsonl`
(logging_steps=1, logger=none; polled every 10 ms); the process is then stopped.

    .venv/bin/python benchmarks/startup_time.py   # about 3 min on 2 idle cores, after waiting for quiet

If `--cfg job` takes longer than --importtime-over seconds, `python -X importtime train.py --cfg job`'s top
imports are listed; whether torch / transformers are imported on that path is always checked.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from throughput_vs_plain import others_cpu_seconds, wait_quiet  # this folder is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict, log: Path, metrics: Path | None = None) -> float:
    """Seconds from spawning `cmd` to its exit, or to the first train/loss row of `metrics` (then stopped)."""
    wait_quiet(max_load=None)  # no other busy process
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            if metrics is not None and metrics.is_file() and '"train/loss"' in metrics.read_text():
                seconds = time.perf_counter() - start
                proc.terminate()
                proc.wait()
                return seconds
            time.sleep(0.01)
        seconds = time.perf_counter() - start
    if proc.returncode or metrics is not None:
        sys.exit(f"{shlex.join(cmd)} ended ({proc.returncode}) without what was timed:\n{log.read_text()[-2000:]}")
    return seconds


def import_times(argv: list[str], env: dict) -> tuple[list[tuple[int, int, str]], set[str]]:
    """(cumulative us, depth, module) of `python -X importtime <argv>`, longest first, and all modules imported."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stderr
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line[len("import time:") :].split("|")
            rows.append((int(cumulative), (len(name) - len(name.lstrip()) - 1) // 2, name.strip()))
    return sorted(rows, reverse=True), {name for _, _, name in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP_NUM_THREADS for every process")
    parser.add_argument("--importtime-over", type=float, default=1.5, help="list top imports if --cfg job is slower")
    parser.add_argument("--max-load", type=float, default=0.7, help="wait until the 1-min load average is below this")
    parser.add_argument("--wait", type=float, default=1200.0, help="at most this many seconds of waiting for quiet")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/medtune_startup"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "startup_time.md")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        OMP_NUM_THREADS=str(args.threads),
        TOKENIZERS_PARALLELISM="false",
        WANDB_MODE="disabled",
        PYTHONPYCACHEPREFIX=str(args.work_dir / "pycache"),
    )
    py, cache = sys.executable, f"paths.cache_dir={args.cache_dir.resolve()}"
    lean = ["exam_eval.enabled=false", "train.eval_steps=0", "dataset.eval_fraction=0"]
    commands = {  # label -> (argv, which run dir's metrics.jsonl to watch, or None)
        "`python train.py --cfg job`": ([py, "train.py", "--cfg", "job"], False),
        '`python -c "import torch, transformers, peft"` (floor)': (
            [py, "-c", "import torch, transformers, peft"],
            False,
        ),
        "`python train.py` to the first step (default: eval + exam before training)": (
            [py, "train.py", "logger=none", "train.logging_steps=1", cache],
            True,
        ),
        "`python train.py` to the first step, no eval / exam": (
            [py, "train.py", "logger=none", "train.logging_steps=1", *lean, cache],
            True,
        ),
    }

    def once(argv: list[str], watch: bool) -> float:
        nonlocal repeated
        for _ in range(3):  # a run during which another process used more than 1 CPU-second is repeated
            run_dir, others = args.work_dir / f"run-{time.time_ns()}", others_cpu_seconds()
            seconds = timed(
                [*argv, *([f"hydra.run.dir={run_dir}"] if watch else [])],
                env,
                run_dir / "stderr.txt",
                run_dir / "metrics.jsonl" if watch else None,
            )
            if others_cpu_seconds() - others <= 1.0:
                break
            repeated += 1
        return seconds

    repeated = 0

    for argv, watch in commands.values():  # warm-up: model, tokenized data and bytecode caches
        once(argv, watch)
    quiet = wait_quiet(args.max_load, args.wait)
    load_start, started = os.getloadavg(), time.perf_counter()
    times: dict[str, list[float]] = {label: [] for label in commands}
    for i in range(args.runs):  # alternate the commands
        for label, (argv, watch) in commands.items():
            times[label].append(once(argv, watch))
            print(f"[{i + 1}/{args.runs}] {label}: {times[label][-1]:.2f} s", file=sys.stderr, flush=True)
    load_end = os.getloadavg()

    cfg_label = next(iter(commands))
    cfg_median = statistics.median(times[cfg_label])
    top, modules = import_times(["train.py", "--cfg", "job"], env)
    floor, _ = import_times(["-c", "import torch, transformers, peft"], env)
    heavy = sorted(m for m in ("torch", "transformers", "peft", "accelerate", "wandb", "datasets") if m in modules)
    loads = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    lines = [
        "# train.py start-up time",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/startup_time.py', *sys.argv[1:]])}`",
        "",
        (
            f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, OMP_NUM_THREADS={args.threads}; 1/5/15-min "
            f"load average {loads(load_start)} at the start, {loads(load_end)} at the end "
            f"({'quiet at the start' if quiet else 'NOT quiet at the start: the wait timed out'}; {repeated} runs repeated "
            "because other processes used over 1 CPU-second during them); "
            f"{(time.perf_counter() - started) / 60:.1f} min. Tiny model, tokenized data and bytecode cached "
            "(one untimed warm-up of each command); every run a fresh process, the commands alternating."
        ),
        "",
        "| command | median s | min s | max s | runs (s) |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {label} | {statistics.median(ts):.2f} | {min(ts):.2f} | {max(ts):.2f} | "
            f"{', '.join(f'{t:.2f}' for t in ts)} |"
            for label, ts in times.items()
        ),
        "",
        "Exact commands (run from the repository root; `<dir>`: a fresh run folder):",
        "",
        *(
            f"- `{shlex.join(['python', *argv[1:], *(['hydra.run.dir=<dir>'] if watch else [])])}`".replace(
                str(args.cache_dir.resolve()), "outputs/cache"
            )
            for argv, watch in commands.values()
        ),
        "",
        f"Heavy packages imported by `train.py --cfg job`: {', '.join(heavy) if heavy else 'none'} "
        f"({len(modules)} modules in all).",
        "",
        'Where the heavy-import floor goes (`python -X importtime -c "import torch, transformers, peft"`, one run; '
        "imports of up to 2 levels that took 300 ms or more, cumulative):",
        "",
        "| module | depth | cumulative ms |",
        "|---|---:|---:|",
        *(f"| {name} | {depth} | {us / 1000:.0f} |" for us, depth, name in floor if depth <= 2 and us >= 300_000),
        "",
    ]
    if cfg_median > args.importtime_over:
        lines += [
            f"`--cfg job` took {cfg_median:.2f} s (over {args.importtime_over} s); top imports of "
            "`python -X importtime train.py --cfg job` by cumulative time:",
            "",
            "| module | depth | cumulative ms |",
            "|---|---:|---:|",
            *(f"| {name} | {depth} | {us / 1000:.0f} |" for us, depth, name in top[:15]),
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
