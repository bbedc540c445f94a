"""Memory terms per GPU: quantized and plain weights, optimizer states, gradients, ZeRO sharding and buffers.

ZeRO divides by the data-parallel world size (devices_per_node x num_nodes): stage 1 the optimizer
states, stage 2 also the gradients, stage 3 also the parameters, the 4-bit base included when it is
stored in the compute dtype (adapter.quantization.quant_storage unset or equal to it, as the loader
does); its quantization constants are not parameters and stay on every GPU. Offloaded optimizer
states or parameters leave the GPU. DeepSpeed gets a ZeRO config with `overlap_comm` and
`contiguous_gradients` from `medtune.training.arguments`; its buffers are counted here too.
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
from medtune.modeling.planner.counting import ParameterCounts
from medtune.modeling.planner.dtypes import DTYPE_BYTES, GIB, Precision

# bitsandbytes 4-bit: `quantize_4bit` blocksize (transformers' BitsAndBytesConfig does not change it),
# the second-level block of double quantization, and the per-tensor lookup tables a QuantState keeps.
FOUR_BIT_BLOCKSIZE = 64
DOUBLE_QUANT_BLOCKSIZE = 256
FOUR_BIT_CODE_BYTES = 16 * 4  # the NF4 / FP4 table, float32
DYNAMIC_CODE_BYTES = 256 * 4  # the 8-bit dynamic map copied into each nested state, float32
OFFSET_BYTES = 4  # mean of the first-level absmax, a float32 scalar

# DeepSpeed ZeRO defaults (medtune's config leaves them unset): deepspeed/runtime/zero/config.py.
DS_REDUCE_BUCKET_ELEMENTS = 500_000_000
DS_MAX_LIVE_PARAMETERS = 1_000_000_000

FOUR_BIT = (Quantization.nf4, Quantization.fp4)

# --------------------------------------------------------------------------------------------
# Quantized weight bytes
# --------------------------------------------------------------------------------------------


def four_bit_bytes(numel: int, double_quant: bool, storage_bytes: int = 1) -> tuple[int, int]:
    """(packed weight bytes, quantization-constant bytes) of one matrix quantized by bitsandbytes.

    Packed: two 4-bit values per byte, stored in `storage_bytes`-wide elements
    ((numel + 1) // (2 * storage_bytes) of them). Constants: one absmax per block of 64 values,
    float32 without double quantization; with it, an 8-bit absmax per block plus one float32 absmax
    per 256 of those, the 256-entry float32 dynamic map and a float32 offset. Every QuantState also
    keeps the 16-entry float32 NF4/FP4 table.
    """
    data = ((numel + 1) // (2 * storage_bytes)) * storage_bytes
    blocks = -(-numel // FOUR_BIT_BLOCKSIZE)
    if double_quant:
        constants = blocks + 4 * -(-blocks // DOUBLE_QUANT_BLOCKSIZE) + DYNAMIC_CODE_BYTES + OFFSET_BYTES
    else:
        constants = 4 * blocks
    return data, constants + FOUR_BIT_CODE_BYTES


def int8_bytes(out_features: int, in_features: int) -> tuple[int, int]:
    """(int8 weight bytes, constants) of an LLM.int8 matrix: one byte a value, one float32 scale a row."""
    return out_features * in_features, 4 * out_features


def quantized_linear_bytes(
    counts: ParameterCounts, method: Quantization, double_quant: bool, storage_bytes: int = 1
) -> tuple[int, int]:
    """(weight bytes, constant bytes) of every quantizable linear layer of `counts`, whole (no sharding)."""
    data = constants = 0
    for (out_f, in_f), n in counts.quantizable_shapes:
        if method in FOUR_BIT:
            one_data, one_constants = four_bit_bytes(out_f * in_f, double_quant, storage_bytes)
        else:
            one_data, one_constants = int8_bytes(out_f, in_f)
        data += n * one_data
        constants += n * one_constants
    return data, constants


# --------------------------------------------------------------------------------------------
# ZeRO sharding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sharding:
    """Into how many parts ZeRO splits each kind of tensor over the data-parallel ranks (1: whole on each)."""

    world_size: int  # devices_per_node x num_nodes
    zero_stage: int
    optimizer: int  # from stage 1 on
    gradients: int  # from stage 2 on
    parameters: int  # stage 3

    @classmethod
    def of(cls, hardware: HardwareConfig) -> Sharding:
        devices = hardware.devices_per_node * hardware.num_nodes
        zero = hardware.deepspeed.zero_stage
        return cls(
            world_size=devices,
            zero_stage=zero,
            optimizer=devices if zero >= 1 else 1,
            gradients=devices if zero >= 2 else 1,
            parameters=devices if zero >= 3 else 1,
        )


# --------------------------------------------------------------------------------------------
# The frozen base
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseWeights:
    """The frozen base model on one GPU, quantized or not."""

    bytes: int  # per GPU, quantization constants included
    quant_data: int = 0  # quantized weights of all ranks together
    quant_constants: int = 0  # not parameters: whole on every GPU
    sharded_4bit_elements: int = 0  # elements of the 4-bit base that ZeRO-3 shards as parameters
    notes: tuple[str, ...] = ()


def base_weights(
    counts: ParameterCounts, adapter: AdapterConfig, hardware: HardwareConfig, prec: Precision, shards: Sharding
) -> BaseWeights:
    """Bytes of the frozen base on one GPU: 4-bit, int8 or in its loaded dtype."""
    method = adapter.quantization.method
    if method in FOUR_BIT:
        return _four_bit_base(counts, adapter, hardware, prec, shards)
    if method == Quantization.int8:
        return _int8_base(counts, prec, shards)
    frozen_base = counts.total - (counts.trainable - counts.adapter)
    return BaseWeights(bytes=frozen_base * prec.frozen_bytes // shards.parameters)


def _four_bit_base(
    counts: ParameterCounts, adapter: AdapterConfig, hardware: HardwareConfig, prec: Precision, shards: Sharding
) -> BaseWeights:
    """A bitsandbytes 4-bit base: sharded by ZeRO-3 only when stored in the compute dtype."""
    q = adapter.quantization
    zero = shards.zero_stage
    compute_dtype = hardware.compute_dtype if zero > 0 else q.compute_dtype
    # As the loader does (medtune.modeling.load.quantization_config): under ZeRO-3 an unset storage
    # dtype becomes the compute dtype, so that the 4-bit base is sharded.
    storage: DType | None = q.quant_storage or (compute_dtype if zero >= 3 else None)
    storage_bytes = DTYPE_BYTES[storage] if storage is not None else 1
    data, constants = quantized_linear_bytes(counts, q.method, q.double_quant, storage_bytes)
    sharded = zero >= 3 and storage is not None and storage == compute_dtype
    notes: tuple[str, ...] = ()
    if zero >= 3 and not sharded:
        notes = (
            f"ZeRO-3 cannot shard the 4-bit base: adapter.quantization.quant_storage="
            f"{storage.value if storage else 'null (uint8)'} differs from the compute dtype {compute_dtype.value}; "
            f"set adapter.quantization.quant_storage=null (stored in {compute_dtype.value} under ZeRO-3) to "
            f"shard it ({data / GIB:.1f} GiB on every GPU now).",
        )
    size = data // (shards.parameters if sharded else 1) + constants
    size += counts.non_quantizable * prec.frozen_bytes // shards.parameters
    return BaseWeights(
        bytes=size,
        quant_data=data,
        quant_constants=constants,
        sharded_4bit_elements=data // DTYPE_BYTES[storage] if sharded else 0,
        notes=notes,
    )


def _int8_base(counts: ParameterCounts, prec: Precision, shards: Sharding) -> BaseWeights:
    """An LLM.int8 base: the 8-bit weights are never sharded."""
    data, constants = quantized_linear_bytes(counts, Quantization.int8, double_quant=False)
    notes: tuple[str, ...] = ()
    if shards.zero_stage >= 3:
        notes = ("ZeRO-3 does not shard int8 weights: the 8-bit base is counted whole on every GPU.",)
    size = data + constants + counts.non_quantizable * prec.frozen_bytes // shards.parameters
    return BaseWeights(bytes=size, quant_data=data, quant_constants=constants, notes=notes)


# --------------------------------------------------------------------------------------------
# What trains: weights, gradients, optimizer states
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResidentMemory:
    """Bytes per GPU held for the whole run (weights, optimizer states), and all gradients as at the step."""

    base: BaseWeights  # as loaded, before any offload
    base_weights: int  # on the GPU: the quantization constants alone when parameters are offloaded
    trainable_weights: int
    optimizer_states: int  # Adam m and v, plus DeepSpeed's float32 master weights and gradient partition
    gradients: int
    notes: tuple[str, ...] = ()


def resident_memory(
    counts: ParameterCounts, adapter: AdapterConfig, hardware: HardwareConfig, prec: Precision
) -> ResidentMemory:
    """Weights, optimizer states and gradients on one GPU, after ZeRO's sharding and DeepSpeed's offload."""
    shards = Sharding.of(hardware)
    base = base_weights(counts, adapter, hardware, prec, shards)
    trainable = counts.trainable
    trainable_weights = trainable * prec.trainable_bytes // shards.parameters
    gradients = trainable * prec.grad_bytes // shards.gradients
    optimizer = int(trainable * (prec.state_bytes + prec.master_bytes + prec.grad_partition_bytes)) // shards.optimizer
    base_bytes = base.bytes
    notes = list(base.notes)
    ds = hardware.deepspeed
    if ds.offload_optimizer and shards.zero_stage > 0:
        notes.append(f"optimizer states offloaded to CPU memory ({optimizer / GIB:.1f} GiB per rank there).")
        optimizer = 0
    if ds.offload_params and shards.zero_stage >= 3:
        notes.append(
            f"parameters offloaded to CPU memory ({(base_bytes + trainable_weights) / GIB:.1f} GiB per rank there)."
        )
        base_bytes = base.quant_constants
        trainable_weights = 0
    return ResidentMemory(
        base=base,
        base_weights=base_bytes,
        trainable_weights=trainable_weights,
        optimizer_states=optimizer,
        gradients=gradients,
        notes=tuple(notes),
    )


def optimizer_step_temporaries(
    counts: ParameterCounts, prec: Precision, optimizer: Optimizer, on_cuda: bool, shards: Sharding
) -> int:
    """Bytes the optimizer step allocates on top of the gradients."""
    if optimizer != Optimizer.adamw_torch:
        return 0  # bitsandbytes' fused kernels
    if on_cuda:  # foreach AdamW: one state-sized temporary over all (sharded) parameters
        return int(counts.trainable * max(prec.state_bytes / 2, prec.master_bytes)) // shards.optimizer
    # single-tensor AdamW on CPU: two temporaries of the largest parameter
    return 2 * counts.largest_trainable * int(prec.state_bytes / 2)


def gradients_before_first_layer(
    counts: ParameterCounts, adapter: AdapterConfig, prec: Precision, shards: Sharding
) -> int:
    """Gradient bytes alive while the first layer runs backward: all but its own and the input embedding's."""
    trainable = counts.trainable
    if adapter.kind == AdapterKind.full:
        late = counts.per_layer + (counts.embedding if counts.output_head else 0)
    else:
        late = trainable // max(1, counts.num_layers)
    return max(0, trainable - late) * prec.grad_bytes // shards.gradients


def head_gradients(counts: ParameterCounts, prec: Precision, shards: Sharding) -> int:
    """Gradient bytes that appear first in backward (output head, final norm) when they train."""
    return counts.head_trainable * prec.grad_bytes // shards.gradients


# --------------------------------------------------------------------------------------------
# Framework buffers
# --------------------------------------------------------------------------------------------


def framework_buffers(
    counts: ParameterCounts, adapter: AdapterConfig, hardware: HardwareConfig, prec: Precision, base: BaseWeights
) -> tuple[int, tuple[str, ...]]:
    """(bytes, notes) of DeepSpeed's reduce buckets and gathered ZeRO-3 parameters, or DDP's gradient buckets."""
    shards = Sharding.of(hardware)
    zero = shards.zero_stage
    if zero in (1, 2):
        return DS_REDUCE_BUCKET_ELEMENTS * prec.grad_bytes * 2, ()  # contiguous_gradients + overlap_comm: two buckets
    if zero == 3:
        sharded_elements = base.sharded_4bit_elements
        if adapter.quantization.method == Quantization.none:
            sharded_elements += counts.total + counts.adapter
        else:
            sharded_elements += counts.non_quantizable + counts.adapter
        gathered = min(DS_MAX_LIVE_PARAMETERS, sharded_elements) * prec.frozen_bytes
        return DS_REDUCE_BUCKET_ELEMENTS * prec.grad_bytes + gathered, ()
    if shards.world_size > 1 and hardware.accelerator == Accelerator.cuda:
        notes = ("DDP without ZeRO: every GPU holds the whole model, its gradients and optimizer states.",)
        return counts.trainable * prec.grad_bytes, notes  # DDP copies gradients into its buckets
    return 0, ()
