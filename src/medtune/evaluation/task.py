"""The evaluate task: questions -> prompts -> responses (or log-likelihoods) -> Algorithm 1 -> metrics.

Every finished batch is appended to `predictions.partial.jsonl`; rerunning the same evaluation in
the same directory answers only the questions still missing. At the end `predictions.jsonl` and
`metrics.json` are written atomically and the partial file is removed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medtune.config.eval_schema import EvalMode, EvalRunConfig
from medtune.config.job import JobContext
from medtune.errors import ConfigError
from medtune.evaluation.exam_loading import load_exam
from medtune.data.templates import require_chat_template, stop_token_ids
from medtune.evaluation.prompting import build_prompt, read_fewshot
from medtune.evaluation.records import prediction_row, read_rows
from medtune.evaluation.scoring import aggregate, score_letters, score_response
from medtune.evaluation.types import ExamQuestion, ScoredAnswer, Status
from medtune.io import append_jsonl, write_json_atomic, write_text_atomic
from medtune.nested import flatten
from medtune.quiet import quiet_third_party
from medtune.reporting.console import console, print_exam_metrics

PARTIAL = "predictions.partial.jsonl"
STATE = "eval_state.json"


def evaluate(cfg: EvalRunConfig, job: JobContext) -> float:
    """The evaluate.py task; returns the accuracy (what a sweeper would maximise), or with eval=judge
    system b's total judge score."""
    metrics = run_evaluation(cfg, job)
    return metrics["objective"] if cfg.eval.mode == EvalMode.judge else metrics["accuracy"]


def output_dir(cfg: EvalRunConfig, job: JobContext) -> Path:
    if cfg.eval.output_dir:
        return Path(cfg.eval.output_dir)
    if cfg.run and not cfg.predictions:
        return Path(cfg.run) / "eval" / f"{cfg.exam.name}_{cfg.prompt.name}_{cfg.eval.mode.value}"
    return job.run_dir


def fingerprint(cfg: EvalRunConfig) -> str:
    """What decides the answers: a resumed evaluation must have the same."""
    container = OmegaConf.to_container(OmegaConf.structured(cfg))
    decisive = {k: container[k] for k in ("run", "predictions", "model", "adapter", "prompt", "exam", "seed")}
    decisive["eval"] = {k: v for k, v in container["eval"].items() if k not in ("batch_size", "output_dir")}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_evaluation(cfg: EvalRunConfig, job: JobContext) -> dict[str, Any]:
    from medtune.tracking.wandb_run import start_run

    if cfg.eval.mode == EvalMode.judge:  # no exam: two systems' answers scored by a judge model
        from medtune.judge.task import run_judge

        return run_judge(cfg, job)
    quiet_third_party(cpu_only=cfg.hardware.accelerator.value == "cpu")
    out = output_dir(cfg, job)
    out.mkdir(parents=True, exist_ok=True)
    questions = load_exam(cfg.exam)
    if not questions:
        e = cfg.exam
        raise ConfigError([
            f"exam={e.name} selects no question with these filters (exam.text_only={e.text_only}, exam.min_answers="
            f"{e.min_answers}, exam.max_answers={e.max_answers}, exam.require_choices={e.require_choices}, "
            f"exam.blocks={list(e.blocks)}); relax exam.* filters, e.g. exam.require_choices=false to keep "
            "numeric questions."
        ])
    group = training_group(cfg)
    tracker = start_run(cfg.logger, job, OmegaConf.to_container(OmegaConf.structured(cfg)), "eval", group=group, run_dir=out)
    exit_code = 1
    try:
        if cfg.predictions:
            rows = score_predictions_file(cfg, questions)
        else:
            rows = answer_questions(cfg, questions, out)
        metrics = finish(cfg, questions, rows, out, tracker)
        exit_code = 0
        return metrics
    finally:
        tracker.finish(exit_code=exit_code)


def training_group(cfg: EvalRunConfig) -> str | None:
    if not cfg.run:
        return None
    info = Path(cfg.run) / "run_info.json"
    return json.loads(info.read_text()).get("wandb_group") if info.is_file() else None


def resume_rows(out: Path, key: str) -> dict[str, dict]:
    """Rows already answered by an interrupted evaluation with the same fingerprint."""
    state_path, partial = out / STATE, out / PARTIAL
    if partial.is_file() and state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") != key:
            raise ConfigError([
                f"{out} holds an interrupted evaluation with different settings ({PARTIAL}); "
                "evaluate into another directory (eval.output_dir=...) or delete that file to start over."
            ])
        rows = {row["id"]: row for row in read_rows(partial)}
        if rows:
            console.print(f"resuming: {len(rows)} questions already answered in {partial}")
        return rows
    partial.unlink(missing_ok=True)
    write_json_atomic(state_path, {"fingerprint": key})
    return {}


