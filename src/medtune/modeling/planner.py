"""Dry-run memory planner: exact parameter counts on the meta device, then a per-GPU memory budget.

Nothing is downloaded and no weight memory is allocated: the decoder is built from its
architecture numbers on PyTorch's meta device (shapes only), wrapped with the same PEFT LoRA
config training uses, and counted. The memory estimate then follows what this project's
training path actually does with each tensor:

* `medtune.modeling.load.load_base_model` loads the base in `model.dtype`, or quantized by
  bitsandbytes (every `nn.Linear` except the output head, as transformers' quantizer decides);
* `medtune.modeling.adapters.apply_adapter` runs `prepare_model_for_kbit_training` on a quantized
  base, which casts every non-quantized parameter (embeddings, norms, biases, output head) to
  float32, and PEFT keeps LoRA weights in float32 (`autocast_adapter_dtype=True`);
* `medtune.training.arguments` turns on autocast only for an unquantized 16-bit base on CUDA
  without DeepSpeed, and hands DeepSpeed a ZeRO config with `overlap_comm` and
  `contiguous_gradients`; with bf16/fp16 enabled, DeepSpeed casts every floating parameter of
  the module (LoRA weights included) to that dtype and keeps float32 master weights, Adam
  states and a float32 gradient partition in its optimizer.

`plan(cfg)` combines both for a `TrainRunConfig`; `format_plan(plan)` renders it for the console.
All sizes are bytes per GPU (per process on CPU).
"""

from __future__ import annotations

import dataclasses

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medtune.config.schema import (
    Accelerator,
    AdapterConfig,
    AdapterKind,
    ArchitectureConfig,
    DType,
    HardwareConfig,
    Optimizer,
    Quantization,
    TrainingConfig,
    TrainRunConfig,
)

GIB = 1024**3
MIB = 1024**2

DTYPE_BYTES = {DType.float32: 4, DType.bfloat16: 2, DType.float16: 2}

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

# What a CUDA process holds besides tensors: context, cuBLAS / NCCL workspaces, and the caching
# allocator's fragmentation (a fraction of everything allocated).
CUDA_CONTEXT_BYTES = 1 * GIB
CUDA_FRAGMENTATION = 0.05

# --------------------------------------------------------------------------------------------
# The model on the meta device
# --------------------------------------------------------------------------------------------


def hf_config(arch: ArchitectureConfig):
    """A transformers config for `arch`, with our field names mapped to the family's own."""
    import transformers
    from transformers import CONFIG_MAPPING, AutoConfig

    family = arch.model_type
    if family not in CONFIG_MAPPING:
        raise ValueError(
            f"model.architecture.model_type={family} is not a model type transformers {transformers.__version__} "
            "knows; use llama, gpt_neox, bloom, gptj or another causal-LM type it has."
        )
    common: dict[str, Any] = {"vocab_size": arch.vocab_size, "tie_word_embeddings": arch.tie_word_embeddings}
    if family in ("gpt_neox", "bloom", "gptj") and arch.num_kv_heads != arch.num_heads:
        raise ValueError(
            f"model.architecture: {family} has no grouped-query attention, but num_kv_heads={arch.num_kv_heads} "
            f"differs from num_heads={arch.num_heads}; set num_kv_heads={arch.num_heads}."
        )
    if family == "gpt_neox":
        names = {
            "hidden_size": arch.hidden_size,
            "num_hidden_layers": arch.num_layers,
            "num_attention_heads": arch.num_heads,
            "intermediate_size": arch.intermediate_size,
            "max_position_embeddings": arch.max_position_embeddings,
        }
    elif family == "bloom":
        if arch.intermediate_size != 4 * arch.hidden_size:
            raise ValueError(
                f"model.architecture: bloom's MLP is always 4 x hidden_size ({4 * arch.hidden_size}), "
                f"but intermediate_size={arch.intermediate_size}; fix intermediate_size."
            )
        names = {"hidden_size": arch.hidden_size, "n_layer": arch.num_layers, "n_head": arch.num_heads}
    elif family == "gptj":
        head_dim = arch.hidden_size // arch.num_heads
        names = {
            "rotary_dim": min(64, head_dim),  # GPT-J-6B rotates 64 of each head's dimensions
            "n_embd": arch.hidden_size,
            "n_layer": arch.num_layers,
            "n_head": arch.num_heads,
            "n_inner": arch.intermediate_size,
            "n_positions": arch.max_position_embeddings,
        }
    else:  # llama and its relatives share the names
        names = {
            "hidden_size": arch.hidden_size,
            "num_hidden_layers": arch.num_layers,
            "num_attention_heads": arch.num_heads,
            "num_key_value_heads": arch.num_kv_heads,
            "intermediate_size": arch.intermediate_size,
            "max_position_embeddings": arch.max_position_embeddings,
        }
    return AutoConfig.for_model(family, **common, **names)


