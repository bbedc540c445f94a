"""dataset.format=tokens: pre-tokenized examples train as they are, and bad lines are named (file:line)."""

from __future__ import annotations

import json

import pytest

from medtune.data.token_examples import read_token_examples, token_stats
from medtune.errors import DataError


def write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_token_examples_are_read_as_given_with_their_stats(tmp_path):
    path = write(
        tmp_path / "t.jsonl", [{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]}, {"input_ids": [9, 10]}]
    )
    examples = read_token_examples(path, vocab_size=100, max_tokens=16)
    assert examples == [
        {"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]},
        {"input_ids": [9, 10], "labels": [9, 10]},  # no labels: every token is a target
    ]
    stats = token_stats(examples)
    assert (stats.kept, stats.target_tokens, stats.prompt_tokens, stats.longest_target) == (2, 4, 2, 2)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"input_ids": [1, 2, 300]}, r"t.jsonl:2: token id 300 is outside the model's vocabulary \(0..99\)"),
        ({"input_ids": [1, 2, 3], "labels": [-100, 2]}, r"t.jsonl:2: \"labels\" must be .* as long as input_ids \(3\)"),
        ({"input_ids": [1, 2, 3], "labels": [-100, 5, 3]}, r"t.jsonl:2: a label is neither -100 nor the input id"),
        ({"input_ids": [1, 2, 3], "labels": [1, -100, -100]}, r"t.jsonl:2: no label after the first token"),
        ({"input_ids": "1 2 3"}, r"t.jsonl:2: \"input_ids\" must be a non-empty list of token ids"),
        (
            {"input_ids": list(range(20))},
            r"t.jsonl:2: 20 tokens, over train.max_input_tokens \+ train.max_target_tokens = 16",
        ),
    ],
)
def test_a_bad_token_line_is_named_with_the_fix(tmp_path, row, message):
    path = write(tmp_path / "t.jsonl", [{"input_ids": [1, 2]}, row])
    with pytest.raises(DataError, match=message):
        read_token_examples(path, vocab_size=100, max_tokens=16)


def test_train_py_trains_on_token_ids(run_train, tmp_path, typed, tiny_cache):
    """The tiny model on token ids made by its own tokenizer: the same steps as the records they came from."""
    from medtune.data.readers import read_records
    from medtune.data.tokenize import encode_records
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    cfg = typed([f"paths.cache_dir={tiny_cache}"])
    tokenizer = load_tokenizer(resolve_checkpoint(cfg.model, tiny_cache), cfg.model)
    examples, _ = encode_records(
        read_records(None), tokenizer, cfg.prompt, cfg.train.max_input_tokens, cfg.train.max_target_tokens
    )
    path = write(tmp_path / "ids.jsonl", [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
    common = ["train.max_steps=3", "train.logging_steps=1", "exam_eval.enabled=false", "logger=none"]
    common += ["dataset.eval_fraction=0", "train.sampling=sequential"]
    ids = run_train([*common, f"dataset.path={path}", "dataset.format=tokens"], name="ids")
    text = run_train(common, name="text")
    assert ids.summary["train/tokens_seen"] == text.summary["train/tokens_seen"]
    assert ids.summary["train/loss_last"] == pytest.approx(text.summary["train/loss_last"], rel=1e-6)
