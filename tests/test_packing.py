"""Padding-free packing and length grouping, checked on the real tiny model (no mocks).

* A packed row gives every example exactly the logits it gets alone: attention never crosses examples.
* The HF causal-LM loss of a packed batch is the token-weighted mean of the per-example losses, i.e. the
  mean over the batch's non-ignored (shifted) labels, as for a padded batch.
* LoRA training through the real Trainer on packed batches follows the padded run step for step.
* pack_examples never cuts an example and respects max_tokens; length_grouped_order lowers padding.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF
from medtune.config.schema import (
    AdapterConfig,
    HardwareConfig,
    ModelConfig,
    PromptConfig,
)
from medtune.data.packing import (
    LengthGroupedSampler,
    PackedCollator,
    length_grouped_order,
    pack_examples,
    padding_stats,
)
from medtune.data.readers import read_records
from medtune.data.tokenize import IGNORE_INDEX, PadCollator, encode_records
from medtune.modeling.description import resolve_checkpoint
from medtune.modeling.load import load_base_model, load_tokenizer


def load_config(cls, *parts: str):
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(CONF.joinpath(*parts))))


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    model_cfg = load_config(ModelConfig, "model", "tiny.yaml")
    checkpoint = resolve_checkpoint(model_cfg, tiny_cache)
    return model_cfg, checkpoint, load_tokenizer(checkpoint, model_cfg)


@pytest.fixture(scope="module")
def sample_examples(tiny):
    """The bundled sample set encoded with the Alpaca prompt: 58 examples of 95 to 248 tokens."""
    _, _, tokenizer = tiny
    prompt = load_config(PromptConfig, "prompt", "alpaca.yaml")
    examples, stats = encode_records(read_records(None), tokenizer, prompt, 512, 512)
    assert stats.kept == stats.records > 40
    return examples


def base_model(tiny, attn_implementation: str | None = None):
    model_cfg, checkpoint, _ = tiny
    adapter = load_config(AdapterConfig, "adapter", "lora.yaml")
    model = load_base_model(checkpoint, model_cfg, adapter, load_config(HardwareConfig, "hardware", "cpu.yaml"))
    if attn_implementation is not None:
        model.set_attn_implementation(attn_implementation)
    return model.eval()


def synthetic(lengths: list[int], seed: int = 0) -> list[dict[str, list[int]]]:
    """Examples with distinct token ids; the first half of each is a prompt (IGNORE_INDEX labels)."""
    rng = random.Random(seed)
    examples = []
    for n in lengths:
        ids = [rng.randrange(5, 4000) for _ in range(n)]
        prompt = n // 2
        examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return examples


def split_row(row: dict) -> list[dict[str, list[int]]]:
    parts, start = [], 0
    for n in row["seq_lengths"]:
        parts.append({key: row[key][start : start + n] for key in ("input_ids", "labels", "position_ids")})
        start += n
    return parts


# --- pack_examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1, 7, 20, 64, 1000])
def test_pack_examples_keeps_every_example_whole_within_max_tokens(max_tokens):
    examples = synthetic([1, 3, 5, 8, 8, 13, 21, 2, 9, 30, 4, 4, 17])
    rows = pack_examples(examples, max_tokens, seed=3)
    pieces = []
    for row in rows:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) == sum(row["seq_lengths"])
        # over the budget only when the row is one overlong example
        assert len(row["input_ids"]) <= max_tokens or len(row["seq_lengths"]) == 1
        pieces += split_row(row)
    originals = sorted(tuple(e["input_ids"]) for e in examples)
    assert sorted(tuple(p["input_ids"]) for p in pieces) == originals  # every example once, never cut
    by_ids = {tuple(e["input_ids"]): e for e in examples}
    for piece in pieces:
        original = by_ids[tuple(piece["input_ids"])]
        assert piece["position_ids"] == list(range(len(piece["input_ids"])))  # restart at 0
        assert piece["labels"][0] == IGNORE_INDEX  # nothing predicts across a boundary
        assert piece["labels"][1:] == original["labels"][1:]  # every other label untouched


def test_pack_examples_fills_bins_and_is_deterministic_per_seed(sample_examples):
    max_tokens = 512
    rows = pack_examples(sample_examples, max_tokens, seed=0)
    total = sum(len(e["input_ids"]) for e in sample_examples)
    lower_bound = -(-total // max_tokens)
    assert lower_bound <= len(rows) <= lower_bound + 2  # best-fit decreasing: close to the optimum here
    assert all(len(r["input_ids"]) <= max_tokens for r in rows)
    assert pack_examples(sample_examples, max_tokens, seed=0) == rows
    assert pack_examples(sample_examples, max_tokens, seed=1) != rows  # the seed orders rows and ties
    assert pack_examples([], max_tokens, seed=0) == []


def test_overlong_example_is_a_row_of_its_own():
    examples = synthetic([50, 10, 10])
    rows = pack_examples(examples, 20, seed=0)
    assert sorted(r["seq_lengths"] for r in rows) == [[10, 10], [50]]
    with pytest.raises(ValueError):
        pack_examples(examples, 0, seed=0)
    with pytest.raises(ValueError):
        pack_examples([{"input_ids": [], "labels": []}], 8, seed=0)


# --- PackedCollator ------------------------------------------------------------------------------


def test_packed_collator_makes_one_padding_free_row():
    examples = synthetic([3, 4, 2, 5])
    examples[2]["labels"] = list(examples[2]["input_ids"])  # a first label that is not ignored
    rows = pack_examples(examples[:2], 100, seed=0) + [examples[2], examples[3]]  # packed and plain rows mix
    batch = PackedCollator()(rows)
    total = sum(len(e["input_ids"]) for e in examples)
    assert set(batch) == {"input_ids", "labels", "position_ids", "use_cache"} and batch["use_cache"] is False
    assert "attention_mask" not in batch  # a mask would switch off transformers' packed-sequence detection
    for key in ("input_ids", "labels", "position_ids"):
        assert batch[key].shape == (1, total) and batch[key].dtype == torch.long
    positions = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0]
    assert len(starts) == 4
    assert all(batch["labels"][0, s] == IGNORE_INDEX for s in starts)
    assert sorted(b - a for a, b in zip(starts, starts[1:] + [total])) == [2, 3, 4, 5]
    assert "use_cache" not in PackedCollator(disable_cache=False)(rows)


def test_packed_collator_hands_unpacked_batches_to_its_fallback():
    examples = synthetic([3, 6])
    collator = PackedCollator(unpacked=PadCollator(0))
    padded = collator(examples)  # an eval batch of plain examples: padded as without packing
    assert padded["input_ids"].shape == (2, 6) and padded["attention_mask"].sum() == 9
    packed = collator(pack_examples(examples, 100, seed=0))
    assert packed["input_ids"].shape == (1, 9) and "attention_mask" not in packed


# --- the model: attention never crosses examples, the loss reduces over tokens -------------------


@pytest.mark.parametrize("attn_implementation", [None, "sdpa", "eager", "medtune_varlen"])
def test_packed_row_gives_each_example_its_own_logits(tiny, sample_examples, attn_implementation):
    """None = the model's default on CPU (sdpa); eager and medtune's per-example SDPA work the same way."""
    from medtune.modeling.attention import register_varlen

    register_varlen()
    model = base_model(tiny, attn_implementation)
    assert model.config._attn_implementation == (attn_implementation or "sdpa")
    examples = sample_examples[:3]
    rows = pack_examples(examples, max_tokens=10_000, seed=0)
    assert len(rows) == 1 and len(rows[0]["seq_lengths"]) == 3
    batch = PackedCollator()(rows)
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        # a control: the same tokens as one plain causal sequence do see the earlier examples
        crossing = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        start = 0
        for n, piece in zip(rows[0]["seq_lengths"], split_row(rows[0])):
            alone = model(input_ids=torch.tensor([piece["input_ids"]]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start : start + n], alone, rtol=0, atol=1e-4)
            if start:
                assert (crossing[start : start + n] - alone).abs().max() > 1e-2
            start += n


def test_packed_loss_is_the_token_weighted_mean_of_per_example_losses(tiny, sample_examples):
    """HF's ForCausalLMLoss shifts labels left by one and, without num_items_in_batch, takes the mean of the
    cross-entropy over every non-ignored shifted label of the whole batch: a token-weighted mean."""
    model = base_model(tiny)
    examples = sample_examples[5:11]
    with torch.no_grad():
        packed = model(**PackedCollator()(examples)).loss.item()
        padded = model(**PadCollator(tiny[2].pad_token_id)(examples)).loss.item()
        weighted = count = 0.0
        for example in examples:
            loss = model(
                input_ids=torch.tensor([example["input_ids"]]),
                labels=torch.tensor([example["labels"]]),
                use_cache=False,
            ).loss.item()
            targets = sum(label != IGNORE_INDEX for label in example["labels"][1:])
            weighted += loss * targets
            count += targets
    assert abs(packed - weighted / count) < 1e-4
    assert abs(packed - padded) < 1e-4


# --- training: packed and padded LoRA runs agree step for step -----------------------------------


def train_lora(tiny, dataset, collator, micro_batch_size: int, steps: int, lr: float, out: Path):
    from transformers import Trainer, TrainingArguments

    from medtune.modeling.adapters import apply_adapter

    torch.manual_seed(0)  # the same LoRA init for both runs
    model = apply_adapter(base_model(tiny).train(), load_config(AdapterConfig, "adapter", "lora.yaml"), False)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=micro_batch_size,
        gradient_accumulation_steps=1,
        learning_rate=lr,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        train_sampling_strategy="sequential",  # both runs see the same examples at every step
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    model.eval()
    return model, losses


@pytest.mark.slow
def test_lora_training_on_packed_batches_matches_padded_batches(tiny, sample_examples, tmp_path):
    """10 optimizer steps of 4 examples each, lr 1e-2 (the tiny model's schedule), same seed and LoRA init.

    Padded: micro-batches of the 4 examples through PadCollator. Packed: the same 4 examples as 2 packed
    rows of 2, concatenated by PackedCollator into one (1, total) sequence. Every step computes the same
    mean over the same response tokens, so the runs differ only by float32 rounding (reduction order, the
    padded matmul shapes): measured <= 2e-6 on losses of ~8. Tolerance 1e-4: 50x that, yet far below what
    a real difference produces (the same packed run with attention leaking across examples, i.e. with
    use_cache=True, moved the step losses by 0.013 to 0.40 and the final loss by 0.11).
    """
    steps, per_step = 10, 4
    examples = sample_examples[: steps * per_step]
    packed_rows = []
    for step in range(steps):
        group = examples[step * per_step : (step + 1) * per_step]
        packed_rows += pack_examples(group[:2], 10_000, seed=0) + pack_examples(group[2:], 10_000, seed=0)
    assert len(packed_rows) == 2 * steps

    _, _, tokenizer = tiny
    padded_model, padded_losses = train_lora(
        tiny, examples, PadCollator(tokenizer.pad_token_id), per_step, steps, 1e-2, tmp_path / "padded"
    )
    packed_model, packed_losses = train_lora(tiny, packed_rows, PackedCollator(), 2, steps, 1e-2, tmp_path / "packed")

    assert len(padded_losses) == len(packed_losses) == steps
    for padded, packed in zip(padded_losses, packed_losses):
        assert abs(padded - packed) < 1e-4, (padded_losses, packed_losses)
    probe = PadCollator(tokenizer.pad_token_id)(examples)
    with torch.no_grad():
        final_padded = padded_model(**probe).loss.item()
        final_packed = packed_model(**probe).loss.item()
        untrained = base_model(tiny)(**probe).loss.item()
    assert abs(final_padded - final_packed) < 1e-4
    assert final_padded < untrained - 0.5  # the runs did train: the agreement is not vacuous


# --- length grouping and padding statistics ------------------------------------------------------


def test_length_grouped_order_is_a_seeded_permutation():
    lengths = [random.Random(7).randrange(1, 300) for _ in range(103)]
    order = length_grouped_order(lengths, batch_size=4, seed=0)
    assert sorted(order) == list(range(103))
    assert length_grouped_order(lengths, 4, seed=0) == order
    assert length_grouped_order(lengths, 4, seed=1) != order
    assert lengths[order[0]] == max(lengths)  # the longest batch comes first
    # one megabatch (50 x 4 > 103): every batch is a run of the sorted lengths, the short one (3) goes last
    assert sorted(lengths[i] for i in order[-3:]) == sorted(lengths)[:3]
    assert length_grouped_order([], 4, seed=0) == []
    sampler = LengthGroupedSampler(lengths, 4, seed=0)
    assert list(sampler) == order and len(sampler) == 103
    sampler.set_epoch(1)
    assert list(sampler) == length_grouped_order(lengths, 4, seed=1)


def test_length_grouped_order_keeps_batches_sorted_within_megabatches():
    lengths = list(range(1, 41))
    order = length_grouped_order(lengths, batch_size=4, seed=0, megabatch_batches=10)  # one megabatch: all
    batches = [sorted(lengths[i] for i in order[k : k + 4]) for k in range(0, 40, 4)]
    assert all(b[-1] - b[0] == 3 for b in batches)  # 4 consecutive lengths per batch
    assert sorted(map(tuple, batches)) == [tuple(range(s, s + 4)) for s in range(1, 41, 4)]


def test_length_grouped_sampler_drives_the_trainer_dataloader(tiny, sample_examples, tmp_path):
    """The wiring proposed for train.group_by_length: a Trainer whose train sampler is LengthGroupedSampler
    (accelerate forwards set_epoch to it) yields exactly the grouped batches, with little padding."""
    from transformers import Trainer, TrainingArguments

    lengths = [len(e["input_ids"]) for e in sample_examples]
    sampler = LengthGroupedSampler(lengths, batch_size=4, seed=0)

    class GroupedTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return sampler

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = GroupedTrainer(
        model=base_model(tiny),
        args=args,
        train_dataset=sample_examples,
        data_collator=PadCollator(tiny[2].pad_token_id),
    )
    loader = trainer.get_train_dataloader()
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        widths = [batch["input_ids"].shape[1] for batch in loader]
        order = length_grouped_order(lengths, 4, seed=epoch)
        assert widths == [max(lengths[i] for i in order[k : k + 4]) for k in range(0, len(order), 4)]


def batches_of(examples, order, batch_size, collator):
    return [collator([examples[i] for i in order[k : k + batch_size]]) for k in range(0, len(order), batch_size)]


def test_length_grouping_and_packing_cut_padding_on_the_sample_set(tiny, sample_examples):
    pad = PadCollator(tiny[2].pad_token_id)
    n, batch_size = len(sample_examples), 4
    lengths = [len(e["input_ids"]) for e in sample_examples]
    real = sum(lengths)
    for seed in range(5):
        shuffled = list(range(n))
        random.Random(seed).shuffle(shuffled)
        random_stats = padding_stats(batches_of(sample_examples, shuffled, batch_size, pad))
        grouped = length_grouped_order(lengths, batch_size, seed)
        grouped_stats = padding_stats(batches_of(sample_examples, grouped, batch_size, pad))
        assert random_stats["real_tokens"] == grouped_stats["real_tokens"] == real
        assert random_stats["sequences"] == grouped_stats["sequences"] == n
        assert grouped_stats["padded_tokens"] < random_stats["padded_tokens"] / 3
    rows = pack_examples(sample_examples, 512, seed=0)
    packed_stats = padding_stats(batches_of(rows, list(range(len(rows))), 2, PackedCollator()))
    assert packed_stats["padded_tokens"] == 0 and packed_stats["real_tokens"] == real
    assert packed_stats["sequences"] == n and packed_stats["max_batch_tokens"] <= 2 * 512


# --- activation checkpointing, by whichever name this transformers has ---------------------------


def test_lora_turns_activation_checkpointing_on(tiny):
    """Through activation_checkpointing_enable here; transformers 5.17 (the GPU image's) lacks that name
    and takes gradient_checkpointing_enable instead (benchmarks/results/gpu_check_h200_rerun.md)."""
    from medtune.modeling.adapters import apply_adapter

    model = base_model(tiny).train()
    assert not model.is_gradient_checkpointing
    peft_model = apply_adapter(model, load_config(AdapterConfig, "adapter", "lora.yaml"), True)
    assert peft_model.base_model.model.is_gradient_checkpointing