def meta_model(arch: ArchitectureConfig, config: Any = None):
    """The decoder described by `arch` (or by the checkpoint's own `config`), built on the meta device:
    shapes only, no memory, no download."""
    import torch
    from transformers import AutoModelForCausalLM

    config = config if config is not None else hf_config(arch)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


# --------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterCounts:
    """Exact counts of the base model and of what trains.

    `total` is the base model alone (no adapter); `adapter` the parameters a LoRA adds;
    `trainable` what has requires_grad after wrapping (the adapter for LoRA, everything for full);
    `frozen` the base parameters that do not train. `linear_weights_quantizable` counts the weights
    bitsandbytes would quantize (every linear layer but the output head); their shapes are kept in
    `quantizable_shapes` as ((out_features, in_features), how many) for the quantization constants.
    """

    total: int
    trainable: int
    frozen: int
    adapter: int
    linear_weights_quantizable: int
    quantizable_shapes: tuple[tuple[tuple[int, int], int], ...]
    non_quantizable: int  # embeddings, norms, biases, the output head
    per_layer: int  # parameters of one decoder block
    num_layers: int
    embedding: int
    output_head: int  # 0 when tied to the embedding
    lora_targets: tuple[str, ...]  # leaf names of the modules a LoRA wraps (q_proj, ...)
    attention: str  # the attention implementation transformers picks for this family ("sdpa", "eager")
    largest_trainable: int = 0  # elements of the largest trainable tensor
    head_trainable: int = 0  # trainable elements whose gradients come first in backward (output head, final norm)
    seconds: float = 0.0

    @property
    def largest_quantizable(self) -> int:
        return max((o * i for (o, i), _ in self.quantizable_shapes), default=0)


def _quantizable_linears(model) -> list[tuple[str, Any]]:
    """The linear layers transformers' bitsandbytes quantizer converts, by its own rules."""
    from torch import nn
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = list(get_keys_to_not_convert(model)) + list(getattr(model, "_keep_in_fp32_modules", None) or [])
    found = []
    for name, module in model.named_modules():
        if type(module) is nn.Linear and should_convert_module(name, skip):
            found.append((name, module))
    return found


def count_parameters(arch: ArchitectureConfig, adapter: AdapterConfig, config: Any = None) -> ParameterCounts:
    """Exact counts from the meta model; a LoRA is applied with PEFT exactly as training does."""
    import torch

    started = time.perf_counter()
    model = meta_model(arch, config)
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    linears = _quantizable_linears(model)
    shapes = Counter(tuple(m.weight.shape) for _, m in linears)
    quantizable = sum(m.weight.numel() for _, m in linears)
    layers = _decoder_layers(model)
    per_layer = sum(p.numel() for p in layers[0].parameters()) if layers else 0
    embedding = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    output_head = 0 if head is None or head.weight is model.get_input_embeddings().weight else head.weight.numel()
    attention = getattr(model.config, "_attn_implementation", None) or "eager"

    targets: tuple[str, ...] = ()
    if adapter.kind == AdapterKind.lora:
        from peft import get_peft_model

        from medtune.modeling.adapters import lora_config

        with torch.device("meta"):  # LoRA matrices are created on meta too: no 3 GB of float32 for a 70B
            wrapped = get_peft_model(model, lora_config(adapter))
        trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        everything = sum(p.numel() for p in wrapped.parameters())
        adapter_params = everything - total
        targets = tuple(sorted({name.rsplit(".", 1)[-1] for name, m in wrapped.named_modules() if hasattr(m, "lora_A")}))
        frozen = everything - trainable
        largest = max((p.numel() for p in wrapped.parameters() if p.requires_grad), default=0)
        head_trainable = 0
    elif adapter.kind == AdapterKind.full:
        trainable, adapter_params, frozen = total, 0, 0
        largest = max(p.numel() for p in model.parameters())
        head_trainable = (head.weight.numel() if head is not None else 0) + 2 * arch.hidden_size
    else:
        trainable, adapter_params, frozen, largest, head_trainable = 0, 0, total, 0, 0
    return ParameterCounts(
        total=total,
        trainable=trainable,
        frozen=frozen,
        adapter=adapter_params,
        linear_weights_quantizable=quantizable,
        quantizable_shapes=tuple(sorted(shapes.items())),
        non_quantizable=total - quantizable,
        per_layer=per_layer,
        num_layers=len(layers),
        embedding=embedding,
        output_head=output_head,
        lora_targets=targets,
        attention=attention,
        largest_trainable=largest,
        head_trainable=head_trainable,
        seconds=time.perf_counter() - started,
    )


