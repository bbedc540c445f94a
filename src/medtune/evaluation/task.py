"""The evaluate task: questions -> prompts -> a backend's responses (or log-likelihoods) -> both readings -> metrics.

Each question may be asked several times (`eval.samples` sampled chains, `eval.shuffles` orders of
its choices; see `medtune.evaluation.ensemble`) and its answer is then the vote. Questions the exam
file cannot support (blank choice texts, no answer) are left out with their reason, listed in
metrics.json under `excluded`.

Every finished question is appended to `predictions.partial.jsonl`; rerunning the same evaluation in
the same directory answers only the questions still missing. At the end `predictions.jsonl` and
`metrics.json` are written atomically, then the partial file is removed. A directory that holds an
evaluation made with other settings (finished, or interrupted) is refused before anything is written,
unless overwrite=true (`check_existing`); a full or read-only directory is a message that says which
answers were kept (`medtune.storage`). Those files and settings are `medtune.evaluation.state`.

With training data to audit (run=, contamination.files) every scored question carries its
contamination verdict (`medtune.evaluation.contamination`); answers with a confidence (loglik,
votes) are scored for calibration (`medtune.evaluation.calibration`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medtune.config.eval_schema import EvalBackend, EvalMode, EvalRunConfig
from medtune.config.job import JobContext, Workspace
from medtune.errors import ConfigError
from medtune.evaluation.calibration import RELIABILITY, calibration_metrics, print_calibration, tracked
from medtune.evaluation.contamination import audit_scored, contamination_metrics, marked_rows, print_contamination
from medtune.evaluation.ensemble import Variant, Vote, combine, ensemble_summary, plan_variants
from medtune.evaluation.records import prediction_row
from medtune.evaluation.state import (  # noqa: F401  (PARTIAL, STATE: read by tests and tools from here)
    FINAL,
    METRICS,
    PARTIAL,
    STATE,
    check_state_unchanged,
    decisive_settings,
    fingerprint,
    held_results,
    kept_answers,
    predictions_store,
    resume_rows,
)
from medtune.exam.aggregation import aggregate
from medtune.exam.contamination_report import ContaminationReport
from medtune.exam.loading import ExamSelection, exclusion_summary, select_exam
from medtune.exam.prompting import exam_prompt, read_fewshot
from medtune.exam.scoring import score_letters, score_response
from medtune.finished import settle
from medtune.io import write_json_atomic
from medtune.jsonl_store import SettingsFile, write_jsonl_atomic
from medtune.llm.response_limit import ResponseLimit
from medtune.nested import flatten
from medtune.quiet import quiet_third_party
from medtune.reporting.console import console, print_exam_metrics
from medtune.run_dir import TrainRunDir
from medtune.storage import storage_guard
from medtune.vocabulary import ExamQuestion, ScoredAnswer, Status


def workspace(cfg: EvalRunConfig, job: JobContext) -> tuple[EvalRunConfig, Workspace]:
    """An evaluation holds its output dir (a run's eval/<exam>_<prompt>_<mode>/, eval.output_dir, or the
    run dir) and one W&B run there, in its training run's group. (With run= and no prompt= on the
    command line, the resolve phase has put the run's own prompt in `cfg`: `medtune.rules.resolve`.)"""
    return cfg, Workspace(
        output_dir(cfg, job),
        setting="eval.output_dir",
        activity="evaluation",
        job_type="eval",
        group=training_group(cfg),
    )


def check_existing(cfg: EvalRunConfig, job: JobContext, directory: Path) -> EvalRunConfig:
    """Before anything is written into the held dir: an evaluation there made with other settings (its
    metrics.json and predictions, or an interrupted one's answers) refuses this one; overwrite=true
    deletes it first. The same settings go on as before: an interrupted evaluation continues, a
    finished one is run again."""
    settle(held_results(cfg, Path(directory)), cfg.overwrite, "eval.output_dir")
    return cfg


