"""Exam accuracy during training: before the first step, every N steps, after the last; best adapter kept.

The model answers the exam with the training prompt (no worked examples, short greedy answers)
and Algorithm 1 scores it, so the number is the same kind the evaluation reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medtune.config.schema import TrainRunConfig
from medtune.distributed import is_main_process
from medtune.vocabulary import ExamQuestion


class ExamAccuracyCallback(TrainerCallback):
    def __init__(self, cfg: TrainRunConfig, questions: list[ExamQuestion], tokenizer, tracker, run_dir: Path):
        self.cfg = cfg
        self.questions = questions
        self.tokenizer = tokenizer
        self.tracker = tracker
        self.run_dir = run_dir
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None

    def measure(self, model, step: int) -> dict[str, Any]:
        """Answer every question with `model` and score it; logged as exam/* at `step`."""
        from medtune.config.exam_schema import EvalConfig, EvalMode
        from medtune.exam.aggregation import aggregate
        from medtune.exam.prompting import build_prompt
        from medtune.exam.scoring import score_letters, score_response
        from medtune.llm.generation import generate_responses
        from medtune.llm.loglik import (
            choice_logprobs,
            continuations,
            pick_choices,
        )

        settings = self.cfg.exam_eval
        prompts = [build_prompt(self.cfg.prompt, q, [], self.tokenizer) for q in self.questions]
        scored: list[Any] = [None] * len(self.questions)
        was_training = model.training
        model.eval()
        if settings.mode == EvalMode.generate:
            decoding = EvalConfig(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)

            def keep(indices, texts):
                for i, text in zip(indices, texts):
                    scored[i] = score_response(self.questions[i], text)

            positions = getattr(model.config, "max_position_embeddings", 2048)
            from medtune.data.templates import stop_token_ids

            generate_responses(
                model,
                self.tokenizer,
                prompts,
                decoding,
                positions,
                keep,
                progress=False,
                stop_ids=stop_token_ids(self.tokenizer, self.cfg.prompt),
            )
        else:
            for i, (question, prompt) in enumerate(zip(self.questions, prompts)):
                scores = choice_logprobs(model, self.tokenizer, prompt, continuations(question, "letter"), False)
                scored[i] = score_letters(question, pick_choices(question, scores))
        if was_training:
            model.train()
        metrics = aggregate(self.questions, scored)
        strict = metrics.get("strict") or {}
        row = {
            "step": step,
            **{k: metrics[k] for k in ("accuracy", "correct", "invalid", "wrong", "n")},
            "strict_accuracy": strict.get("accuracy"),
            "strict_invalid": strict.get("invalid"),
            "answer_loss": self.answer_loss(model),
        }
        self.history.append(row)
        self.tracker.log({f"exam/{k}": v for k, v in row.items() if k != "step" and v is not None}, step=step)
        return row

    def answer_loss(self, model) -> float | None:
        """Mean loss of the gold answers (`b. <choice>`, as training writes them) after each exam prompt.

        Unlike accuracy it moves with small models that answer at chance, so it is the honest
        before/after signal when the exam is held out from training."""
        import torch

        from medtune.data.tokenize import PadCollator, encode_records
        from medtune.exam.prompting import answer_text, question_record

        records = [question_record(q, answer_text(q)) for q in self.questions if q.choices]
        if not records:
            return None
        limits = self.cfg.train
        examples, _ = encode_records(
            records,
            self.tokenizer,
            self.cfg.prompt,
            max(limits.max_input_tokens, 4096),
            max(limits.max_target_tokens, 1024),
        )
        collate = PadCollator(self.tokenizer.pad_token_id)
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(examples), self.cfg.exam_eval.batch_size):
                batch = {
                    k: v.to(model.device)
                    for k, v in collate(examples[start : start + self.cfg.exam_eval.batch_size]).items()
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
