"""Bytes per element: which dtype each kind of tensor has at run time on this project's training path.

* `medtune.modeling.load.load_base_model` loads the base in `model.dtype`, or quantized by
  bitsandbytes (every `nn.Linear` except the output head, as transformers' quantizer decides);
* `medtune.modeling.adapters.apply_adapter` runs `prepare_model_for_kbit_training` on a quantized
  base, which casts every non-quantized parameter (embeddings, norms, biases, output head) to
  float32, and PEFT keeps LoRA weights in float32 (`autocast_adapter_dtype=True`);
* `medtune.training.arguments` turns on autocast only for an unquantized 16-bit base on CUDA
  without DeepSpeed; with bf16/fp16 enabled, DeepSpeed casts every floating parameter of the
  module (LoRA weights included) to that dtype and keeps float32 master weights, Adam states and
  a float32 gradient partition in its optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtune.config.schema import (
    Accelerator,
    AdapterConfig,
    AdapterKind,
    DType,
    HardwareConfig,
    Optimizer,
    Quantization,
)

GIB = 1024**3
MIB = 1024**2

DTYPE_BYTES = {DType.float32: 4, DType.bfloat16: 2, DType.float16: 2}


@dataclass(frozen=True)
class Precision:
    """Bytes per element of each kind of tensor, as this project's training path leaves them."""

    summary: str
    frozen_bytes: int  # non-quantized frozen parameters (embeddings, norms, biases, head; the base of a plain LoRA)
    trainable_bytes: int  # trainable parameters as the module holds them
    grad_bytes: int
    state_bytes: float  # optimizer states (Adam m and v) per trainable element
    master_bytes: int  # float32 master weights kept by DeepSpeed's mixed-precision optimizer
    grad_partition_bytes: int  # DeepSpeed's float32 gradient partition
    activation_bytes: int  # the dtype of the hidden states
    compute_bytes: int  # the dtype quantized weights are dequantized to
    autocast: bool  # torch autocast: each LoRA input gets its own 16-bit copy
    dropout_mask_bytes: int  # CUDA's fused dropout keeps a bool mask; the CPU one a mask in the input dtype


def precision(adapter: AdapterConfig, hardware: HardwareConfig, model_dtype: DType, optimizer: Optimizer) -> Precision:
    """The dtypes of `adapter` on `hardware` with a `model_dtype` base: DeepSpeed mixed precision, or as loaded."""
    if hardware.deepspeed.zero_stage > 0 and hardware.compute_dtype != DType.float32:
        return _deepspeed_precision(hardware.compute_dtype, optimizer)
    return _loaded_precision(adapter, hardware, model_dtype, optimizer)


def _deepspeed_precision(compute_dtype: DType, optimizer: Optimizer) -> Precision:
    """DeepSpeed bf16/fp16: the module in the compute dtype, float32 master weights, states and gradient partition."""
    compute = DTYPE_BYTES[compute_dtype]
    return Precision(
        summary=f"DeepSpeed {compute_dtype.value}: parameters, gradients and activations in "
        f"{compute_dtype.value}; float32 master weights, Adam states and gradient partition",
        frozen_bytes=compute,
        trainable_bytes=compute,
        grad_bytes=compute,
        state_bytes=_state_bytes(optimizer, 4),
        master_bytes=4,
        grad_partition_bytes=4,
        activation_bytes=compute,
        compute_bytes=compute,
        autocast=False,
        dropout_mask_bytes=1,
    )


def _loaded_precision(
    adapter: AdapterConfig, hardware: HardwareConfig, model_dtype: DType, optimizer: Optimizer
) -> Precision:
    """No DeepSpeed mixed precision: the dtypes the loader and PEFT leave, with autocast where training turns it on."""
    quantized = adapter.quantization.method != Quantization.none
    on_cuda = hardware.accelerator == Accelerator.cuda
    loaded = 4 if quantized else DTYPE_BYTES[model_dtype]  # prepare_model_for_kbit_training upcasts to float32
    trainable = 4 if adapter.kind == AdapterKind.lora else loaded  # PEFT keeps LoRA weights in float32
    autocast = on_cuda and not quantized and model_dtype != DType.float32
    if quantized:
        summary = (
            f"{adapter.quantization.method.value} base computing in {adapter.quantization.compute_dtype.value}; "
            "LoRA, norms, embeddings and hidden states in float32 (prepare_model_for_kbit_training)"
        )
    elif autocast:
        summary = (
            f"{model_dtype.value} base under autocast; LoRA weights float32"
            if adapter.kind == AdapterKind.lora
            else f"{model_dtype.value} weights, gradients and Adam states (autocast, no master copy)"
        )
    else:
        summary = f"{model_dtype.value} throughout"
    return Precision(
        summary=summary,
        frozen_bytes=loaded,
        trainable_bytes=trainable,
        grad_bytes=trainable,
        state_bytes=_state_bytes(optimizer, trainable),
        master_bytes=0,
        grad_partition_bytes=0,
        activation_bytes=loaded,
        compute_bytes=DTYPE_BYTES[adapter.quantization.compute_dtype] if quantized else loaded,
        autocast=autocast,
        dropout_mask_bytes=1 if on_cuda else loaded,
    )


def _state_bytes(optimizer: Optimizer, param_bytes: int) -> float:
    """Optimizer-state bytes per trainable element (Adam's m and v)."""
    if optimizer == Optimizer.paged_adamw_8bit:
        return 2 + 2 * 4 / 256  # two uint8 states plus a float32 absmax per block of 256
    if optimizer == Optimizer.paged_adamw_32bit:
        return 8
    return 2 * param_bytes  # torch AdamW: exp_avg and exp_avg_sq like the parameter
