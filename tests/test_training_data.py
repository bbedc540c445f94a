"""Instruction tuning or continual pretraining: chosen once from `task`, then asked, never branched on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from medtune.data.training_data import ContinualPretraining, InstructionTuning, training_data_for

SRC = Path(__file__).resolve().parents[1] / "src" / "medtune"
STRATEGY_MODULE = Path("data") / "training_data.py"
RULE_PACKAGES = ("config", "rules")  # they validate the task=pretrain keys, so they name the task
PRETRAIN = ["task=pretrain", "dataset=medical_text", "pretrain.block_tokens=64"]
# Every cache written before the strategies hashes these fields, whatever the task.
KEY_LAYOUT = {"prompt", "limits", "mixture", "block_tokens", "blocks_version", "text_field"}


def test_the_task_picks_the_strategy(typed):
    from medtune.config.schema import Task
    from medtune.data.training_data import STRATEGIES

    assert set(STRATEGIES) == set(Task)  # every task train.py runs has one
    assert type(training_data_for(typed([]))) is InstructionTuning
    assert type(training_data_for(typed(PRETRAIN))) is ContinualPretraining


def test_the_planner_and_the_plan_line_take_the_strategys_lengths(typed):
    from medtune.modeling.planner.budget import step_shape

    pretrain = typed(PRETRAIN)
    assert training_data_for(pretrain).step_lengths() == (64, 0)
    shape = step_shape(pretrain)
    assert (shape.max_input_tokens, shape.max_target_tokens) == (64, 0)
    assert training_data_for(pretrain).lengths_line() == "blocks of 64 tokens"

    instruction = typed(["train.max_input_tokens=300", "train.max_target_tokens=100"])
    assert training_data_for(instruction).step_lengths() == (300, 100)
    assert step_shape(instruction) is instruction.train
    assert training_data_for(instruction).lengths_line() == "input <= 300, target <= 100 tokens"
    capped = typed(["train.max_input_tokens=300", "train.max_target_tokens=100", "train.max_total_tokens=200"])
    assert training_data_for(capped).step_lengths() == (200, 0)  # the cap truncates prompts
    shape = step_shape(capped)
    assert (shape.max_input_tokens, shape.max_target_tokens) == (200, 0)


def test_both_strategies_keep_the_key_layout_of_existing_caches(typed):
    from medtune.data.cache import cache_key

    instruction, pretrain = training_data_for(typed([])), training_data_for(typed(PRETRAIN))
    assert set(instruction.cache_settings()) == set(pretrain.cache_settings()) == KEY_LAYOUT
    assert set(instruction.key_fields()) == {"prompt", "limits", "mixture"}
    assert set(pretrain.key_fields()) == {"block_tokens", "blocks_version", "text_field"}
    key = cache_key(pretrain, "some/hub-id")
    assert key != cache_key(instruction, "some/hub-id")
    assert key != cache_key(training_data_for(typed(PRETRAIN[:-1] + ["pretrain.block_tokens=32"])), "some/hub-id")
    assert key == cache_key(training_data_for(typed(PRETRAIN)), "some/hub-id")


def test_the_pretrain_strategy_reads_text_into_blocks_fed_whole(typed, tiny_cache, tmp_path):
    from medtune.data.cache import cache_key, tokenized_datasets
    from medtune.data.packing import PackedCollator
    from medtune.data.text_corpus import BlockStats, bundled_text_file
    from medtune.data.tokenize import PadCollator

    cfg = typed(PRETRAIN + [f"paths.cache_dir={tmp_path}", "train.packing=true"])
    data = training_data_for(cfg)
    tokenizer, checkpoint = _tiny_tokenizer(cfg, tiny_cache)
    assert data.source_files() == [bundled_text_file()]
    train_set, eval_set, train_stats, eval_stats = tokenized_datasets(data, tokenizer, cache_key(data, checkpoint))
    assert isinstance(train_stats, BlockStats) and isinstance(eval_stats, BlockStats)
    assert train_stats.blocks == len(train_set) and eval_set
    assert all(len(row["input_ids"]) <= 64 and sum(row["seq_lengths"]) == len(row["input_ids"]) for row in train_set)

    feed = data.trainer_feed(train_set, tokenizer)  # blocks are never packed again, even with train.packing
    assert [row["input_ids"] for row in feed.rows] == [row["input_ids"] for row in train_set]
    assert all(
        row["padding_free"] and row["seq_lengths"] == block["seq_lengths"] for row, block in zip(feed.rows, train_set)
    )
    assert isinstance(feed.collator, PackedCollator) and feed.padding_free
    assert (feed.length_sampler, feed.packed_rows) == (None, None)
    assert feed.collator(eval_set[:2])["input_ids"].shape[0] == 2  # evaluation keeps a row per block
    joined = training_data_for(typed(PRETRAIN + ["pretrain.isolate_documents=false"]))
    assert isinstance(joined.trainer_feed(train_set, tokenizer).collator, PadCollator)


def test_the_instruction_strategy_encodes_records_then_packs_or_groups_them(typed, tiny_cache, tmp_path):
    from medtune.data.cache import cache_key, tokenized_datasets
    from medtune.data.packing import LengthGroupedSampler, PackedCollator
    from medtune.data.readers import bundled_sample_files
    from medtune.data.tokenize import EncodingStats, PadCollator

    cfg = typed([f"paths.cache_dir={tmp_path}"])
    data = training_data_for(cfg)
    tokenizer, checkpoint = _tiny_tokenizer(cfg, tiny_cache)
    assert data.source_files() == bundled_sample_files()
    train_set, _, train_stats, _ = tokenized_datasets(data, tokenizer, cache_key(data, checkpoint))
    assert isinstance(train_stats, EncodingStats) and train_stats.kept == len(train_set)
    assert "seq_lengths" not in train_set[0]

    padding_free = data.trainer_feed(train_set, tokenizer)  # the default: the same examples, joined unpadded
    assert [row["input_ids"] for row in padding_free.rows] == [row["input_ids"] for row in train_set]
    assert isinstance(padding_free.collator, PackedCollator) and padding_free.padding_free
    assert padding_free.collator(padding_free.rows[:3])["input_ids"].shape == (
        1,
        sum(len(e["input_ids"]) for e in train_set[:3]),
    )
    assert type(padding_free.collator(train_set[:3])["attention_mask"]) is not None  # eval rows stay padded
    plain = training_data_for(typed(["train.padding_free=false"])).trainer_feed(train_set, tokenizer)
    assert plain.rows is train_set and type(plain.collator) is PadCollator and not plain.padding_free
    assert (plain.length_sampler, plain.packed_rows) == (None, None)
    packed = training_data_for(typed(["train.packing=true"])).trainer_feed(train_set, tokenizer)
    assert isinstance(packed.collator, PackedCollator) and packed.packed_rows == len(packed.rows) < len(train_set)
    grouped = training_data_for(typed(["train.sampling=group_by_length"])).trainer_feed(train_set, tokenizer)
    assert isinstance(grouped.length_sampler, LengthGroupedSampler) and grouped.packed_rows is None


def _tiny_tokenizer(cfg, tiny_cache: Path):
    """(the tiny model's tokenizer, its checkpoint folder), built once per session in `tiny_cache`."""
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    checkpoint = resolve_checkpoint(cfg.model, tiny_cache)
    return load_tokenizer(checkpoint, cfg.model), checkpoint


def pretrain_branches(source: str) -> list[int]:
    """Lines that name `Task.pretrain`, or compare anything with the string "pretrain"."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "pretrain"
            and isinstance(node.value, ast.Name)
            and node.value.id == "Task"
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(
            isinstance(inner, ast.Constant) and inner.value == "pretrain" for inner in ast.walk(node)
        ):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(
    "source",
    [
        "if cfg.task == Task.pretrain:\n    pass",
        "x = 1 if cfg.task.value == 'pretrain' else 2",
        "ok = cfg.task in ('pretrain', 'train')",
    ],
)
def test_the_branch_detector_sees_a_branch(source):
    assert pretrain_branches(source)


def test_no_module_outside_the_strategy_branches_on_pretrain():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative == STRATEGY_MODULE or relative.parts[0] in RULE_PACKAGES:
            continue
        found += [f"{relative}:{line}" for line in pretrain_branches(path.read_text(encoding="utf-8"))]
    assert not found, f"ask training_data_for(cfg) instead of branching on task=pretrain: {found}"


def test_the_held_out_blocks_are_part_of_the_pretraining_cache_key(typed, tiny_cache, tmp_path):
    """pretrain.eval_blocks decides the held-out split, so two values must not share a cache entry;
    the default (0) keeps the key every earlier cache was written under."""
    from medtune.data.training_data import training_data_for

    base = [f"paths.cache_dir={tiny_cache}", "task=pretrain", "dataset=medical_text"]
    default = training_data_for(typed(base)).cache_settings()
    held = training_data_for(typed([*base, "pretrain.eval_blocks=2"])).cache_settings()
    assert "eval_blocks" not in default and held["eval_blocks"] == 2
    assert {k: v for k, v in held.items() if k != "eval_blocks"} == default
