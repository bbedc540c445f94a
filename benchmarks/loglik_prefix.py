"""Log-likelihood scoring with the prompt shared across choices vs one row per choice: speed and agreement.

SmolLM2-135M-Instruct (the embedded real model, converted once under --cache-dir) scores the 16
questions of exam=sample_en (5 choices each) with prompt=medpalm2_cot_en and 1 worked example,
as `evaluate.py eval=loglik` does. For each target (letter: ` c` summed; text: ` c. <choice>`
length-normalised) the old method (`choice_logprobs_unshared`: prompt + choice per row, a batch of
5) and the shared one (`choice_logprobs`: the prompt once, the choices on its cache) take turns
question by question (after one warm-up question each), then are compared score by score and pick by pick;
`score_choices(..., both)` (letter and text from one prompt pass) is timed too. The report ends
with the letters each target picked against chance (`letter_distribution`).

    .venv/bin/python benchmarks/loglik_prefix.py   # about 3 minutes on 2 idle CPU cores; --help for options
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generation_batching import others_cpu_seconds

REPO = Path(__file__).resolve().parents[1]


def load_setup(model: str, exam: str, prompt: str, shots: int, cache_dir: Path):
    """(prompt config, questions, prompts, model, tokenizer) from the conf/ options, as evaluate.py builds them.

    The YAML files are read directly (not through evaluate.py's task), left-padding tokenizer, eval mode."""
    from omegaconf import OmegaConf

    from medtune.config.exam_schema import ExamConfig
    from medtune.config.schema import AdapterConfig, HardwareConfig, ModelConfig, PromptConfig
    from medtune.config.store import register_configs
    from medtune.exam.loading import load_exam
    from medtune.exam.prompting import build_prompt, read_fewshot
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer

    register_configs()  # the ${bundled:...} resolver of the bundled exams

    def typed(cls, group: str, name: str):
        return OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(REPO / "conf" / group / f"{name}.yaml"))
        )

    model_cfg, exam_cfg, prompt_cfg = (
        typed(ModelConfig, "model", model),
        typed(ExamConfig, "exam", exam),
        typed(PromptConfig, "prompt", prompt),
    )
    questions = load_exam(exam_cfg)
    fewshot = read_fewshot(exam_cfg.fewshot_path, exam_cfg.language, exam_cfg.english)[:shots]
    checkpoint = resolve_checkpoint(model_cfg, cache_dir)
    tokenizer = load_tokenizer(checkpoint, model_cfg, padding_side="left")
    loaded = load_base_model(checkpoint, model_cfg, AdapterConfig(name="none"), HardwareConfig(name="cpu")).eval()
    prompts = [build_prompt(prompt_cfg, q, fewshot, tokenizer) for q in questions]
    return prompt_cfg, questions, prompts, loaded, tokenizer


