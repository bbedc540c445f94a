"""CPU training speed on real weights: medtune (default, and each feature on its own) against a plain
transformers + PEFT script and TRL's SFTTrainer (with and without padding_free), on the same token ids.

    bash benchmarks/train_speed/setup_trl.sh                     # once: TRL in its own venv (.venv-trl)
    .venv/bin/python benchmarks/train_speed/run.py               # SmolLM2-135M and Gemma-3-270M, ~1-2 h on 2 idle cores
    .venv/bin/python benchmarks/train_speed/run.py --smoke       # seconds: the tiny model, 2 steps, to check it runs

What every contender trains: the first `steps x micro_batch` MedQA questions ($MEDTUNE_SHARED/data/medqa_en;
the bundled English exam when that is absent) in the model's prompt (SmolLM2: its chat template;
Gemma-3-270M, a base model: Alpaca), tokenized once by medtune's `encode_records` (input <= 512, response
<= 128 tokens, loss on the response only). medtune's train.py reads the same records and tokenizes them
the same way; the peers read the token ids from a file, and the per-step token counts are checked equal.
LoRA r 8, alpha 8, no dropout, q_proj / v_proj; batch 4, no accumulation, lr 1e-3 constant, AdamW, seed
42, batches in file order (sequential), float32 unless a contender says bf16, the same thread count.

Runs alternate: each repeat runs every contender once, in a rotated order, each a fresh process after the
machine is quiet. tokens/s = real (non-padding) tokens of steps 2..N over the seconds inside those
optimizer steps (the first step warms up allocators; model loading is not counted); the median over
repeats is reported, with peak RSS (the process's maximum resident memory) and the loss of every step.
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
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/: the quiet-machine helpers

from throughput_vs_plain import others_cpu_seconds, wait_quiet  # noqa: E402

TRL_PYTHON = Path(os.environ.get("TRL_VENV", HERE / ".venv-trl")) / "bin" / "python"
PROMPTS = {"smollm2_135m": "chat", "gemma3_270m": "alpaca", "tiny": "alpaca"}
LIMITS = (512, 128)


@dataclass
class Contender:
    name: str
    kind: str  # medtune | plain | trl
    overrides: list[str] = field(default_factory=list)  # train.py overrides (medtune)
    bf16: bool = False
    padding_free: bool = False
    feature: str = ""  # what it shows, for the report


CONTENDERS = [
    Contender("medtune (default)", "medtune", feature="target-only loss + padding-free batches (per-example SDPA)"),
    Contender("medtune, full logits", "medtune", ["train.loss=full_logits"], feature="padding-free batches alone"),
    Contender("medtune, padded batches", "medtune", ["train.padding_free=false"], feature="target-only loss alone"),
    Contender(
        "medtune, both off",
        "medtune",
        ["train.loss=full_logits", "train.padding_free=false"],
        feature="the previous release's path",
    ),
    Contender("medtune bf16", "medtune", ["hardware=cpu_bf16"], bf16=True, feature="default + bf16 autocast"),
    Contender("plain transformers+peft", "plain", feature="Trainer + DataCollatorForSeq2Seq"),
    Contender("TRL SFTTrainer", "trl", feature="completion-only loss, no activation checkpointing"),
    Contender("TRL SFTTrainer padding_free", "trl", padding_free=True, feature="padding_free=True"),
    Contender("TRL SFTTrainer bf16", "trl", bf16=True, feature="bf16=True"),
]


def prepare(model: str, steps: int, micro: int, cache: Path, work: Path, bundled: bool = False) -> dict:
    """The records file medtune reads and the token-id file the peers read, from the same records."""
    from omegaconf import OmegaConf

    from medtune.config.schema import ModelConfig, PromptConfig
    from medtune.config.store import register_configs
    from medtune.data.readers import read_records
    from medtune.data.tokenize import encode_records
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    register_configs()

    def typed(cls, group, name):
        return OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(REPO / "conf" / group / f"{name}.yaml"))
        )

    model_cfg, prompt = typed(ModelConfig, "model", model), typed(PromptConfig, "prompt", PROMPTS[model])
    checkpoint = resolve_checkpoint(model_cfg, cache)
    tokenizer = load_tokenizer(checkpoint, model_cfg)
    shared = Path(os.environ.get("MEDTUNE_SHARED", REPO.parent / "shared")) / "data" / "medqa_en" / "medqa_en.jsonl"
    own = REPO / "src" / "medtune" / "resources" / "sample" / "exam_en.jsonl"
    source = shared if shared.is_file() and not bundled else own
    lines = source.read_text(encoding="utf-8").splitlines()[: steps * micro]
    folder = work / model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "records.jsonl").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    examples, stats = encode_records(read_records(folder / "records.jsonl"), tokenizer, prompt, *LIMITS)
    if stats.kept != len(lines):
        sys.exit(f"{model}: {len(lines) - stats.kept} of {len(lines)} records did not fit {LIMITS}; raise the limits")
    with (folder / "examples.jsonl").open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps({"input_ids": example["input_ids"], "labels": example["labels"]}) + "\n")
    lengths = [len(e["input_ids"]) for e in examples]
    targets = [sum(label != -100 for label in e["labels"]) for e in examples]
    return {
        "model": model,
        "prompt": PROMPTS[model],
        "checkpoint": str(checkpoint),
        "source": str(source),
        "records": str(folder / "records.jsonl"),
        "examples": str(folder / "examples.jsonl"),
        "mean_tokens": statistics.mean(lengths),
        "mean_targets": statistics.mean(targets),
        "per_step_real": [sum(lengths[i : i + micro]) for i in range(0, steps * micro, micro)],
    }


def medtune_command(data: dict, c: Contender, args, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "train.py",
        f"model={data['model']}",
        f"prompt={data['prompt']}",
        "dataset=exam_jsonl",
        f"dataset.path={data['records']}",
        "dataset.eval_fraction=0",
        "adapter=lora",
        "hardware=cpu",
        "logger=none",
        "exam_eval.enabled=false",
        f"train.max_steps={args.steps}",
        f"train.micro_batch_size={args.micro_batch}",
        f"train.global_batch_size={args.micro_batch}",
        "train.learning_rate=1e-3",
        "train.lr_scheduler=constant",
        "train.warmup_steps=0",
        "train.sampling=sequential",
        "train.logging_steps=1",
        "train.eval_steps=0",
        "train.save_steps=0",
        f"train.max_input_tokens={LIMITS[0]}",
        f"train.max_target_tokens={LIMITS[1]}",
        "seed=42",
        *c.overrides,
        f"paths.cache_dir={args.cache_dir}",
        f"hydra.run.dir={run_dir}",
    ]


def medtune_result(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps, seen = [], 0
    for row in rows:
        if "train/loss" not in row:
            continue
        tokens = row["train/tokens_seen"] - seen
        seen = row["train/tokens_seen"]
        speed = row.get("train/tokens_per_second")
        steps.append({"step": row["step"], "real_tokens": tokens, "seconds": tokens / speed, "loss": row["train/loss"]})
    summary = json.loads((run_dir / "train_summary.json").read_text())
    return {"steps": steps, "peak_rss_mib": summary["train/peak_memory_mib"]}


def peer_command(data: dict, c: Contender, args, run_dir: Path) -> list[str]:
    settings = {
        "checkpoint": data["checkpoint"],
        "examples": data["examples"],
        "steps": args.steps,
        "micro_batch": args.micro_batch,
        "lr": 1e-3,
        "seed": 42,
        "threads": args.threads,
        "lora": {"r": 8, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "v_proj"]},
        "bf16": c.bf16,
        "padding_free": c.padding_free,
        # TRL's SFTConfig turns activation checkpointing on by default (~20% more compute); nobody else
        # recomputes here, so TRL runs without it too: its fastest configuration on this machine
        "gradient_checkpointing": False,
    }
    (run_dir / "settings.json").write_text(json.dumps(settings, indent=1))
    python = str(TRL_PYTHON) if c.kind == "trl" else sys.executable
    script = HERE / ("trl_contender.py" if c.kind == "trl" else "plain_contender.py")
    return [python, str(script), "--settings", str(run_dir / "settings.json"), "--out", str(run_dir / "result.json")]


def run_once(data: dict, c: Contender, args, env) -> dict:
    run_dir = (
        args.work_dir
        / "runs"
        / f"{data['model']}-{''.join(ch if ch.isalnum() else '_' for ch in c.name)}-{time.time_ns()}"
    )
    run_dir.mkdir(parents=True)
    command = medtune_command(data, c, args, run_dir) if c.kind == "medtune" else peer_command(data, c, args, run_dir)
    if not args.smoke:
        wait_quiet(max_load=None, timeout=args.wait)
    others = others_cpu_seconds()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    others = others_cpu_seconds() - others
    (run_dir / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        sys.exit(
            f"{c.name} failed ({proc.returncode}); log in {run_dir / 'log.txt'}:\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    result = medtune_result(run_dir) if c.kind == "medtune" else json.loads((run_dir / "result.json").read_text())
    timed = result["steps"][1:] or result["steps"]  # step 1 warms up
    result["tokens_per_second"] = sum(s["real_tokens"] for s in timed) / sum(s["seconds"] for s in timed)
    result["others_cpu_seconds"] = others
    result["command"] = shlex.join(["python", *command[1:]]).replace(str(REPO) + "/", "")
    return result


def report(models: list[dict], results: dict, contenders: list[Contender], args, started: float, loads) -> str:
    import torch

    lines = [
        "# Training speed on CPU, real weights: medtune against plain transformers + PEFT and TRL",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/train_speed/run.py', *sys.argv[1:]])}`",
        "",
        (
            f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads in every run; "
            f"1-min load {loads[0]:.2f} at the start, {loads[1]:.2f} at the end; {args.repeats} alternating repeats "
            f"in a rotated order, {(time.perf_counter() - started) / 60:.0f} min in all. Each run waited for no "
            "other busy process; the CPU-seconds others used during a run are in the JSON."
        ),
        "",
        (
            f"Every contender: LoRA r 8 / alpha 8 / no dropout on q_proj, v_proj; batch {args.micro_batch} examples, "
            f"{args.steps} steps, lr 1e-3 constant, AdamW, seed 42, the same batches in the same order. "
            "tokens/s = real (non-padding) tokens of steps 2..N / seconds inside those steps (median over repeats). "
            "Peak RSS: the process's maximum resident memory (model, data and the steps)."
        ),
    ]
    for data in models:
        rs = results[data["model"]]
        med = {c.name: statistics.median(r["tokens_per_second"] for r in rs[c.name]) for c in contenders if rs[c.name]}
        rss = {c.name: statistics.median(r["peak_rss_mib"] for r in rs[c.name]) for c in contenders if rs[c.name]}
        plain = med.get("plain transformers+peft")
        trl_fp32 = {n: v for n, v in med.items() if n.startswith("TRL") and "bf16" not in n}
        trl_best = max(trl_fp32.values()) if trl_fp32 else None
        reference = rs.get("plain transformers+peft") or rs[contenders[0].name]
        ref_losses = [s["loss"] for s in reference[0]["steps"]]
        lines += [
            "",
            f"## {data['model']} (prompt={data['prompt']})",
            "",
            (
                f"Data: {args.steps * args.micro_batch} questions of `{Path(data['source']).name}`, "
                f"{data['mean_tokens']:.0f} tokens per example on average, {data['mean_targets']:.1f} of them "
                "response (loss) tokens."
            ),
            "",
            "| contender | what it shows | tokens/s (median) | vs plain | vs TRL's best fp32 | peak RSS MiB "
            "| runs (tokens/s) | loss step 1 -> last | max loss diff vs plain |",
            "|---|---|---:|---:|---:|---:|---|---|---:|",
        ]
        for c in contenders:
            if not rs[c.name]:
                continue
            losses = [s["loss"] for s in rs[c.name][0]["steps"]]
            diff = max(abs(a - b) for a, b in zip(losses, ref_losses)) if len(losses) == len(ref_losses) else None
            speed = med[c.name]
            runs = ", ".join(f"{r['tokens_per_second']:.0f}" for r in rs[c.name])
            lines.append(
                f"| {c.name} | {c.feature} | {med[c.name]:.0f} | {times(speed, plain)} | {times(speed, trl_best)} | "
                f"{rss[c.name]:,.0f} | {runs} | {losses[0]:.4f} -> {losses[-1]:.4f} | "
                f"{'-' if diff is None else f'{diff:.1e}'} |"
            )
        same_tokens = all(
            [s["real_tokens"] for s in r["steps"]] == data["per_step_real"][: len(r["steps"])]
            for runs in rs.values()
            for r in runs
        )
        lines += [
            "",
            f"Same token ids: every run's per-step real token counts {'equal' if same_tokens else 'DO NOT equal'} "
            "the token-id file's (medtune tokenized the records itself).",
            "",
            "Loss per step (first repeat):",
            "",
            "| step | " + " | ".join(c.name for c in contenders if rs[c.name]) + " |",
            "|---:|" + "---:|" * sum(1 for c in contenders if rs[c.name]),
        ]
        for i in range(args.steps):
            cells = [
                f"{rs[c.name][0]['steps'][i]['loss']:.4f}" if i < len(rs[c.name][0]["steps"]) else ""
                for c in contenders
                if rs[c.name]
            ]
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
        lines += ["", "Commands:", ""] + [f"- {c.name}: `{rs[c.name][0]['command']}`" for c in contenders if rs[c.name]]
    return "\n".join(lines) + "\n"


def times(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def plot(models: list[dict], results: dict, contenders: list[Contender], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, data in zip(axes[0], models):
        for c in contenders:
            runs = results[data["model"]][c.name]
            if runs:
                steps = runs[0]["steps"]
                ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], marker=".", label=c.name)
        ax.set_title(f"{data['model']}: training loss per step")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def portable(value):
    """The report's copy of `value` with this machine's paths written relative to the repo (or to the
    shared folder beside it, as ../shared/...): a committed report names no machine's directories."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return os.path.relpath(value, REPO)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2_135m,gemma3_270m")
    parser.add_argument("--contenders", default="", help="comma-separated names (default: all; TRL ones need its venv)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--wait", type=float, default=600.0, help="at most this long waiting for quiet before a run")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/medtune_train_speed"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_speed_cpu.md")
    parser.add_argument("--smoke", action="store_true", help="the tiny model, 2 steps, 1 repeat: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.steps, args.repeats, args.micro_batch = "tiny", 2, 1, 2
    args.cache_dir = args.cache_dir.resolve()
    wanted = [n.strip() for n in args.contenders.split(",") if n.strip()]
    contenders = [c for c in CONTENDERS if (not wanted or c.name in wanted)]
    if not TRL_PYTHON.exists():
        skipped = [c.name for c in contenders if c.kind == "trl"]
        contenders = [c for c in contenders if c.kind != "trl"]
        if skipped:
            print(
                f"TRL's venv is missing ({TRL_PYTHON}): run bash benchmarks/train_speed/setup_trl.sh; "
                f"skipping {', '.join(skipped)}",
                file=sys.stderr,
            )
    if args.smoke:
        contenders = [
            c for c in contenders if c.name in ("medtune (default)", "plain transformers+peft", "TRL SFTTrainer")
        ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "disabled",
    }
    models = [
        prepare(m, args.steps, args.micro_batch, args.cache_dir, args.work_dir, bundled=args.smoke)
        for m in args.models.split(",")
    ]
    results: dict = {m["model"]: {c.name: [] for c in contenders} for m in models}
    loads, started = [os.getloadavg()[0]], time.perf_counter()
    for rep in range(args.repeats):
        for data in models:
            order = contenders[rep % len(contenders) :] + contenders[: rep % len(contenders)]
            for c in order:
                r = run_once(data, c, args, env)
                results[data["model"]][c.name].append(r)
                print(
                    f"[{rep + 1}/{args.repeats}] {data['model']} {c.name}: {r['tokens_per_second']:.0f} tokens/s, "
                    f"peak RSS {r['peak_rss_mib']:,.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
    loads.append(os.getloadavg()[0])
    text = report(models, results, contenders, args, started, loads)
    if args.smoke:
        print(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"models": portable(models), "results": results}, indent=1))
    plot(models, results, contenders, args.out.with_name(args.out.stem + "_losses.png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
