"""Exam accuracy during training: before the first step, every N steps, after the last; best adapter kept.

What is asked and how it is scored: `medtune.training.exam_check`; what is reported from it:
`medtune.training.exam_report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from medtune.config.schema import TrainRunConfig
from medtune.data.tokenize import PadCollator, encode_records
from medtune.distributed import is_main_process
from medtune.exam.prompting import answer_text, question_record
from medtune.training.exam_check import CheckedExam, measure
from medtune.vocabulary import ExamQuestion


class ExamAccuracyCallback(TrainerCallback):
    def __init__(self, cfg: TrainRunConfig, exams: list[CheckedExam], tokenizer, tracker, run_dir: Path):
        self.cfg = cfg
        self.exams = exams
        self.tokenizer = tokenizer
        self.tracker = tracker
        self.run_dir = run_dir
        self.best: dict[str, Any] | None = None

    @property
    def target(self) -> CheckedExam:
        return self.exams[0]

    @property
    def history(self) -> list[dict[str, Any]]:
        """The target exam's rows, one per asking."""
        return [m.row() for m in self.target.measurements]

    def measure(self, model, step: int) -> dict[str, Any]:
        """Ask every exam of the check with `model`; logged as exam/* (the target) and retention/<name>/*
        at `step`. Returns the target's row."""
        was_training = model.training
        model.eval()
        try:
            for exam in self.exams:
                measurement = measure(self.cfg, model, self.tokenizer, exam, step)
                measurement.answer_loss = gold_answer_loss(self.cfg, model, self.tokenizer, exam.questions)
                exam.measurements.append(measurement)
                row = measurement.row()
                self.tracker.log(
                    {f"{exam.prefix}{k}": v for k, v in row.items() if k != "step" and v is not None}, step=step
                )
        finally:
            if was_training:
                model.train()
        return self.target.measurements[-1].row()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        every = self.cfg.exam_eval.every_steps
        if every <= 0 or state.global_step % every or state.global_step == state.max_steps:
            return
        row = self.measure(model, state.global_step)
        if (
            self.cfg.exam_eval.keep_best
            and is_main_process()
            and (self.best is None or row["accuracy"] > self.best["accuracy"])
        ):
            self.best = row
            model.save_pretrained(str(self.run_dir / "best_adapter"))
            self.tokenizer.save_pretrained(str(self.run_dir / "best_adapter"))


def gold_answer_loss(cfg: TrainRunConfig, model, tokenizer, questions: list[ExamQuestion]) -> float | None:
    """Mean loss of the gold answers (`b. <choice>`, as training writes them) after each exam prompt.

    Unlike accuracy it moves with small models that answer at chance, so it is the honest
    before/after signal when the exam is held out from training."""
    records = [question_record(q, answer_text(q)) for q in questions if q.choices]
    if not records:
        return None
    limits = cfg.train
    examples, _ = encode_records(
        records,
        tokenizer,
        cfg.prompt,
        max(limits.max_input_tokens, 4096),
        max(limits.max_target_tokens, 1024),
    )
    collate = PadCollator(tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), cfg.exam_eval.batch_size):
            batch = {
                k: v.to(model.device) for k, v in collate(examples[start : start + cfg.exam_eval.batch_size]).items()
            }
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(losses)
            tokens += int((labels != -100).sum())
    if was_training:
        model.train()
    return round(total / tokens, 4) if tokens else None
