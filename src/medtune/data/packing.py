"""Padding-free packing and length-grouped batching of encoded examples.

Two ways to stop paying for padding tokens:

* **Packing** (`pack_examples` + `PackedCollator`): whole examples are bin-packed into rows of at most
  `max_tokens` tokens, and a micro-batch of rows is concatenated into ONE sequence of shape
  `(1, total_tokens)` with `position_ids` restarting at 0 for every example and no `attention_mask`.
  transformers (`masking_utils.find_packed_sequence_indices`) reads the restarts of `position_ids` and
  builds a block-diagonal causal mask for sdpa / eager / flex attention (flash-attention derives its
  `cu_seqlens` from the same `position_ids`), so no token attends to another example and rotary
  positions are those the example has alone. The first label of every example is IGNORE_INDEX: the
  causal-LM loss predicts `labels[t + 1]` from position `t`, so the last token of one example never
  learns to predict the first token of the next.

  transformers detects packing only when `attention_mask is None` AND `past_key_values is None`; a model
  whose config keeps the default `use_cache=True` builds an empty cache in `forward` and then silently
  attends across examples. The Trainer sets `model.config.use_cache = args.use_cache` (False) itself,
  and `PackedCollator` also passes `use_cache=False` with every batch so that a direct `model(**batch)`
  is safe too.

* **Length grouping** (`length_grouped_order` / `LengthGroupedSampler`): for ordinary padded batches
  (`PadCollator`), a seeded order that puts examples of similar length in the same micro-batch.

`padding_stats` measures what either saves: real tokens against the tokens a layout computes on.
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from medtune.data.tokenize import IGNORE_INDEX

Example = Mapping[str, Sequence[int]]


def _length(example: Example) -> int:
    return len(example["input_ids"])


def _check_example(index: int, example: Example) -> int:
    n = _length(example)
    if n == 0:
        raise ValueError(f"example {index} has no tokens; it cannot be packed.")
    if "labels" in example and len(example["labels"]) != n:
        raise ValueError(f"example {index}: {len(example['labels'])} labels for {n} input_ids.")
    return n


def pack_order(lengths: Sequence[int], max_tokens: int, seed: int) -> list[list[int]]:
    """Bins of example indices, each bin's lengths summing to at most `max_tokens`.

    Best-fit decreasing: examples are taken longest first (ties in a seeded random order), and each goes
    into the open bin whose free room is the smallest that still fits it, or into a new bin. Like
    first-fit decreasing it never uses more than 11/9 OPT + 1 bins, and with a sorted list of free rooms
    it takes O(n log n) comparisons. An example longer than `max_tokens` gets a bin of its own and is
    never cut. The bins are returned in a seeded random order (so that rows are not sorted by size); the
    indices inside a bin stay in placement order (longest first).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i], reverse=True)  # stable: equal lengths keep the seeded order
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted; full bins are not kept
    for index in order:
        n = lengths[index]
        slot = bisect_left(free, (n, -1))  # the first bin with room >= n: the best fit
        if n <= max_tokens and slot < len(free):
            room, b = free.pop(slot)
        else:
            room, b = max_tokens, len(bins)
            bins.append([])
        bins[b].append(index)
        room -= n
        if room > 0:
            insort(free, (room, b))
    rng.shuffle(bins)
    return bins


def pack_examples(examples: Sequence[Example], max_tokens: int, seed: int) -> list[dict[str, list[int]]]:
    """Whole examples packed into rows of at most `max_tokens` tokens (see `pack_order`).

    Each row holds the concatenated `input_ids` and `labels` of its examples, `position_ids` restarting at
    0 for each example and `seq_lengths` (the examples' lengths, in row order). The first label of every
    example is IGNORE_INDEX (for the first example it is never a target anyway: labels are shifted left by
    one), so no position predicts a token of another example. An example longer than `max_tokens` becomes
    a row of its own, whole. Feed the rows to `PackedCollator`.
    """
    lengths = [_check_example(i, example) for i, example in enumerate(examples)]
    rows = []
    for members in pack_order(lengths, max_tokens, seed):
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for index in members:
            example = examples[index]
            ids = list(example["input_ids"])
            example_labels = list(example["labels"]) if "labels" in example else list(ids)
            input_ids += ids
            labels += [IGNORE_INDEX] + example_labels[1:]
            position_ids += range(len(ids))
        rows.append(
            {
                "input_ids": input_ids,
                "labels": labels,
                "position_ids": position_ids,
                "seq_lengths": [lengths[i] for i in members],
                "padding_free": True,
            }
        )
    return rows


