"""The memory budget of one training step per GPU, whether it fits, and the whole plan of a run config.

`estimate_memory` adds the memory terms (weights, optimizer states, framework buffers) to the step
peak: gradients and activations at the worst of four moments, since gradients appear as activations
are freed. `verdict` says in one line whether the total fits the device; `plan` does all of it for a
`TrainRunConfig`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

from medtune.config.schema import (
    Accelerator,
    AdapterConfig,
    AdapterKind,
    ArchitectureConfig,
    DType,
    HardwareConfig,
    TrainingConfig,
    TrainRunConfig,
)
from medtune.data.training_data import training_data_for
from medtune.modeling.heads import target_only_expected
from medtune.modeling.planner.activations import ActivationEstimate, activation_estimate
from medtune.modeling.planner.counting import ParameterCounts, count_parameters
from medtune.modeling.planner.dtypes import GIB, precision
from medtune.modeling.planner.memory import (
    Sharding,
    framework_buffers,
    gradients_before_first_layer,
    head_gradients,
    optimizer_step_temporaries,
    resident_memory,
)

# What a CUDA process holds besides tensors: context, cuBLAS / NCCL workspaces, and the caching
# allocator's fragmentation (a fraction of everything allocated).
CUDA_CONTEXT_BYTES = 1 * GIB
CUDA_FRAGMENTATION = 0.05


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU (per process on CPU) of one training step, and whether they fit.

    total = base_weights + trainable_weights + optimizer_states + step_peak + framework_buffers
    + overhead. `gradients` (all of them, as at the optimizer step) and `activations` (their own
    peak) are shown for reference; `step_peak` is what both add together at the step's worst
    moment (`peak_moment`), since gradients appear as activations are freed.
    """

    base_weights: int  # frozen base, quantized or not (quantization constants included)
    quant_constants: int  # the part of base_weights that is quantization constants
    trainable_weights: int  # the adapter, or the whole model for full fine-tuning
    optimizer_states: int  # Adam m and v, plus DeepSpeed's float32 master weights and gradient partition
    gradients: int
    activations: int  # the peak for the hardware option's gradient_checkpointing setting
    activations_without_checkpointing: int
    activations_with_checkpointing: int
    step_peak: int  # gradients + activations (+ optimizer-step temporaries) at the worst moment
    peak_moment: str
    gradient_checkpointing: bool
    framework_buffers: int  # DeepSpeed buckets and gathered ZeRO-3 parameters, DDP gradient buckets
    overhead: int  # CUDA context and allocator fragmentation
    total: int
    device_memory: int | None  # what one device (or this host, on CPU) has
    device_label: str
    world_size: int
    zero_stage: int
    precision: str
    notes: tuple[str, ...] = ()
    activation_detail: ActivationEstimate | None = None

    @property
    def fits(self) -> bool | None:
        return None if self.device_memory is None else self.total <= self.device_memory

    @property
    def margin(self) -> int | None:
        """Device memory minus the estimate (negative: short by that much)."""
        return None if self.device_memory is None else self.device_memory - self.total

    def rows(self) -> list[tuple[str, int, bool]]:
        """(label, bytes, counted in the total)."""
        on, off = ("with", "without") if self.gradient_checkpointing else ("without", "with")
        return [
            ("base weights", self.base_weights, True),
            ("trainable weights", self.trainable_weights, True),
            ("optimizer states", self.optimizer_states, True),
            ("gradients (all, as at the optimizer step)", self.gradients, False),
            (f"activations, peak ({on} checkpointing)", self.activations, False),
            (
                f"activations, peak ({off} checkpointing)",
                self.activations_without_checkpointing
                if self.gradient_checkpointing
                else self.activations_with_checkpointing,
                False,
            ),
            (f"step peak: gradients + activations at the {self.peak_moment}", self.step_peak, True),
            ("framework buffers", self.framework_buffers, True),
            ("CUDA context + fragmentation", self.overhead, True),
            ("total", self.total, True),
        ]


