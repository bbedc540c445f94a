"""The parts of a training run the recipe (`medtune.training.recipe`) puts together: its result, the
schedule in steps, FLOPs per token, the data counts of the summary, the exam check, the saved outputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medtune.config.schema import AdapterKind, Quantization, TrainRunConfig
from medtune.data.training_data import training_data_for
from medtune.distributed import is_main_process
from medtune.reporting.console import console
from medtune.reporting.exam_check_console import print_contamination
from medtune.run_dir import TrainRunDir
from medtune.training.exam_callback import ExamAccuracyCallback
from medtune.training.exam_check import checked_exams


def steps_for_epochs(epochs: float, rows: int, global_batch: int) -> int:
    """Optimizer steps that show every training row `epochs` times (the last batch may be partial)."""
    return max(1, math.ceil(epochs * rows / global_batch))


def flops_per_token(cfg: TrainRunConfig, total: int, trainable: int) -> float | None:
    """Training FLOPs per token for MFU: 2N forward, 2N backward through activations, and 2 x the
    trainable parameters for their weight gradients (6N for full fine-tuning, ~4N for LoRA)."""
    if not cfg.hardware.peak_tflops:
        return None
    return 4.0 * total + 2.0 * trainable


def zero3_sharding(model) -> dict[str, Any]:
    """Under ZeRO-3, what share of the weights this rank holds (1/world when sharded), 4-bit ones apart."""
    local = full = local_4bit = full_4bit = 0
    for param in model.parameters():
        if not hasattr(param, "ds_numel"):
            return {}
        local += param.ds_tensor.numel()
        full += param.ds_numel
        if param.__class__.__name__ == "Params4bit" or getattr(param, "quant_state", None) is not None:
            local_4bit += param.ds_tensor.numel()
            full_4bit += param.ds_numel
    summary = {"zero3/local_fraction": local / full if full else None}
    if full_4bit:
        summary["zero3/local_fraction_4bit"] = local_4bit / full_4bit
    return summary


def schedule_line(cfg: TrainRunConfig) -> str:
    t = cfg.train
    return (
        f"{t.max_steps} steps, lr {t.learning_rate:g} ({t.lr_scheduler.value}, warmup {t.warmup_steps}), "
        f"global batch {t.global_batch_size} (micro {t.micro_batch_size}), {training_data_for(cfg).lengths_line()}"
    )


def exam_callback(cfg: TrainRunConfig, tokenizer, tracker, run_dir: Path):
    if not cfg.exam_eval.enabled:
        return None
    if cfg.hardware.deepspeed.zero_stage == 3:
        if is_main_process():
            console.print(
                "exam accuracy during training is off under ZeRO-3 (weights are sharded); "
                "run evaluate.py run=<this run dir> afterwards."
            )
        return None
    exams = checked_exams(cfg)
    if is_main_process():
        print_contamination(exams)
    return ExamAccuracyCallback(cfg, exams, tokenizer, tracker, run_dir)


def save_outputs(trainer, tokenizer, cfg: TrainRunConfig, run_dir: Path, checkpoint: str, group: str | None) -> Path:
    """Adapter (or full model) and tokenizer into the run dir, with where the base came from."""
    target = TrainRunDir(run_dir).saved_dir(cfg.adapter.kind == AdapterKind.full)
    trainer.save_model(str(target))
    if is_main_process():
        tokenizer.save_pretrained(str(target))
        base = str(Path(checkpoint).resolve()) if Path(checkpoint).exists() else checkpoint
        TrainRunDir(run_dir).write_run_info(
            {
                "checkpoint": base,
                "adapter_dir": str(target),
                "quantization": cfg.adapter.quantization.method.value,
                "quantized_base": cfg.adapter.quantization.method != Quantization.none,
                "wandb_group": group,  # evaluations of this run join it
            },
        )
    return target


def data_summary(cfg: TrainRunConfig, train_stats, eval_stats, packed_rows: int | None) -> dict[str, Any]:
    """data/* of the summary: what was kept, dropped and truncated, per split and mixture source."""
    stats = {f"data/train_{k}": v for k, v in train_stats.as_dict().items()}
    if eval_stats is not None:
        stats.update({f"data/eval_{k}": v for k, v in eval_stats.as_dict().items()})
    if packed_rows is not None:
        stats["data/train_packed_rows"] = packed_rows
    for source, count in (getattr(train_stats, "mixture", None) or {}).items():
        stats[f"data/mixture/{source}"] = count
    if cfg.train.epochs is not None:
        stats["train/planned_steps"] = cfg.train.max_steps
    return stats


def batch_summary(cfg: TrainRunConfig) -> dict[str, Any]:
    """The micro batch a run uses, gradient checkpointing, and the memory the planner gives them."""
    from medtune.modeling.planner.auto_batch import planned_memory

    memory = planned_memory(cfg)
    summary = {
        "train/micro_batch_size": cfg.train.micro_batch_size,
        "train/gradient_checkpointing": cfg.hardware.gradient_checkpointing,
    }
    return summary if memory is None else {**summary, "train/planned_memory_gib": memory.total / 2**30}
