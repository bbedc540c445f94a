"""Which output heads medtune's target-only loss computes itself, and its chunk size (no torch here: the
memory planner and the rules read it too)."""

from __future__ import annotations

# Architectures whose ForCausalLM forward computes `logits = lm_head(hidden)` and nothing else, or then
# soft-caps them by `config.final_logit_softcapping` (Gemma 2 / 3). Cohere (`logit_scale`), Granite
# (`logits_scaling`) and unknown ones keep the full-logits path.
PLAIN_HEAD_MODEL_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "gpt_neox",
        "gptj",
        "bloom",
        "phi3",
        "olmo",
        "olmo2",
        "starcoder2",
        "stablelm",
    }
)

# Float32 logits of one chunk: at most this many bytes (the rows per chunk follow from the vocabulary).
CHUNK_BYTES = 256 * 2**20
MIN_CHUNK_ROWS = 16


def chunk_rows(vocab_size: int) -> int:
    """Rows of the head one chunk of the target-only loss computes at once."""
    return max(MIN_CHUNK_ROWS, CHUNK_BYTES // (4 * max(1, vocab_size)))


def target_only_expected(loss: str, model_type: str | None, zero_stage: int, full_fine_tuning: bool) -> bool:
    """What the run will choose, from the config alone (the run itself also checks the loaded head)."""
    if loss == "full_logits" or model_type not in PLAIN_HEAD_MODEL_TYPES:
        return False
    return not (zero_stage == 3 and full_fine_tuning)
