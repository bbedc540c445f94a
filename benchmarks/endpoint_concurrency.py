"""eval.backend=endpoint with 1 vs 8 requests in flight, against medtune's server batching them.

`python -m medtune.llm.server --model smollm2_135m` serves the real embedded SmolLM2-135M-Instruct
(offline); the endpoint backend asks it the 16 bundled English sample questions (prompt=chat, one
worked example as earlier turns, greedy, max_tokens 48), first one request at a time, then 8 at
once, for --repeats rounds (alternating) after one warm-up request. Reported: questions/s of each
(the median round), the ratio, the server's batches, and whether both give the same answers.

    .venv/bin/python benchmarks/endpoint_concurrency.py   # 2-6 minutes on 2 CPU cores; --help for options
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
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def typed(cls, yaml: Path, **overrides):
    from omegaconf import OmegaConf

    from medtune.config.store import register_configs

    register_configs()  # the ${bundled:...} resolver of the sample exams
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(yaml), overrides))


def start_server(cache_dir: Path, max_batch: int, threads: int | None) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        "-m",
        "medtune.llm.server",
        "--model",
        "smollm2_135m",
        "--port",
        "0",
        "--cache-dir",
        str(cache_dir),
        "--max-batch",
        str(max_batch),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = server.stdout.readline()
    if not line.startswith("medtune server: "):
        sys.exit(f"the server did not start:\n{server.stderr.read()[-3000:]}")
    return server, line.split()[-1]


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=10) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight in the concurrent mode")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of (one at a time, concurrent)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="the server's torch threads (OMP_NUM_THREADS; default: torch's choice); 1 on a busy machine",
    )
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "endpoint_concurrency.md")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from medtune.config.exam_schema import EndpointConfig, EvalConfig, ExamConfig
    from medtune.config.schema import PromptConfig
    from medtune.exam.loading import load_exam
    from medtune.exam.prompting import exam_prompt, read_fewshot
    from medtune.exam.scoring import score_response
    from medtune.llm.endpoint import EndpointBackend

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    exam = typed(ExamConfig, REPO / "conf/exam/sample_en.yaml")
    prompt = typed(PromptConfig, REPO / "conf/prompt/chat.yaml")
    questions = load_exam(exam)
    shots = read_fewshot(exam.fewshot_path, exam.language, exam.english)[:1]
    prompts = [exam_prompt(prompt, q, shots) for q in questions]
    settings = EvalConfig(max_new_tokens=args.max_tokens, do_sample=False)

    server, url = start_server(args.cache_dir, args.concurrency, args.threads)
    modes = {"one at a time": 1, f"{args.concurrency} in flight": args.concurrency}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    batches: dict[str, list[int]] = {mode: [] for mode in modes}
    texts: dict[str, list[str]] = {}
    try:
        warm = EndpointBackend(EndpointConfig(url=url, concurrency=1), settings, prompt)
        warm.generate(prompts[:1], lambda *_: None, progress=False)  # the first forward pass is slow
        for round_number in range(args.repeats):
            for mode, concurrency in modes.items():
                backend = EndpointBackend(EndpointConfig(url=url, concurrency=concurrency), settings, prompt)
                answers: dict[int, str] = {}
                before, tick = server_stats(url)["batches"], time.perf_counter()
                backend.generate(prompts, lambda i, t, answers=answers: answers.update(zip(i, t)), progress=False)
                seconds[mode].append(time.perf_counter() - tick)
                batches[mode].append(server_stats(url)["batches"] - before)
                texts.setdefault(mode, [answers[i] for i in range(len(prompts))])
                print(f"round {round_number + 1}, {mode}: {seconds[mode][-1]:.1f} s", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)

    n = len(prompts)
    rows = [
        (
            mode,
            modes[mode],
            statistics.median(seconds[mode]),
            n / statistics.median(seconds[mode]),
            statistics.median(batches[mode]),
        )
        for mode in modes
    ]
    ratio = rows[1][3] / rows[0][3]
    one, many = texts.values()
    parsed = [[score_response(q, t).parsed for q, t in zip(questions, mode_texts)] for mode_texts in (one, many)]
    same_texts = sum(a == b for a, b in zip(one, many))
    same_answers = sum(a == b for a, b in zip(*parsed))

    table = Table(title=f"eval.backend=endpoint, SmolLM2-135M-Instruct served by medtune, {n} questions")
    for column in ("mode", "concurrency", "seconds", "questions/s", "server batches"):
        table.add_column(column, justify="right")
    for mode, concurrency, secs, qps, nbatches in rows:
        table.add_row(mode, str(concurrency), f"{secs:.1f}", f"{qps:.2f}", f"{nbatches:g}")
    (console := Console()).print(table)
    console.print(
        f"{rows[1][0]} / one at a time: {ratio:.2f}x; identical texts {same_texts}/{n}, "
        f"identical parsed answers {same_answers}/{n}"
    )

    import torch

    command = shlex.join(["python", "benchmarks/endpoint_concurrency.py", *sys.argv[1:]])
    lines = [
        "# Endpoint backend: one request at a time vs concurrent requests",
        "",
        f"Command: `{command}`",
        "",
        (
            f"Machine: {os.cpu_count()} CPUs (the server's torch uses {args.threads or torch.get_num_threads()} "
            f"thread(s)), torch "
            f"{torch.__version__}; 1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
            "(other processes share these cores: timings are noisy)."
        ),
        "",
        (
            f"Settings: `python -m medtune.llm.server --model smollm2_135m --max-batch {args.concurrency}` (float32, CPU) "
            f"answering eval.backend=endpoint (api=chat) on exam=sample_en ({n} questions), prompt=chat with 1 worked "
            f"example, greedy, max_tokens={args.max_tokens}; one warm-up request, then {args.repeats} alternating "
            "round(s) of both modes; the median round is reported."
        ),
        "",
        "| mode | concurrency | seconds | questions/s | server batches |",
        "|---|---:|---:|---:|---:|",
        *(f"| {m} | {c} | {s:.1f} | {q:.2f} | {b:g} |" for m, c, s, q, b in rows),
        "",
        "Rounds (seconds): " + "; ".join(f"{m}: {', '.join(f'{s:.1f}' for s in seconds[m])}" for m in modes),
        "",
        f"Ratio {rows[1][0]} / one at a time: **{ratio:.2f}x**.",
        "",
        f"Identical response texts: **{same_texts}/{n}**; identical parsed answers: **{same_answers}/{n}**.",
        "",
    ]
    differ = [i for i in range(n) if one[i] != many[i]]
    for i in differ[:1]:
        lines += [
            f"First difference: question {questions[i].qid}:",
            f"- one at a time: `{one[i]!r}`",
            f"- {rows[1][0]}: `{many[i]!r}`",
            "",
        ]
    lines.append(
        f"Meaning: with {args.concurrency} requests in flight the server batches those that arrive together "
        f"({rows[1][4]:g} generations for {n} questions instead of {rows[0][4]:g}), answering {ratio:.2f}x as many "
        "questions per second on this CPU; "
        + (
            "every answer is the same as one at a time."
            if not differ
            else f"{len(differ)} of {n} texts differ (left padding in a batch changes float rounding, and greedy decoding "
            f"can then pick another token); {same_answers}/{n} parsed answers agree. For answers identical to "
            "eval.backend=hf with eval.batch_size=1, use eval.endpoint.concurrency=1."
        )
    )
    lines += ["", f"Total run time: {time.perf_counter() - started:.0f} s (server start and warm-up included).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