def _decoder_layers(model) -> list:
    """The repeated decoder blocks (the longest ModuleList in the model)."""
    from torch import nn

    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


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


# --------------------------------------------------------------------------------------------
# Precision: which dtype each tensor has at run time
# --------------------------------------------------------------------------------------------


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


def _state_bytes(optimizer: Optimizer, param_bytes: int) -> float:
    if optimizer == Optimizer.paged_adamw_8bit:
        return 2 + 2 * 4 / 256  # two uint8 states plus a float32 absmax per block of 256
    if optimizer == Optimizer.paged_adamw_32bit:
        return 8
    return 2 * param_bytes  # torch AdamW: exp_avg and exp_avg_sq like the parameter


def precision(adapter: AdapterConfig, hardware: HardwareConfig, model_dtype: DType, optimizer: Optimizer) -> Precision:
    quantized = adapter.quantization.method != Quantization.none
    compute = DTYPE_BYTES[hardware.compute_dtype]
    if hardware.deepspeed.zero_stage > 0 and hardware.compute_dtype != DType.float32:
        return Precision(
            summary=f"DeepSpeed {hardware.compute_dtype.value}: parameters, gradients and activations in "
            f"{hardware.compute_dtype.value}; float32 master weights, Adam states and gradient partition",
            frozen_bytes=compute, trainable_bytes=compute, grad_bytes=compute,
            state_bytes=_state_bytes(optimizer, 4), master_bytes=4, grad_partition_bytes=4,
            activation_bytes=compute, compute_bytes=compute, autocast=False, dropout_mask_bytes=1,
        )
    on_cuda = hardware.accelerator == Accelerator.cuda
    loaded = 4 if quantized else DTYPE_BYTES[model_dtype]  # prepare_model_for_kbit_training upcasts to float32
    trainable = 4 if adapter.kind == AdapterKind.lora else loaded  # PEFT keeps LoRA weights in float32
    autocast = on_cuda and not quantized and model_dtype != DType.float32
    if quantized:
        summary = (f"{adapter.quantization.method.value} base computing in {adapter.quantization.compute_dtype.value}; "
                   "LoRA, norms, embeddings and hidden states in float32 (prepare_model_for_kbit_training)")
    elif autocast:
        summary = f"{model_dtype.value} base under autocast; LoRA weights float32" if adapter.kind == AdapterKind.lora \
            else f"{model_dtype.value} weights, gradients and Adam states (autocast, no master copy)"
    else:
        summary = f"{model_dtype.value} throughout"
    return Precision(
        summary=summary, frozen_bytes=loaded, trainable_bytes=trainable, grad_bytes=trainable,
        state_bytes=_state_bytes(optimizer, trainable), master_bytes=0, grad_partition_bytes=0,
        activation_bytes=loaded, compute_bytes=DTYPE_BYTES[adapter.quantization.compute_dtype] if quantized else loaded,
        autocast=autocast, dropout_mask_bytes=1 if on_cuda else loaded,
    )


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationEstimate:
    """Activation memory of one micro batch, in bytes.

    `saved` is what autograd keeps for backward at the end of the forward pass without
    checkpointing (every layer's saved tensors plus the head's); `checkpointed` the same with
    gradient checkpointing (each layer keeps only its input). `phases` gives what is alive at
    the moments that can be a step's peak: the loss (logits and their float32 copies at the end of
    the forward pass, two float32 vocabulary-wide gradients at the start of backward), the
    backward of the last decoder layer (the head's tensors are gone by then; with checkpointing the
    layer is recomputed first) and of the first one. The logits returned by the model are freed
    before backward (the Trainer keeps only the loss).
    """

    tokens: int
    layer: int  # saved by one decoder layer (not the first)
    first_layer: int
    layer_input: int  # what a checkpointed layer keeps
    head: int  # final norm, log-probabilities, positional tables
    logits: int
    head_transient: int
    layer_transient: int
    saved: int
    checkpointed: int

    def phases(self, checkpointing: bool) -> dict[str, int]:
        if checkpointing:
            return {
                "loss": self.checkpointed + self.head_transient,
                "last layer": self.checkpointed - self.head + self.layer + self.layer_transient,
                "first layer": self.layer_input + self.first_layer + self.layer_transient,
            }
        return {
            "loss": self.saved + self.head_transient,
            "last layer": self.saved - self.head + self.layer_transient,
            "first layer": self.first_layer + self.layer_transient,
        }

    @property
    def peak_without_checkpointing(self) -> int:
        return max(self.phases(False).values())

    @property
    def peak_with_checkpointing(self) -> int:
        return max(self.phases(True).values())


