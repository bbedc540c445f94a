"""Training tokens/s of `python train.py` (plain, packed, length-grouped) against a plain transformers + PEFT script.

Each variant runs as a fresh process; the variants alternate, in a rotated order, `--repeats` times and
the median is reported. All use the tiny model, the 58 bundled sample examples (eval_fraction 0: no eval
pass anywhere), LoRA r 8 / alpha 8 on q/v, 120 steps, lr 1e-2, seed 42, CPU, the same thread count.

    .venv/bin/python benchmarks/throughput_vs_plain.py   # about 10 min on 2 idle cores, after waiting for quiet

tokens/s = real (non-padding) training tokens / seconds from the Trainer's train begin to the last
optimizer step (medtune: from metrics.jsonl, logging_steps=1; plain: its own step log). Packed runs keep
the tokens per step: 2 rows of <= 640 tokens (train.py's
default row size) or 4 rows of <= 320, ~1,220 real tokens, instead of 8 examples (~1,140 real tokens);
every variant then sees each of the 58 examples exactly 15 times.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "model=tiny",
    "dataset=sample",
    "prompt=alpaca",
    "hardware=cpu",
    "logger=none",
    "exam_eval.enabled=false",
    "train.eval_steps=0",
    "dataset.eval_fraction=0",
    "train.logging_steps=1",
    "train.learning_rate=1e-2",
    "seed=42",
]


def busy_others(seconds: float = 2.0, share: float = 0.1) -> list[str]:
    """Other processes that used more than `share` of a core over `seconds` (from /proc)."""

    def snapshot() -> dict[int, tuple[float, str]]:
        out = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out[int(stat.parent.name)] = ((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), cmd)
            except (OSError, IndexError, ValueError):
                continue
        return out

    before = snapshot()
    time.sleep(seconds)
    return [
        f"pid {pid} {(cpu - before[pid][0]) / seconds:.0%} {cmd[:90]}"
        for pid, (cpu, cmd) in snapshot().items()
        if pid in before and pid != os.getpid() and (cpu - before[pid][0]) / seconds > share
    ]


def wait_quiet(max_load: float | None = 0.7, timeout: float = 1200.0) -> bool:
    """Until the 1-min load is below `max_load` (None: not checked) and no other process is busy; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        load, busy = os.getloadavg()[0], busy_others()
        if (max_load is None or load < max_load) and not busy:
            return True
        if time.monotonic() > deadline:
            print(f"still not quiet after {timeout:.0f} s (load {load:.2f}); measuring anyway", file=sys.stderr)
            return False
        print(
            f"waiting for a quiet machine: 1-min load {load:.2f}"
            + (f" (want < {max_load})" if max_load else "")
            + "".join(f"\n  busy: {b}" for b in busy),
            file=sys.stderr,
            flush=True,
        )
        time.sleep(15)


