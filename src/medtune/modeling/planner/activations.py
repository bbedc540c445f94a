"""Activation memory of one micro batch: what autograd saves per decoder layer, from each family's forward code.

`activation_estimate` sums per-term helpers: one per family for a decoder layer (`LAYER_TERMS` of
`medtune.modeling.planner.layer_activations`, with the attention implementation's terms: eager's
float32 softmax, SDPA's padding bias), the inputs that trainable and LoRA linear layers keep, the
head (final norm, log-probabilities, the loss's backward) and a layer's own backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtune.config.schema import AdapterConfig, ArchitectureConfig, Quantization
from medtune.modeling.planner.counting import ParameterCounts
from medtune.modeling.planner.dtypes import Precision
from medtune.modeling.planner.layer_activations import LAYER_TERMS, Batch, micro_batch, sdpa_padding_bias


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
# The head and the backward
# --------------------------------------------------------------------------------------------


def _positional_tables(b: Batch) -> int:
    """Bytes of the rotary sin / cos tables Llama and GPT-NeoX keep once a batch."""
    return 2 * b.seq_len * b.head_dim * b.e if b.family in ("llama", "gpt_neox") else 0


def _head_transient_per_token(b: Batch, vocab: int) -> int:
    """The loss's backward: float32 gradients of the log-probabilities and of the logits (8 V).

    This also covers the end of the forward pass, when the logits (e V) and their float32 upcast
    (4 V) are alive.
    """
    logits_bytes = b.e  # GPT-J's lm_head output is no longer cast to float32 (transformers 5.24); the loss upcasts
    return vocab * max(8, logits_bytes + (4 if logits_bytes < 4 else 0))


def _target_only_head(b: Batch, vocab: int, targets: int) -> tuple[int, int, int]:
    """(kept for backward, logits returned, transient peak) of medtune's target-only loss: the gathered
    target rows and their gradient (2 h e each), no logits, and one chunk's logits in float32 (plus their
    16-bit matmul output) while the loss and its gradient are computed."""
    from medtune.modeling.heads import chunk_rows

    chunk = min(targets, chunk_rows(vocab))
    return 2 * targets * b.h * b.e, 0, chunk * vocab * (4 + (b.e if b.e < 4 else 0))


def _layer_backward(b: Batch, counts: ParameterCounts, adapter: AdapterConfig, prec: Precision, tokens: int) -> int:
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
    b = micro_batch(arch, counts, adapter, prec, micro_batch_size, seq_len, padding_free)
    tokens = micro_batch_size * seq_len
    terms = LAYER_TERMS[b.family](b)
    layer, first, final_norm = terms.layer, terms.first, terms.final_norm
    if b.full or gradient_checkpointing:  # enable_input_require_grads comes with checkpointing
        first = layer
    quadratic = terms.quadratic + sdpa_padding_bias(b)
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
