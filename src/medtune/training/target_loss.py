"""The loss from the positions that have a target only: the LM head and the cross-entropy never see the rest.

In instruction tuning the loss covers the response (a MedQA example: ~9 of ~234 tokens), yet a causal LM
computes full-vocabulary logits at every position. `TargetOnlyHead` hooks the model's output embedding
(`lm_head`) so that, while a batch's labels are armed, the head receives no positions at all: the hook
takes the final hidden states, keeps the rows whose shifted label is a target, and computes their
cross-entropy itself with `fused_linear_cross_entropy`. That function runs the head over the kept rows in
chunks in float32 and computes the gradients of the rows (and of the head's weight, if it trains) in the
forward pass, so no logits tensor is ever kept for the backward pass and none of full size ever exists.
Continual pretraining, where every position is a target, gets the same chunked loss.

The sum it returns is divided exactly as transformers' `ForCausalLMLoss` divides (by the Trainer's
`num_items_in_batch`, else by the batch's target count): the loss and the gradients equal the full-logits
path's to float rounding (tested on the tiny model and on SmolLM2's real weights).

`choose_loss_path` decides where this is safe: a plain `nn.Linear` head (not quantized, no LoRA on it) of
an architecture whose causal-LM forward is `lm_head(hidden)`, optionally with Gemma's final soft-capping,
which the loss applies itself. Anything else keeps the full-logits path, and the run says why.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from medtune.data.tokenize import IGNORE_INDEX
from medtune.modeling.heads import PLAIN_HEAD_MODEL_TYPES, chunk_rows
from medtune.modeling.wrapped import unwrap_causal_lm


@dataclass(frozen=True)
class LossPath:
    """Which loss a run computes, and why: `target_only` true for the head hook, false for full logits."""

    target_only: bool
    reason: str

    def line(self, targets: str) -> str:
        """The plan's line about the loss; `targets` says which positions are targets."""
        if not self.target_only:
            return f"loss: full-vocabulary logits at every position (transformers' loss): {self.reason}"
        return f"loss: target-only, chunked float32 cross-entropy over {targets}; no full logits tensor ({self.reason})"


def choose_loss_path(model, requested: str, zero_stage: int) -> LossPath:
    """`requested` is train.loss (`auto`, `target_only`, `full_logits`). `target_only` where this model's
    head cannot take it raises ValueError with the reason; `auto` then falls back to full logits."""
    if requested == "full_logits":
        return LossPath(False, "train.loss=full_logits")
    problem = _head_problem(unwrap_causal_lm(model), zero_stage)
    if problem is None:
        return LossPath(True, f"train.loss={requested}")
    if requested == "target_only":
        raise ValueError(f"train.loss=target_only: {problem}; use train.loss=auto or train.loss=full_logits.")
    return LossPath(False, problem)


def _head_problem(causal_lm, zero_stage: int) -> str | None:
    model_type = getattr(causal_lm.config, "model_type", None)
    if model_type not in PLAIN_HEAD_MODEL_TYPES:
        return f"model_type {model_type!r} is not one whose output head medtune computes itself"
    head = causal_lm.get_output_embeddings()
    if type(head) is not torch.nn.Linear:  # a LoRA-wrapped or quantized head keeps its own forward
        return f"the output head is a {type(head).__name__}, not a plain torch Linear"
    if zero_stage == 3 and head.weight.requires_grad:
        return "under ZeRO-3 a trainable output head is partitioned and needs its own backward"
    return None


def softcap_of(causal_lm) -> float | None:
    return getattr(causal_lm.config, "final_logit_softcapping", None) or None