def others_cpu_seconds() -> float:
    """CPU-seconds used so far by every process but this one and its finished children."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK") - sum(os.times()[:4])


def run(name: str, extra: list[str], args, env, packed_real: list[int] | None) -> dict:
    out = args.work_dir / f"{''.join(c if c.isalnum() else '_' for c in name)}-{time.time_ns()}"
    out.mkdir(parents=True)
    if name.startswith("plain"):
        cmd = [
            sys.executable,
            "benchmarks/plain_peft_baseline.py",
            "--json",
            str(out / "plain.json"),
            "--steps",
            str(args.steps),
            "--micro-batch",
            "8",
            "--threads",
            str(args.threads),
            "--cache-dir",
            str(args.cache_dir),
            "--output-dir",
            str(out / "trainer"),
        ]
    else:
        cmd = [
            sys.executable,
            "train.py",
            *COMMON,
            f"train.max_steps={args.steps}",
            *extra,
            f"paths.cache_dir={args.cache_dir}",
            f"hydra.run.dir={out}",
        ]
    wait_quiet(max_load=None)  # no other busy process; our own last run still weighs on the load average
    others = others_cpu_seconds()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    others = others_cpu_seconds() - others
    (out / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        sys.exit(f"{name} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    if name.startswith("plain"):
        result = json.loads((out / "plain.json").read_text())
        _, counted, times = zip(*result["step_log"])
        losses = result["losses"]
        pad = 1 - result["collated_real_tokens"] / result["computed_tokens"]
    else:
        rows = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]
        counted, times = [0] + [r["train/tokens_seen"] for r in rows], [0.0]
        for a, b, row in zip(counted, counted[1:], rows):  # a row's speed is its interval's tokens / seconds
            times.append(times[-1] + (b - a) / row["train/tokens_per_second"])
        losses, pad = [r["train/loss"] for r in rows], None
    per_step = [b - a for a, b in zip(counted, counted[1:])]
    real = packed_real[: len(per_step)] if packed_real else per_step
    loss = (statistics.mean(losses[:8]), statistics.mean(losses[-8:]))  # 8 steps = one pass here
    return {
        "counted": counted[-1],
        "real": sum(real),
        "loss": loss,
        "pad": pad,
        "others": others,
        "per_step": per_step,
        "wall": sum(real) / (times[-1] - times[0]),
        "cmd": shlex.join(["python", *cmd[1:]]).replace(str(out), "<run dir>").replace(f"{REPO}/", ""),
    }


def layouts(steps: int, packs: dict[str, tuple[int, int]], cache_dir: Path) -> dict:
    """Expected padding shares of random / length-grouped batches of 8 (500 simulated epochs of transformers'
    samplers) and, for each packed layout (row budget, rows per step), its exact padding share and its per-step
    real and Trainer-counted tokens (train.py packs with the run's seed; its rows are read in order every epoch)."""
    import torch
    from omegaconf import OmegaConf
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from medtune.config.schema import ModelConfig, PromptConfig
    from medtune.data.packing import pack_examples
    from medtune.data.readers import read_records
    from medtune.data.tokenize import encode_records
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    def typed(cls, yaml):
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(REPO / yaml)))

    model_cfg = typed(ModelConfig, "conf/model/tiny.yaml")
    tokenizer = load_tokenizer(resolve_checkpoint(model_cfg, cache_dir), model_cfg)
    prompt = typed(PromptConfig, "conf/prompt/alpaca.yaml")
    examples, _ = encode_records(read_records(None), tokenizer, prompt, 384, 256)
    lengths = [len(e["input_ids"]) for e in examples]
    share = lambda batches: 1 - sum(map(sum, batches)) / sum(len(b) * max(b) for b in batches)
    of_8 = lambda orders: [[lengths[i] for i in o[k : k + 8]] for o in orders for k in range(0, len(o), 8)]
    g = torch.Generator().manual_seed(0)
    random = of_8([torch.randperm(len(lengths), generator=g).tolist() for _ in range(500)])
    info = {
        "random": share(random),
        "width": statistics.mean(map(max, random)),
        "examples": len(lengths),
        "group_by_length": share(of_8([get_length_grouped_indices(lengths, 8, generator=g) for _ in range(500)])),
        "tokens": sum(lengths),
    }
    for name, (budget, per_step) in packs.items():
        rows = [len(r["input_ids"]) for r in pack_examples(examples, budget, 42)]
        epoch = [rows[k : k + per_step] for k in range(0, len(rows), per_step)]
        batches = [epoch[i % len(epoch)] for i in range(steps)]
        info[name] = {
            "share": share(batches),
            "rows": len(rows),
            "row_tokens": sum(rows) / len(rows),
            "real": [sum(b) for b in batches],
            "counted": [len(b) * max(b) for b in batches],
        }
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP_NUM_THREADS / torch threads")
    parser.add_argument("--max-load", type=float, default=0.7, help="wait until the 1-min load average is below this")
    parser.add_argument("--wait", type=float, default=1200.0, help="at most this many seconds of waiting for quiet")
    parser.add_argument("--max-others", type=float, default=2.0, help="repeat a run if others used more CPU-seconds")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/medtune_throughput"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "throughput_vs_plain.md")
    args = parser.parse_args()
    args.cache_dir = args.cache_dir.resolve()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "disabled",
    }
    batch8 = ["train.micro_batch_size=8", "train.global_batch_size=8"]
    packs = {"medtune packed, 640-token rows x 2": (640, 2), "medtune packed, 320-token rows x 4": (320, 4)}
    variants = {
        "plain transformers + peft": [],
        "medtune": [*batch8, "train.sampling=random"],
        **{
            n: [
                "train.packing=true",
                f"train.pack_max_tokens={b}",
                f"train.micro_batch_size={k}",
                f"train.global_batch_size={k}",
            ]
            for n, (b, k) in packs.items()
        },
        "medtune group_by_length": [*batch8, "train.sampling=group_by_length"],
    }
    info = layouts(args.steps, packs, args.cache_dir)  # also builds the tiny model if needed

    quiet = wait_quiet(args.max_load, args.wait)
    load_start, started = os.getloadavg(), time.perf_counter()
    results: dict[str, list[dict]] = {name: [] for name in variants}
    repeated = 0
    for rep in range(args.repeats):
        for name in list(variants)[rep % len(variants) :] + list(variants)[: rep % len(variants)]:  # rotated order
            for _ in range(3):  # a run during which another process woke up is repeated
                r = run(name, variants[name], args, env, info[name]["real"] if name in packs else None)
                if r["others"] <= args.max_others:
                    break
                repeated += 1
                print(f"repeating {name}: other processes used {r['others']:.1f} CPU-s", file=sys.stderr)
            results[name].append(r)
            print(
                f"[{rep + 1}/{args.repeats}] {name}: {r['wall']:.0f} tokens/s; others used {r['others']:.1f} CPU-s",
                file=sys.stderr,
                flush=True,
            )
    load_end, minutes = os.getloadavg(), (time.perf_counter() - started) / 60

    import torch

    med = {n: statistics.median(r["wall"] for r in rs) for n, rs in results.items()}
    plain = results["plain transformers + peft"]
    ratio = {n: med[n] / med["plain transformers + peft"] for n in variants}
    pad = {
        n: info[n]["share"] if n in packs else info["group_by_length" if "group" in n else "random"] for n in variants
    }
    unit = {n: f"{packs[n][1]} rows <= {packs[n][0]} tokens" if n in packs else "8 examples" for n in variants}
    loads = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    same = all(r["per_step"] == plain[0]["per_step"] for r in results["medtune"])
    spread = max(max(r["wall"] for r in rs) / min(r["wall"] for r in rs) - 1 for rs in results.values())
    lines = [
        "# Training throughput: medtune vs a plain transformers + PEFT script",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/throughput_vs_plain.py', *sys.argv[1:]])}`",
        "",
        (
            f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, OMP_NUM_THREADS={args.threads} for every run; "
            f"1/5/15-min load average {loads(load_start)} at the start, {loads(load_end)} at the end "
            f"({'quiet at the start' if quiet else 'NOT quiet at the start: the wait timed out'}); other processes used "
            f"at most {max(r['others'] for rs in results.values() for r in rs):.1f} CPU-seconds during one kept run "
            f"({repeated} runs repeated for using more than {args.max_others}); "
            f"{minutes:.1f} min, {args.repeats} alternating repeats in a rotated order. Data: {info['examples']} "
            f"bundled examples, {info['tokens']:,} tokens; {args.steps} steps = "
            f"{plain[0]['real'] / info['tokens']:.0f} passes over them in every variant."
        ),
        "",
        (
            "tokens/s = real (non-padding) training tokens / seconds from the Trainer's train begin to the last optimizer "
            "step, the same for every variant (medtune: rebuilt from metrics.jsonl, logging_steps=1; plain: its own step "
            "log). No eval pass anywhere (dataset.eval_fraction=0; the plain script has no eval set)."
        ),
        "",
        "| variant | per step | real tokens | padding | tokens/s (median) | vs plain | runs (tokens/s) "
        "| mean loss, first -> last 8 steps |",
        "|---|---|---:|---:|---:|---:|---|---|",
        *(
            f"| {n} | {unit[n]} | {rs[0]['real']:,} | {pad[n]:.1%} | {med[n]:.0f} | {ratio[n]:.2f}x | "
            f"{', '.join(str(round(r['wall'])) for r in rs)} | {rs[0]['loss'][0]:.3f} -> {rs[0]['loss'][1]:.3f} |"
            for n, rs in results.items()
        ),
        "",
        "Commands (`<run dir>`: a fresh folder under --work-dir for each run):",
        "",
        *(f"- {n}: `{rs[0]['cmd']}`" for n, rs in results.items()),
        "",
        "Checks:",
        "",
        f"- medtune (random sampling) drew {'the same' if same else 'DIFFERENT'} batches as the plain script "
        "(per-step real token counts compared).",
        *(
            f"- {n}: {info[n]['rows']} rows of {info[n]['row_tokens']:.0f} tokens on average; the Trainer counted "
            f"{results[n][0]['counted']:,} tokens for {sum(info[n]['real']):,} real ones "
            f"({results[n][0]['counted'] / sum(info[n]['real']) - 1:+.1%}: with packing medtune sets "
            "`include_num_input_tokens_seen='all'`, which also counts the pad tails `PackedCollator` adds to even out "
            f"a step's rows); the per-step counts {'match' if all(r['per_step'] == info[n]['counted'] for r in results[n]) else 'DO NOT match'} "
            "this layout, so the real counts used here are exact."
            for n in packs
        ),
        "- padding: exact for packed layouts; for random and group_by_length an expectation over 500 simulated epochs "
        f"of transformers' samplers (the plain script's collator measured {plain[0]['pad']:.1%}).",
        "",
        "Reading:",
        "",
        f"- noise: one variant's runs differ by up to {spread:.0%} (fastest / slowest - 1) with no other process busy; "
        "differences between medians well inside that are not meaningful.",
        f"- medtune without packing: {ratio['medtune']:.2f}x the plain script's tokens/s on the same data and settings.",
        "- packing: " + ", ".join(f"{b}-token rows {ratio[n]:.2f}x" for n, (b, _) in packs.items()) + ". It removes "
        f"the padding ({info['random']:.0%} of the tokens computed for random 8-example batches, {info['width']:.0f} "
        "tokens wide on average), but SDPA on a CPU computes each row's full row x row attention under a "
        "block-diagonal mask (the mask does not make it cheaper), so attention work per token grows with the row "
        "length: " + ", ".join(f"{b / info['width']:.1f}x" for b, _ in packs.values()) + " that of the padded "
        "batches. In this tiny model (hidden size 128) attention is a large share of a step: long rows cancel what "
        "packing saves; rows just longer than the longest example keep the saving.",
        f"- group_by_length: transformers' sampler sorts megabatches of min(n // (4 x batch), 50) = "
        f"{max(1, min(info['examples'] // 32, 50))} batch here, i.e. only within a batch, so padding stays "
        f"{info['group_by_length']:.0%} (random {info['random']:.0%}) and there is nothing to save; medtune's own "
        "`LengthGroupedSampler` (`medtune.data.packing`, 50-batch megabatches) is not what "
        "`train.sampling=group_by_length` uses.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
