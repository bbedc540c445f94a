"""Activation memory of one micro batch: what autograd saves per decoder layer, from each family's forward code.

`activation_estimate` sums per-term helpers: one per family for a decoder layer (`_llama_layer`,
`_gpt_neox_layer`, `_bloom_layer`, `_gptj_layer`), the attention implementation's terms (eager's
float32 softmax, SDPA's padding bias), the inputs that trainable and LoRA linear layers keep, the
head (final norm, log-probabilities, the loss's backward) and a layer's own backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtune.config.schema import AdapterConfig, AdapterKind, ArchitectureConfig, Quantization
from medtune.modeling.planner.counting import ParameterCounts
from medtune.modeling.planner.dtypes import Precision

FAMILIES = ("llama", "gpt_neox", "bloom", "gptj")  # any other model type is counted as llama
FIRST_INPUT = frozenset({"n1"})  # what the first layer's first linear layers read: the embedding, after the norm


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


# --------------------------------------------------------------------------------------------
# One micro batch, as the per-term helpers see it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
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


def _batch(
    arch: ArchitectureConfig,
    counts: ParameterCounts,
    adapter: AdapterConfig,
    prec: Precision,
    micro_batch_size: int,
    seq_len: int,
    padding_free: bool = False,
) -> _Batch:
    h, inter = arch.hidden_size, arch.intermediate_size
    head_dim = h // arch.num_heads
    lora = adapter.kind == AdapterKind.lora
    family = arch.model_type if arch.model_type in FAMILIES else "llama"
    return _Batch(
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


def _eager_softmax(b: _Batch) -> int:
    """Bytes per token of eager attention's float32 softmax and its cast to the hidden dtype (grows with s)."""
    return b.heads * b.seq_len * (4 + (b.e if b.e < 4 else 0))


def _sdpa_padding_bias(b: _Batch) -> int:
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


def _llama_layer(b: _Batch) -> _LayerTerms:
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


def _gpt_neox_layer(b: _Batch) -> _LayerTerms:
    """GPT-NeoX (parallel residual): LayerNorm input e h + 2 x 8; q, k, v, out 4 e h + 4a; GELU input I e."""
    attention = 4 * b.h * b.e + 4 * b.heads
    mlp = b.inter * b.e
    layer = b.layer_norm + 8 + attention + mlp + b.linear_inputs()
    first = attention + b.linear_inputs(no_grad=FIRST_INPUT)
    if {"dense_h_to_4h", "dense_4h_to_h"} & b.targets:  # the parallel MLP branch trains in layer 0 too
        first = layer - b.layer_norm - 8 - b.linear_inputs() + b.linear_inputs(no_grad=FIRST_INPUT | {"n2"})
    return _LayerTerms(layer=layer, first=first, final_norm=b.layer_norm)


def _bloom_layer(b: _Batch) -> _LayerTerms:
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


def _gptj_layer(b: _Batch) -> _LayerTerms:
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


# --------------------------------------------------------------------------------------------
# The head and the backward
# --------------------------------------------------------------------------------------------


def _positional_tables(b: _Batch) -> int:
    """Bytes of the rotary sin / cos tables Llama and GPT-NeoX keep once a batch."""
    return 2 * b.seq_len * b.head_dim * b.e if b.family in ("llama", "gpt_neox") else 0


def _head_transient_per_token(b: _Batch, vocab: int) -> int:
    """The loss's backward: float32 gradients of the log-probabilities and of the logits (8 V).

    This also covers the end of the forward pass, when the logits (e V) and their float32 upcast
    (4 V) are alive.
    """
    logits_bytes = b.e  # GPT-J's lm_head output is no longer cast to float32 (transformers 5.24); the loss upcasts
    return vocab * max(8, logits_bytes + (4 if logits_bytes < 4 else 0))


def _target_only_head(b: _Batch, vocab: int, targets: int) -> tuple[int, int, int]:
    """(kept for backward, logits returned, transient peak) of medtune's target-only loss: the gathered
    target rows and their gradient (2 h e each), no logits, and one chunk's logits in float32 (plus their
    16-bit matmul output) while the loss and its gradient are computed."""
    from medtune.modeling.heads import chunk_rows

    chunk = min(targets, chunk_rows(vocab))
    return 2 * targets * b.h * b.e, 0, chunk * vocab * (4 + (b.e if b.e < 4 else 0))


