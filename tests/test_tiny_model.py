"""The tiny default model: built locally, cached, and loaded through the same path as real checkpoints."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import CONF
from medtune.config.schema import ArchitectureConfig, ModelConfig
from medtune.modeling.architecture import estimate_num_parameters
from medtune.modeling.description import resolve_checkpoint
from medtune.modeling.load import load_tokenizer
from medtune.modeling.tiny import tiny_checkpoint

SENTENCES = {
    "ja": "55歳の男性。胸痛を主訴に来院した。最も考えられるのはどれか。",
    "en": "A 54-year-old man presents with crushing chest pain. Which of the following is the most likely diagnosis?",
    "vi": "Thưa bác sĩ, tôi bị đau ngực và khó thở. Tôi nên làm xét nghiệm gì?",
    "marks": "ａ，ｂ ① ② 正解は c と e",
}


@pytest.fixture(scope="module")
def tiny_model_config() -> ModelConfig:
    raw = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / "model" / "tiny.yaml"))
    return OmegaConf.to_object(raw)


def test_tiny_model_is_a_small_llama_loaded_with_from_pretrained(tiny_model_config, tiny_cache):
    from transformers import AutoModelForCausalLM

    checkpoint = resolve_checkpoint(tiny_model_config, tiny_cache)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True)
    n_params = sum(p.numel() for p in model.parameters())
    assert model.config.model_type == "llama"
    assert 1_000_000 <= n_params <= 10_000_000
    assert n_params == estimate_num_parameters(tiny_model_config.architecture)


def test_tiny_checkpoint_is_built_once_and_reused(tiny_model_config, tiny_cache):
    first = tiny_checkpoint(tiny_model_config.architecture, tiny_cache)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = tiny_checkpoint(tiny_model_config.architecture, tiny_cache)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    other = ArchitectureConfig(**{**vars(tiny_model_config.architecture), "num_layers": 1})
    assert tiny_checkpoint(other, tiny_cache) != first  # a different architecture gets its own entry


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_tiny_tokenizer_covers_japanese_english_vietnamese(tiny_model_config, tiny_cache, language):
    tokenizer = load_tokenizer(resolve_checkpoint(tiny_model_config, tiny_cache), tiny_model_config)
    text = SENTENCES[language]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # lossless, full-width letters included
    assert tokenizer.unk_token_id not in ids
    assert len(ids) < len(text.encode("utf-8")) * 0.6  # learned merges, not raw bytes


def test_tiny_tokenizer_has_the_special_tokens_training_needs(tiny_model_config, tiny_cache):
    tokenizer = load_tokenizer(resolve_checkpoint(tiny_model_config, tiny_cache), tiny_model_config)
    ids = tokenizer("hello")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
