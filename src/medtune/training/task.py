"""The train task: data -> tokens -> model + adapter -> Trainer -> saved adapter, metrics and W&B run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medtune.config.job import JobContext
from medtune.config.schema import AdapterKind, Quantization, TrainRunConfig
from medtune.distributed import is_main_process
from medtune.io import write_json_atomic
from medtune.quiet import quiet_third_party
from medtune.reporting.console import console, print_plan, print_summary


@dataclass
class TrainResult:
    summary: dict[str, Any]
    model: Any  # the trained model, still in memory (a PeftModel for LoRA)
    tokenizer: Any
    run_dir: Path


def train(cfg: TrainRunConfig, job: JobContext) -> float | None:
    """The train.py task; returns the final eval loss (what a Hydra sweeper would minimise)."""
    if cfg.dry_run:
        print_plan(cfg, job)
        return None
    return run_training(cfg, job).summary.get("eval/loss_after")


def run_training(cfg: TrainRunConfig, job: JobContext) -> TrainResult:
    """Train, save and track one job; the W&B run is finished whatever happens."""
    quiet_third_party(cpu_only=cfg.hardware.accelerator.value == "cpu")
    from medtune.modeling.trained import save_run_config
    from medtune.tracking.wandb_run import start_run

    run_dir = job.run_dir
    if is_main_process():
        save_run_config(cfg, run_dir)
    tracker = start_run(cfg.logger, job, OmegaConf.to_container(OmegaConf.structured(cfg)), job_type="train")
    exit_code = 1
    try:
        result = _train(cfg, job, tracker)
        exit_code = 0
        return result
    finally:
        tracker.finish(exit_code=exit_code)


def _train(cfg: TrainRunConfig, job: JobContext, tracker) -> TrainResult:
    from transformers import Trainer, set_seed

    from medtune.data.readers import read_records
    from medtune.data.splits import split_train_eval
    from medtune.data.tokenize import PadCollator, encode_records
    from medtune.modeling.adapters import apply_adapter, parameter_counts
    from medtune.modeling.load import load_base_model, load_tokenizer, resolve_checkpoint
    from medtune.training.arguments import training_arguments
    from medtune.training.callbacks import MetricsCallback

    started = time.perf_counter()
    run_dir = job.run_dir
    set_seed(cfg.seed)

    with console.status("Preparing model and data"):
        checkpoint = resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
        tokenizer = load_tokenizer(checkpoint, cfg.model)
        records = read_records(
            Path(cfg.dataset.path) if cfg.dataset.path else None, cfg.dataset.format, cfg.dataset.max_records
        )
        train_records, eval_records = split_train_eval(records, cfg.dataset.eval_fraction, cfg.seed)
        limits = (cfg.train.max_input_tokens, cfg.train.max_target_tokens, cfg.train.overlong)
        train_set, train_stats = encode_records(train_records, tokenizer, cfg.prompt, *limits)
        eval_set, eval_stats = encode_records(eval_records, tokenizer, cfg.prompt, *limits) if eval_records else ([], None)
        model = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware)
        model = apply_adapter(model, cfg.adapter, cfg.hardware.gradient_checkpointing)
    trainable, total = parameter_counts(model)
    data_stats = {f"data/train_{k}": v for k, v in train_stats.as_dict().items()}
    if eval_stats is not None:
        data_stats.update({f"data/eval_{k}": v for k, v in eval_stats.as_dict().items()})
    dropped = train_stats.dropped_long_targets + train_stats.dropped_long_inputs
    if dropped or train_stats.truncated_inputs:
        console.print(
            f"[yellow]{dropped} of {train_stats.records} training examples dropped (over the length limits), "
            f"{train_stats.truncated_inputs} prompts truncated from the left; see data/* in the summary.[/yellow]"
        )
    tracker.summarize({**data_stats, "model/trainable_params": trainable, "model/total_params": total})
    console.print(
        f"model [bold]{cfg.model.name}[/bold] ({checkpoint}) + adapter [bold]{cfg.adapter.name}[/bold]: "
        f"{trainable:,} trainable of {total:,} parameters; {len(train_set)} train / {len(eval_set)} eval examples"
    )

    callback = MetricsCallback(tracker, run_dir / "metrics.jsonl")
    exam = exam_callback(cfg, tokenizer, tracker, run_dir)
    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, run_dir),
        train_dataset=train_set,
        eval_dataset=eval_set or None,
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=[callback, *([exam] if exam else [])],
    )
    eval_before = trainer.evaluate()["eval_loss"] if eval_set else None
    exam_before = exam.measure(trainer.model, 0) if exam else None
    trainer.train()
    eval_after = trainer.evaluate()["eval_loss"] if eval_set else None
    exam_after = exam.measure(trainer.model, trainer.state.global_step) if exam else None

    saved = save_outputs(trainer, tokenizer, cfg, run_dir, checkpoint, tracker.group)
    losses = callback.series("train/loss")
    speeds = callback.series("train/tokens_per_second")
    summary = {
        "train/loss_first": losses[0] if losses else None,
        "train/loss_last": losses[-1] if losses else None,
        "eval/loss_before": eval_before,
        "eval/loss_after": eval_after,
        "train/steps": trainer.state.global_step,
        "train/tokens_seen": int(trainer.state.num_input_tokens_seen),
        "train/tokens_per_second": sum(speeds) / len(speeds) if speeds else None,
        "train/peak_memory_mib": max(callback.series("train/peak_memory_mib"), default=None),
        "train/seconds": callback.train_seconds(),
        "run/seconds": time.perf_counter() - started,
        "model/trainable_params": trainable,
        "model/total_params": total,
        **data_stats,
        **exam_summary(cfg, exam, exam_before, exam_after),
        "saved": str(saved),
    }
    tracker.summarize({k: v for k, v in summary.items() if v is not None})
    if is_main_process():
        write_json_atomic(run_dir / "train_summary.json", summary)
        print_summary(cfg, job, summary)
    return TrainResult(summary=summary, model=trainer.model, tokenizer=tokenizer, run_dir=run_dir)


def exam_callback(cfg: TrainRunConfig, tokenizer, tracker, run_dir: Path):
    if not cfg.exam_eval.enabled:
        return None
    from medtune.evaluation.exam_loading import load_exam
    from medtune.training.exam_callback import ExamAccuracyCallback

    return ExamAccuracyCallback(cfg, load_exam(cfg.exam), tokenizer, tracker, run_dir)


def exam_summary(cfg: TrainRunConfig, exam, before: dict | None, after: dict | None) -> dict[str, Any]:
    if exam is None or before is None or after is None:
        return {}
    summary = {
        "exam/name": cfg.exam.name,
        "exam/accuracy_before": before["accuracy"],
        "exam/accuracy_after": after["accuracy"],
        "exam/invalid_before": before["invalid"],
        "exam/invalid_after": after["invalid"],
    }
    if exam.best is not None:
        summary.update({"exam/best_accuracy": exam.best["accuracy"], "exam/best_step": exam.best["step"]})
    return summary


def save_outputs(trainer, tokenizer, cfg: TrainRunConfig, run_dir: Path, checkpoint: str, group: str | None) -> Path:
    """Adapter (or full model) and tokenizer into the run dir, with where the base came from."""
    target = run_dir / ("model" if cfg.adapter.kind == AdapterKind.full else "adapter")
    trainer.save_model(str(target))
    if is_main_process():
        tokenizer.save_pretrained(str(target))
        base = str(Path(checkpoint).resolve()) if Path(checkpoint).exists() else checkpoint
        write_json_atomic(
            run_dir / "run_info.json",
            {
                "checkpoint": base,
                "adapter_dir": str(target),
                "quantization": cfg.adapter.quantization.method.value,
                "quantized_base": cfg.adapter.quantization.method != Quantization.none,
                "wandb_group": group,  # evaluations of this run join it
            },
        )
    return target