def _layer_backward(b: _Batch, counts: ParameterCounts, adapter: AdapterConfig, prec: Precision, tokens: int) -> int:
    """Bytes a layer's backward allocates on top of what it saved.

    The gated product's gradient and both of its operands' (3 I e per token) for Llama; the GELU
    input's and output's gradients plus the incoming one (2 I e + h e) for the others; plus one
    dequantized weight matrix for a quantized base.
    """
    quantized = adapter.quantization.method != Quantization.none
    dequantized = counts.largest_quantizable * prec.compute_bytes if quantized else 0
    gradients_in_flight = 3 * b.inter * b.e if b.family == "llama" else 2 * b.inter * b.e + b.h * b.e
    return tokens * gradients_in_flight + dequantized


def activation_estimate(
    arch: ArchitectureConfig,
    counts: ParameterCounts,
    adapter: AdapterConfig,
    prec: Precision,
    micro_batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool = False,
    target_rows: int | None = None,
    padding_free: bool = False,
) -> ActivationEstimate:
    """Bytes autograd saves per decoder layer, from the family's forward code (transformers 5).

    Per token, with hidden size h, MLP width I, key/value width kv, heads a, vocabulary V,
    hidden-state dtype e bytes and LoRA rank r (a LoRA-wrapped or trainable linear layer keeps its
    input; a frozen one, bitsandbytes' included, keeps nothing), a layer saves its family's terms
    (`_llama_layer`, `_gpt_neox_layer`, `_bloom_layer`, `_gptj_layer`) plus, per LoRA layer, r e,
    and with LoRA dropout (or autocast) its own copy of the input (e) plus the dropout mask (1 byte
    on CUDA, e on CPU). E.g. Llama-2-70B, QLoRA r 64 on all linear layers, dropout 0.1, bf16 under
    DeepSpeed: about 497 KB per token and layer, 40 GiB for 1024 tokens over 80 layers.

    Eager attention costs the s-squared term that Korthikanti et al.'s 5 a s / h covers in
    s b h (34 + 5 a s / h); SDPA (the default for Llama, GPT-NeoX and GPT-J) saves no s x s matrix.

    Head: final norm and the float32 log-probabilities (4 V) kept by the loss; on top, at the peak,
    two float32 V-wide gradients (8 V) at the start of backward. With medtune's target-only loss
    (`target_rows`: the most target positions a micro-batch has) no logits are kept: the loss keeps the
    rows' gradient (h e per target) and, at its peak, one chunk's float32 logits (`_target_only_head`).
    A padded batch adds SDPA's float mask bias, s e per token and layer; a padding-free one does not. Checkpointing keeps e h per layer (plus the head) and
    recomputes one layer at a time during backward. On top of a layer's saved tensors comes its
    backward (`_layer_backward`).
    """
    b = _batch(arch, counts, adapter, prec, micro_batch_size, seq_len, padding_free)
    tokens = micro_batch_size * seq_len
    terms = LAYER_TERMS[b.family](b)
    layer, first, final_norm = terms.layer, terms.first, terms.final_norm
    if b.full or gradient_checkpointing:  # enable_input_require_grads comes with checkpointing
        first = layer
    quadratic = terms.quadratic + _sdpa_padding_bias(b)
    layer += quadratic
    first += quadratic
    if b.full:
        final_norm += b.h * b.e  # the output head's input

    layer_bytes = tokens * layer
    first_bytes = tokens * first
    if target_rows is None:
        head_bytes = tokens * (final_norm + 4 * arch.vocab_size + 8) + _positional_tables(b)
        logits, head_transient = tokens * arch.vocab_size * b.e, tokens * _head_transient_per_token(b, arch.vocab_size)
    else:
        kept, logits, head_transient = _target_only_head(b, arch.vocab_size, min(target_rows, tokens))
        head_bytes = tokens * final_norm + kept + _positional_tables(b)
    layer_input = tokens * b.h * b.e
    saved = first_bytes + (arch.num_layers - 1) * layer_bytes + head_bytes
    checkpointed = arch.num_layers * layer_input + head_bytes
    return ActivationEstimate(
        tokens=tokens,
        layer=layer_bytes,
        first_layer=first_bytes,
        layer_input=layer_input,
        head=head_bytes,
        logits=logits,
        head_transient=head_transient,
        layer_transient=_layer_backward(b, counts, adapter, prec, tokens),
        saved=saved,
        checkpointed=checkpointed,
    )
