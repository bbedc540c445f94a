"""The model on the meta device and its exact parameter counts.

Nothing is downloaded and no weight memory is allocated: the decoder is built from its architecture
numbers (or a checkpoint's own config) on PyTorch's meta device, shapes only, wrapped with the same
PEFT LoRA config training uses, and counted.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from medtune.config.schema import AdapterConfig, AdapterKind, ArchitectureConfig

# Families whose transformers config names differ from ours, and which have no grouped-query attention.
NO_GQA_FAMILIES = ("gpt_neox", "bloom", "gptj")


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
    if family in NO_GQA_FAMILIES and arch.num_kv_heads != arch.num_heads:
        raise ValueError(
            f"model.architecture: {family} has no grouped-query attention, but num_kv_heads={arch.num_kv_heads} "
            f"differs from num_heads={arch.num_heads}; set num_kv_heads={arch.num_heads}."
        )
    return AutoConfig.for_model(family, **common, **_family_names(arch))


def _family_names(arch: ArchitectureConfig) -> dict[str, Any]:
    """`arch`'s sizes under the names the family's transformers config uses."""
    family = arch.model_type
    if family == "gpt_neox":
        return {
            "hidden_size": arch.hidden_size,
            "num_hidden_layers": arch.num_layers,
            "num_attention_heads": arch.num_heads,
            "intermediate_size": arch.intermediate_size,
            "max_position_embeddings": arch.max_position_embeddings,
        }
    if family == "bloom":
        if arch.intermediate_size != 4 * arch.hidden_size:
            raise ValueError(
                f"model.architecture: bloom's MLP is always 4 x hidden_size ({4 * arch.hidden_size}), "
                f"but intermediate_size={arch.intermediate_size}; fix intermediate_size."
            )
        return {"hidden_size": arch.hidden_size, "n_layer": arch.num_layers, "n_head": arch.num_heads}
    if family == "gptj":
        head_dim = arch.hidden_size // arch.num_heads
        return {
            "rotary_dim": min(64, head_dim),  # GPT-J-6B rotates 64 of each head's dimensions
            "n_embd": arch.hidden_size,
            "n_layer": arch.num_layers,
            "n_head": arch.num_heads,
            "n_inner": arch.intermediate_size,
            "n_positions": arch.max_position_embeddings,
        }
    # llama and its relatives share the names
    return {
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "intermediate_size": arch.intermediate_size,
        "max_position_embeddings": arch.max_position_embeddings,
    }


def meta_model(arch: ArchitectureConfig, config: Any = None):
    """The decoder described by `arch` (or by the checkpoint's own `config`), built on the meta device:
    shapes only, no memory, no download."""
    import torch
    from transformers import AutoModelForCausalLM

    config = config if config is not None else hf_config(arch)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


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


@dataclass(frozen=True)
class _Trainable:
    """What wrapping the base for training adds and leaves trainable."""

    trainable: int
    adapter: int
    frozen: int
    largest: int  # elements of the largest trainable tensor
    head: int  # trainable elements whose gradients come first in backward
    lora_targets: tuple[str, ...] = ()


def count_parameters(arch: ArchitectureConfig, adapter: AdapterConfig, config: Any = None) -> ParameterCounts:
    """Exact counts from the meta model; a LoRA is applied with PEFT exactly as training does."""
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

    if adapter.kind == AdapterKind.lora:
        trains = _lora_trainable(model, adapter, total)
    elif adapter.kind == AdapterKind.full:
        head_trainable = (head.weight.numel() if head is not None else 0) + 2 * arch.hidden_size
        trains = _Trainable(
            trainable=total,
            adapter=0,
            frozen=0,
            largest=max(p.numel() for p in model.parameters()),
            head=head_trainable,
        )
    else:
        trains = _Trainable(trainable=0, adapter=0, frozen=total, largest=0, head=0)
    return ParameterCounts(
        total=total,
        trainable=trains.trainable,
        frozen=trains.frozen,
        adapter=trains.adapter,
        linear_weights_quantizable=quantizable,
        quantizable_shapes=tuple(sorted(shapes.items())),
        non_quantizable=total - quantizable,
        per_layer=per_layer,
        num_layers=len(layers),
        embedding=embedding,
        output_head=output_head,
        lora_targets=trains.lora_targets,
        attention=attention,
        largest_trainable=trains.largest,
        head_trainable=trains.head,
        seconds=time.perf_counter() - started,
    )


def _lora_trainable(model, adapter: AdapterConfig, total: int) -> _Trainable:
    """`model` wrapped by PEFT with `adapter`'s LoRA config (on the meta device), counted."""
    import torch
    from peft import get_peft_model

    from medtune.modeling.adapters import lora_config

    with torch.device("meta"):  # LoRA matrices are created on meta too: no 3 GB of float32 for a 70B
        wrapped = get_peft_model(model, lora_config(adapter))
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    everything = sum(p.numel() for p in wrapped.parameters())
    targets = tuple(sorted({name.rsplit(".", 1)[-1] for name, m in wrapped.named_modules() if hasattr(m, "lora_A")}))
    return _Trainable(
        trainable=trainable,
        adapter=everything - total,
        frozen=everything - trainable,
        largest=max((p.numel() for p in wrapped.parameters() if p.requires_grad), default=0),
        head=0,
        lora_targets=targets,
    )


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


def _decoder_layers(model) -> list:
    """The repeated decoder blocks (the longest ModuleList in the model)."""
    from torch import nn

    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []
