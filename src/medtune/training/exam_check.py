"""What training's exam check asks and keeps: each exam (the target and any retention exams), its
questions, the contamination audit of the run's training data against them, and one `Measurement`
per time it is asked (answers, statuses, confidences, totals).

The model answers through the hf model access of `medtune.llm` with the training prompt (after
exam_eval.num_shots worked examples, none by default; short greedy answers, or the likeliest letter
under exam_eval.mode=loglik) and Algorithm 1 scores it, so the numbers are the same kind
evaluate.py reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from medtune.config.contamination_schema import ContaminationConfig
from medtune.config.exam_options import exam_option
from medtune.config.exam_schema import EvalConfig, EvalMode, ExamConfig, LoglikTarget
from medtune.config.schema import TrainRunConfig
from medtune.data.templates import stop_token_ids
from medtune.exam.aggregation import aggregate
from medtune.exam.contamination import ExamIndex, TrainingText
from medtune.exam.contamination_report import ContaminationReport
from medtune.exam.contamination_sources import run_training_texts, training_texts
from medtune.exam.loading import load_exam
from medtune.exam.prompting import exam_prompt, read_fewshot
from medtune.exam.scoring import score_letters, score_response
from medtune.llm.hf import HfModel
from medtune.llm.loglik import pick_choices
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
    shots: list[ExamQuestion] = field(default_factory=list)  # worked examples before each question

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
    """The target exam and each retention exam, loaded, each audited against the run's training data
    (and contamination.files)."""
    exams = [CheckedExam(cfg.exam, TARGET, load_exam(cfg.exam), shots=worked_examples(cfg.exam, cfg))]
    for name in cfg.exam_eval.retention:
        config = exam_option(name, cfg.paths, "exam_eval.retention")
        if cfg.exam_eval.retention_max_questions is not None:
            config = dataclasses.replace(config, max_questions=cfg.exam_eval.retention_max_questions)
        exams.append(CheckedExam(config, RETENTION, load_exam(config), shots=worked_examples(config, cfg)))
    if cfg.contamination.enabled:
        audit(exams, chain(run_training_texts(cfg), training_texts(cfg.contamination.files)), cfg.contamination)
    return exams


def worked_examples(exam: ExamConfig, cfg: TrainRunConfig) -> list[ExamQuestion]:
    """The first exam_eval.num_shots worked examples of the exam's language (or its exam.fewshot_path),
    as evaluate.py's eval.num_shots picks them; none by default."""
    if cfg.exam_eval.num_shots == 0:
        return []
    return read_fewshot(exam.fewshot_path, exam.language, exam.english)[: cfg.exam_eval.num_shots]


def audit(exams: list[CheckedExam], texts: Iterable[TrainingText], settings: ContaminationConfig) -> None:
    """Every exam indexed, then the training texts read once for all of them (not once per exam)."""
    indexes = [ExamIndex(exam.questions, settings) for exam in exams]
    for text in texts:
        for index in indexes:
            index.scan(text)
    for exam, index in zip(exams, indexes):
        exam.contamination = index.report()


def ask(
    cfg: TrainRunConfig, model, tokenizer, questions: list[ExamQuestion], shots: Sequence[ExamQuestion] = ()
) -> tuple[list[ScoredAnswer], list | None]:
    """Every question answered by `model` through the hf model access (after `shots`, worked examples)
    and scored; with the loglik confidences (the picked answer's share of the choices' probability)
    under mode=loglik."""
    settings = cfg.exam_eval
    decoding = EvalConfig(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    access = HfModel(model, tokenizer, decoding, cfg.prompt, "exam-check", stop_token_ids(tokenizer, cfg.prompt))
    requests = [exam_prompt(cfg.prompt, q, list(shots)) for q in questions]
    if settings.mode == EvalMode.generate:
        texts = access.generate(requests, progress=False)
        return [score_response(q, text) for q, text in zip(questions, texts)], None
    scored, confidences = [], []
    for question, request in zip(questions, requests):
        scores = access.loglikelihood(access.render(request), question, LoglikTarget.letter).deciding
        picked = pick_choices(question, scores)
        scored.append(score_letters(question, picked))
        shares = softmax(scores)
        confidences.append(min(1.0, sum(shares[question.index_of(label)] for label in picked)))
    return scored, confidences


def measure(cfg: TrainRunConfig, model, tokenizer, exam: CheckedExam, step: int) -> Measurement:
    answers, confidences = ask(cfg, model, tokenizer, exam.questions, exam.shots)
    return Measurement(step, aggregate(exam.questions, answers), answers, confidences)