def host_memory_bytes() -> int | None:
    """This host's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_memory(
    arch: ArchitectureConfig,
    adapter: AdapterConfig,
    hardware: HardwareConfig,
    train: TrainingConfig,
    model_dtype: DType = DType.bfloat16,
    counts: ParameterCounts | None = None,
) -> MemoryPlan:
    """Per-GPU bytes of one training step of micro_batch_size x (max_input_tokens + max_target_tokens).

    Weights, optimizer states and gradients follow ZeRO's sharding and DeepSpeed's offload
    (`medtune.modeling.planner.memory`). On top of weights and optimizer states, the total adds
    the step peak: gradients and activations (for hardware.gradient_checkpointing) at the worst
    of four moments, since gradients appear as activations are freed: the loss (no gradient yet),
    the backward of the last layer (the output head's gradients), of the first layer (all
    gradients but its own and the embedding's) and the optimizer step (all gradients plus AdamW's
    temporaries). Then DeepSpeed's buffers and, on CUDA, the context and fragmentation.
    """
    counts = counts or count_parameters(arch, adapter)
    prec = precision(adapter, hardware, model_dtype, train.optimizer)
    shards = Sharding.of(hardware)
    resident = resident_memory(counts, adapter, hardware, prec)
    buffers, buffer_notes = framework_buffers(counts, adapter, hardware, prec, resident.base)

    seq_len = train.max_input_tokens + train.max_target_tokens
    tokens = train.micro_batch_size * seq_len
    target_only = target_only_expected(
        train.loss.value, arch.model_type, hardware.deepspeed.zero_stage, adapter.kind == AdapterKind.full
    )
    # the response tokens of instruction tuning; every position when the lengths carry no target part
    targets = (train.micro_batch_size * train.max_target_tokens or tokens) if target_only else None
    act_on, act_off = (
        activation_estimate(
            arch,
            counts,
            adapter,
            prec,
            train.micro_batch_size,
            seq_len,
            ckpt,
            target_rows=targets,
            padding_free=train.padding_free or train.packing,
        )
        for ckpt in (True, False)
    )
    act = act_on if hardware.gradient_checkpointing else act_off
    on_cuda = hardware.accelerator == Accelerator.cuda
    if counts.trainable == 0:
        moments = {"forward pass": 0}
        act_with = act_without = 0
    else:
        act_with, act_without = act_on.peak_with_checkpointing, act_off.peak_without_checkpointing
        step_temporaries = optimizer_step_temporaries(counts, prec, train.optimizer, on_cuda, shards)
        moments = _step_moments(
            act.phases(hardware.gradient_checkpointing),
            resident.gradients + step_temporaries,
            head_gradients(counts, prec, shards),
            gradients_before_first_layer(counts, adapter, prec, shards),
        )
    peak_moment = max(moments, key=moments.get)
    step_peak = moments[peak_moment]
    activations = act_with if hardware.gradient_checkpointing else act_without

    allocated = resident.base_weights + resident.trainable_weights + resident.optimizer_states + step_peak + buffers
    overhead = int(CUDA_CONTEXT_BYTES + CUDA_FRAGMENTATION * allocated) if on_cuda else 0
    device_memory, label = device_memory_and_label(hardware)
    return MemoryPlan(
        base_weights=resident.base_weights,
        quant_constants=resident.base.quant_constants,
        trainable_weights=resident.trainable_weights,
        optimizer_states=resident.optimizer_states,
        gradients=resident.gradients,
        activations=activations,
        activations_without_checkpointing=act_without,
        activations_with_checkpointing=act_with,
        step_peak=step_peak,
        peak_moment=peak_moment,
        gradient_checkpointing=hardware.gradient_checkpointing,
        framework_buffers=buffers,
        overhead=overhead,
        total=allocated + overhead,
        device_memory=device_memory,
        device_label=label,
        world_size=shards.world_size,
        zero_stage=shards.zero_stage,
        precision=prec.summary,
        notes=resident.notes + buffer_notes,
        activation_detail=act,
    )


def _step_moments(phases: dict[str, int], at_step: int, head_grads: int, grads_before_first: int) -> dict[str, int]:
    """Gradients plus activations at each moment of a step that can be its peak."""
    return {
        "loss (end of forward, start of backward)": phases["loss"],
        "backward of the last layer": phases["last layer"] + head_grads,
        "backward of the first layer": phases["first layer"] + grads_before_first,
        "optimizer step": at_step,
    }


def device_memory_and_label(hardware: HardwareConfig) -> tuple[int | None, str]:
    """(bytes one device has, its label): the configured size, this host's RAM on CPU, or unknown."""
    if hardware.device_memory_gib is not None:
        return int(hardware.device_memory_gib * GIB), f"{hardware.device_name} ({hardware.device_memory_gib:g} GiB)"
    if hardware.accelerator != Accelerator.cuda:
        return host_memory_bytes(), "this host's RAM"
    return None, f"{hardware.device_name} (memory unknown: set hardware.device_memory_gib)"


