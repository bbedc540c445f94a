"""Attention for padding-free batches: each packed example attends to itself only, at its own cost.

A padding-free batch is one row holding several examples back to back, `position_ids` restarting at 0 for
each. transformers' own SDPA path builds a block-diagonal mask over the whole row, so attention costs
row length squared whatever the examples' lengths (4 examples of 267 tokens cost 4x what they cost apart),
and the mask itself is row x row. `medtune_varlen` instead cuts the row where positions restart and runs
SDPA's causal kernel on each example's slice: the work of a padded batch without its padding. It is what
flash-attention's varlen kernel does on a GPU, which `choose_attention` prefers where `flash_attn` imports.

Any other batch (padded, with a cache, several rows) goes to transformers' SDPA attention unchanged, so
generation and padded evaluation work as before. A sliding window (Gemma-3's local layers) is applied
inside a slice longer than the window.
"""

from __future__ import annotations

import importlib.util
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medtune.modeling.wrapped import unwrap_causal_lm

VARLEN = "medtune_varlen"

_bounds_cache: dict[str, object] = {"ref": None, "bounds": None}


def sequence_bounds(position_ids: torch.Tensor) -> list[int]:
    """Start offsets of the sequences in a (1, n) row of positions, and n: a new sequence starts wherever
    the position does not follow the one before (transformers' own rule for packed rows). Every layer gets
    the same tensor in one forward pass, so the bounds are computed once per tensor."""
    cached = _bounds_cache["ref"]
    if cached is not None and cached() is position_ids:
        return _bounds_cache["bounds"]  # type: ignore[return-value]
    row = position_ids[0]
    starts = torch.nonzero(row[1:] != row[:-1] + 1).flatten() + 1
    bounds = [0, *starts.tolist(), row.shape[0]]
    _bounds_cache["ref"], _bounds_cache["bounds"] = weakref.ref(position_ids), bounds
    return bounds


def _window_mask(length: int, window: int, device) -> torch.Tensor:
    """Causal and within `window` positions (transformers' sliding-window rule: q - kv < window)."""
    q = torch.arange(length, device=device)[:, None]
    k = torch.arange(length, device=device)[None, :]
    return (k <= q) & (q - k < window)


def _repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def varlen_sdpa_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
):
    """A transformers attention function (registered as `medtune_varlen`); see the module docstring."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    positions = kwargs.get("position_ids")
    single_pass = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if positions is None or not single_pass or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    window = kwargs.get("sliding_window")
    bounds = sequence_bounds(positions)
    outputs = []
    for start, end in zip(bounds, bounds[1:]):
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        if window is not None and end - start > window:
            mask = _window_mask(end - start, window, query.device)
            out = F.scaled_dot_product_attention(
                q, _repeat_kv(k, groups), _repeat_kv(v, groups), attn_mask=mask, dropout_p=dropout, scale=scaling
            )
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=dropout, scale=scaling, enable_gqa=groups > 1
            )
        outputs.append(out)
    attended = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return attended.transpose(1, 2).contiguous(), None


def varlen_mask(
    batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None, attention_mask=None, **kw
):
    """No mask for one row without padding or cached tokens (the attention slices it); SDPA's mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    fresh = isinstance(q_offset, int) and q_offset == 0 and q_length == kv_length
    if attention_mask is None and batch_size == 1 and fresh:
        return None
    return sdpa_mask(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=q_offset,
        kv_offset=kv_offset,
        mask_function=mask_function,
        attention_mask=attention_mask,
        **kw,
    )


def register_varlen() -> None:
    """Make `medtune_varlen` an attention implementation transformers knows (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN, varlen_sdpa_attention)
    AttentionMaskInterface.register(VARLEN, varlen_mask)


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


@dataclass(frozen=True)
class AttentionChoice:
    """The attention implementation padding-free batches train with, and why."""

    implementation: str | None  # None: keep the model's own
    reason: str

    def line(self, padding_free: bool) -> str:
        if not padding_free:
            return f"attention: the model's own ({self.reason}); batches are padded"
        name = self.implementation or "the model's own, with transformers' block mask from position_ids"
        return f"attention: {name} over padding-free batches ({self.reason})"


def choose_attention(
    requested: str, on_cuda: bool, half_precision: bool, model_attention: str | None
) -> AttentionChoice:
    """train.attention: `auto` picks flash-attention's varlen kernel on a GPU where `flash_attn` imports and
    the weights are 16-bit, else medtune's per-example SDPA (where the model uses SDPA)."""
    if requested == "auto":
        if on_cuda and half_precision and flash_attn_available():
            return AttentionChoice("flash_attention_2", "flash_attn imports on this GPU")
        if model_attention in (None, "sdpa"):
            return AttentionChoice(VARLEN, "SDPA's causal kernel on each example's own slice")
        return AttentionChoice(None, f"the model asks for {model_attention!r} attention")
    if requested == "varlen_sdpa":
        return AttentionChoice(VARLEN, "train.attention=varlen_sdpa")
    if requested == "flash_attention_2":
        if not flash_attn_available():
            raise ValueError(
                "train.attention=flash_attention_2: the flash_attn package does not import here; install it on a "
                "CUDA machine (pip install flash-attn) or use train.attention=auto."
            )
        return AttentionChoice("flash_attention_2", "train.attention=flash_attention_2")
    return AttentionChoice(None, f"train.attention={requested}")


def set_attention(model, implementation: str | None) -> str | None:
    """Switch the causal LM under any wrapper to `implementation`; returns the one it had (to restore)."""
    causal_lm = unwrap_causal_lm(model)
    before = getattr(causal_lm.config, "_attn_implementation", None)
    if implementation is None or implementation == before:
        return before
    if implementation == VARLEN:
        register_varlen()
    causal_lm.set_attn_implementation(implementation)
    return before
