"""Resolve where a model's weights are, and load tokenizer and base model (quantized if asked).

The tiny model and real checkpoints take the same path: `from_pretrained` on a directory or a
hub id found in the local cache. Loading failures become a `ModelUnavailableError` naming the
checkpoint and the fix, never a stack trace from deep inside transformers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medtune.config.schema import (
    AdapterConfig,
    DeepSpeedConfig,
    DType,
    HardwareConfig,
    ModelConfig,
    Quantization,
)
from medtune.errors import ModelUnavailableError


def torch_dtype(dtype: DType):
    import torch

    return getattr(torch, dtype.value)


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def known_model_type(model_type: str) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def check_architecture(checkpoint: str, model: ModelConfig) -> None:
    """Refuse a checkpoint whose config.json names an architecture this transformers cannot build.

    transformers would say so too, but inside a long message; this one names model.path and the fix."""
    config_file = Path(checkpoint) / "config.json"
    if not config_file.is_file():
        return  # a hub id (checked by from_pretrained) or a run dir resolved elsewhere
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(
            f"model={model.name}: {config_file} is not valid JSON ({error}); re-download or repair the checkpoint."
        ) from error
    model_type = config.get("model_type")
    if model.trust_remote_code and "auto_map" in config:
        return  # the checkpoint ships its own modelling code
    if not model_type or not known_model_type(model_type):
        what = f"model_type {model_type!r}" if model_type else "no model_type"
        raise ModelUnavailableError(
            f"model={model.name}: the checkpoint at {checkpoint} has {what} in config.json, an architecture "
            f"transformers {transformers_version()} does not know; upgrade transformers (pip install -U "
            "transformers), set model.trust_remote_code=true if the checkpoint ships its own modelling code, "
            "or point model.path at a checkpoint of a known architecture (llama, mistral, qwen2, gpt_neox, ...)."
        )


def _first_line(error: BaseException, limit: int = 300) -> str:
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return line if len(line) <= limit else line[:limit] + " ..."


def quantization_config(adapter: AdapterConfig, zero_stage: int = 0):
    q = adapter.quantization
    if q.method == Quantization.none:
        return None
    from transformers import BitsAndBytesConfig

    if q.method == Quantization.int8:
        return BitsAndBytesConfig(load_in_8bit=True)
    # ZeRO-3 shards only parameters of one float dtype: storing the packed 4-bit weights in the
    # compute dtype lets it shard the quantized base instead of replicating it on every rank.
    storage_dtype = q.quant_storage or (q.compute_dtype if zero_stage == 3 else None)
    storage = torch_dtype(storage_dtype) if storage_dtype else None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.method.value,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=torch_dtype(q.compute_dtype),
        **({"bnb_4bit_quant_storage": storage} if storage is not None else {}),
    )


def device_map(hardware: HardwareConfig, deepspeed: DeepSpeedConfig, quantized: bool) -> Any:
    """Where weights land at load time: ZeRO-3 places them itself; quantized weights need a device now."""
    if deepspeed.zero_stage == 3:
        return None
    if hardware.accelerator.value == "cuda":
        return {"": int(os.environ.get("LOCAL_RANK", 0))}
    return {"": "cpu"} if quantized else None


def load_kwargs(model: ModelConfig) -> dict[str, Any]:
    return {
        "revision": model.revision,
        "trust_remote_code": model.trust_remote_code,
        "local_files_only": not model.allow_download,
    }


def load_tokenizer(checkpoint: str, model: ModelConfig, padding_side: str = "right"):
    from transformers import AutoTokenizer

    check_architecture(checkpoint, model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, **load_kwargs(model))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(
            f"model={model.name}: cannot load a tokenizer from {checkpoint} ({error.__class__.__name__}: "
            f"{_first_line(error)}); check model.path, or download the checkpoint first."
        ) from error
    if tokenizer.pad_token is None:  # Llama 2 has none; padded positions are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_base_model(checkpoint: str, model: ModelConfig, adapter: AdapterConfig, hardware: HardwareConfig):
    from transformers import AutoModelForCausalLM

    check_architecture(checkpoint, model)
    quant = quantization_config(adapter, hardware.deepspeed.zero_stage)
    dtype = torch_dtype(adapter.quantization.compute_dtype if quant is not None else model.dtype)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            checkpoint,
            dtype=dtype,
            quantization_config=quant,
            device_map=device_map(hardware, hardware.deepspeed, quant is not None),
            **load_kwargs(model),
        )
    except (OSError, ValueError, KeyError) as error:
        raise ModelUnavailableError(
            f"model={model.name}: cannot load weights from {checkpoint} ({error.__class__.__name__}: "
            f"{_first_line(error)}); check that model.path is a causal-LM checkpoint whose "
            "architecture this transformers version knows."
        ) from error
    if quant is not None and hardware.accelerator.value == "cpu":
        keep_cpu_4bit_layout_trainable(loaded)
    return loaded


def keep_cpu_4bit_layout_trainable(model) -> None:
    """Stop bitsandbytes from repacking 4-bit CPU weights on the first no-grad forward.

    Its AVX512-BF16 packed layout runs through an op with no autograd kernel, so once an
    evaluation has packed the weights, later training steps get no gradient through the frozen
    4-bit layers (every LoRA before them stops learning). The plain layout is slower to infer
    but correct for both.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
