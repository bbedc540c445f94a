"""transformers TrainingArguments from the typed config: batch sizes, precision and DeepSpeed agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtune.config.schema import Accelerator, DType, TrainRunConfig
from medtune.distributed import world_size
from medtune.training.resume import CHECKPOINTS


def gradient_accumulation_steps(cfg: TrainRunConfig, world: int) -> int:
    return max(1, cfg.train.global_batch_size // (cfg.train.micro_batch_size * world))


def deepspeed_config(cfg: TrainRunConfig, accumulation: int) -> dict[str, Any] | None:
    """A ZeRO config whose batch sizes and precision are the training config's own."""
    ds = cfg.hardware.deepspeed
    if ds.zero_stage == 0:
        return None
    dtype = cfg.hardware.compute_dtype
    zero: dict[str, Any] = {"stage": ds.zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_params and ds.zero_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": cfg.train.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": cfg.train.global_batch_size,
        "gradient_clipping": cfg.train.max_grad_norm,
        "bf16": {"enabled": dtype == DType.bfloat16},
        "fp16": {"enabled": dtype == DType.float16},
        "zero_optimization": zero,
    }


def training_arguments(cfg: TrainRunConfig, run_dir: Path, has_eval: bool = True, padding_free: bool = False):
    """`padding_free`: the training batches hold no pad tokens, so every token counts as seen."""
    from transformers import TrainingArguments

    from medtune.training.speed import uses_autocast

    t = cfg.train
    world = world_size()
    accumulation = gradient_accumulation_steps(cfg, world)
    on_cuda = cfg.hardware.accelerator == Accelerator.cuda
    mixed = uses_autocast(cfg)  # on a CPU: hardware.compute_dtype=bfloat16 (torch's CPU autocast)
    return TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS),  # where resume looks for checkpoints
        max_steps=t.max_steps,
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler.value,
        warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer.value,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN/inf loss must reach the divergence guard, not be averaged away
        # Evaluation inside the training loop, at step 0 and at the end (DeepSpeed ZeRO-1/2 cannot run
        # Trainer.evaluate() before train()); eval_steps=0 means only those two.
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps if t.eval_steps > 0 else t.max_steps,
        eval_on_start=has_eval,
        save_strategy="steps" if t.save_steps > 0 else "no",
        save_steps=t.save_steps if t.save_steps > 0 else 500,
        save_total_limit=t.save_total_limit,
        bf16=mixed and cfg.hardware.compute_dtype == DType.bfloat16,
        fp16=mixed and cfg.hardware.compute_dtype == DType.float16,
        use_cpu=not on_cuda,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        remove_unused_columns=False,
        # Padding-free and packed batches carry no attention mask and no padding: every token is real.
        include_num_input_tokens_seen="all" if padding_free else "non_padding",
        dataloader_num_workers=0,
        # packed rows come shuffled; group_by_length is medtune's sampler (MedtuneTrainer.length_sampler)
        train_sampling_strategy="sequential"
        if t.packing
        else ("random" if t.sampling.value == "group_by_length" else t.sampling.value),
        deepspeed=deepspeed_config(cfg, accumulation),
        gradient_checkpointing=False,  # applied by medtune.modeling.adapters, before PEFT wraps the model
        disable_tqdm=True,  # medtune.training.progress shows the run (MedtuneTrainer drops transformers' display)
        log_level="warning",
    )
