"""Pre-tokenized training data (`dataset.format=tokens`): JSON Lines of `{"input_ids": [...], "labels": [...]}`.

For data tokenized elsewhere (your own pipeline, or the same token ids handed to several trainers, as the
speed benchmarks do). `labels` holds -100 where no loss is taken (the prompt) and the token id where it
is; without `labels` every token is a target. Ids are checked against the model's vocabulary here, not
deep inside the embedding layer; examples longer than `train.max_input_tokens + train.max_target_tokens`
are refused with the line that holds them (pre-tokenized data is never cut silently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtune.data.json_files import iter_json_objects
from medtune.data.readers import data_files
from medtune.data.tokenize import IGNORE_INDEX, EncodingStats
from medtune.errors import DataError


def read_token_examples(
    path: Path, vocab_size: int | None, max_tokens: int, max_records: int | None = None
) -> list[dict[str, list[int]]]:
    """The examples of a file or folder of token-id JSON Lines; see the module docstring."""
    examples: list[dict[str, list[int]]] = []
    for file in data_files(Path(path)):
        for where, item in iter_json_objects(file):
            examples.append(_example(item, where, vocab_size, max_tokens))
            if max_records is not None and len(examples) >= max_records:
                break
        if max_records is not None and len(examples) >= max_records:
            break
    if not examples:
        raise DataError(f'{path}: no token examples; each line needs {{"input_ids": [...], "labels": [...]}}.')
    return examples


def token_stats(examples: list[dict[str, list[int]]]) -> EncodingStats:
    """The encoding stats of pre-tokenized examples (all kept: they are never cut)."""
    targets = [sum(label != IGNORE_INDEX for label in e["labels"]) for e in examples]
    return EncodingStats(
        records=len(examples),
        kept=len(examples),
        prompt_tokens=sum(len(e["input_ids"]) for e in examples) - sum(targets),
        target_tokens=sum(targets),
        longest_target=max(targets, default=0),
    )


def _example(item: dict[str, Any], where: str, vocab_size: int | None, max_tokens: int) -> dict[str, list[int]]:
    ids = item.get("input_ids")
    if not _int_list(ids) or not ids:
        raise DataError(
            f'{where}: "input_ids" must be a non-empty list of token ids (whole numbers); '
            'dataset.format=tokens reads pre-tokenized lines {"input_ids": [...], "labels": [...]}.'
        )
    labels = item.get("labels", ids)
    if not _int_list(labels) or len(labels) != len(ids):
        raise DataError(
            f'{where}: "labels" must be a list of whole numbers as long as input_ids ({len(ids)}), with '
            f"{IGNORE_INDEX} where no loss is taken."
        )
    if vocab_size is not None and (max(ids) >= vocab_size or min(ids) < 0):
        bad = next(i for i in ids if i >= vocab_size or i < 0)
        raise DataError(
            f"{where}: token id {bad} is outside the model's vocabulary (0..{vocab_size - 1}); the ids must come "
            "from this model's tokenizer."
        )
    if any(label != IGNORE_INDEX and label != token for label, token in zip(labels, ids)):
        raise DataError(
            f"{where}: a label is neither {IGNORE_INDEX} nor the input id at its position; labels mark which "
            "input tokens are targets (the model shifts them itself)."
        )
    if all(label == IGNORE_INDEX for label in labels[1:]):
        raise DataError(f"{where}: no label after the first token is a target, so the example teaches nothing.")
    if len(ids) > max_tokens:
        raise DataError(
            f"{where}: {len(ids)} tokens, over train.max_input_tokens + train.max_target_tokens = {max_tokens}; "
            "raise those limits or shorten the example (pre-tokenized examples are never cut)."
        )
    return {"input_ids": list(ids), "labels": list(labels)}


def _int_list(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