def target_rows(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden rows that predict a target, their targets): position t predicts labels[t + 1]."""
    shifted = labels[:, 1:]
    keep = shifted != IGNORE_INDEX
    return hidden[:, :-1][keep], shifted[keep]


def _chunk_logits(rows, weight, bias, softcap):
    logits = F.linear(rows, weight, bias).float()
    if softcap is None:
        return logits, None
    capped = torch.tanh(logits / softcap)
    return capped * softcap, capped


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `rows @ weight.T (+ bias)`; gradients computed chunk by chunk in forward."""

    @staticmethod
    def forward(ctx, rows, weight, bias, targets, softcap, rows_per_chunk):
        need_rows, need_weight, need_bias = ctx.needs_input_grad[:3]
        total = torch.zeros((), dtype=torch.float32, device=rows.device)
        grad_rows = torch.empty_like(rows) if need_rows else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_bias else None
        for start in range(0, rows.shape[0], rows_per_chunk):
            chunk = rows[start : start + rows_per_chunk]
            target = targets[start : start + rows_per_chunk]
            logits, capped = _chunk_logits(chunk, weight, bias, softcap)
            log_norm = torch.logsumexp(logits, dim=-1)
            total += (log_norm - logits.gather(1, target[:, None]).squeeze(1)).sum()  # as `_summed_loss`
            grad = logits.sub_(log_norm[:, None]).exp_()  # softmax, in place of the logits
            grad[torch.arange(grad.shape[0], device=grad.device), target] -= 1.0
            if capped is not None:
                grad.mul_(1.0 - capped * capped)
            if need_rows:
                grad_rows[start : start + rows_per_chunk] = torch.matmul(grad.to(chunk.dtype), weight.to(chunk.dtype))
            if need_weight:
                grad_weight += grad.t() @ chunk.float()
            if need_bias:
                grad_bias += grad.sum(0)
        ctx.save_for_backward(
            *(g for g in (grad_rows, grad_weight, grad_bias) if g is not None),
        )
        ctx.which = (need_rows, need_weight, need_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        saved = list(ctx.saved_tensors)
        grads: list[Any] = []
        for needed, dtype in zip(ctx.which, (None, *ctx.dtypes)):
            if not needed:
                grads.append(None)
                continue
            grad = saved.pop(0) * grad_total
            grads.append(grad if dtype is None else grad.to(dtype))
        return (*grads, None, None, None)


def fused_linear_cross_entropy(
    rows: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    softcap: float | None = None,
    rows_per_chunk: int | None = None,
) -> torch.Tensor:
    """The summed float32 cross-entropy of `softcap(rows @ weight.T + bias)` against `targets`, in chunks.

    With gradients needed, they are computed during the forward pass (what the backward pass keeps is the
    rows' gradient, the size of the rows); without, only the sum is computed."""
    per_chunk = rows_per_chunk or chunk_rows(weight.shape[0])
    if torch.is_grad_enabled() and (rows.requires_grad or weight.requires_grad):
        return _FusedLinearCrossEntropy.apply(rows, weight, bias, targets, softcap, per_chunk)
    total = torch.zeros((), dtype=torch.float32, device=rows.device)
    for start in range(0, rows.shape[0], per_chunk):
        logits, _ = _chunk_logits(rows[start : start + per_chunk], weight, bias, softcap)
        total += _summed_loss(logits, targets[start : start + per_chunk])
    return total


def _summed_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy as log-sum-exp minus the target's logit. On float32 logits this is closer to
    the float64 value than `F.cross_entropy`'s log-softmax (2e-8 against 2e-6 relative on SmolLM2)."""
    return (torch.logsumexp(logits, dim=-1) - logits.gather(1, targets[:, None]).squeeze(1)).sum()


@dataclass
class ArmedLoss:
    """What one armed forward pass computed: the summed loss and its number of targets."""

    total: torch.Tensor | None = None
    count: int = 0


class TargetOnlyHead:
    """A forward pre-hook on the model's output head that computes the target-only loss (module docstring).

    Outside `armed(labels)` the head works as always (generation, the exam check). Install it after the
    model is wrapped (DeepSpeed's ZeRO-3 hooks then gather the head's weight before this one runs)."""

    def __init__(self, model, fused: Callable | None = None):
        causal_lm = unwrap_causal_lm(model)
        # fused(rows, weight, bias, targets, softcap) -> summed loss; default: the chunked one above
        self.fused = fused
        self.head = causal_lm.get_output_embeddings()
        self.softcap = softcap_of(causal_lm)
        self.rows_per_chunk = chunk_rows(self.head.weight.shape[0])
        self._labels: torch.Tensor | None = None
        self._result: ArmedLoss | None = None
        self._handles: list = []

    def install(self) -> None:
        if not self._handles:
            self._handles = [
                self.head.register_forward_pre_hook(self._pre_hook),
                self.head.register_forward_hook(self._post_hook),
            ]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @contextlib.contextmanager
    def armed(self, labels: torch.Tensor):
        """Within this block, the next forward pass of the model computes the loss against `labels`."""
        self.install()
        self._labels, self._result = labels, ArmedLoss()
        try:
            yield self._result
        finally:
            self._labels = None
            self._result = None

    def _pre_hook(self, module, args):
        if self._labels is None:
            return None
        hidden = args[0]
        rows, targets = target_rows(hidden, self._labels.to(hidden.device))
        with _gathered(module):
            if self.fused is not None and rows.shape[0]:
                total = self.fused(rows, module.weight, module.bias, targets, self.softcap)
            else:
                total = fused_linear_cross_entropy(
                    rows, module.weight, module.bias, targets, self.softcap, self.rows_per_chunk
                )
        self._result.total, self._result.count = total, int(targets.numel())
        self._labels = None  # one forward pass per arming
        return (hidden[:, :0],)  # the head itself computes nothing

    def _post_hook(self, module, args, output):
        # The head's (empty) output joins the loss as an exact 0, so that its backward runs: DeepSpeed
        # ZeRO-3 pairs every module's forward with a backward and stops when one never comes.
        if self._result is not None and self._result.total is not None and output.numel() == 0:
            self._result.total = self._result.total + output.sum().float()
        return None


def _gathered(module):
    """ZeRO-3 gathers a module's weights in its own pre-hook; if this hook runs first, gather them here."""
    weight = module.weight
    if getattr(weight, "ds_status", None) is None:
        return contextlib.nullcontext()
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    if weight.ds_status == ZeroParamStatus.AVAILABLE:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([p for p in (weight, module.bias) if p is not None])
