"""Tokenize prompt and response separately: loss on response tokens only, lengths enforced apart.

An answer is never cut: a response longer than `max_target_tokens` drops its example. A prompt
longer than `max_input_tokens` is either truncated from the left (its end, where the question and
the response marker are, is kept) or dropped. Every truncation and drop is counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from medtune.config.schema import OverlongPolicy, PromptConfig
from medtune.data.readers import InstructionRecord
from medtune.data.templates import encode_prompt, render_prompt, response_end
from medtune.errors import DataError

IGNORE_INDEX = -100


@dataclass
class EncodingStats:
    records: int = 0
    kept: int = 0
    truncated_inputs: int = 0
    dropped_long_inputs: int = 0
    dropped_long_targets: int = 0
    prompt_tokens: int = 0
    target_tokens: int = 0
    longest_target: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def encode_records(
    records: list[InstructionRecord],
    tokenizer: Any,
    prompt: PromptConfig,
    max_input_tokens: int,
    max_target_tokens: int,
    overlong: OverlongPolicy = OverlongPolicy.truncate_input,
    max_total_tokens: int | None = None,
) -> tuple[list[dict[str, list[int]]], EncodingStats]:
    stats = EncodingStats(records=len(records))
    examples = []
    eos = tokenizer.eos_token_id
    end = response_end(prompt, tokenizer)  # chat: the template's end of turn closes the response
    for record in records:
        prompt_ids = encode_prompt(tokenizer, render_prompt(prompt, record, tokenizer))
        if end is None:
            target_ids = tokenizer(record.output, add_special_tokens=False)["input_ids"] + [eos]
        else:
            target_ids = tokenizer(record.output + end, add_special_tokens=False)["input_ids"]
        stats.longest_target = max(stats.longest_target, len(target_ids))
        input_limit = max_input_tokens
        if max_total_tokens is not None:
            input_limit = min(input_limit, max_total_tokens - len(target_ids))
        if len(target_ids) > max_target_tokens or input_limit < 1:
            stats.dropped_long_targets += 1
            continue
        if len(prompt_ids) > input_limit:
            if overlong == OverlongPolicy.drop:
                stats.dropped_long_inputs += 1
                continue
            head = prompt_ids[:1] if prompt_ids[0] == tokenizer.bos_token_id else []
            prompt_ids = head + prompt_ids[len(prompt_ids) - (input_limit - len(head)) :]
            stats.truncated_inputs += 1
        examples.append(
            {
                "input_ids": prompt_ids + target_ids,
                "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids,
            }
        )
        stats.kept += 1
        stats.prompt_tokens += len(prompt_ids)
        stats.target_tokens += len(target_ids)
    if records and not examples:
        raise DataError(
            f"every one of the {len(records)} examples is too long (longest response {stats.longest_target} tokens, "
            f"train.max_target_tokens={max_target_tokens}; {stats.dropped_long_inputs} prompts over "
            f"train.max_input_tokens={max_input_tokens}): raise the limits or use train.overlong=truncate_input."
        )
    return examples, stats


class PadCollator:
    """Right-pads a batch to its longest example; padded label positions are ignored by the loss."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(example["input_ids"]) for example in batch)
        input_ids, labels, attention = [], [], []
        for example in batch:
            pad = width - len(example["input_ids"])
            input_ids.append(example["input_ids"] + [self.pad_token_id] * pad)
            labels.append(example["labels"] + [IGNORE_INDEX] * pad)
            attention.append([1] * len(example["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(attention, dtype=torch.long),
        }