def gib(n: int) -> str:
    """`n` bytes in GiB, for the console."""
    return f"{n / GIB:,.2f} GiB"


def verdict(memory: MemoryPlan) -> str:
    """One line: fits (and the margin), does not fit (and the shortfall), or unknown."""
    if memory.fits is None:
        return f"unknown: {memory.device_label}"
    margin = memory.margin or 0
    if memory.fits:
        return f"fits on {memory.device_label}: {gib(margin)} to spare ({margin / memory.device_memory:.0%})"
    return f"does NOT fit on {memory.device_label}: short by {gib(-margin)}"


# --------------------------------------------------------------------------------------------
# The whole plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Counts and memory of a run config's training step, and how long planning took."""

    model: str
    adapter: str
    hardware: str
    micro_batch_size: int
    seq_len: int
    counts: ParameterCounts
    memory: MemoryPlan
    seconds: float
    extra: dict = field(default_factory=dict)


def plan(cfg: TrainRunConfig) -> Plan:
    """Counts and memory of `cfg`'s training step, from the config alone (no weights, no GPU)."""
    started = time.perf_counter()
    counts = run_counts(cfg)
    train = step_shape(cfg)
    memory = estimate_memory(cfg.model.architecture, cfg.adapter, cfg.hardware, train, cfg.model.dtype, counts)
    return Plan(
        model=cfg.model.name,
        adapter=cfg.adapter.name,
        hardware=cfg.hardware.name,
        micro_batch_size=train.micro_batch_size,
        seq_len=train.max_input_tokens + train.max_target_tokens,
        counts=counts,
        memory=memory,
        seconds=time.perf_counter() - started,
    )


def run_counts(cfg: TrainRunConfig) -> ParameterCounts:
    """Exact parameter counts of `cfg`'s model and adapter, from the checkpoint's own config when it is here."""
    from medtune.errors import ConfigError, ModelUnavailableError
    from medtune.modeling.description import describe_model

    try:
        described = describe_model(cfg.model, cfg.paths.cache_dir, materialize=False)
    except ModelUnavailableError:
        described = None  # the YAML numbers stand (validation has reported why)
    try:
        return count_parameters(cfg.model.architecture, cfg.adapter, described.hf_config if described else None)
    except (ValueError, KeyError) as error:  # numbers the family cannot have, a family transformers lacks
        raise ConfigError([f"model={cfg.model.name}: {str(error).splitlines()[0]}"]) from error


def step_shape(cfg: TrainRunConfig) -> TrainingConfig:
    """`cfg.train` with the token lengths one step really sees (pretrain blocks, or the max_total_tokens
    cap), as the task's training data says."""
    train = cfg.train
    max_input, max_target = training_data_for(cfg).step_lengths()
    if (max_input, max_target) == (train.max_input_tokens, train.max_target_tokens):
        return train
    return dataclasses.replace(train, max_input_tokens=max_input, max_target_tokens=max_target)