def run(cfg: EvalRunConfig, job: JobContext, tracker) -> dict[str, Any]:
    """The evaluate.py task: answer (or replay) and score the exam into the held output dir."""
    quiet_third_party(cpu_only=cfg.hardware.accelerator.value == "cpu")
    return evaluate_into(cfg, output_dir(cfg, job), tracker)


def metrics(result: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's numbers: what `optimized_metric` names (accuracy by default)."""
    return result


def output_dir(cfg: EvalRunConfig, job: JobContext) -> Path:
    if cfg.eval.output_dir:
        return Path(cfg.eval.output_dir)
    if cfg.run and not cfg.predictions:
        return Path(cfg.run) / "eval" / f"{cfg.exam.name}_{cfg.prompt.name}_{cfg.eval.mode.value}"
    return job.run_dir


def select_questions(cfg: EvalRunConfig) -> ExamSelection:
    """The exam's questions; a replay of letter predictions needs no choice texts."""
    selection = select_exam(cfg.exam, needs_choice_text=not cfg.predictions)
    if selection.excluded:
        console.print(
            f"[yellow]{len(selection.excluded)} question(s) left out of exam={cfg.exam.name}[/yellow] "
            "(listed in metrics.json under excluded):"
        )
        for item in selection.excluded[:10]:
            console.print(f"  {item.qid} ({item.source}): {item.reason}")
        if len(selection.excluded) > 10:
            console.print(f"  ... and {len(selection.excluded) - 10} more")
    if not selection.questions:
        e = cfg.exam
        raise ConfigError(
            [
                f"exam={e.name} selects no question with these filters (exam.text_only={e.text_only}, exam.min_answers="
                f"{e.min_answers}, exam.max_answers={e.max_answers}, exam.require_choices={e.require_choices}, "
                f"exam.blocks={list(e.blocks)}); relax exam.* filters, e.g. exam.require_choices=false to keep "
                "numeric questions."
            ]
        )
    return selection


def evaluate_into(cfg: EvalRunConfig, out: Path, tracker) -> dict[str, Any]:
    """Answer (or replay) and score the exam into `out`, which this process holds; a full or read-only
    `out` stops it with a message saying which answers were kept."""
    with storage_guard(
        out,
        "the evaluation's predictions and metrics",
        kept=lambda: kept_answers(out),
        elsewhere="evaluate into another directory (eval.output_dir=<a writable dir with room>)",
    ):
        out.mkdir(parents=True, exist_ok=True)
        selection = select_questions(cfg)
        questions = selection.questions
        audit = audit_scored(cfg, questions)  # before any answer: a bad training file stops it at once
        if cfg.predictions:
            rows = score_predictions_file(cfg, questions)
        else:
            rows = answer_questions(cfg, questions, out)
        return finish(cfg, selection, rows, out, tracker, audit)


def training_group(cfg: EvalRunConfig) -> str | None:
    return TrainRunDir(cfg.run).wandb_group() if cfg.run else None


def answer_questions(cfg: EvalRunConfig, questions: list[ExamQuestion], out: Path) -> list[dict]:
    import torch

    from medtune.llm.access import open_backend

    done = resume_rows(out, decisive_settings(cfg))
    todo = [q for q in questions if q.qid not in done]
    if not todo:
        return [done[q.qid] for q in questions]
    shots = read_fewshot(cfg.exam.fewshot_path, cfg.exam.language, cfg.exam.english)[: cfg.eval.num_shots]
    asked = {q.qid: plan_variants(q, cfg.eval.shuffles, cfg.eval.samples, cfg.eval.ensemble_seed) for q in todo}
    collector = AnswerCollector(cfg, todo, asked, out, done)
    backend = open_backend(cfg)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    try:
        if cfg.eval.mode == EvalMode.generate:
            generate_answers(cfg, backend, collector, shots)
        else:
            loglik_answers(cfg, backend, collector, shots)
    finally:
        backend.close()
    variants = sum(len(v) for v in asked.values())
    console.print(
        f"{len(todo)} questions in {time.perf_counter() - started:.1f} s ({variants} prompts, through {backend.name})"
    )
    return [done[q.qid] for q in questions]


def question_row(question: ExamQuestion, votes: list[Vote], prompt_text: str) -> dict:
    """The predictions.jsonl row of a question: its one answer, or the vote over its variants."""
    if len(votes) == 1:
        return {**prediction_row(question, prompt_text, votes[0].output, votes[0].scored), **votes[0].extra}
    scored, record = combine(question, votes)
    first = next((v for v in votes if v.parsed == scored.parsed), votes[0])
    return {**prediction_row(question, prompt_text, first.output, scored), **record}


class AnswerCollector:
    """Gathers each question's variant answers as they arrive, in any order; a question whose
    variants are all in is scored, voted and appended to the partial file at once, so an
    interrupted evaluation keeps every finished question."""

    def __init__(
        self, cfg: EvalRunConfig, todo: list[ExamQuestion], asked: dict[str, list[Variant]], out: Path, done: dict
    ):
        self.cfg, self.out, self.done, self.asked = cfg, out, done, asked
        self.originals = {q.qid: q for q in todo}
        self.slots = [(q.qid, index) for q in todo for index in range(len(asked[q.qid]))]
        self.votes: dict[str, dict[int, Vote]] = {q.qid: {} for q in todo}
        self.prompts: dict[str, str] = {}  # the first variant's prompt, as the backend sent it
        # Where every backend's answers meet before scoring: each is cut to what eval.max_new_tokens allows.
        self.limit = ResponseLimit(cfg.eval.max_new_tokens, "eval.max_new_tokens", console.print)

    def variants(self) -> list[Variant]:
        return [self.asked[qid][index] for qid, index in self.slots]

    def score(self, variant: Variant, text: str) -> ScoredAnswer:
        e = self.cfg.eval
        return score_response(variant.question, text, e.similarity, e.match_threshold, e.strict_threshold)

    def keep(self, slots: list[int], texts: list[str]) -> None:
        """`on_batch` of a backend: score generated texts (cut to the limit first; the row says "output_cut")."""
        for slot, text in zip(slots, texts):
            qid, index = self.slots[slot]
            text, cut = self.limit.apply(text or "", f"question {qid}")
            self.add(slot, Vote(self.asked[qid][index], text, self.score(self.asked[qid][index], text), cut))

    def add(self, slot: int, vote: Vote) -> None:
        qid, index = self.slots[slot]
        self.votes[qid][index] = vote
        if len(self.votes[qid]) < len(self.asked[qid]):
            return
        votes = [self.votes[qid][i] for i in range(len(self.asked[qid]))]
        row = question_row(self.originals[qid], votes, self.prompts.get(qid, ""))
        predictions_store(self.out).append([row])
        self.done[row["id"]] = row


def generate_answers(cfg: EvalRunConfig, backend, collector: AnswerCollector, shots) -> None:
    prompts = [exam_prompt(cfg.prompt, variant.question, shots) for variant in collector.variants()]
    for (qid, index), prompt in zip(collector.slots, prompts):
        if index == 0:
            collector.prompts[qid] = backend.render(prompt)
    backend.generate(prompts, collector.keep)


def loglik_answers(cfg: EvalRunConfig, backend, collector: AnswerCollector, shots) -> None:
    """The likeliest choice(s) of every variant, from one shared-prefix pass each; no generation."""
    from medtune.llm.loglik import pick_choices
    from medtune.reporting.progress_bar import progress_bar

    for slot, variant in enumerate(progress_bar(collector.variants(), desc="log-likelihood", unit="prompt")):
        qid = collector.slots[slot][0]
        prompt = f"{backend.render(exam_prompt(cfg.prompt, variant.question, shots))}{cfg.prompt.answer_marker}"
        collector.prompts.setdefault(qid, prompt)
        if variant.question.is_numeric:
            reason = "loglik mode needs a choice list"
            scored = ScoredAnswer(
                Status.invalid, (), "", reason=reason, strict_status=Status.invalid, strict_reason=reason
            )
            collector.add(slot, Vote(variant, "", scored))
            continue
        scores = backend.loglikelihood(prompt, variant.question, cfg.eval.loglik_target)
        letters = pick_choices(variant.question, scores.deciding)
        extra = {"choice_logprobs": scores.deciding}
        if scores.letter is not None and scores.text is not None:
            extra.update(choice_logprobs_letter=scores.letter, choice_logprobs_text=scores.text)
        collector.add(slot, Vote(variant, ",".join(letters), score_letters(variant.question, letters), extra))


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


def system_name(cfg: EvalRunConfig) -> str:
    if cfg.run:
        return Path(cfg.run).name
    if cfg.eval.backend == EvalBackend.endpoint and not cfg.predictions:
        return cfg.eval.endpoint.model
    return cfg.model.name


def finish(
    cfg: EvalRunConfig,
    selection: ExamSelection,
    rows: list[dict],
    out: Path,
    tracker,
    audit: ContaminationReport | None = None,
) -> dict[str, Any]:
    from medtune.evaluation.records import scored_from_row

    questions = selection.questions
    metrics = aggregate(questions, [scored_from_row(row) for row in rows], cfg.exam.aggregates)
    replay = bool(cfg.predictions)
    metrics.update(
        {
            "exam": cfg.exam.name,
            "prompt": cfg.prompt.name,
            "mode": "predictions" if replay else cfg.eval.mode.value,
            "backend": None if replay or cfg.eval.mode == EvalMode.loglik else cfg.eval.backend.value,
            "system": cfg.system_name or system_name(cfg),
            "num_shots": cfg.eval.num_shots,
            "similarity": cfg.eval.similarity.value,
            "strict_threshold": cfg.eval.strict_threshold,
            "shuffled_choices": cfg.exam.shuffle_choices,
            "excluded": exclusion_summary(selection.excluded),
        }
    )
    if not replay and (cfg.eval.samples > 1 or cfg.eval.shuffles > 1):
        metrics["ensemble"] = ensemble_summary(rows, cfg.eval.samples, cfg.eval.shuffles)
    if not replay and cfg.eval.mode == EvalMode.loglik:
        from medtune.llm.loglik import letter_distribution

        # Position bias is about the labels the model saw: with shuffles, each vote's shown pick.
        picks = [
            (tuple(v["shown"]), len(q.choices))
            for q, r in zip(questions, rows)
            for v in r.get("votes") or [{"shown": r["parsed"]}]
        ]
        metrics["loglik_letters"] = letter_distribution([p for p, _ in picks], [n for _, n in picks])
    if audit is not None:
        rows = marked_rows(rows, audit)
        metrics["contamination"] = contamination_metrics(audit, rows, cfg.exam.name)
    calibration = calibration_metrics(cfg, rows, out, f"{metrics['system']} on {cfg.exam.name} ({metrics['mode']})")
    if calibration is not None:
        metrics["calibration"] = calibration
    if not replay:
        check_state_unchanged(out, fingerprint(cfg))
    else:  # what the replay was made with, for a later command in this directory to compare with
        SettingsFile(out / STATE).write(decisive_settings(cfg))
    # The answers stay in the partial file until both results are written: a failed write loses none.
    write_jsonl_atomic(out / FINAL, rows)
    write_json_atomic(out / METRICS, metrics)
    (out / PARTIAL).unlink(missing_ok=True)
    tracker.summarize(flatten(tracked(metrics), "exam/", sep="/"))
    tracker.log_predictions(rows)
    tracker.log_status_chart(metrics)
    if calibration is not None:
        tracker.log_image("exam/reliability", out / RELIABILITY)
    print_exam_metrics(metrics, out)
    if audit is not None:
        print_contamination(metrics["contamination"])
    print_calibration(cfg, calibration)
    return metrics