def activation_estimate(
    arch: ArchitectureConfig,
    counts: ParameterCounts,
    adapter: AdapterConfig,
    prec: Precision,
    micro_batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool = False,
) -> ActivationEstimate:
    """Bytes autograd saves per decoder layer, from the family's forward code (transformers 5).

    Per token, with hidden size h, MLP width I, key/value width kv, heads a, vocabulary V,
    hidden-state dtype e bytes and LoRA rank r (a LoRA-wrapped or trainable linear layer keeps its
    input; a frozen one, bitsandbytes' included, keeps nothing):

      Llama (RMSNorm, SwiGLU, SDPA):
        2 x (4h + 4)              RMSNorm inputs, upcast to float32, and 1/rms (+ e h each when
                                  the norm weights train)
        e(h + 2 kv') + 4a + e h   SDPA's q, k, v, output and float32 log-sum-exp (kv' = h when
                                  padding makes transformers repeat the key/value heads)
        3 I e                     SiLU input, SiLU output and up projection (the gated product)
        + e x (the inputs of trainable / LoRA layers: h for q,k,v; h for gate,up; I for down;
          o_proj reads a view of SDPA's output)
        + per LoRA layer r e, and with LoRA dropout (or autocast) its own copy of the input (e)
          plus the dropout mask (1 byte on CUDA, e on CPU)
        e.g. Llama-2-70B, QLoRA r 64 on all linear layers, dropout 0.1, bf16 under DeepSpeed:
        about 497 KB per token and layer, 40 GiB for 1024 tokens over 80 layers.
      GPT-NeoX (parallel residual): LayerNorm input e h + 2 x 8; q, k, v, out 4 e h + 4a; GELU input I e.
      BLOOM uses eager attention: add a s (4 + e) per token for the float32 softmax and its cast.
      GPT-J (parallel residual, partial rotary): SDPA like Llama (q, k, v, out 4 e h + 4a) plus the
        rotary sin / cos repeated for q and k (4 r e per sequence position, r = rotary_dim); if eager
        attention is forced, q and k in float32 and the softmax as for BLOOM; GELU-tanh keeps 4 I e.
      Eager attention costs the s-squared term that Korthikanti et al.'s 5 a s / h covers in
        s b h (34 + 5 a s / h); SDPA (the default for Llama, GPT-NeoX and GPT-J) saves no s x s matrix.

    Head: final norm and the float32 log-probabilities (4 V) kept by the loss; on top, at the peak,
    two float32 V-wide gradients (8 V) at the start of backward. A padded batch adds SDPA's float
    mask bias, s e per token and layer. Checkpointing keeps e h per layer (plus the head) and
    recomputes one layer at a time during backward. On top of a layer's saved tensors comes its
    backward: 3 I e per token for Llama's gated MLP (the product's gradient and both operands'),
    2 I e + h e for GELU MLPs, plus one dequantized weight matrix for a quantized base.
    """
    h, inter, vocab, heads = arch.hidden_size, arch.intermediate_size, arch.vocab_size, arch.num_heads
    head_dim = h // heads
    kv = arch.num_kv_heads * head_dim
    e = prec.activation_bytes
    tokens = micro_batch_size * seq_len
    full = adapter.kind == AdapterKind.full
    lora = adapter.kind == AdapterKind.lora
    targets = set(counts.lora_targets) if lora else set()
    own_copy = lora and (adapter.dropout > 0 or prec.autocast)
    mask = prec.dropout_mask_bytes if adapter.dropout > 0 else 0
    family = arch.model_type if arch.model_type in ("gpt_neox", "bloom", "gptj") else "llama"
    eager = counts.attention == "eager"
    padded = micro_batch_size > 1  # batches of unequal length carry a padding mask
    input_grad = full or gradient_checkpointing  # enable_input_require_grads comes with checkpointing

    # linear layers: (name, the tensor they read, its width)
    if family == "llama":
        sites = [("q_proj", "n1", h), ("k_proj", "n1", h), ("v_proj", "n1", h), ("o_proj", "ao", h),
                 ("gate_proj", "n2", h), ("up_proj", "n2", h), ("down_proj", "m", inter)]
    elif family in ("gpt_neox", "bloom"):
        sites = [("query_key_value", "n1", h), ("dense", "ao", h), ("dense_h_to_4h", "n2", h), ("dense_4h_to_h", "m", inter)]
    else:  # gptj: the MLP reads the same norm output as the attention
        sites = [("q_proj", "n1", h), ("k_proj", "n1", h), ("v_proj", "n1", h), ("out_proj", "ao", h),
                 ("fc_in", "n1", h), ("fc_out", "m", inter)]
    widths = {"n1": h, "ao": h, "n2": h, "m": inter}

    def linear_inputs(skip: frozenset = frozenset(), no_grad: frozenset = frozenset()) -> int:
        """Inputs kept by trainable and LoRA layers; `no_grad` sources need no dropout mask (layer 0)."""
        kept: set[str] = set()
        own = 0
        for name, source, width in sites:
            if source in skip:
                continue
            if full:
                kept.add(source)
            elif name in targets:
                if own_copy:
                    own += width * (e + (0 if source in no_grad else mask))
                else:
                    kept.add(source)
                own += adapter.r * e
        if family in ("llama", "gptj") and not eager:
            # SDPA's output is laid out so that the reshape for o_proj / out_proj is a view of it
            kept.discard("ao")
        return own + sum(widths[s] for s in kept) * e

    def _kept_sources() -> set[str]:
        return {source for name, source, _ in sites if full or (name in targets and not own_copy)}

    def rms_norm() -> int:
        return 4 * h + 4 + (h * e if full else 0)

    layer_norm = h * e + 8
    quadratic = 0  # bytes per token that grow with the sequence (eager attention)
    first_input = frozenset({"n1"})
    if family == "llama":
        kv_saved = h if padded else kv
        if eager:
            attention = 2 * h * e + h * e  # q, repeated k, repeated v
            quadratic = heads * seq_len * (4 + (e if e < 4 else 0))
        else:
            attention = 2 * h * e + 2 * kv_saved * e + 4 * heads
        mlp = 3 * inter * e
        layer = 2 * rms_norm() + attention + mlp + linear_inputs()
        # the first layer's input needs no gradient unless the embeddings train or input grads are on
        first = layer - (4 * h + 4) - linear_inputs() + linear_inputs(no_grad=first_input)
        final_norm = rms_norm()
    elif family == "gpt_neox":
        attention = 4 * h * e + 4 * heads
        mlp = inter * e
        layer = layer_norm + 8 + attention + mlp + linear_inputs()
        first = attention + linear_inputs(no_grad=first_input)
        if {"dense_h_to_4h", "dense_4h_to_h"} & targets:  # the parallel MLP branch trains in layer 0 too
            first = layer - layer_norm - 8 - linear_inputs() + linear_inputs(no_grad=first_input | {"n2"})
        final_norm = layer_norm
    elif family == "bloom":
        # q and k for the alibi baddbmm, v for the probabilities' product; with one sequence a batch
        # q is a view that keeps the whole fused q/k/v output alive
        attention = (5 if micro_batch_size == 1 else 3) * h * e
        quadratic = heads * seq_len * (4 + (e if e < 4 else 0))
        mlp = inter * e
        layer = 2 * layer_norm + attention + mlp + linear_inputs()
        first = layer - layer_norm - linear_inputs() + linear_inputs(no_grad=first_input)
        final_norm = 2 * layer_norm  # ln_f and the embedding LayerNorm
    else:  # gptj
        # transformers 5 (5.24 checked) routes GPTJAttention through the shared attention interface
        # (ALL_ATTENTION_FUNCTIONS), and GPT-J declares SDPA support, so it no longer runs its own eager
        # attention: SDPA saves q, k, v in the hidden dtype (no float32 upcast), its output and the float32
        # log-sum-exp, and no s x s matrix. Only a forced attn_implementation="eager" still upcasts q and k
        # and keeps the float32 softmax.
        if eager:
            attention = 2 * h * 4 + h * e  # q, k upcast to float32; v
            quadratic = heads * seq_len * (4 + (e if e < 4 else 0))
        else:
            attention = 4 * h * e + 4 * heads
        # apply_rotary_pos_emb repeats sin and cos for q and for k in every layer, once a batch
        rotary = 2 * min(64, head_dim) * e // micro_batch_size  # for one of q, k
        attention += 2 * rotary
        mlp = 4 * inter * e
        layer = layer_norm + attention + mlp + linear_inputs()
        first = layer - layer_norm - linear_inputs() + linear_inputs(no_grad=first_input)
        # layer 0 keeps the rotary tables only for q / k projections that train (its input needs no grad)
        first -= rotary * sum(1 for name in ("q_proj", "k_proj") if not (full or name in targets))
        if not ({"fc_in", "fc_out"} & targets):  # the parallel MLP branch of layer 0 needs no gradient
            first -= mlp + (inter * e if "m" in _kept_sources() else 0)
        final_norm = layer_norm
    if input_grad:
        first = layer
    if padded and not eager:
        quadratic += seq_len * e  # SDPA turns the boolean padding mask into a float bias, per layer
    layer += quadratic
    first += quadratic
    if full:
        final_norm += h * e  # the output head's input
    positional = 2 * seq_len * head_dim * e if family in ("llama", "gpt_neox") else 0
    logits_bytes = e  # GPT-J's lm_head output is no longer cast to float32 (transformers 5.24); the loss upcasts
    n_layers = arch.num_layers

    layer_bytes = tokens * layer
    first_bytes = tokens * first
    head_bytes = tokens * (final_norm + 4 * vocab + 8) + positional
    logits = tokens * vocab * logits_bytes
    # the loss's backward: float32 gradients of the log-probabilities and of the logits (8 V); this also
    # covers the end of the forward pass, when the logits (e V) and their float32 upcast (4 V) are alive
    head_transient = tokens * vocab * max(8, logits_bytes + (4 if logits_bytes < 4 else 0))
    dequantized = counts.largest_quantizable * prec.compute_bytes if adapter.quantization.method != Quantization.none else 0
    # a layer's backward: the gated product's gradient and both of its operands' (3 I e) for Llama; the
    # GELU input's and output's gradients plus the incoming one (2 I e + h e) for the others
    gradients_in_flight = 3 * inter * e if family == "llama" else 2 * inter * e + h * e
    layer_transient = tokens * gradients_in_flight + dequantized
    layer_input = tokens * h * e

    saved = first_bytes + (n_layers - 1) * layer_bytes + head_bytes
    checkpointed = n_layers * layer_input + head_bytes
    return ActivationEstimate(
        tokens=tokens, layer=layer_bytes, first_layer=first_bytes, layer_input=layer_input, head=head_bytes,
        logits=logits, head_transient=head_transient, layer_transient=layer_transient, saved=saved,
        checkpointed=checkpointed,
    )


