"""Rules about the model a job loads and the machine it loads on: adapter, devices, size, weights."""

from __future__ import annotations

import importlib.util
from typing import Any

from medtune.config.schema import (
    Accelerator,
    AdapterConfig,
    AdapterKind,
    HardwareConfig,
    ModelConfig,
    ModelSource,
    Quantization,
)
from medtune.errors import ModelUnavailableError
from medtune.run_dir import check_train_run


def check_adapter(cfg: Any) -> list[str]:
    a: AdapterConfig = cfg.adapter
    problems = []
    if a.kind == AdapterKind.none:
        problems.append(
            "adapter=none trains nothing: pick adapter=lora, qlora, lora_int8 or full "
            "(an untuned base is evaluated with evaluate.py, not trained)."
        )
    if a.kind == AdapterKind.lora:
        if a.r <= 0:
            problems.append(f"adapter.r={a.r} must be a positive rank, e.g. adapter.r=8.")
        if a.alpha <= 0:
            problems.append(f"adapter.alpha={a.alpha} must be positive, e.g. adapter.alpha=16.")
        if not 0.0 <= a.dropout < 1.0:
            problems.append(f"adapter.dropout={a.dropout} must be in [0, 1), e.g. adapter.dropout=0.1.")
    quantized = a.quantization.method != Quantization.none
    if quantized and a.kind == AdapterKind.full:
        problems.append(
            f"adapter.quantization.method={a.quantization.method.value} with adapter=full: a quantized base "
            "cannot be fully fine-tuned; use adapter=qlora or adapter=lora_int8."
        )
    if quantized and importlib.util.find_spec("bitsandbytes") is None:
        problems.append(
            f"adapter={a.name} loads the base in {a.quantization.method.value}, which needs bitsandbytes: "
            "pip install bitsandbytes (or pick adapter=lora)."
        )
    return problems


def _cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_problems(hw: HardwareConfig) -> list[str]:
    """The CUDA devices `hw` asks for are on this machine (only asked when a model really loads)."""
    if hw.accelerator != Accelerator.cuda:
        return []
    wanted, found = hw.devices_per_node, _cuda_device_count()
    if found >= wanted:
        return []
    seen = "no CUDA device was found on this machine" if found == 0 else f"this machine has {found}"
    return [
        f"hardware={hw.name} needs {wanted} CUDA device(s) per node, but {seen}: "
        "pick hardware=cpu, run on a GPU node, or plan the run with dry_run=true."
    ]


def size_problems(model: ModelConfig, hw: HardwareConfig, cache_dir: str) -> list[str]:
    """The model is no bigger than `hw` trains or serves (hardware.max_model_params_billion)."""
    if hw.max_model_params_billion is None:
        return []
    count, counted_from = model_size(model, cache_dir)
    if count is None or count / 1e9 <= hw.max_model_params_billion:
        return []
    return [
        f"model={model.name} has {count / 1e9:.1f}B parameters ({count:,}, {counted_from}), more than "
        f"hardware={hw.name} trains (at most {hw.max_model_params_billion:g}B): pick a GPU option such as "
        "hardware=a100x4, or plan the run with dry_run=true."
    ]


def quantization_problems(adapter: AdapterConfig, hw: HardwareConfig, model: ModelConfig) -> list[str]:
    """What a quantized base needs of the machine and of ZeRO."""
    problems = []
    quant = adapter.quantization
    four_bit = quant.method in (Quantization.nf4, Quantization.fp4)
    arch = model.architecture
    if (
        four_bit
        and hw.accelerator == Accelerator.cpu
        and arch.hidden_size
        and arch.intermediate_size
        and (arch.hidden_size % 64 or arch.intermediate_size % 64)
    ):
        problems.append(
            f"adapter={adapter.name} on hardware=cpu: bitsandbytes packs 4-bit CPU weights in blocks of 64, "
            f"but model={model.name} has hidden_size={arch.hidden_size} and intermediate_size="
            f"{arch.intermediate_size}; use multiples of 64, or adapter=lora."
        )
    if hw.deepspeed.zero_stage == 3 and four_bit and quant.quant_storage not in (None, quant.compute_dtype):
        problems.append(
            f"adapter.quantization.quant_storage={quant.quant_storage.value} under ZeRO-3 (hardware={hw.name}): "
            f"ZeRO-3 shards the 4-bit base only when it is stored in the compute dtype "
            f"({quant.compute_dtype.value}); set adapter.quantization.quant_storage=null."
        )
    if hw.deepspeed.zero_stage == 3 and quant.method == Quantization.int8:
        problems.append(
            f"adapter={adapter.name} (8-bit base) cannot be sharded by ZeRO-3 (hardware={hw.name}): "
            "use a ZeRO-2 option, or adapter=qlora."
        )
    if not 0 <= hw.deepspeed.zero_stage <= 3:
        problems.append(f"hardware.deepspeed.zero_stage={hw.deepspeed.zero_stage} must be 0 (off), 1, 2 or 3.")
    return problems


def check_hardware(cfg: Any, *, loads_model: bool, dry_run: bool = False) -> list[str]:
    """Devices and size (when a model loads here and the run is not a dry run), then quantization."""
    problems = []
    if loads_model and not dry_run:
        problems += device_problems(cfg.hardware)
    if loads_model:
        problems += size_problems(cfg.model, cfg.hardware, cfg.paths.cache_dir)
    return problems + quantization_problems(cfg.adapter, cfg.hardware, cfg.model)


def model_size(model: ModelConfig, cache_dir: str) -> tuple[int | None, str]:
    """(parameters, how they were found): exact from the checkpoint's config when it is here."""
    from medtune.modeling.architecture import estimate_num_parameters
    from medtune.modeling.description import describe_model

    try:
        described = describe_model(model, cache_dir, materialize=False)
    except ModelUnavailableError:
        described = None  # reported by the resolve phase (medtune.rules.resolve)
    if described is not None and described.from_checkpoint:
        return described.num_parameters(), described.counted_from
    if None in (model.architecture.hidden_size, model.architecture.num_layers):
        return None, "unknown"
    return estimate_num_parameters(model.architecture), "estimated from model.architecture"


def check_model(model: ModelConfig, *, dry_run: bool = False) -> list[str]:
    """A hub model's weights are on this machine (or may be downloaded); a local one was described already."""
    from medtune.modeling.description import hf_cache_has

    if model.path or model.source in (ModelSource.embedded, ModelSource.tiny):
        return []  # found, read or refused by the model description (the resolve phase)
    if not model.hub_id:
        return [f"model={model.name} has neither model.path nor model.hub_id: set model.path=/path/to/checkpoint."]
    if dry_run or model.allow_download or hf_cache_has(model.hub_id, model.revision):
        return []
    return [
        f"model={model.name}: the weights of {model.hub_id} are not on this machine (model.path is unset and the "
        "Hugging Face cache has no copy). Download them where there is network (huggingface-cli download "
        f"{model.hub_id} --local-dir /models/{model.name}) and set model.path=/models/{model.name}, "
        "or allow a download with model.allow_download=true."
    ]


def check_run_dir(key: str, run: str) -> list[str]:
    """`key`=`run` names a finished train.py run dir (`TrainRunDir.problem`)."""
    return check_train_run(key, run)
