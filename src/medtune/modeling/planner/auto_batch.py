"""`train.micro_batch_size=auto`: the largest micro batch whose memory plan fits the device.

The candidates are the divisors of the per-device share of `train.global_batch_size` (so gradient
accumulation keeps the global batch exactly), largest first, without gradient checkpointing; only if
none fits is checkpointing turned on and the candidates tried again. If even one example with
checkpointing does not fit, the run goes on at 1 with checkpointing and says by how much the plan is
short. A candidate must leave `HEADROOM` of the device free: the plan was within a few percent of the
allocator's peak on the GPU check, and the device's own peak (CUDA context, NCCL, fragmentation) runs
higher. On a GPU without `hardware.device_memory_gib`, the device's own size is read at run time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from medtune.config.schema import Accelerator, HardwareConfig, TrainRunConfig
from medtune.modeling.planner.budget import MemoryPlan, estimate_memory, gib, run_counts, step_shape

HEADROOM = 0.10  # of the device's memory, left free by an automatic choice


@dataclass(frozen=True)
class MicroBatchChoice:
    micro_batch_size: int
    gradient_checkpointing: bool
    accumulation: int
    memory: MemoryPlan
    tried: tuple[tuple[int, bool, int], ...]  # (micro batch, checkpointing, planned bytes), in order

    @property
    def fits(self) -> bool | None:
        return within_headroom(self.memory)

    def line(self) -> str:
        ckpt = "on" if self.gradient_checkpointing else "off"
        head = (
            f"train.micro_batch_size=auto: {self.micro_batch_size} (x {self.accumulation} accumulation steps), "
            f"gradient checkpointing {ckpt}"
        )
        if self.fits is False:
            return f"{head}; even this does NOT fit on {self.memory.device_label}: planned {gib(self.memory.total)}"
        tried = ", ".join(f"{m}{' +ckpt' if c else ''}: {gib(b)}" for m, c, b in self.tried)
        return (
            f"{head}; planned {gib(self.memory.total)} on {self.memory.device_label}, {HEADROOM:.0%} kept free "
            f"(tried {tried})"
        )

    def summary(self) -> dict[str, int | bool | float]:
        return {
            "train/micro_batch_size": self.micro_batch_size,
            "train/gradient_checkpointing": self.gradient_checkpointing,
            "train/planned_memory_gib": self.memory.total / 2**30,
        }


def within_headroom(memory: MemoryPlan) -> bool | None:
    if memory.device_memory is None:
        return None
    return memory.total <= (1 - HEADROOM) * memory.device_memory


def device_hardware(hardware: HardwareConfig) -> HardwareConfig:
    """`hardware` with the GPU's own memory filled in when the config leaves it unset and a GPU is here."""
    if hardware.accelerator != Accelerator.cuda or hardware.device_memory_gib is not None:
        return hardware
    try:
        import torch

        if not torch.cuda.is_available():
            return hardware
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    except Exception:  # no driver, no device: the plan stays "unknown"
        return hardware
    return dataclasses.replace(hardware, device_memory_gib=total / 2**30)


def choose_micro_batch(cfg: TrainRunConfig) -> MicroBatchChoice:
    """The largest fitting micro batch (module docstring). Raises ValueError when the device's memory is
    unknown (a GPU option without hardware.device_memory_gib, planned where no GPU is)."""
    hardware = device_hardware(cfg.hardware)
    world = hardware.devices_per_node * hardware.num_nodes
    per_device = cfg.train.global_batch_size // world
    candidates = [m for m in range(per_device, 0, -1) if per_device % m == 0]
    counts = run_counts(cfg)
    shape = step_shape(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch_size=1)))
    tried: list[tuple[int, bool, int]] = []
    last = None
    for checkpointing in (False, True):
        for micro in candidates:
            train = dataclasses.replace(shape, micro_batch_size=micro)
            hw = dataclasses.replace(hardware, gradient_checkpointing=checkpointing)
            memory = estimate_memory(cfg.model.architecture, cfg.adapter, hw, train, cfg.model.dtype, counts)
            if memory.fits is None:
                raise ValueError(
                    f"train.micro_batch_size=auto: the memory of {memory.device_label} is unknown; set "
                    "hardware.device_memory_gib=<GiB per device> or a number, e.g. train.micro_batch_size=4."
                )
            tried.append((micro, checkpointing, memory.total))
            last = (micro, checkpointing, memory)
            if within_headroom(memory):
                return MicroBatchChoice(micro, checkpointing, per_device // micro, memory, tuple(tried))
    micro, checkpointing, memory = last
    return MicroBatchChoice(micro, checkpointing, per_device // micro, memory, tuple(tried))


def planned_memory(cfg: TrainRunConfig) -> MemoryPlan | None:
    """The memory plan of the run's own micro batch and checkpointing (None where it cannot be planned)."""
    try:
        return estimate_memory(
            cfg.model.architecture,
            cfg.adapter,
            device_hardware(cfg.hardware),
            step_shape(cfg),
            cfg.model.dtype,
            run_counts(cfg),
        )
    except Exception:  # a logged number never stops a run: no plan is logged instead
        return None
