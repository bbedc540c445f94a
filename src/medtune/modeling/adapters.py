"""Wrap a base model for training: LoRA through PEFT (k-bit preparation first), or full fine-tuning."""

from __future__ import annotations

from typing import Any

from medtune.config.schema import AdapterConfig, AdapterKind, Quantization


def lora_config(adapter: AdapterConfig):
    from peft import LoraConfig

    targets: Any = list(adapter.target_modules) or None  # None = PEFT's default for the architecture
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=targets,
        bias=adapter.bias,
        task_type="CAUSAL_LM",
    )


def apply_adapter(model, adapter: AdapterConfig, gradient_checkpointing: bool):
    """Return the model to train: a PeftModel for LoRA, the model itself for `full`."""
    if adapter.kind == AdapterKind.full:
        if gradient_checkpointing:
            enable_activation_checkpointing(model)
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if adapter.quantization.method != Quantization.none:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": True},
        )
    elif gradient_checkpointing:
        enable_activation_checkpointing(model)
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(adapter))


def enable_activation_checkpointing(model) -> None:
    """Recompute activations in the backward pass, by the method this transformers has: releases after
    5.17 name it activation_checkpointing_enable (gradient_checkpointing_enable is their deprecated
    alias), 5.17 and earlier know only gradient_checkpointing_enable (seen on the GPU image)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit weights count as their logical number of elements."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if hasattr(param, "quant_state") or param.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total