def load_model(cfg: EvalRunConfig):
    from medtune.modeling.load import (
        load_base_model,
        load_tokenizer,
    )
    from medtune.modeling.description import resolve_checkpoint

    if cfg.run:
        from medtune.modeling.trained import load_trained

        model, tokenizer, _ = load_trained(Path(cfg.run), cfg.hardware)
    else:
        checkpoint = resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
        tokenizer = load_tokenizer(checkpoint, cfg.model)
        model = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware)
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer


def answer_questions(cfg: EvalRunConfig, questions: list[ExamQuestion], out: Path) -> list[dict]:
    import torch

    from medtune.evaluation.generation import generate_responses

    done = resume_rows(out, fingerprint(cfg))
    todo = [q for q in questions if q.qid not in done]
    if not todo:
        return [done[q.qid] for q in questions]
    shots = read_fewshot(cfg.exam.fewshot_path, cfg.exam.language, cfg.exam.english)[: cfg.eval.num_shots]
    with console.status("Loading model"):
        model, tokenizer = load_model(cfg)
    require_chat_template(cfg.prompt, tokenizer, cfg.run or cfg.model.name)
    prompts = [build_prompt(cfg.prompt, q, shots, tokenizer) for q in todo]
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()

    def keep(indices: list[int], texts: list[str]) -> None:
        rows = []
        for index, text in zip(indices, texts):
            question = todo[index]
            scored = score_response(question, text, cfg.eval.similarity, cfg.eval.match_threshold)
            rows.append(prediction_row(question, prompts[index], text, scored))
        append_jsonl(out / PARTIAL, rows)
        done.update((row["id"], row) for row in rows)

    if cfg.eval.mode == EvalMode.generate:
        max_positions = getattr(model.config, "max_position_embeddings", 4096)
        generate_responses(model, tokenizer, prompts, cfg.eval, max_positions, keep, answer_marker=cfg.prompt.answer_marker,
                           stop_ids=stop_token_ids(tokenizer, cfg.prompt))
    else:
        loglik_answers(cfg, model, tokenizer, todo, prompts, out, done)
    console.print(f"{len(todo)} questions in {time.perf_counter() - started:.1f} s")
    return [done[q.qid] for q in questions]


def loglik_answers(cfg, model, tokenizer, todo, prompts, out: Path, done: dict) -> None:
    from tqdm.auto import tqdm

    from medtune.config.eval_schema import LoglikTarget
    from medtune.evaluation.loglik import choice_logprobs, continuations, pick_choices

    normalise = cfg.eval.loglik_target == LoglikTarget.text
    for question, prompt in tqdm(list(zip(todo, prompts)), desc="log-likelihood", unit="q"):
        full_prompt = f"{prompt}{cfg.prompt.answer_marker}"
        if question.is_numeric:
            scored = ScoredAnswer(Status.invalid, (), "", reason="loglik mode needs a choice list")
            text, scores = "", []
        else:
            scores = choice_logprobs(model, tokenizer, full_prompt, continuations(question, cfg.eval.loglik_target), normalise)
            letters = pick_choices(question, scores)
            scored = score_letters(question, letters)
            text = ",".join(letters)
        row = prediction_row(question, full_prompt, text, scored)
        row["choice_logprobs"] = scores
        append_jsonl(out / PARTIAL, [row])
        done[row["id"]] = row


def score_predictions_file(cfg: EvalRunConfig, questions: list[ExamQuestion]) -> list[dict]:
    """Score a published system's answers (`{"problem_id", "prediction": "a,b"}`) with no model."""
    from medtune.config.eval_schema import PredictionsFormat
    from medtune.evaluation.predictions import read_predictions, score_prediction

    predictions = read_predictions(Path(cfg.predictions), cfg.system_name)
    strict = cfg.predictions_format == PredictionsFormat.igakuqa
    rows = []
    for question in questions:
        given = predictions.get(question.qid)
        if given is None:
            scored = ScoredAnswer(Status.invalid, (), "", reason="no prediction for this question")
        else:
            scored = score_prediction(question, given, strict)
        rows.append(prediction_row(question, "", given or "", scored))
    return rows


def finish(cfg: EvalRunConfig, questions: list[ExamQuestion], rows: list[dict], out: Path, tracker) -> dict[str, Any]:
    from medtune.evaluation.records import scored_from_row

    metrics = aggregate(questions, [scored_from_row(row) for row in rows])
    metrics.update({
        "exam": cfg.exam.name,
        "prompt": cfg.prompt.name,
        "mode": "predictions" if cfg.predictions else cfg.eval.mode.value,
        "system": cfg.system_name or (Path(cfg.run).name if cfg.run else cfg.model.name),
        "num_shots": cfg.eval.num_shots,
        "similarity": cfg.eval.similarity.value,
        "shuffled_choices": cfg.exam.shuffle_choices,
    })
    write_text_atomic(out / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_json_atomic(out / "metrics.json", metrics)
    (out / PARTIAL).unlink(missing_ok=True)
    tracker.summarize(flatten(metrics, "exam/", sep="/"))
    tracker.log_predictions(rows)
    tracker.log_status_chart(metrics)
    print_exam_metrics(metrics, out)
    return metrics