# --------------------------------------------------------------------------------------------
# The memory budget
# --------------------------------------------------------------------------------------------


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
            (f"activations, peak ({off} checkpointing)",
             self.activations_without_checkpointing if self.gradient_checkpointing else self.activations_with_checkpointing,
             False),
            (f"step peak: gradients + activations at the {self.peak_moment}", self.step_peak, True),
            ("framework buffers", self.framework_buffers, True),
            ("CUDA context + fragmentation", self.overhead, True),
            ("total", self.total, True),
        ]


def host_memory_bytes() -> int | None:
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

    ZeRO divides by the data-parallel world size (devices_per_node x num_nodes): stage 1 the
    optimizer states, stage 2 also the gradients, stage 3 also the parameters, the 4-bit base
    included when it is stored in the compute dtype (adapter.quantization.quant_storage unset or
    equal to it, as the loader does); its quantization constants are not parameters and stay on
    every GPU. Offloaded optimizer
    states or parameters leave the GPU. On top of weights and optimizer states, the total adds
    the step peak: gradients and activations (for hardware.gradient_checkpointing) at the worst
    of four moments, since gradients appear as activations are freed: the loss (no gradient yet),
    the backward of the last layer (the output head's gradients), of the first layer (all
    gradients but its own and the embedding's) and the optimizer step (all gradients plus AdamW's
    temporaries). Then DeepSpeed's buffers and, on CUDA, the context and fragmentation.
    """
    counts = counts or count_parameters(arch, adapter)
    prec = precision(adapter, hardware, model_dtype, train.optimizer)
    ds = hardware.deepspeed
    devices = hardware.devices_per_node * hardware.num_nodes
    zero = ds.zero_stage
    opt_shard = devices if zero >= 1 else 1
    grad_shard = devices if zero >= 2 else 1
    param_shard = devices if zero >= 3 else 1
    notes: list[str] = []

    q = adapter.quantization
    method = q.method
    compute_dtype = hardware.compute_dtype if zero > 0 else q.compute_dtype
    # As the loader does (medtune.modeling.load.quantization_config): under ZeRO-3 an unset storage
    # dtype becomes the compute dtype, so that the 4-bit base is sharded.
    storage = q.quant_storage or (compute_dtype if zero >= 3 else None)
    quant_data = quant_constants = 0
    if method in (Quantization.nf4, Quantization.fp4):
        storage_bytes = DTYPE_BYTES[storage] if storage is not None else 1
        for (out_f, in_f), n in counts.quantizable_shapes:
            data, constants = four_bit_bytes(out_f * in_f, q.double_quant, storage_bytes)
            quant_data += n * data
            quant_constants += n * constants
        sharded_4bit = zero >= 3 and storage is not None and storage == compute_dtype
        if zero >= 3 and not sharded_4bit:
            notes.append(
                f"ZeRO-3 cannot shard the 4-bit base: adapter.quantization.quant_storage="
                f"{storage.value if storage else 'null (uint8)'} differs from the compute dtype {compute_dtype.value}; "
                f"set adapter.quantization.quant_storage=null (stored in {compute_dtype.value} under ZeRO-3) to "
                f"shard it ({quant_data / GIB:.1f} GiB on every GPU now)."
            )
        base = quant_data // (param_shard if sharded_4bit else 1) + quant_constants
        base += counts.non_quantizable * prec.frozen_bytes // param_shard
    elif method == Quantization.int8:
        for (out_f, in_f), n in counts.quantizable_shapes:
            data, constants = int8_bytes(out_f, in_f)
            quant_data += n * data
            quant_constants += n * constants
        if zero >= 3:
            notes.append("ZeRO-3 does not shard int8 weights: the 8-bit base is counted whole on every GPU.")
        base = quant_data + quant_constants + counts.non_quantizable * prec.frozen_bytes // param_shard
    else:
        frozen_base = counts.total - (counts.trainable - counts.adapter)
        base = frozen_base * prec.frozen_bytes // param_shard

    trainable = counts.trainable
    trainable_weights = trainable * prec.trainable_bytes // param_shard
    gradients = trainable * prec.grad_bytes // grad_shard
    optimizer = int(trainable * (prec.state_bytes + prec.master_bytes + prec.grad_partition_bytes)) // opt_shard
    if ds.offload_optimizer and zero > 0:
        notes.append(f"optimizer states offloaded to CPU memory ({optimizer / GIB:.1f} GiB per rank there).")
        optimizer = 0
    if ds.offload_params and zero >= 3:
        notes.append(f"parameters offloaded to CPU memory ({(base + trainable_weights) / GIB:.1f} GiB per rank there).")
        base = quant_constants
        trainable_weights = 0

    buffers = 0
    if zero in (1, 2):
        buffers = DS_REDUCE_BUCKET_ELEMENTS * prec.grad_bytes * 2  # contiguous_gradients + overlap_comm: two buckets
    elif zero == 3:
        buffers = DS_REDUCE_BUCKET_ELEMENTS * prec.grad_bytes
        if method in (Quantization.nf4, Quantization.fp4) and storage is not None and storage == compute_dtype:
            sharded_elements = quant_data // DTYPE_BYTES[storage]
        else:
            sharded_elements = 0
        if method == Quantization.none:
            sharded_elements += counts.total + counts.adapter
        else:
            sharded_elements += counts.non_quantizable + counts.adapter
        buffers += min(DS_MAX_LIVE_PARAMETERS, sharded_elements) * prec.frozen_bytes
    elif devices > 1 and hardware.accelerator == Accelerator.cuda:
        buffers = trainable * prec.grad_bytes  # DDP copies gradients into its buckets
        notes.append("DDP without ZeRO: every GPU holds the whole model, its gradients and optimizer states.")

    seq_len = train.max_input_tokens + train.max_target_tokens
    act_on, act_off = (activation_estimate(arch, counts, adapter, prec, train.micro_batch_size, seq_len, ckpt)
                       for ckpt in (True, False))
    act = act_on if hardware.gradient_checkpointing else act_off
    on_cuda = hardware.accelerator == Accelerator.cuda
    if train.optimizer != Optimizer.adamw_torch:
        step_temporaries = 0  # bitsandbytes' fused kernels
    elif on_cuda:  # foreach AdamW: one state-sized temporary over all (sharded) parameters
        step_temporaries = int(trainable * max(prec.state_bytes / 2, prec.master_bytes)) // opt_shard
    else:  # single-tensor AdamW on CPU: two temporaries of the largest parameter
        step_temporaries = 2 * counts.largest_trainable * int(prec.state_bytes / 2)
    head_grads = counts.head_trainable * prec.grad_bytes // grad_shard
    # gradients alive while the first layer runs backward: all but its own and the input embedding's
    if adapter.kind == AdapterKind.full:
        late = counts.per_layer + (counts.embedding if counts.output_head else 0)
    else:
        late = trainable // max(1, counts.num_layers)
    grads_before_first = max(0, trainable - late) * prec.grad_bytes // grad_shard
    if trainable == 0:
        moments = {"forward pass": 0}
        act_with = act_without = 0
    else:
        act_with, act_without = act_on.peak_with_checkpointing, act_off.peak_without_checkpointing
        phases = act.phases(hardware.gradient_checkpointing)
        moments = {
            "loss (end of forward, start of backward)": phases["loss"],
            "backward of the last layer": phases["last layer"] + head_grads,
            "backward of the first layer": phases["first layer"] + grads_before_first,
            "optimizer step": gradients + step_temporaries,
        }
    peak_moment = max(moments, key=moments.get)
    step_peak = moments[peak_moment]
    activations = act_with if hardware.gradient_checkpointing else act_without

    allocated = base + trainable_weights + optimizer + step_peak + buffers
    overhead = int(CUDA_CONTEXT_BYTES + CUDA_FRAGMENTATION * allocated) if on_cuda else 0
    total = allocated + overhead
    if hardware.device_memory_gib is not None:
        device_memory: int | None = int(hardware.device_memory_gib * GIB)
        label = f"{hardware.device_name} ({hardware.device_memory_gib:g} GiB)"
    elif not on_cuda:
        device_memory = host_memory_bytes()
        label = "this host's RAM"
    else:
        device_memory, label = None, f"{hardware.device_name} (memory unknown: set hardware.device_memory_gib)"
    return MemoryPlan(
        base_weights=base, quant_constants=quant_constants, trainable_weights=trainable_weights,
        optimizer_states=optimizer, gradients=gradients, activations=activations,
        activations_without_checkpointing=act_without, activations_with_checkpointing=act_with,
        step_peak=step_peak, peak_moment=peak_moment,
        gradient_checkpointing=hardware.gradient_checkpointing, framework_buffers=buffers, overhead=overhead,
        total=total, device_memory=device_memory, device_label=label, world_size=devices, zero_stage=zero,
        precision=prec.summary, notes=tuple(notes), activation_detail=act,
    )


# --------------------------------------------------------------------------------------------
# The whole plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
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
    from medtune.errors import ConfigError

    from medtune.errors import ModelUnavailableError
    from medtune.modeling.description import describe_model

    started = time.perf_counter()
    try:
        described = describe_model(cfg.model, cfg.paths.cache_dir, materialize=False)
    except ModelUnavailableError:
        described = None  # the YAML numbers stand (validation has reported why)
    try:
        counts = count_parameters(cfg.model.architecture, cfg.adapter, described.hf_config if described else None)
    except (ValueError, KeyError) as error:  # numbers the family cannot have, a family transformers lacks
        raise ConfigError([f"model={cfg.model.name}: {str(error).splitlines()[0]}"]) from error
    train = cfg.train
    if cfg.task.value == "pretrain":  # a step sees blocks of pretrain.block_tokens
        train = dataclasses.replace(train, max_input_tokens=cfg.pretrain.block_tokens, max_target_tokens=0)
    elif train.max_total_tokens and train.max_total_tokens < train.max_input_tokens + train.max_target_tokens:
        train = dataclasses.replace(train, max_input_tokens=train.max_total_tokens, max_target_tokens=0)
    memory = estimate_memory(cfg.model.architecture, cfg.adapter, cfg.hardware, train, cfg.model.dtype, counts)
    return Plan(
        model=cfg.model.name, adapter=cfg.adapter.name, hardware=cfg.hardware.name,
        micro_batch_size=train.micro_batch_size, seq_len=train.max_input_tokens + train.max_target_tokens,
        counts=counts, memory=memory, seconds=time.perf_counter() - started,
    )


def _gib(n: int) -> str:
    return f"{n / GIB:,.2f} GiB"


def verdict(memory: MemoryPlan) -> str:
    if memory.fits is None:
        return f"unknown: {memory.device_label}"
    margin = memory.margin or 0
    if memory.fits:
        return f"fits on {memory.device_label}: {_gib(margin)} to spare ({margin / memory.device_memory:.0%})"
    return f"does NOT fit on {memory.device_label}: short by {_gib(-margin)}"


def format_plan(p: Plan):
    """A rich Table: counts, the memory rows per GPU, and the verdict."""
    from rich.table import Table

    c, m = p.counts, p.memory
    title = (f"memory plan: {p.model} + {p.adapter} on {p.hardware} "
             f"(micro batch {p.micro_batch_size} x {p.seq_len} tokens, ZeRO {m.zero_stage}, {m.world_size} rank(s))")
    table = Table(title=title, show_header=True)
    table.add_column("item", style="bold")
    table.add_column("value", justify="right")
    table.add_column("detail")
    table.add_row("parameters (exact)", f"{c.total:,}", f"{c.linear_weights_quantizable:,} in quantizable linear weights")
    share = f"{c.trainable / c.total:.3%} of the base" if c.total else ""
    table.add_row("trainable", f"{c.trainable:,}", share + (f"; LoRA on {', '.join(c.lora_targets)}" if c.lora_targets else ""))
    table.add_row("precision", "", m.precision)
    for label, value, counted in m.rows():
        detail = "" if counted else "in the step peak, not added"
        if label == "base weights" and m.quant_constants:
            detail = f"{_gib(m.quant_constants)} of it quantization constants"
        style = "bold" if label == "total" else (None if counted else "dim")
        table.add_row(label if counted else f"  {label}", _gib(value), detail, style=style)
    table.add_row("verdict", "fits" if m.fits else ("unknown" if m.fits is None else "does not fit"), verdict(m))
    for note in m.notes:
        table.add_row("note", "", note)
    table.add_row("planned in", f"{p.seconds:.1f} s", "meta device: nothing loaded")
    return table


def plan_text(p: Plan) -> str:
    """`format_plan` as plain text (logs, tests)."""
    from rich.console import Console

    with open(os.devnull, "w") as sink:
        console = Console(width=160, record=True, file=sink)
        console.print(format_plan(p))
    return console.export_text()
