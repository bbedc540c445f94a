"""How a run computes its steps: the loss path, the attention of padding-free batches, kernels, precision.

`prepare_kernels` patches the loaded base model (before the adapter wraps it); `choose_speed` then settles
everything else on the wrapped model and `attach` hands the target-only loss to the Trainer. The choices
are printed in the run's plan (`SpeedSetup.lines`) and logged to W&B (`SpeedSetup.summary`), so a run
says which path it took and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtune.config.schema import Accelerator, DType, Kernels, Quantization, TrainRunConfig
from medtune.data.training_data import TrainerFeed, training_data_for
from medtune.errors import ConfigError
from medtune.modeling.attention import AttentionChoice, choose_attention, set_attention
from medtune.modeling.wrapped import unwrap_causal_lm
from medtune.training.target_loss import LossPath, TargetOnlyHead, choose_loss_path


@dataclass
class SpeedSetup:
    loss: LossPath
    attention: AttentionChoice
    padding_free: bool
    kernels: str
    precision: str
    targets: str  # which positions the loss covers, in words
    attention_before: str | None = None  # the model's own implementation, restored after training

    def lines(self) -> list[str]:
        return [
            self.loss.line(self.targets),
            self.attention.line(self.padding_free),
            f"kernels: {self.kernels}",
            f"precision: {self.precision}",
        ]

    def summary(self) -> dict[str, str]:
        return {
            "speed/loss_path": "target_only" if self.loss.target_only else "full_logits",
            "speed/attention": (self.attention.implementation or self.attention_before or "model")
            if self.padding_free
            else str(self.attention_before),
            "speed/padding_free": str(self.padding_free).lower(),
            "speed/kernels": self.kernels,
            "speed/precision": self.precision,
        }


def prepare_kernels(model, cfg: TrainRunConfig) -> str:
    """train.kernels=liger: patch the base model's RMSNorm, SwiGLU and RoPE; returns the plan's words."""
    if cfg.train.kernels != Kernels.liger:
        return "none (train.kernels=liger fuses RMSNorm, SwiGLU, RoPE and the loss on a CUDA GPU)"
    from medtune.modeling.kernels import apply_liger

    model_type = unwrap_causal_lm(model).config.model_type
    try:
        apply_liger(model, model_type)
    except RuntimeError as error:
        raise ConfigError([str(error)]) from error
    return f"liger (fused RMSNorm, SwiGLU/GeGLU, RoPE for {model_type}; fused linear cross-entropy in the loss)"


def precision_words(cfg: TrainRunConfig) -> str:
    hw = cfg.hardware
    if cfg.adapter.quantization.method != Quantization.none:
        return f"{cfg.adapter.quantization.method.value} base, {cfg.adapter.quantization.compute_dtype.value} compute"
    if uses_autocast(cfg):
        if hw.accelerator != Accelerator.cpu:
            return f"{hw.compute_dtype.value} autocast on the GPU, {cfg.model.dtype.value} weights"
        native = "" if cpu_has_native_bf16() else " (this CPU has no native bfloat16: expect it slower than float32)"
        return f"bfloat16 autocast on the CPU, {cfg.model.dtype.value} weights{native}"
    return f"{cfg.model.dtype.value} weights and compute"


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 among this CPU's flags (Linux); False where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def uses_autocast(cfg: TrainRunConfig) -> bool:
    """Mixed precision: 16-bit compute over float32 weights (a GPU's half-precision model, or
    hardware.compute_dtype=bfloat16 on a CPU that has native bfloat16 instructions)."""
    hw = cfg.hardware
    if cfg.adapter.quantization.method != Quantization.none:
        return False
    if hw.accelerator == Accelerator.cuda:
        return cfg.model.dtype != DType.float32
    return hw.compute_dtype == DType.bfloat16


def choose_speed(model, cfg: TrainRunConfig, feed: TrainerFeed, kernels: str) -> SpeedSetup:
    """Settle the loss path and the attention on the wrapped model (switching its attention if needed)."""
    on_cuda = cfg.hardware.accelerator == Accelerator.cuda
    try:
        loss = choose_loss_path(model, cfg.train.loss.value, cfg.hardware.deepspeed.zero_stage)
        half = (
            cfg.adapter.quantization.method != Quantization.none
            or cfg.model.dtype != DType.float32
            or uses_autocast(cfg)
        )
        before = getattr(unwrap_causal_lm(model).config, "_attn_implementation", None)
        attention = choose_attention(cfg.train.attention.value, on_cuda, half, before)
    except ValueError as error:
        raise ConfigError([str(error)]) from error
    if feed.padding_free:
        set_attention(model, attention.implementation)
    return SpeedSetup(
        loss=loss,
        attention=attention,
        padding_free=feed.padding_free,
        kernels=kernels,
        precision=precision_words(cfg),
        targets=training_data_for(cfg).targets,
        attention_before=before,
    )


def attach(trainer, setup: SpeedSetup, cfg: TrainRunConfig) -> None:
    """Give the Trainer the target-only loss (liger's fused kernel for it with train.kernels=liger)."""
    if not setup.loss.target_only:
        return
    fused = None
    if cfg.train.kernels == Kernels.liger:
        from medtune.modeling.kernels import liger_linear_cross_entropy

        fused = liger_linear_cross_entropy
    trainer.target_loss = TargetOnlyHead(trainer.model, fused=fused)


def detach(trainer, setup: SpeedSetup) -> None:
    """After training: the head computes logits again and the model has its own attention back."""
    if trainer.target_loss is not None:
        trainer.target_loss.remove()
        trainer.target_loss = None
    if setup.padding_free and setup.attention_before is not None:
        set_attention(trainer.model, setup.attention_before)
