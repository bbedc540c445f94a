"""Typed schema of training's own sections: the optimisation schedule and how steps compute (`train.*`),
and continual pretraining's blocks (`pretrain.*`). Re-exported by `medtune.config.schema`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode


class OverlongPolicy(str, Enum):
    truncate_input = "truncate_input"  # keep the end of the prompt, never cut the answer
    drop = "drop"  # drop the example


class LrScheduler(str, Enum):
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"
    linear = "linear"
    cosine = "cosine"


class Sampling(str, Enum):
    random = "random"
    sequential = "sequential"  # the data's order: reproducible comparisons (e.g. 1 vs 2 ranks)
    group_by_length = "group_by_length"  # similar lengths share a batch: less padding


class LossKind(str, Enum):
    auto = "auto"  # target-only where the model's output head allows it, else full logits (the run says why)
    target_only = "target_only"  # LM head + float32 cross-entropy on the target positions only, chunked
    full_logits = "full_logits"  # transformers' own loss over full-vocabulary logits at every position


class AttentionKind(str, Enum):
    auto = "auto"  # flash_attention_2 on a GPU where flash_attn imports, else varlen_sdpa
    varlen_sdpa = "varlen_sdpa"  # SDPA's causal kernel on each packed example's own slice
    flash_attention_2 = "flash_attention_2"  # flash-attention's varlen kernel (needs flash_attn, CUDA, 16-bit)
    model = "model"  # the model's own implementation, with transformers' block mask from position_ids


class Kernels(str, Enum):
    none = "none"
    liger = "liger"  # liger-kernel's fused RMSNorm, SwiGLU, RoPE and linear cross-entropy (CUDA only)


class Optimizer(str, Enum):
    adamw_torch = "adamw_torch"
    paged_adamw_32bit = "paged_adamw_32bit"
    paged_adamw_8bit = "paged_adamw_8bit"


@dataclass
class TrainingConfig(ConfigNode):
    max_steps: int = help_field(60, "Optimizer steps to train; train.epochs, when set, replaces it.")
    epochs: Optional[float] = help_field(
        None, "Passes over the data; set: max_steps = ceil(epochs x train examples / global batch). null = max_steps."
    )
    learning_rate: float = help_field(2e-4, "The peak learning rate (after warmup).")
    global_batch_size: int = help_field(
        16, "Examples (or packed rows) per optimizer step over every device; a multiple of micro batch x devices."
    )
    micro_batch_size: Any = help_field(
        4,
        'Examples (or packed rows) per device and forward pass, or "auto": the largest that the memory plan fits '
        "on the device; gradient accumulation keeps the global batch.",
    )
    max_input_tokens: int = help_field(512, "The longest prompt, in tokens; a longer one is handled by train.overlong.")
    max_target_tokens: int = help_field(512, "The longest response, in tokens; a longer one drops its example.")
    max_total_tokens: Optional[int] = help_field(
        None,
        "A cap on prompt + response in tokens (alpaca-lora's cutoff_len); the prompt gives way first. null = none.",
    )
    overlong: OverlongPolicy = help_field(
        OverlongPolicy.truncate_input,
        "A prompt over the limit: truncate_input (keep its end, never cut the answer) or drop (drop the example).",
    )
    lr_scheduler: LrScheduler = help_field(LrScheduler.constant_with_warmup, "The learning-rate schedule.")
    warmup_steps: int = help_field(0, "Steps of linear warmup to the learning rate.")
    weight_decay: float = help_field(0.0, "AdamW weight decay.")
    max_grad_norm: float = help_field(1.0, "Gradient clipping norm; 0 = no clipping.")
    optimizer: Optimizer = help_field(
        Optimizer.adamw_torch, "The optimizer: adamw_torch, or bitsandbytes' paged AdamW (32-bit or 8-bit state)."
    )
    sampling: Sampling = help_field(
        Sampling.random,
        "Batch order: random, sequential (the data's order: reproducible comparisons, e.g. 1 vs 2 ranks) or "
        "group_by_length (similar lengths share a batch: less padding; padded batches only).",
    )
    packing: bool = help_field(
        False, "true: bin-pack whole examples into padding-free rows (batch sizes then count rows)."
    )
    padding_free: bool = help_field(
        True, "true: a micro-batch's examples run as one row without pad tokens (same loss as padded batches)."
    )
    attention: AttentionKind = help_field(
        AttentionKind.auto,
        "How padding-free and packed rows attend: auto (flash_attention_2 on a GPU where flash_attn imports, "
        "else varlen_sdpa), varlen_sdpa, flash_attention_2 or model (the model's own, with a block mask).",
    )
    loss: LossKind = help_field(
        LossKind.auto,
        "Where the LM head and cross-entropy run: auto (target_only where the output head allows it), "
        "target_only (float32 cross-entropy on the target positions only, chunked) or full_logits.",
    )
    kernels: Kernels = help_field(
        Kernels.none, "liger: liger-kernel's fused RMSNorm, SwiGLU, RoPE and linear cross-entropy (CUDA only)."
    )
    pack_max_tokens: int = help_field(
        0, "Tokens per packed row (train.packing=true); 0 = max_input_tokens + max_target_tokens."
    )
    logging_steps: int = help_field(5, "Log loss, learning rate and speed every this many steps.")
    eval_steps: int = help_field(0, "Eval loss every this many steps; 0 = before and after training only.")
    save_steps: int = help_field(
        0, "Save a resumable checkpoint every this many steps; 0 = save the final adapter only."
    )
    save_total_limit: int = help_field(2, "Checkpoints kept; older ones are deleted.")


@dataclass
class PretrainConfig(ConfigNode):
    """task=pretrain: documents joined with EOS and cut into blocks of `block_tokens` (no padding)."""

    block_tokens: int = help_field(768, "Tokens per training block (JMedLoRA's MedCALM: 768).")
    isolate_documents: bool = help_field(
        True, "true: attention and positions restart at every document inside a block."
    )
    eval_blocks: int = help_field(
        0, "Blocks held out for the eval loss; 0 = dataset.eval_fraction of the documents (whole documents)."
    )
