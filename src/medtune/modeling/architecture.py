"""Parameter counts from architecture numbers alone (no torch, no download).

Used by the config rules to refuse models a machine cannot train; the dry-run planner counts
exactly on the meta device instead.
"""

from __future__ import annotations

from medtune.config.schema import ArchitectureConfig


def estimate_num_parameters(arch: ArchitectureConfig) -> int:
    """Total parameters of the decoder described by `arch`, following each family's layer layout."""
    h, n_layers, vocab, inter = arch.hidden_size, arch.num_layers, arch.vocab_size, arch.intermediate_size
    head_dim = h // arch.num_heads
    kv = arch.num_kv_heads * head_dim
    lm_head = 0 if arch.tie_word_embeddings else vocab * h
    family = arch.model_type
    if family in ("llama", "mistral", "qwen2"):
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
        return vocab * h + n_layers * per_layer + h + lm_head
    if family == "gpt_neox":
        per_layer = (3 * h * h + 3 * h) + (h * h + h) + (2 * h * inter + inter + h) + 4 * h
        return vocab * h + n_layers * per_layer + 2 * h + lm_head
    if family == "bloom":
        per_layer = (3 * h * h + 3 * h) + (h * h + h) + (2 * h * inter + inter + h) + 4 * h
        return vocab * h + 2 * h + n_layers * per_layer + 2 * h + lm_head
    if family == "gptj":
        per_layer = 4 * h * h + (2 * h * inter + inter + h) + 2 * h
        return vocab * h + n_layers * per_layer + 2 * h + lm_head + (0 if arch.tie_word_embeddings else vocab)
    # Unknown family: the Llama layout is a fair order-of-magnitude estimate.
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    return vocab * h + n_layers * per_layer + h + lm_head
