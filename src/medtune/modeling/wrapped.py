"""The transformers model inside the wrappers training puts around it (DeepSpeed / DDP, PEFT)."""

from __future__ import annotations


def unwrap_causal_lm(model):
    """The causal LM under a DeepSpeed or DDP engine (`.module`) and a PEFT wrapper (`get_base_model`)."""
    while hasattr(model, "module") and type(model).__name__ in ("DeepSpeedEngine", "DistributedDataParallel"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model
