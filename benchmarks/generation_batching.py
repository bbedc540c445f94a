"""Batched vs one-at-a-time exam generation: throughput of `generate_responses` and left-padding correctness.

The tiny model (built on first use under --cache-dir) answers the IgakuQA 2018 questions (277 with the
default exam filter) with prompt A (medpalm2_cot) and 1 worked example, greedy. Each mode is timed after
one warm-up batch; the batched and the one-at-a-time texts are then compared question by question.

    .venv/bin/python benchmarks/generation_batching.py   # about 70 s on 2 idle CPU cores; --help for options

Reads $MEDTUNE_SHARED/data/igakuqa (MEDTUNE_SHARED defaults to ../shared, relative to the repo root).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def typed(cls, yaml: Path, **overrides):
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(yaml), overrides))


def others_cpu_seconds() -> float:
    """CPU-seconds used so far by every process but this one (Linux /proc/stat; 0 elsewhere)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK") - sum(os.times()[:2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--questions", type=int, default=None, help="the first N questions (default: all 277)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "generation_batching.md")
    args = parser.parse_args()

    shared = (REPO / os.environ.get("MEDTUNE_SHARED", "../shared")).resolve()
    if not (shared / "data" / "igakuqa").is_dir():
        sys.exit(f"IgakuQA not found at {shared}/data/igakuqa; set MEDTUNE_SHARED to the folder that holds data/.")

    import torch
    from rich.console import Console
    from rich.table import Table

    from medtune.config.exam_schema import EvalConfig, ExamConfig
    from medtune.config.schema import AdapterConfig, HardwareConfig, ModelConfig, PromptConfig
    from medtune.exam.loading import load_exam
    from medtune.exam.prompting import build_prompt, read_fewshot
    from medtune.llm.generation import generate_responses
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer

    started, others = time.perf_counter(), others_cpu_seconds()
    if args.threads:
        torch.set_num_threads(args.threads)
    exam = typed(ExamConfig, REPO / "conf/exam/igakuqa.yaml", path=str(shared / "data" / "igakuqa"))
    prompt = typed(PromptConfig, REPO / "conf/prompt/medpalm2_cot.yaml")
    model_cfg = typed(ModelConfig, REPO / "conf/model/tiny.yaml")
    questions = load_exam(exam)[: args.questions]
    shots = read_fewshot(exam.fewshot_path, exam.language, exam.english)[:1]
    prompts = [build_prompt(prompt, q, shots) for q in questions]

    checkpoint = resolve_checkpoint(model_cfg, args.cache_dir)
    tokenizer = load_tokenizer(checkpoint, model_cfg, padding_side="left")
    model = load_base_model(checkpoint, model_cfg, AdapterConfig(name="none"), HardwareConfig(name="cpu"))
    positions = model.config.max_position_embeddings

    rows, texts = [], {}
    for mode, size in (("one at a time", 1), ("batched", args.batch_size)):
        settings = EvalConfig(batch_size=size, max_new_tokens=args.max_new_tokens, do_sample=False)
        generate_responses(model, tokenizer, prompts[:size], settings, positions, lambda *_: None, progress=False)
        out: dict[int, str] = {}
        tick = time.perf_counter()
        stats = generate_responses(
            model,
            tokenizer,
            prompts,
            settings,
            positions,
            lambda idx, txt, out=out: out.update(zip(idx, txt)),
            progress=False,
        )
        seconds = time.perf_counter() - tick
        rows.append((mode, size, len(prompts), seconds, len(prompts) / seconds, stats.new_tokens))
        texts[mode] = [out[i] for i in range(len(prompts))]
        print(f"{mode}: {seconds:.1f} s", file=sys.stderr)

    (one, batched), ratio = texts.values(), rows[1][4] / rows[0][4]
    differ = [i for i in range(len(prompts)) if one[i] != batched[i]]
    same = len(prompts) - len(differ)

    table = Table(title="generate_responses, tiny model, IgakuQA 2018")
    for column in ("mode", "batch size", "questions", "seconds", "questions/s", "new tokens"):
        table.add_column(column, justify="right")
    for mode, size, n, seconds, qps, new in rows:
        table.add_row(mode, str(size), str(n), f"{seconds:.1f}", f"{qps:.2f}", str(new))
    (console := Console()).print(table)
    console.print(f"batched / one-at-a-time: {ratio:.2f}x; identical responses: {same}/{len(prompts)}")

    command = shlex.join(["python", "benchmarks/generation_batching.py", *sys.argv[1:]])
    lines = [
        "# Generation batching: throughput and left-padding agreement",
        "",
        f"Command: `{command}`",
        "",
        (
            f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, torch threads: {torch.get_num_threads()}; "
            f"other processes used {max(0.0, others_cpu_seconds() - others):.1f} CPU-seconds during the run "
            "(near 0 = idle machine; competing processes distort these timings badly)."
        ),
        "",
        (
            f"Settings: model=tiny ({sum(p.numel() for p in model.parameters()):,} parameters, {model_cfg.dtype.value}), "
            f"prompt={prompt.name}, 1 worked example, greedy, max_new_tokens={args.max_new_tokens}, IgakuQA "
            f"{list(exam.years)} default filter, {len(prompts)} questions; each mode timed after one warm-up batch."
        ),
        "",
        "| mode | batch size | questions | seconds | questions/s | new tokens |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {m} | {b} | {n} | {s:.1f} | {q:.2f} | {t} |" for m, b, n, s, q, t in rows),
        "",
        f"Ratio batched / one-at-a-time: **{ratio:.2f}x**.",
        "",
        f"Identical responses (batched vs one at a time, greedy): **{same}/{len(prompts)}**.",
        "",
    ]
    for i in differ[:1]:  # one example of a difference
        at = next((k for k, (x, y) in enumerate(zip(one[i], batched[i])) if x != y), min(len(one[i]), len(batched[i])))
        lines += [
            f"First difference: question {questions[i].qid}, from character {at}:",
            f"- one at a time: `{one[i][max(0, at - 20) : at + 40]!r}`",
            f"- batched: `{batched[i][max(0, at - 20) : at + 40]!r}`",
            "",
        ]
    lines.append(
        f"Meaning: batches of {args.batch_size} left-padded prompts answer {ratio:.2f}x as many questions per second "
        "as one at a time (the tiny model is overhead-bound, so this measures the batching path, not a real model); "
        + (
            "greedy texts agree for every question, so left padding and its attention mask do not change answers."
            if not differ
            else f"{len(differ)} of {len(prompts)} responses differ, so padding changes some greedy answers (see above)."
        )
    )
    lines += ["", f"Total run time: {time.perf_counter() - started:.0f} s (loading and warm-ups included).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
