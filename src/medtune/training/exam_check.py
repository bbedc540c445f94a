"""What training's exam check asks and keeps: each exam (the target and any retention exams), its
questions, the contamination audit of the run's training data against them, and one `Measurement`
per time it is asked (answers, statuses, confidences, totals).

The model answers with the training prompt (no worked examples, short greedy answers, or the
likeliest letter under exam_eval.mode=loglik) and Algorithm 1 scores it, so the numbers are the
same kind evaluate.py reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medtune.config.exam_options import exam_option
from medtune.config.exam_schema import EvalConfig, EvalMode, ExamConfig
from medtune.config.schema import TrainRunConfig
from medtune.data.templates import stop_token_ids
from medtune.exam.aggregation import aggregate
from medtune.exam.contamination import audit_contamination
from medtune.exam.contamination_report import ContaminationReport
from medtune.exam.contamination_sources import run_training_texts
from medtune.exam.loading import load_exam
from medtune.exam.prompting import build_prompt
from medtune.exam.scoring import score_letters, score_response
from medtune.llm.generation import generate_responses
from medtune.llm.loglik import choice_logprobs, continuations, pick_choices
from medtune.reporting.calibration import calibration, softmax
from medtune.vocabulary import ExamQuestion, ScoredAnswer

TARGET, RETENTION = "target", "retention"


@dataclass
class Measurement:
    """One asking of one exam at one step."""

    step: int
    metrics: dict[str, Any]  # aggregate(): accuracy, counts, intervals, strict reading
    answers: list[ScoredAnswer]
    confidences: list[float] | None  # exam_eval.mode=loglik: the picked answer's share of the choices' mass
    answer_loss: float | None = None

    def statuses(self, questions: list[ExamQuestion], strict: bool = False) -> dict[str, str]:
        return {q.qid: (a.strict_status if strict else a.status).value for q, a in zip(questions, self.answers)}

    def calibration(self):
        """ECE / Brier of the loglik confidences (None for generated answers, which carry none)."""
        if self.confidences is None or not self.answers:
            return None
        correct = [a.status.value == "correct" for a in self.answers]
        return calibration(self.confidences, correct, "loglik")

    def row(self) -> dict[str, Any]:
        """The numbers logged as exam/* at `step`."""
        strict = self.metrics.get("strict") or {}
        row = {
            "step": self.step,
            **{k: self.metrics[k] for k in ("accuracy", "correct", "invalid", "wrong", "n")},
            "strict_accuracy": strict.get("accuracy"),
            "strict_invalid": strict.get("invalid"),
            "answer_loss": self.answer_loss,
        }
        found = self.calibration()
        if found is not None:
            row.update(ece=round(found.ece, 4), brier=round(found.brier, 4))
        return row


@dataclass
class CheckedExam:
    """One exam of the check: the target (`exam`) or a retention exam (`exam_eval.retention`)."""

    config: ExamConfig
    role: str
    questions: list[ExamQuestion]
    contamination: ContaminationReport | None = None
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def prefix(self) -> str:
        """W&B / summary key prefix: exam/ for the target (as before retention existed), retention/<name>/."""
        return "exam/" if self.role == TARGET else f"retention/{self.name}/"

    @property
    def before(self) -> Measurement | None:
        return self.measurements[0] if len(self.measurements) >= 2 and self.measurements[0].step == 0 else None

    @property
    def after(self) -> Measurement | None:
        return self.measurements[-1] if self.measurements else None


def checked_exams(cfg: TrainRunConfig) -> list[CheckedExam]:
    """The target exam and each retention exam, loaded, each audited against the run's training data."""
    exams = [CheckedExam(cfg.exam, TARGET, load_exam(cfg.exam))]
    for name in cfg.exam_eval.retention:
        config = exam_option(name, cfg.paths, "exam_eval.retention")
        if cfg.exam_eval.retention_max_questions is not None:
            config.max_questions = cfg.exam_eval.retention_max_questions
        exams.append(CheckedExam(config, RETENTION, load_exam(config)))
    if cfg.contamination.enabled:
        for exam in exams:
            exam.contamination = audit_contamination(exam.questions, run_training_texts(cfg), cfg.contamination)
    return exams


def ask(cfg: TrainRunConfig, model, tokenizer, questions: list[ExamQuestion]) -> tuple[list[ScoredAnswer], list | None]:
    """Every question answered by `model` and scored; with the loglik confidences under mode=loglik."""
    settings = cfg.exam_eval
    prompts = [build_prompt(cfg.prompt, q, [], tokenizer) for q in questions]
    scored: list[Any] = [None] * len(questions)
    confidences: list[float] | None = None
    if settings.mode == EvalMode.generate:
        decoding = EvalConfig(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)

        def keep(indices, texts):
            for i, text in zip(indices, texts):
                scored[i] = score_response(questions[i], text)

        positions = getattr(model.config, "max_position_embeddings", 2048)
        stops = stop_token_ids(tokenizer, cfg.prompt)
        generate_responses(model, tokenizer, prompts, decoding, positions, keep, progress=False, stop_ids=stops)
    else:
        confidences = []
        for i, (question, prompt) in enumerate(zip(questions, prompts)):
            scores = choice_logprobs(model, tokenizer, prompt, continuations(question, "letter"), False)
            picked = pick_choices(question, scores)
            scored[i] = score_letters(question, picked)
            shares = softmax(scores)
            confidences.append(min(1.0, sum(shares[question.index_of(label)] for label in picked)))
    return scored, confidences


def measure(cfg: TrainRunConfig, model, tokenizer, exam: CheckedExam, step: int) -> Measurement:
    answers, confidences = ask(cfg, model, tokenizer, exam.questions)
    return Measurement(step, aggregate(exam.questions, answers), answers, confidences)
