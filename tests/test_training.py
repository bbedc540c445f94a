"""Real training of the tiny model with LoRA, QLoRA (bitsandbytes 4-bit on CPU) and int8 LoRA:
loss falls, the adapter reloads to identical logits, and the W&B offline run holds what was logged."""

from __future__ import annotations

import json

import pytest
import torch

from medtune.modeling.trained import load_trained
from medtune.tracking.offline import find_offline_runs, read_offline_run

PROBE = "以下は医学知識に関する問題です。 A 54-year-old man presents with chest pain. Thưa bác sĩ"
QUANTIZED_LAYER = {"lora": None, "qlora": "Linear4bit", "lora_int8": "Linear8bitLt"}


def probe_logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROBE, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize(
    "adapter",
    ["lora", pytest.param("qlora", marks=pytest.mark.slow), pytest.param("lora_int8", marks=pytest.mark.slow)],
)
def test_tiny_model_trains_and_its_adapter_reloads_exactly(run_train, adapter):
    result = run_train([f"adapter={adapter}", "train.max_steps=40", "train.eval_steps=0", "train.logging_steps=4"])
    summary = result.summary
    losses = [
        row["train/loss"]
        for row in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines())
        if "train/loss" in row
    ]
    assert len(losses) >= 8
    assert mean(losses[-2:]) < mean(losses[:2]) - 0.3, losses
    assert summary["eval/loss_after"] < summary["eval/loss_before"]
    assert summary["train/steps"] == 40 and summary["train/tokens_per_second"] > 0

    layer = QUANTIZED_LAYER[adapter]
    kinds = {type(m).__name__ for m in result.model.modules()}
    assert (layer in kinds) if layer else not ({"Linear4bit", "Linear8bitLt"} & kinds)
    # Every LoRA B matrix moved away from its zero init: gradients reached every adapted layer.
    lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.detach().abs().max() > 0 for p in lora_b)

    for name in (
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/tokenizer.json",
        "config.yaml",
        "run_info.json",
        "train_summary.json",
    ):
        assert (result.run_dir / name).is_file(), name
    trained = probe_logits(result.model, result.tokenizer)
    reloaded_model, tokenizer, cfg = load_trained(result.run_dir)
    assert cfg.adapter.name == adapter
    torch.testing.assert_close(probe_logits(reloaded_model, tokenizer), trained, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_wandb_offline_run_holds_losses_config_and_names(run_train):
    result = run_train(
        ["train.max_steps=12", "train.logging_steps=3", "adapter.r=4"],
        name="tracked",
        choices={"model": "tiny", "adapter": "lora", "dataset": "sample"},
    )
    runs = find_offline_runs(result.run_dir)
    assert len(runs) == 1 and runs[0].is_relative_to(result.run_dir / "wandb")
    run = read_offline_run(runs[0])
    assert run.job_type == "train" and run.name.endswith("adapter.r=4")
    assert {"model:tiny", "adapter:lora", "dataset:sample"} <= set(run.tags)
    assert run.config["adapter.r"] == 4 and run.config["model.name"] == "tiny"  # flattened for dashboards
    assert len(run.series("train/loss")) >= 4
    for key in (
        "train/learning_rate",
        "train/grad_norm",
        "train/tokens_per_second",
        "train/peak_memory_mib",
        "eval/loss",
    ):
        assert run.series(key), key
    for key in ("train/loss_first", "train/loss_last", "eval/loss_before", "eval/loss_after", "model/trainable_params"):
        assert run.summary[key] == pytest.approx(result.summary[key]), key


def test_full_fine_tuning_saves_a_standalone_model(run_train):
    result = run_train(["adapter=full", "train.max_steps=10", "train.learning_rate=1e-3", "logger=none"])
    assert (result.run_dir / "model" / "model.safetensors").is_file()
    assert not find_offline_runs(result.run_dir)  # logger=none writes no W&B files
    model, tokenizer, _ = load_trained(result.run_dir)
    torch.testing.assert_close(probe_logits(model, tokenizer), probe_logits(result.model, result.tokenizer))


def test_online_logging_with_an_unreachable_server_falls_back_to_offline(run_train, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # a closed loopback port: refused at once
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.warns(UserWarning, match="cannot be reached"):
        result = run_train(["logger.mode=online", "train.max_steps=2", "train.eval_steps=0"], name="online")
    (offline,) = find_offline_runs(result.run_dir)
    assert read_offline_run(offline).summary["train/steps"] == 2


@pytest.mark.slow
def test_exam_accuracy_every_n_steps_keeps_the_best_adapter(run_train):
    result = run_train(
        [
            "train.max_steps=30",
            "train.eval_steps=0",
            "exam_eval.every_steps=10",
            "exam_eval.mode=loglik",
            "logger=none",
        ],
        name="best",
    )
    summary = result.summary
    assert summary["exam/best_step"] in (10, 20)
    assert 0.0 <= summary["exam/best_accuracy"] <= 1.0
    assert (result.run_dir / "best_adapter" / "adapter_model.safetensors").is_file()
    assert "exam/accuracy_before" in summary and "exam/accuracy_after" in summary


def test_group_by_length_batches_similar_lengths_and_pads_less(run_train, tmp_path):
    """train.sampling=group_by_length hands medtune's LengthGroupedSampler to the Trainer; its batches
    of the bundled data pad far less than random batches (transformers' own grouping does not here)."""
    from transformers import TrainingArguments

    from medtune.data.packing import LengthGroupedSampler, padding_stats
    from medtune.data.readers import read_records
    from medtune.data.tokenize import PadCollator, encode_records
    from medtune.training.trainer import MedtuneTrainer

    result = run_train(
        ["train.sampling=group_by_length", "train.max_steps=2", "logger=none", "exam_eval.enabled=false"],
        name="grouped",
    )
    assert result.summary["train/steps"] == 2
    from omegaconf import OmegaConf

    from conftest import CONF
    from medtune.config.schema import PromptConfig

    prompt = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(PromptConfig), OmegaConf.load(CONF / "prompt" / "alpaca.yaml"))
    )
    examples, _ = encode_records(read_records(None), result.tokenizer, prompt, 384, 256)

    def padding(sampler) -> float:
        args = TrainingArguments(
            output_dir=str(tmp_path / "t"),
            per_device_train_batch_size=8,
            use_cpu=True,
            report_to="none",
            remove_unused_columns=False,
        )
        trainer = MedtuneTrainer(
            model=result.model,
            args=args,
            train_dataset=examples,
            data_collator=PadCollator(result.tokenizer.pad_token_id),
        )
        trainer.length_sampler = sampler
        return padding_stats(list(trainer.get_train_dataloader()))["padding_fraction"]

    grouped = padding(LengthGroupedSampler([len(e["input_ids"]) for e in examples], 8, 42))
    assert grouped < 0.10 < padding(None)
