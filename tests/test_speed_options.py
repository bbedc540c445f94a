"""The speed options as a user meets them: the plan says which path a run takes, train.micro_batch_size=auto
picks from the memory plan, the planner counts the target-only head, bfloat16 autocast runs on a CPU."""

from __future__ import annotations

import dataclasses

import pytest

from medtune.config.schema import LossKind
from medtune.modeling.planner import GIB, count_parameters, estimate_memory


def test_the_run_says_which_loss_attention_and_batches_it_uses(run_train, capsys):
    result = run_train(["train.max_steps=2", "exam_eval.enabled=false", "logger=none"])
    out = capsys.readouterr().out
    assert "batches: padding-free (a micro-batch's examples joined into one row, no pad tokens)" in out
    assert "loss: target-only, chunked float32 cross-entropy over the response tokens only" in out
    assert "attention: medtune_varlen over padding-free batches" in out
    assert "precision: float32 weights and compute" in out
    summary = result.summary
    assert summary["train/steps"] == 2 and summary["train/tokens_per_second"] > 0


def test_opting_out_is_said_too(run_train, capsys):
    run_train(
        [
            "train.max_steps=1",
            "exam_eval.enabled=false",
            "logger=none",
            "train.loss=full_logits",
            "train.padding_free=false",
        ]
    )
    out = capsys.readouterr().out
    assert "batches: padded to the longest example of each micro-batch" in out
    assert "loss: full-vocabulary logits at every position (transformers' loss): train.loss=full_logits" in out


def test_micro_batch_auto_on_a_cpu_takes_the_whole_global_batch(run_train, capsys):
    result = run_train(["train.max_steps=1", "exam_eval.enabled=false", "logger=none", "train.micro_batch_size=auto"])
    assert (
        "train.micro_batch_size=auto: 8 (x 1 accumulation steps), gradient checkpointing off" in capsys.readouterr().out
    )
    config = (result.run_dir / "config.yaml").read_text()
    assert "micro_batch_size: 8" in config  # the run's config holds what it used, not "auto"
    assert result.summary["train/micro_batch_size"] == 8 and result.summary["train/gradient_checkpointing"] is False
    assert result.summary["speed/loss_path"] == "target_only" and result.summary["speed/padding_free"] == "true"


def test_micro_batch_auto_picks_the_largest_fitting_divisor_on_a_gpu_plan(typed):
    from medtune.modeling.planner.auto_batch import HEADROOM, choose_micro_batch

    cfg = typed(["model=swallow70b", "adapter=qlora", "hardware=a100x1", "dry_run=true", "train.micro_batch_size=auto"])
    choice = choose_micro_batch(cfg)
    device = 80 * GIB
    fitting = [(m, c) for m, c, total in choice.tried if total <= (1 - HEADROOM) * device]
    assert fitting == [(choice.micro_batch_size, choice.gradient_checkpointing)]  # the first that fits is taken
    assert cfg.train.global_batch_size % choice.micro_batch_size == 0
    assert choice.accumulation * choice.micro_batch_size == cfg.train.global_batch_size
    no_checkpointing = [total for m, c, total in choice.tried if not c]
    assert min(no_checkpointing) > (1 - HEADROOM) * device  # so checkpointing had to come on
    assert choice.gradient_checkpointing and choice.micro_batch_size > 1


def test_the_planner_counts_the_target_only_head_for_a_large_vocabulary(typed):
    """Llama-3-8B's shape (128k vocabulary), 8 x 1024 tokens: full logits and their float32 copies are
    gigabytes; the target-only loss keeps one chunk of them."""
    cfg = typed(["model=llama2_70b", "adapter=lora", "hardware=a100x1", "dry_run=true"])
    arch = dataclasses.replace(
        cfg.model.architecture,
        model_type="llama",
        hidden_size=4096,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        tie_word_embeddings=False,
    )
    counts = count_parameters(arch, cfg.adapter)
    train = dataclasses.replace(cfg.train, micro_batch_size=8, max_input_tokens=896, max_target_tokens=128)
    target_only = estimate_memory(arch, cfg.adapter, cfg.hardware, train, cfg.model.dtype, counts)
    full = estimate_memory(
        arch, cfg.adapter, cfg.hardware, dataclasses.replace(train, loss=LossKind.full_logits), cfg.model.dtype, counts
    )
    logits_fp32 = 8 * 1024 * 128256 * 4
    assert full.activation_detail.head_transient >= 2 * logits_fp32
    from medtune.modeling.heads import chunk_rows

    one_chunk = chunk_rows(128256) * 128256 * 6  # float32 logits and their bfloat16 matmul output
    assert target_only.activation_detail.head_transient == one_chunk  # 8 x 128 targets: more than a chunk
    assert full.total - target_only.total >= logits_fp32


def test_bfloat16_autocast_trains_on_the_cpu(run_train, capsys):
    common = ["train.max_steps=2", "train.logging_steps=1", "exam_eval.enabled=false", "logger=none"]
    fp32 = run_train(common, name="fp32")
    bf16 = run_train([*common, "hardware=cpu_bf16"], name="bf16")
    assert "precision: bfloat16 autocast on the CPU, float32 weights" in capsys.readouterr().out
    assert bf16.summary["train/loss_first"] == pytest.approx(fp32.summary["train/loss_first"], rel=1e-2)
    assert bf16.summary["train/loss_first"] != fp32.summary["train/loss_first"]  # it did compute in bfloat16


def test_how_a_step_is_computed_is_not_part_of_the_resume_fingerprint(typed):
    """A run started on one path resumes on another: the loss is the same on every path."""
    from medtune.training.resume import fingerprint

    default = fingerprint(typed([]), "data")
    other_path = fingerprint(
        typed(["train.loss=full_logits", "train.padding_free=false", "train.attention=model"]), "data"
    )
    assert other_path["config_sha"] == default["config_sha"]
    assert fingerprint(typed(["train.learning_rate=0.5"]), "data")["config_sha"] != default["config_sha"]
