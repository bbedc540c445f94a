"""liger-kernel's fused GPU kernels (RMSNorm, SwiGLU, RoPE, linear cross-entropy) on a loaded model.

`train.kernels=liger` patches the loaded model in place with liger-kernel's per-architecture function
(`apply_liger_kernel_to_<family>(model=...)`), for the families listed in `LIGER_FAMILIES`. The Triton
kernels run on CUDA only, so the rules refuse the setting elsewhere. medtune keeps its own target-only
loss and hands the kept rows to liger's fused linear cross-entropy instead of its own chunked one.
This module imports neither torch nor liger at import time: the rules read `LIGER_FAMILIES`.
"""

from __future__ import annotations

# model_type -> the liger_kernel.transformers function that patches that family
LIGER_FAMILIES = {
    "llama": "apply_liger_kernel_to_llama",
    "mistral": "apply_liger_kernel_to_mistral",
    "mixtral": "apply_liger_kernel_to_mixtral",
    "qwen2": "apply_liger_kernel_to_qwen2",
    "qwen3": "apply_liger_kernel_to_qwen3",
    "gemma": "apply_liger_kernel_to_gemma",
    "gemma2": "apply_liger_kernel_to_gemma2",
    "gemma3_text": "apply_liger_kernel_to_gemma3_text",
    "phi3": "apply_liger_kernel_to_phi3",
    "olmo2": "apply_liger_kernel_to_olmo2",
}

INSTALL_HINT = "pip install 'medtune[gpu]' (liger-kernel, pinned in requirements-gpu.txt)"


def liger_problem(model_type: str | None, accelerator: str) -> str | None:
    """Why train.kernels=liger cannot run here, or None."""
    if accelerator != "cuda":
        return (
            f"train.kernels=liger runs Triton kernels on a CUDA GPU, and hardware.accelerator is {accelerator}: "
            "use train.kernels=none here (the target-only loss and padding-free batches are on without it)"
        )
    if model_type not in LIGER_FAMILIES:
        return (
            f"train.kernels=liger has no kernels for model_type {model_type!r} (it patches "
            f"{', '.join(sorted(LIGER_FAMILIES))}): use train.kernels=none"
        )
    return None


def apply_liger(model, model_type: str) -> None:
    """Patch `model` (the causal LM, before PEFT wraps it) with liger's kernels for its family. The loss
    stays medtune's (`cross_entropy` and `fused_linear_cross_entropy` off here): it uses liger's fused
    function on the target rows (`liger_linear_cross_entropy`)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(liger_problem(model_type, "cpu"))
    try:
        import liger_kernel.transformers as liger
    except ImportError as error:
        raise RuntimeError(f"train.kernels=liger: liger_kernel does not import ({error}); {INSTALL_HINT}.") from error
    import inspect

    patch = getattr(liger, LIGER_FAMILIES[model_type])
    wanted = {"rope": True, "rms_norm": True, "swiglu": True, "geglu": True, "cross_entropy": False}
    wanted["fused_linear_cross_entropy"] = False
    accepted = inspect.signature(patch).parameters
    patch(model=model, **{key: value for key, value in wanted.items() if key in accepted})


def liger_linear_cross_entropy(rows, weight, bias, targets, softcap):
    """The summed cross-entropy of `rows @ weight.T + bias` by liger's fused Triton kernel (gradients in
    the forward pass, chunked logits), for medtune's target-only loss."""
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

    return LigerFusedLinearCrossEntropyFunction.apply(
        rows, weight, targets, bias, None, -100, 0.0, 0.0, "sum", softcap
    )[0]