def machine_line(others_before: float) -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, torch threads: {torch.get_num_threads()}; "
        f"1-minute load average at the end {load:.2f}; other processes used "
        f"{max(0.0, others_cpu_seconds() - others_before):.1f} CPU-seconds during the run (near 0 = idle machine; "
        "competing processes slow both methods and distort the ratio)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m", help="a conf/model option (default: smollm2_135m)")
    parser.add_argument("--exam", default="sample_en")
    parser.add_argument("--prompt", default="medpalm2_cot_en")
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--questions", type=int, default=None, help="the first N questions (default: all)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads (default 1: steady when other processes share the CPU; 0 = torch's choice)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "loglik_prefix.md")
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from medtune.config.eval_schema import LoglikTarget
    from medtune.data.templates import encode_prompt
    from medtune.exam.scoring import score_letters
    from medtune.llm.loglik import (
        choice_logprobs,
        choice_logprobs_unshared,
        continuations,
        letter_distribution,
        pick_choices,
        score_choices,
    )
    from medtune.vocabulary import Status

    started, others = time.perf_counter(), others_cpu_seconds()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    prompt_cfg, questions, prompts, model, tokenizer = load_setup(
        args.model, args.exam, args.prompt, args.shots, args.cache_dir
    )
    questions, prompts = questions[: args.questions], prompts[: args.questions]
    prompts = [f"{p}{prompt_cfg.answer_marker}" for p in prompts]
    lengths = [len(encode_prompt(tokenizer, p)) for p in prompts]
    console = Console()

    rows, agreement, picks, shared_scores = [], [], {}, {}
    for target in (LoglikTarget.letter, LoglikTarget.text):
        normalise = target == LoglikTarget.text
        timings = interleaved(
            {
                method: lambda i, fn=fn, target=target, normalise=normalise: fn(
                    model, tokenizer, prompts[i], continuations(questions[i], target), normalise
                )
                for method, fn in (("unshared", choice_logprobs_unshared), ("shared", choice_logprobs))
            },
            len(questions),
        )
        rows += [(target.value, method, seconds) for method, (seconds, _) in timings.items()]
        scores = {method: results for method, (_, results) in timings.items()}
        picked = {m: [pick_choices(q, s) for q, s in zip(questions, scores[m])] for m in scores}
        correct = {
            m: sum(score_letters(q, p).status == Status.correct for q, p in zip(questions, picked[m])) for m in picked
        }
        agreement.append(
            (
                target.value,
                largest_difference(scores["unshared"], scores["shared"]),
                sum(a == b for a, b in zip(picked["unshared"], picked["shared"])),
                correct["unshared"],
                correct["shared"],
            )
        )
        picks[target.value], shared_scores[target.value] = picked["shared"], scores["shared"]
        console.print(f"{target.value}: " + ", ".join(f"{m} {s:.1f} s" for m, (s, _) in timings.items()))
    ((seconds, both),) = interleaved(
        {"both": lambda i: score_choices(model, tokenizer, prompts[i], questions[i], LoglikTarget.both)}, len(questions)
    ).values()
    rows.append(("both", "shared", seconds))
    console.print(f"both shared: {seconds:.1f} s")
    both_difference = max(
        largest_difference([b.letter for b in both], shared_scores["letter"]),
        largest_difference([b.text for b in both], shared_scores["text"]),
    )

    n = len(questions)
    choices = [len(q.choices) for q in questions]
    distributions = {target: letter_distribution(picked, choices) for target, picked in picks.items()}
    distributions["gold"] = letter_distribution([q.answers for q in questions], choices)
    ratios = {target: dict(rows_of(rows, target)) for target in ("letter", "text")}
    command = shlex.join(["python", "benchmarks/loglik_prefix.py", *sys.argv[1:]])
    lines = [
        "# Log-likelihood scoring: shared prompt prefix vs one row per choice",
        "",
        f"Command: `{command}`",
        "",
        machine_line(others),
        "",
        (
            f"Settings: model={args.model} ({sum(p.numel() for p in model.parameters()):,} parameters, "
            f"{next(model.parameters()).dtype}), exam={args.exam} ({n} questions, {min(choices)}-{max(choices)} choices), "
            f"prompt={args.prompt} + `{prompt_cfg.answer_marker}`, {args.shots} worked example(s); prompts of "
            f"{min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / n:.0f}). The methods take turns question by question "
            "after one warm-up question each."
        ),
        "",
        "| target | method | questions | seconds | questions/s | s/question |",
        "|---|---|---:|---:|---:|---:|",
        *(f"| {t} | {m} | {n} | {s:.1f} | {n / s:.2f} | {s / n:.2f} |" for t, m, s in rows),
        "",
        *(
            f"Speed-up shared / unshared, {t} target: **{r['unshared'] / r['shared']:.2f}x**."
            for t, r in ratios.items()
        ),
        "",
        "| target | largest abs. log-prob difference | identical picks | correct (unshared) | correct (shared) |",
        "|---|---:|---:|---:|---:|",
        *(f"| {t} | {d:.2e} | {s}/{n} | {cu}/{n} | {cs}/{n} |" for t, d, s, cu, cs in agreement),
        "",
        (
            f"`score_choices(..., both)`: letter and text scores from one prompt pass, largest difference from the "
            f"separate shared calls {both_difference:.2e}."
        ),
        "",
        "Letters picked (shared method) against chance (`letter_distribution`; gold = the exam's own answers):",
        "",
        "| letter | " + " | ".join(distributions) + " | chance |",
        "|---|" + "---:|" * (len(distributions) + 1),
        *(
            f"| {letter} | "
            + " | ".join(f"{d['share'].get(letter, 0.0):.3f}" for d in distributions.values())
            + f" | {distributions['gold']['chance'].get(letter, 0.0):.3f} |"
            for letter in distributions["gold"]["chance"]
        ),
        "| bias ratio (max share / chance) | "
        + " | ".join(f"{d['bias_ratio']:.2f}" for d in distributions.values())
        + " | 1.00 |",
        "| chi-square | " + " | ".join(f"{d['chi_square']:.1f}" for d in distributions.values()) + " | 0 |",
        "",
        meaning(ratios, agreement, distributions, n),
        "",
        f"Total run time: {time.perf_counter() - started:.0f} s (model loading and warm-ups included).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    console.print("\n".join(lines))
    console.print(f"wrote {args.out}")
    return 0


def interleaved(methods: dict[str, Callable[[int], Any]], n: int) -> dict[str, tuple[float, list]]:
    """{name: (seconds, results)} of each method over questions 0..n-1, after one warm-up call each.

    The methods take turns question by question, so a change in the machine's load hits them alike."""
    for method in methods.values():
        method(0)
    seconds, results = dict.fromkeys(methods, 0.0), {name: [] for name in methods}
    for i in range(n):
        for name, method in methods.items():
            tick = time.perf_counter()
            results[name].append(method(i))
            seconds[name] += time.perf_counter() - tick
    return {name: (seconds[name], results[name]) for name in methods}


def largest_difference(first: list[list[float]], second: list[list[float]]) -> float:
    return max(abs(a - b) for x, y in zip(first, second, strict=True) for a, b in zip(x, y, strict=True))


def rows_of(rows: list[tuple[str, str, float]], target: str) -> list[tuple[str, float]]:
    return [(method, seconds) for t, method, seconds in rows if t == target]


def meaning(ratios: dict, agreement: list, distributions: dict, n: int) -> str:
    speed = " and ".join(
        f"{r['unshared'] / r['shared']:.1f}x as many questions per second with the {t} target"
        for t, r in ratios.items()
    )
    same = all(s == n for _, _, s, _, _ in agreement)
    letter = distributions["letter"]
    return (
        f"Meaning: running the prompt once per question instead of once per choice answers {speed} (the letters "
        "are one token each, so the prompt pass is all there is; the texts add one short batch of their own tokens "
        "on the cached prompt); "
        + (
            "the scores agree to float noise and every pick is the same. "
            if same
            else "the scores agree to float noise but some near-tied picks differ (see above). "
        )
        + f"With the letter target the model picked `{letter['most_picked']}` for "
        f"{letter['share'][letter['most_picked']]:.0%} of its picks (bias ratio {letter['bias_ratio']:.2f}; "
        "1.00 = no position preference), while the gold letters are spread evenly."
    )


if __name__ == "__main__":
    raise SystemExit(main())
