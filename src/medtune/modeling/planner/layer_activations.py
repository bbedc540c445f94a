"""What one decoder layer saves for backward, per family and attention implementation.

`micro_batch` gathers the sizes every term reads (`Batch`: widths, the hidden-state dtype, what
trains, the batch shape); `LAYER_TERMS` maps each family to its layer's terms (`_llama_layer`,
`_gpt_neox_layer`, `_bloom_layer`, `_gptj_layer`), read from its forward code in transformers 5, with
the attention implementation's own terms (eager's float32 softmax, SDPA's padding bias).
`medtune.modeling.planner.activations` adds the head and the backward, and sums them per micro batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtune.config.schema import AdapterConfig, AdapterKind, ArchitectureConfig
from medtune.modeling.planner.counting import ParameterCounts
from medtune.modeling.planner.dtypes import Precision

FAMILIES = ("llama", "gpt_neox", "bloom", "gptj")  # any other model type is counted as llama
FIRST_INPUT = frozenset({"n1"})  # what the first layer's first linear layers read: the embedding, after the norm


# --------------------------------------------------------------------------------------------
# One micro batch, as the per-term helpers see it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """The sizes every term needs: widths, the hidden-state dtype, what trains, the batch shape.

    `sites` lists each linear layer of a decoder block as (name, the tensor it reads, its width);
    the tensors are n1 (the attention's norm output), ao (the attention output), n2 (the MLP's norm
    output) and m (the MLP's hidden activation).
    """

    family: str
    h: int  # hidden size
    inter: int  # MLP width
    heads: int
    head_dim: int
    kv: int  # key / value width
    e: int  # bytes of a hidden-state element
    micro_batch_size: int
    seq_len: int
    full: bool  # every weight trains
    targets: frozenset[str]  # the linear layers a LoRA wraps
    r: int  # LoRA rank
    own_copy: bool  # each LoRA layer keeps its own copy of its input (dropout, or autocast's cast)
    mask: int  # bytes of a dropout-mask element (0 without dropout)
    eager: bool  # eager attention (an s x s softmax), not SDPA
    sites: tuple[tuple[str, str, int], ...]
    padding_free: bool = False  # the micro-batch runs as one row without padding

    @property
    def padded(self) -> bool:
        """Batches of unequal length carry a padding mask (unless they run padding-free)."""
        return self.micro_batch_size > 1 and not self.padding_free

    @property
    def widths(self) -> dict[str, int]:
        return {"n1": self.h, "ao": self.h, "n2": self.h, "m": self.inter}

    def linear_inputs(self, skip: frozenset = frozenset(), no_grad: frozenset = frozenset()) -> int:
        """Inputs kept by trainable and LoRA layers; `no_grad` sources need no dropout mask (layer 0)."""
        kept: set[str] = set()
        own = 0
        for name, source, width in self.sites:
            if source in skip:
                continue
            if self.full:
                kept.add(source)
            elif name in self.targets:
                if self.own_copy:
                    own += width * (self.e + (0 if source in no_grad else self.mask))
                else:
                    kept.add(source)
                own += self.r * self.e
        if self.family in ("llama", "gptj") and not self.eager:
            # SDPA's output is laid out so that the reshape for o_proj / out_proj is a view of it
            kept.discard("ao")
        return own + sum(self.widths[s] for s in kept) * self.e

    def kept_sources(self) -> set[str]:
        """The tensors some trainable or LoRA layer keeps as they are (no copy of its own)."""
        return {source for name, source, _ in self.sites if self.full or (name in self.targets and not self.own_copy)}

    def rms_norm(self) -> int:
        """An RMSNorm's input upcast to float32 and its 1/rms (+ e h when the norm weights train)."""
        return 4 * self.h + 4 + (self.h * self.e if self.full else 0)

    @property
    def layer_norm(self) -> int:
        """A LayerNorm's input and its float32 mean and 1/std."""
        return self.h * self.e + 8


def _linear_sites(family: str, h: int, inter: int) -> tuple[tuple[str, str, int], ...]:
    """Each linear layer of a `family` decoder block: (name, the tensor it reads, its width)."""
    if family == "llama":
        return (
            ("q_proj", "n1", h),
            ("k_proj", "n1", h),
            ("v_proj", "n1", h),
            ("o_proj", "ao", h),
            ("gate_proj", "n2", h),
            ("up_proj", "n2", h),
            ("down_proj", "m", inter),
        )
    if family in ("gpt_neox", "bloom"):
        return (
            ("query_key_value", "n1", h),
            ("dense", "ao", h),
            ("dense_h_to_4h", "n2", h),
            ("dense_4h_to_h", "m", inter),
        )
    # gptj: the MLP reads the same norm output as the attention
    return (
        ("q_proj", "n1", h),
        ("k_proj", "n1", h),
        ("v_proj", "n1", h),
        ("out_proj", "ao", h),
        ("fc_in", "n1", h),
        ("fc_out", "m", inter),
    )


def micro_batch(
    arch: ArchitectureConfig,
    counts: ParameterCounts,
    adapter: AdapterConfig,
    prec: Precision,
    micro_batch_size: int,
    seq_len: int,
    padding_free: bool = False,
) -> Batch:
    h, inter = arch.hidden_size, arch.intermediate_size
    head_dim = h // arch.num_heads
    lora = adapter.kind == AdapterKind.lora
    family = arch.model_type if arch.model_type in FAMILIES else "llama"
    return Batch(
        family=family,
        h=h,
        inter=inter,
        heads=arch.num_heads,
        head_dim=head_dim,
        kv=arch.num_kv_heads * head_dim,
        e=prec.activation_bytes,
        micro_batch_size=micro_batch_size,
        seq_len=seq_len,
        full=adapter.kind == AdapterKind.full,
        targets=frozenset(counts.lora_targets) if lora else frozenset(),
        r=adapter.r,
        own_copy=lora and (adapter.dropout > 0 or prec.autocast),
        mask=prec.dropout_mask_bytes if adapter.dropout > 0 else 0,
        eager=counts.attention == "eager",
        sites=_linear_sites(family, h, inter),
        padding_free=padding_free,
    )


# --------------------------------------------------------------------------------------------
# Attention implementations
# --------------------------------------------------------------------------------------------


def _eager_softmax(b: Batch) -> int:
    """Bytes per token of eager attention's float32 softmax and its cast to the hidden dtype (grows with s)."""
    return b.heads * b.seq_len * (4 + (b.e if b.e < 4 else 0))


def sdpa_padding_bias(b: Batch) -> int:
    """Bytes per token and layer of the float bias SDPA makes of a padded batch's boolean mask."""
    return b.seq_len * b.e if b.padded and not b.eager else 0


# --------------------------------------------------------------------------------------------
# One decoder layer, per family
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LayerTerms:
    """Bytes per token a decoder layer saves, and the final norm's."""

    layer: int  # any layer but the first
    first: int  # the first layer, whose input needs no gradient unless the embeddings train or input grads are on
    final_norm: int
    quadratic: int = 0  # bytes per token that grow with the sequence (eager attention)


def _llama_layer(b: Batch) -> _LayerTerms:
    """Llama (RMSNorm, SwiGLU, SDPA).

    2 x (4h + 4) RMSNorm inputs, upcast to float32, and 1/rms (+ e h each when the norm weights
    train); e(h + 2 kv') + 4a + e h: SDPA's q, k, v, output and float32 log-sum-exp (kv' = h when
    padding makes transformers repeat the key/value heads); 3 I e: SiLU input, SiLU output and up
    projection (the gated product); plus the inputs of trainable / LoRA layers (h for q, k, v; h for
    gate, up; I for down; o_proj reads a view of SDPA's output).
    """
    h, e = b.h, b.e
    quadratic = 0
    if b.eager:
        attention = 2 * h * e + h * e  # q, repeated k, repeated v
        quadratic = _eager_softmax(b)
    else:
        kv_saved = h if b.padded else b.kv
        attention = 2 * h * e + 2 * kv_saved * e + 4 * b.heads
    mlp = 3 * b.inter * e
    layer = 2 * b.rms_norm() + attention + mlp + b.linear_inputs()
    first = layer - (4 * h + 4) - b.linear_inputs() + b.linear_inputs(no_grad=FIRST_INPUT)
    return _LayerTerms(layer=layer, first=first, final_norm=b.rms_norm(), quadratic=quadratic)


def _gpt_neox_layer(b: Batch) -> _LayerTerms:
    """GPT-NeoX (parallel residual): LayerNorm input e h + 2 x 8; q, k, v, out 4 e h + 4a; GELU input I e."""
    attention = 4 * b.h * b.e + 4 * b.heads
    mlp = b.inter * b.e
    layer = b.layer_norm + 8 + attention + mlp + b.linear_inputs()
    first = attention + b.linear_inputs(no_grad=FIRST_INPUT)
    if {"dense_h_to_4h", "dense_4h_to_h"} & b.targets:  # the parallel MLP branch trains in layer 0 too
        first = layer - b.layer_norm - 8 - b.linear_inputs() + b.linear_inputs(no_grad=FIRST_INPUT | {"n2"})
    return _LayerTerms(layer=layer, first=first, final_norm=b.layer_norm)


def _bloom_layer(b: Batch) -> _LayerTerms:
    """BLOOM: eager attention, so a s (4 + e) per token for the float32 softmax and its cast.

    q and k for the alibi baddbmm, v for the probabilities' product; with one sequence a batch q is
    a view that keeps the whole fused q/k/v output alive.
    """
    attention = (5 if b.micro_batch_size == 1 else 3) * b.h * b.e
    mlp = b.inter * b.e
    layer = 2 * b.layer_norm + attention + mlp + b.linear_inputs()
    first = layer - b.layer_norm - b.linear_inputs() + b.linear_inputs(no_grad=FIRST_INPUT)
    # ln_f and the embedding LayerNorm
    return _LayerTerms(layer=layer, first=first, final_norm=2 * b.layer_norm, quadratic=_eager_softmax(b))


def _gptj_layer(b: Batch) -> _LayerTerms:
    """GPT-J (parallel residual, partial rotary): SDPA like Llama (q, k, v, out 4 e h + 4a) plus the rotary
    sin / cos repeated for q and k (4 r e per sequence position, r = rotary_dim); GELU-tanh keeps 4 I e.

    transformers 5 (5.24 checked) routes GPTJAttention through the shared attention interface
    (ALL_ATTENTION_FUNCTIONS), and GPT-J declares SDPA support, so it no longer runs its own eager
    attention: SDPA saves q, k, v in the hidden dtype (no float32 upcast), its output and the float32
    log-sum-exp, and no s x s matrix. Only a forced attn_implementation="eager" still upcasts q and k
    and keeps the float32 softmax.
    """
    h, e = b.h, b.e
    quadratic = 0
    if b.eager:
        attention = 2 * h * 4 + h * e  # q, k upcast to float32; v
        quadratic = _eager_softmax(b)
    else:
        attention = 4 * h * e + 4 * b.heads
    # apply_rotary_pos_emb repeats sin and cos for q and for k in every layer, once a batch
    rotary = 2 * min(64, b.head_dim) * e // b.micro_batch_size  # for one of q, k
    attention += 2 * rotary
    mlp = 4 * b.inter * e
    layer = b.layer_norm + attention + mlp + b.linear_inputs()
    first = layer - b.layer_norm - b.linear_inputs() + b.linear_inputs(no_grad=FIRST_INPUT)
    # layer 0 keeps the rotary tables only for q / k projections that train (its input needs no grad)
    first -= rotary * sum(1 for name in ("q_proj", "k_proj") if not (b.full or name in b.targets))
    if not ({"fc_in", "fc_out"} & b.targets):  # the parallel MLP branch of layer 0 needs no gradient
        first -= mlp + (b.inter * e if "m" in b.kept_sources() else 0)
    return _LayerTerms(layer=layer, first=first, final_norm=b.layer_norm, quadratic=quadratic)


LAYER_TERMS = {"llama": _llama_layer, "gpt_neox": _gpt_neox_layer, "bloom": _bloom_layer, "gptj": _gptj_layer}
