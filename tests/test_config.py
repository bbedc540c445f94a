"""Composition of every config option, typed-schema errors, and the cross-group rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import CONF, cli
from medtune.config.schema import TrainRunConfig
from medtune.errors import ConfigError
from medtune.jobs import to_typed

GROUPS = ["model", "adapter", "dataset", "prompt", "hardware", "logger", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_into_the_typed_schema(compose, group, option, tmp_path):
    from medtune.config.qa_schema import GenerateQARunConfig

    overrides = [f"{group}={option}", f"dataset.path={tmp_path}"] if group == "dataset" else [f"{group}={option}"]
    # An experiment of QA generation (it sets qa.*) is one of generate_qa.py's; every other one is train.py's.
    for_qa = group == "experiment" and "\nqa:" in (CONF / group / f"{option}.yaml").read_text()
    cfg = compose(overrides, config_name="generate_qa" if for_qa else "train")
    # Fill what an option deliberately leaves to the user, then build the dataclass.
    for key in OmegaConf.missing_keys(cfg):
        OmegaConf.update(cfg, key, str(tmp_path))
    typed_cfg = OmegaConf.to_object(cfg)
    assert isinstance(typed_cfg, GenerateQARunConfig if for_qa else TrainRunConfig)
    if group in ("model", "adapter", "prompt", "hardware", "dataset"):
        assert getattr(typed_cfg, group).name == option


def test_the_paper_setting_composes_as_table_4(compose):
    cfg = compose(["model=swallow70b", "adapter=qlora"])
    assert cfg.model.hub_id == "tokyotech-llm/Swallow-70b-instruct-hf"
    assert cfg.adapter.quantization.method == "nf4" and cfg.adapter.quantization.double_quant
    assert (cfg.adapter.r, cfg.adapter.alpha, cfg.adapter.dropout) == (64, 16, 0.1)
    assert list(cfg.adapter.target_modules) == ["all-linear"]
    # Real models keep the paper's schedule; only the tiny model has a CPU schedule.
    assert (cfg.train.learning_rate, cfg.train.max_steps, cfg.train.global_batch_size) == (2e-4, 3000, 16)
    assert (cfg.train.max_input_tokens, cfg.train.max_target_tokens) == (512, 512)
    assert compose([]).train.max_steps < 500


def test_compute_dtype_of_qlora_follows_the_hardware(compose):
    assert compose(["adapter=qlora"]).adapter.quantization.compute_dtype == "float32"
    assert compose(["adapter=qlora", "hardware=a100x4"]).adapter.quantization.compute_dtype == "bfloat16"


@pytest.mark.parametrize("row", ["llama2_70b", "xwin70b", "swallow70b"])
def test_table1_experiments_pin_the_published_setting(compose, row):
    tuned = compose([f"experiment={row}_qlora"])
    assert tuned.model.name == row and tuned.adapter.name == "qlora" and tuned.dataset.name == "usmle_jp"
    assert tuned.train.max_steps == 3000 and tuned.train.learning_rate == 2e-4
    assert compose([f"experiment={row}_untuned"]).adapter.kind == "none"


@pytest.mark.parametrize(
    "override,expected",
    [
        ("adapter.rr=8", ["adapter.rr", "not in 'AdapterConfig'"]),
        ("adapter.r=abc", ["adapter.r", "could not be converted to Integer"]),
        ("adapter.quantization.method=nf5", ["adapter.quantization.method", "expected one of [none, nf4, fp4, int8]"]),
        ("train.learning_rate=fast", ["train.learning_rate", "could not be converted to Float"]),
        ("model=llama3_405b", ["model/llama3_405b", "Available options"]),
    ],
)
def test_schema_errors_name_the_full_key(compose, override, expected):
    with pytest.raises(ConfigCompositionException) as info:
        compose([override])
    message = str(info.value) + str(info.value.__cause__)
    for piece in expected:
        assert piece in message


def problems_of(typed, overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        typed(overrides)
    return info.value.problems


def test_a_real_70b_request_here_reports_every_problem_at_once(typed):
    problems = problems_of(typed, ["model=swallow70b", "adapter=qlora"])
    text = "\n".join(problems)
    assert len(problems) == 2
    assert "69.2B parameters" in text and "hardware=a100x4" in text
    assert "tokyotech-llm/Swallow-70b-instruct-hf" in text and "model.path=" in text


def test_a_multi_gpu_option_needs_cuda_devices_unless_planning(typed):
    problems = problems_of(typed, ["hardware=a100x4", "train.global_batch_size=32"])
    assert any("needs 4 CUDA device(s)" in p and "dry_run=true" in p for p in problems)
    planned = typed(["hardware=a100x4", "train.global_batch_size=32", "dry_run=true"])
    assert planned.hardware.devices_per_node == 4


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["adapter.r=0"], "adapter.r=0 must be a positive rank"),
        (["adapter.dropout=1.5"], "adapter.dropout=1.5 must be in [0, 1)"),
        (["adapter=none"], "adapter=none trains nothing"),
        (["dataset=usmle_jp"], "dataset.path is required by dataset=usmle_jp"),
        (
            ["dataset=jjsimqa", "dataset.path=/nonexistent/jjsimqa.jsonl"],
            "dataset.path=/nonexistent/jjsimqa.jsonl does not exist",
        ),
        (["model=opencalm7b", "model.path=/nonexistent/ckpt"], "model.path=/nonexistent/ckpt is not a directory"),
        (["adapter=full", "adapter.quantization.method=nf4"], "cannot be fully fine-tuned"),
        (["train.global_batch_size=12", "train.micro_batch_size=8"], "not a multiple of train.micro_batch_size=8"),
        (["train.max_steps=0"], "train.max_steps=0 must be positive"),
        (["prompt.template=no placeholder here"], "has no {instruction} placeholder"),
        (["adapter=qlora", "model.architecture.intermediate_size=352"], "blocks of 64"),
    ],
)
def test_cross_group_rules(typed, overrides, expected):
    assert any(expected in p for p in problems_of(typed, overrides))


@pytest.mark.parametrize(
    "override,expected",
    [
        ("+model.hidden=1", "model.hidden is not a key medtune knows"),
        ("+model.architecture.hiden_size=64", "did you mean model.architecture.hidden_size?"),
        ("+adapter.rank=4", "adapter.rank is not a key medtune knows"),
    ],
)
def test_keys_appended_with_plus_are_not_silently_dropped(typed, override, expected):
    assert any(expected in p for p in problems_of(typed, [override]))


def test_four_bit_without_bitsandbytes_is_refused_before_loading(typed, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    assert any("needs bitsandbytes" in p for p in problems_of(typed, ["adapter=qlora"]))


def test_default_config_passes_every_rule(typed):
    cfg = typed([])
    assert cfg.model.name == "tiny" and cfg.adapter.name == "lora" and cfg.logger.mode.value == "offline"


def imported_modules(stderr: str) -> set[str]:
    """Top-level module names from `python -X importtime` output."""
    return {
        line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")
    }


def test_cfg_job_shows_the_70b_qlora_setting_without_heavy_imports():
    result = cli("-X", "importtime", "train.py", "model=swallow70b", "adapter=qlora", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-2000:]
    job = OmegaConf.create(result.stdout)
    assert job.model.hub_id == "tokyotech-llm/Swallow-70b-instruct-hf"
    assert job.adapter.quantization.method == "nf4"
    assert (job.adapter.r, job.adapter.alpha, job.adapter.dropout) == (64, 16, 0.1)
    assert list(job.adapter.target_modules) == ["all-linear"]
    assert not {"torch", "transformers", "peft", "bitsandbytes", "deepspeed", "wandb"} & imported_modules(result.stderr)


def test_a_real_model_request_stops_before_loading_anything_with_a_message(tmp_path):
    result = cli("-X", "importtime", "train.py", "model=swallow70b", "adapter=qlora", f"paths.output_root={tmp_path}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "model.path" in result.stderr and "hardware=a100x4" in result.stderr
    # Refused from the config alone: neither torch nor transformers is even imported.
    assert not {"torch", "transformers"} & imported_modules(result.stderr)
    failures = list(Path(tmp_path).rglob("failure.json"))
    assert len(failures) == 1 and "ConfigError" in failures[0].read_text()


@pytest.mark.parametrize("group,option", [(g, o) for g in ("exam", "eval", "prompt") for o in options(g)])
def test_every_evaluate_option_composes(compose, group, option, tmp_path):
    from medtune.config.eval_schema import EvalRunConfig

    cfg = compose([f"{group}={option}"], config_name="evaluate")
    for key in OmegaConf.missing_keys(cfg):
        OmegaConf.update(cfg, key, str(tmp_path))
    assert isinstance(OmegaConf.to_object(cfg), EvalRunConfig)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["eval.batch_size=0"], "eval.batch_size=0 must be positive"),
        (["eval.do_sample=true", "eval.temperature=0"], "must be positive when eval.do_sample=true"),
        (["exam=jsonl"], "exam.path is required by exam=jsonl"),
        (["exam=igakuqa", "exam.path=/nonexistent/igakuqa"], "exam.path=/nonexistent/igakuqa does not exist"),
        (["exam.min_answers=3"], "exam.min_answers=3 is above exam.max_answers=2"),
        (["predictions=/nonexistent/preds.jsonl"], "predictions=/nonexistent/preds.jsonl does not exist"),
        (["model=swallow70b"], "weights of tokyotech-llm/Swallow-70b-instruct-hf are not on this machine"),
    ],
)
def test_evaluate_rules(compose, overrides, expected):
    from medtune.config.eval_schema import EvalRunConfig

    with pytest.raises(ConfigError) as info:
        to_typed(compose(overrides, config_name="evaluate"), EvalRunConfig)
    assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.slow
def test_dry_run_plans_the_70b_qlora_setting_with_exact_counts_and_a_verdict():
    result = cli("train.py", "model=llama2_70b", "adapter=qlora", "hardware=a100x4_zero3", "dry_run=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "68,976,648,192" in result.stdout and "828,375,040" in result.stdout
    assert "fits on NVIDIA A100-SXM4-80GB" in result.stdout
    assert "nothing is loaded" in result.stdout