class PackedCollator:
    """Padding-free batches: a micro-batch of rows becomes ONE row of shape (1, total_tokens).

    A row is a packed row from `pack_examples` (its examples are delimited by `seq_lengths`, from which the
    `position_ids` are rebuilt) or a plain encoded example (`input_ids` / `labels`, one sequence). The batch has
    `input_ids`, `labels` and `position_ids` restarting at 0 per example, no `attention_mask` and no padding
    (transformers then keeps the examples apart by `position_ids`: medtune's per-example SDPA,
    flash-attention's varlen kernel, or a block-diagonal mask) and, unless `disable_cache=False`,
    `use_cache=False` (with a cache transformers does not look for packed sequences; see the module
    docstring). The first label of every example is IGNORE_INDEX. The causal-LM loss is then the mean over
    the batch's non-ignored shifted labels, exactly what `PadCollator` gives for the same examples.

    `unpacked`, when given (e.g. a `PadCollator`), collates every batch in which no row is marked
    `padding_free` (what `pack_examples` and `padding_free_rows` make): with padding-free training rows and
    an eval set of ordinary rows, the Trainer's single collator then keeps the eval loss computed exactly as
    without packing (the Trainer weights each eval batch by its number of rows).
    """

    def __init__(self, disable_cache: bool = True, unpacked: Callable[[list], dict[str, Any]] | None = None):
        self.disable_cache = disable_cache
        self.unpacked = unpacked

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if not rows:
            raise ValueError("PackedCollator got an empty batch.")
        if self.unpacked is not None and not any(row.get("padding_free") for row in rows):
            return self.unpacked(list(rows))
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for row in rows:
            ids = _as_list(row["input_ids"])
            row_labels = _as_list(row["labels"]) if "labels" in row else list(ids)
            seq_lengths = _as_list(row.get("seq_lengths", [len(ids)]))
            if sum(seq_lengths) != len(ids) or len(row_labels) != len(ids) or min(seq_lengths, default=0) < 1:
                raise ValueError(
                    f"a row of {len(ids)} input_ids has {len(row_labels)} labels and seq_lengths {seq_lengths}; "
                    "rows must come from pack_examples or encode_records."
                )
            start = len(labels)
            labels += row_labels
            for n in seq_lengths:  # no position predicts across an example boundary
                labels[start] = IGNORE_INDEX
                position_ids += range(n)
                start += n
            input_ids += ids
        batch: dict[str, Any] = {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([position_ids], dtype=torch.long),
        }
        if self.disable_cache:
            batch["use_cache"] = False
        return batch


def padding_free_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    """Each example as a row of `PackedCollator`'s (`seq_lengths` its own length unless it has them, marked
    `padding_free`): the micro-batches hold the same examples as padded ones, joined without padding."""
    return [
        {**example, "seq_lengths": example.get("seq_lengths", [_length(example)]), "padding_free": True}
        for example in examples
    ]


class SeparateRowsCollator:
    """Rows that keep their documents apart (`seq_lengths`), padded side by side: shape rows x longest row,
    positions restarting at 0 per document, the pad tail a segment of its own with ignored labels. For
    evaluation batches of pretraining blocks, which the Trainer weights by their number of rows."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        singles = [PackedCollator(disable_cache=False)([{**row, "padding_free": True}]) for row in rows]
        width = max(b["input_ids"].shape[1] for b in singles)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        for i, single in enumerate(singles):
            n = single["input_ids"].shape[1]
            input_ids[i, :n], labels[i, :n], position_ids[i, :n] = (
                single["input_ids"][0],
                single["labels"][0],
                single["position_ids"][0],
            )
            position_ids[i, n:] = torch.arange(width - n)
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "use_cache": False}


def _as_list(values: Any) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int, megabatch_batches: int = 50) -> list[int]:
    """A seeded permutation of range(len(lengths)) whose consecutive `batch_size` chunks hold similar lengths.

    The indices are shuffled, cut into megabatches of `megabatch_batches * batch_size`, each megabatch is
    sorted by length (longest first) and cut into batches; the batches are shuffled, except that the batch
    holding the longest example goes first (an out-of-memory shows at step 1, not hours in) and the one
    short batch, if any, goes last (so that every other chunk of `batch_size` stays one sorted batch).
    Larger megabatches mean less padding and less randomness; 50 is the transformers default.
    """
    if batch_size < 1 or megabatch_batches < 1:
        raise ValueError(f"batch_size and megabatch_batches must be at least 1, got {batch_size}, {megabatch_batches}.")
    rng = random.Random(seed)
    indices = list(range(len(lengths)))
    rng.shuffle(indices)
    size = batch_size * megabatch_batches
    batches: list[list[int]] = []
    for start in range(0, len(indices), size):
        megabatch = sorted(indices[start : start + size], key=lambda i: lengths[i], reverse=True)
        batches += [megabatch[k : k + batch_size] for k in range(0, len(megabatch), batch_size)]
    tail = batches.pop() if batches and len(batches[-1]) < batch_size else None
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
        batches.insert(0, batches.pop(longest))
    if tail is not None:
        batches.append(tail)
    return [i for batch in batches for i in batch]


class LengthGroupedSampler:
    """A torch Sampler over `length_grouped_order`, reshuffled every epoch (seed + epoch).

    Give it the per-device micro-batch size. The Trainer (through accelerate) calls `set_epoch`.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, megabatch_batches: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.megabatch_batches = megabatch_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(length_grouped_order(self.lengths, self.batch_size, self.seed + self.epoch, self.megabatch_batches))


def padding_stats(batches: Iterable[Mapping[str, Any]]) -> dict[str, float | int]:
    """Real tokens against the tokens computed on, over collated batches (what the model is given).

    A batch with an `attention_mask` (PadCollator) has `attention_mask.sum()` real tokens out of
    `input_ids.numel()`; a batch without one (PackedCollator) is padding-free. Returns the counts, the
    padding fraction (padded / computed), the efficiency (real / computed), the number of sequences
    (examples) and the largest batch in tokens (what peak memory follows).
    """
    n_batches = real = computed = sequences = largest = 0
    for batch in batches:
        ids = batch["input_ids"]
        width = ids.numel()
        if "attention_mask" in batch:
            mask = batch["attention_mask"]
            tokens = int(mask.sum())
            sequences += int((mask.sum(-1) > 0).sum())
        else:
            tokens = width
            positions = batch.get("position_ids")
            sequences += int((positions == 0).sum()) if positions is not None else ids.shape[0]
        n_batches += 1
        real += tokens
        computed += width
        largest = max(largest, width)
    return {
        "batches": n_batches,
        "sequences": sequences,
        "real_tokens": real,
        "computed_tokens": computed,
        "padded_tokens": computed - real,
        "padding_fraction": (computed - real) / computed if computed else 0.0,
        "efficiency": real / computed if computed else 1.0,
        "max_batch_tokens": largest,
    }
