"""Dry-run memory planner: exact parameter counts on the meta device, then a per-GPU memory budget.

Nothing is downloaded and no weight memory is allocated: the decoder is built from its
architecture numbers on PyTorch's meta device (shapes only), wrapped with the same PEFT LoRA
config training uses, and counted. The memory estimate then follows what this project's
training path actually does with each tensor. The modules import downward only:

* `counting`: the meta-device model and its exact parameter counts;
* `dtypes`: byte units and which dtype each kind of tensor has at run time;
* `memory`: quantized weight bytes, ZeRO sharding, weights, optimizer states, gradients, buffers;
* `layer_activations`: what autograd saves per decoder layer, per family and attention implementation;
* `activations`: those layers, the head and the backward summed for one micro batch;
* `budget`: the step's total per GPU, whether it fits (`verdict`), and `plan(cfg)` for a run config;
* `rendering`: `format_plan(plan)` for the console, `plan_text` as plain text.

All sizes are bytes per GPU (per process on CPU).
"""

from __future__ import annotations

from medtune.modeling.planner.activations import ActivationEstimate, activation_estimate
from medtune.modeling.planner.budget import (
    CUDA_CONTEXT_BYTES,
    CUDA_FRAGMENTATION,
    MemoryPlan,
    Plan,
    estimate_memory,
    host_memory_bytes,
    plan,
    verdict,
)
from medtune.modeling.planner.counting import ParameterCounts, count_parameters, hf_config, meta_model
from medtune.modeling.planner.dtypes import DTYPE_BYTES, GIB, MIB, Precision, precision
from medtune.modeling.planner.memory import (
    DOUBLE_QUANT_BLOCKSIZE,
    DS_MAX_LIVE_PARAMETERS,
    DS_REDUCE_BUCKET_ELEMENTS,
    DYNAMIC_CODE_BYTES,
    FOUR_BIT_BLOCKSIZE,
    FOUR_BIT_CODE_BYTES,
    OFFSET_BYTES,
    four_bit_bytes,
    int8_bytes,
)
from medtune.modeling.planner.rendering import format_plan, plan_text

__all__ = [
    "CUDA_CONTEXT_BYTES",
    "CUDA_FRAGMENTATION",
    "DOUBLE_QUANT_BLOCKSIZE",
    "DS_MAX_LIVE_PARAMETERS",
    "DS_REDUCE_BUCKET_ELEMENTS",
    "DTYPE_BYTES",
    "DYNAMIC_CODE_BYTES",
    "FOUR_BIT_BLOCKSIZE",
    "FOUR_BIT_CODE_BYTES",
    "GIB",
    "MIB",
    "OFFSET_BYTES",
    "ActivationEstimate",
    "MemoryPlan",
    "ParameterCounts",
    "Plan",
    "Precision",
    "activation_estimate",
    "count_parameters",
    "estimate_memory",
    "format_plan",
    "four_bit_bytes",
    "hf_config",
    "host_memory_bytes",
    "int8_bytes",
    "meta_model",
    "plan",
    "plan_text",
    "precision",
    "verdict",
]
