"""Continual pretraining on raw text, dataset mixtures, epochs, the total-length cap, and the papers' experiments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF
from medtune.config.schema import MixtureSourceConfig, TrainRunConfig
from medtune.data.mixture import read_mixture, weighted_sample
from medtune.data.text_corpus import Document, encode_blocks, read_documents
from medtune.errors import ConfigError, DataError
from medtune.jobs import to_typed

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "medtune" / "resources" / "sample"
PAPER_REFERENCE = ("Table", "section", "Section")


class CharTokenizer:
    """One id per character, BOS 1 and EOS 2: block arithmetic is easy to check by hand."""

    bos_token_id, eos_token_id = 1, 2

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [10 + ord(c) % 50 for c in text]}


def test_blocks_join_documents_with_bos_and_eos_and_keep_the_tail():
    docs = [Document("abcde", "a"), Document("xyz", "b")]
    blocks, stats = encode_blocks(docs, CharTokenizer(), block_tokens=4)
    stream = [t for b in blocks for t in b["input_ids"]]
    assert stream[0] == 1 and stream[6] == 2 and stream[7] == 1 and stream[-1] == 2  # BOS abcde EOS BOS xyz EOS
    assert stats.tokens == 12 and stats.blocks == 3 and [len(b["input_ids"]) for b in blocks] == [4, 4, 4]
    assert all(b["labels"] == b["input_ids"] for b in blocks)  # loss on every token
    assert [b["seq_lengths"] for b in blocks] == [[4], [3, 1], [4]]  # "e EOS" ends document 1, "BOS" starts 2
    blocks, stats = encode_blocks(docs, CharTokenizer(), block_tokens=5)
    assert [len(b["input_ids"]) for b in blocks] == [5, 5, 2] and stats.last_block_tokens == 2  # the tail is kept


def test_a_document_in_a_block_sees_only_itself(typed, tiny_cache):
    """With pretrain.isolate_documents the second document of a block gets the logits it gets alone."""
    import torch

    from medtune.data.packing import PackedCollator
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer

    cfg = typed([f"paths.cache_dir={tiny_cache}"])
    checkpoint = resolve_checkpoint(cfg.model, tiny_cache)
    tokenizer = load_tokenizer(checkpoint, cfg.model)
    model = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware).eval()
    docs = [Document("高血圧の治療は減塩から始める。", "a"), Document("Asthma is a chronic airway disease.", "b")]
    (block,), _ = encode_blocks(docs, tokenizer, block_tokens=512)
    first, second = block["seq_lengths"]
    (alone,), _ = encode_blocks(docs[1:], tokenizer, block_tokens=512)
    with torch.no_grad():
        packed = model(**PackedCollator()([block])).logits[0, first:]
        single = model(input_ids=torch.tensor([alone["input_ids"]])).logits[0]
        joined = model(input_ids=torch.tensor([block["input_ids"]])).logits[0, first:]  # no isolation
    assert second == len(alone["input_ids"])
    assert torch.allclose(packed, single, atol=1e-4)
    assert not torch.allclose(joined, single, atol=1e-2)  # without it, document 2 would read document 1


def test_a_one_token_tail_is_dropped_because_it_predicts_nothing():
    blocks, _ = encode_blocks([Document("abcdefghi", "a")], CharTokenizer(), block_tokens=5)  # 11 tokens
    assert [len(b["input_ids"]) for b in blocks] == [5, 5]


def test_read_documents_from_text_files_and_jsonl(tmp_path):
    (tmp_path / "one.txt").write_text("第一の文書。\n\n二段落目。", encoding="utf-8")
    (tmp_path / "two.md").write_text("# note\nsecond document", encoding="utf-8")
    (tmp_path / "more.jsonl").write_text('{"body": "third"}\n{"body": "fourth"}\n', encoding="utf-8")
    docs = read_documents(tmp_path, text_field="body")
    assert [d.text for d in docs] == ["third", "fourth", "第一の文書。\n\n二段落目。", "# note\nsecond document"]
    assert docs[0].name == "more.jsonl:1"  # named relative to the folder read
    with pytest.raises(DataError, match=r"more.jsonl:1: no string field 'text' .*dataset.text_field"):
        read_documents(tmp_path / "more.jsonl")
    assert len(read_documents(None)) == 13  # the bundled medical text


def test_mixture_weights_are_copies_and_eval_records_never_repeat(tmp_path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"instruction": f"a{i}", "output": "x"}) + "\n" for i in range(20)))
    b.write_text("".join(json.dumps({"prompt": f"b{i}", "response": "y"}) + "\n" for i in range(10)))
    sources = {
        "alpaca": MixtureSourceConfig(path=str(a), weight=0.5),
        "chat": MixtureSourceConfig(path=str(b), weight=2.0),
    }
    train, held, counts = read_mixture(sources, eval_fraction=0.1, seed=3)
    assert counts == {"alpaca": 9, "chat": 18}  # 18 train records x 0.5; 9 x 2
    assert len(train) == 27 and len(held) == 3
    assert not {r.instruction for r in held} & {r.instruction for r in train}
    again, _, _ = read_mixture(sources, eval_fraction=0.1, seed=3)
    assert [r.instruction for r in again] == [r.instruction for r in train]  # seeded
    import random

    assert len(weighted_sample(list(range(10)), 2.5, random.Random(0))) == 25
    with pytest.raises(ConfigError, match="every weight is 0"):
        read_mixture({"a": MixtureSourceConfig(path=str(a), weight=0.0)}, 0.1, 0)


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        (["task=pretrain"], "task=pretrain reads raw text, but dataset=sample has dataset.format=auto"),
        (["dataset=medical_text"], r"raw text \(dataset.format=text\).*task=pretrain"),
        (["task=pretrain", "dataset=medical_text", "pretrain.block_tokens=99999"], "pretrain.block_tokens=99999"),
        (["train.epochs=0"], r"train.epochs=0(\.0)? must be positive"),
        (
            [
                "dataset=vi_chat_mix",
                "dataset.mixture.alpaca.path=/x",
                "dataset.mixture.gpt4all.path=/y",
                "dataset.path=/z",
            ],
            "sets both dataset.path=/z and dataset.mixture",
        ),
        (
            ["dataset=vi_chat_mix"],
            r"dataset.mixture.alpaca.path is required .* e.g. dataset.mixture.alpaca.path=/data/alpaca.json",
        ),
    ],
)
def test_task_and_mixture_rules_explain_themselves(typed, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        typed(overrides)


def experiments() -> list[str]:
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", experiments())
def test_every_experiment_names_its_source_and_validates_as_a_dry_run(compose, name, tmp_path):
    first_comment = (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()[1]
    assert first_comment.startswith("# ") and any(word in first_comment for word in PAPER_REFERENCE), first_comment
    # An experiment of QA generation (it sets qa.*) is one of generate_qa.py's; every other one is train.py's.
    if "\nqa:" in (CONF / "experiment" / f"{name}.yaml").read_text():
        from medtune.config.qa_schema import GenerateQARunConfig

        cfg = compose([f"experiment={name}", "dry_run=true", "model.allow_download=true"], config_name="generate_qa")
        assert isinstance(to_typed(cfg, GenerateQARunConfig), GenerateQARunConfig)
        return
    cfg = compose([f"experiment={name}", "dry_run=true", "model.allow_download=true", f"paths.shared={tmp_path}"])
    for key in OmegaConf.missing_keys(cfg):
        OmegaConf.update(cfg, key, str(tmp_path))
    if cfg.dataset.path is not None and not cfg.dataset.mixture:
        cfg.dataset.path = str(tmp_path)
    if cfg.adapter.kind == "none":  # an untuned row of a table: it is evaluated, never trained
        with pytest.raises(ConfigError, match="adapter=none trains nothing"):
            to_typed(cfg, TrainRunConfig)
        return
    assert isinstance(to_typed(cfg, TrainRunConfig), TrainRunConfig)


def test_vietnamese_experiments_pin_the_papers_settings(compose):
    for name, model, prompt, data in [
        ("bloomz_chat", "bloomz7b1_mt", "vi_chat", "vi_chat_mix"),
        ("gptj_doctor", "gptj6b_vi", "vi_doctor", "vi_doctor_mix"),
    ]:
        cfg = compose([f"experiment={name}"])
        assert (cfg.model.name, cfg.prompt.name, cfg.dataset.name) == (model, prompt, data)
        assert cfg.adapter.quantization.method == "int8" and cfg.adapter.r == 8
        assert (cfg.train.epochs, cfg.train.global_batch_size, cfg.train.learning_rate) == (2, 128, 3e-4)
        assert cfg.train.max_total_tokens == 512
    medcalm = compose(["experiment=medcalm"])
    assert medcalm.task == "pretrain" and medcalm.pretrain.block_tokens == 768
    assert (medcalm.train.global_batch_size, medcalm.train.max_steps) == (63, 2000)


def test_total_length_cap_truncates_the_prompt_and_never_the_answer(typed, tiny_cache):
    from medtune.data.readers import InstructionRecord
    from medtune.data.tokenize import IGNORE_INDEX, encode_records
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    cfg = typed([f"paths.cache_dir={tiny_cache}"])
    tokenizer = load_tokenizer(resolve_checkpoint(cfg.model, tiny_cache), cfg.model)
    record = InstructionRecord("long question " * 40, "", "short answer", "t:1")
    (example,), stats = encode_records([record], tokenizer, cfg.prompt, 512, 512, max_total_tokens=48)
    target = [t for t in example["labels"] if t != IGNORE_INDEX]
    assert len(example["input_ids"]) == 48 and stats.truncated_inputs == 1
    assert tokenizer.decode(target, skip_special_tokens=True).strip() == "short answer"


@pytest.mark.slow
def test_pretrain_then_instruction_tune_from_that_base_then_evaluate(run_train, run_eval, tmp_path):
    """The JMedLoRA chain in miniature: MedCALM-style pretraining, then LoRA on top, then the exam."""
    pretrained = run_train(
        [
            "task=pretrain",
            "dataset=medical_text",
            "adapter=full",
            "pretrain.block_tokens=64",
            "train.max_steps=8",
            "logger=none",
            "exam_eval.enabled=false",
        ],
        name="pretrain",
    )
    summary = pretrained.summary
    assert summary["train/loss_last"] < summary["train/loss_first"]
    assert summary["eval/loss_after"] < summary["eval/loss_before"]  # held-out documents got likelier
    base = tmp_path / "pretrain"
    assert (base / "model" / "config.json").is_file() and (base / "model" / "tokenizer.json").is_file()

    tuned = run_train(
        [
            "model=local",
            f"model.path={base}",
            "model.dtype=float32",
            "schedule=tiny",
            "train.epochs=1",
            "logger=none",
            "exam_eval.enabled=false",
        ],
        name="tuned",
    )
    info = json.loads((tmp_path / "tuned" / "run_info.json").read_text())
    assert info["checkpoint"] == str((base / "model").resolve())
    rows = tuned.summary["data/train_kept"]
    assert tuned.summary["train/steps"] == math.ceil(rows / 8) == tuned.summary["train/planned_steps"]

    metrics = run_eval(
        [f"run={tmp_path / 'tuned'}", "eval.max_new_tokens=16", "eval.num_shots=0", "logger=none"], name="eval"
    )
    assert metrics["n"] == metrics["correct"] + metrics["invalid"] + metrics["wrong"] > 0


@pytest.mark.slow
def test_a_lora_pretrained_run_is_merged_once_when_used_as_a_base(run_train, tmp_path):
    run_train(
        [
            "task=pretrain",
            "dataset=medical_text",
            "pretrain.block_tokens=64",
            "train.max_steps=3",
            "logger=none",
            "exam_eval.enabled=false",
        ],
        name="lora_pretrain",
    )
    base = tmp_path / "lora_pretrain"
    assert (base / "adapter" / "adapter_config.json").is_file() and not (base / "export").exists()
    run_train(
        [
            "model=local",
            f"model.path={base}",
            "model.dtype=float32",
            "schedule=tiny",
            "train.max_steps=2",
            "logger=none",
            "exam_eval.enabled=false",
        ],
        name="on_top",
    )
    assert (base / "export" / "config.json").is_file() and not (base / "export" / "adapter_config.json").exists()
    info = json.loads((tmp_path / "on_top" / "run_info.json").read_text())
    assert info["checkpoint"] == str((base / "export").resolve())


def test_train_summary_records_the_mixture(run_train, tmp_path):
    overrides = [
        "dataset=vi_chat_mix",
        f"dataset.mixture.alpaca.path={SAMPLE / 'instructions.jsonl'}",
        f"dataset.mixture.gpt4all.path={SAMPLE / 'chat_vi.jsonl'}",
        "dataset.mixture.gpt4all.weight=2",
        "dataset.eval_fraction=0.2",
        "prompt=vi_chat",
        "train.max_steps=1",
        "logger=none",
        "exam_eval.enabled=false",
    ]
    summary = run_train(overrides, name="mix").summary
    n_instructions = sum(1 for line in (SAMPLE / "instructions.jsonl").read_text().splitlines() if line.strip())
    n_chat = sum(1 for line in (SAMPLE / "chat_vi.jsonl").read_text().splitlines() if line.strip())
    assert summary["data/mixture/alpaca"] == n_instructions - round(n_instructions * 0.2)
    assert summary["data/mixture/gpt4all"] == 2 * (n_chat - round(n_chat * 0.2))
    assert summary["data/train_records"] == summary["data/mixture/alpaca"] + summary["data/mixture/gpt4all"]
