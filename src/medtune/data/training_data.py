"""What train.py trains on, chosen once from `task`: instruction tuning or continual pretraining.

A `TrainingData` strategy owns everything that differs between the two:

- `source_files` / `key_fields`: the files and settings the tokenization cache key hashes;
- `tokenize`: how the train and eval sets are read, split and tokenized (what the cache stores);
- `trainer_feed`: the rows the Trainer iterates, their collator and sampler;
- `step_lengths`: the token lengths one step sees, which the memory planner assumes;
- `lengths_line`: the lengths in words, for the dry-run plan.

`training_data_for(cfg)` is the one place that looks at `cfg.task`. Nothing here imports torch or
transformers at module level: the planner and dry runs use it without loading a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from medtune.config.schema import DatasetFormat, Task, TrainRunConfig

if TYPE_CHECKING:
    from medtune.data.text_corpus import BlockStats
    from medtune.data.tokenize import EncodingStats

# Version of the block layout in the cache (2: blocks carry their documents' `seq_lengths`).
BLOCKS_VERSION = 2


class TrainerFeed(NamedTuple):
    """What the Trainer is handed: rows, how a batch of them becomes tensors, and their order."""

    rows: list  # tokenized examples, packed rows or blocks
    collator: Callable[[list], dict[str, Any]]
    length_sampler: Any | None  # a length-grouped sampler, or None for the Trainer's shuffle
    packed_rows: int | None  # how many rows packing made, None without packing
    padding_free: bool = False  # training batches are single rows without padding (every token is real)

    def layout_line(self) -> str:
        """How a training batch is laid out, for the run's plan."""
        if self.packed_rows is not None:
            return f"batches: {self.packed_rows} bin-packed rows, each micro-batch one padding-free row"
        if self.padding_free:
            return "batches: padding-free (a micro-batch's examples joined into one row, no pad tokens)"
        return "batches: padded to the longest example of each micro-batch"


class TrainingData(ABC):
    """One way of turning `cfg.dataset` into training steps; see the module docstring."""

    targets = "the response tokens only"  # which positions the loss covers, in words

    def __init__(self, cfg: TrainRunConfig):
        self.cfg = cfg

    @abstractmethod
    def source_files(self) -> list[Path]:
        """Every file the data is read from: what the cache key (and so the resume fingerprint) hashes."""

    @abstractmethod
    def key_fields(self) -> dict[str, Any]:
        """The settings this strategy's tokenized sets depend on, beyond the files, the tokenizer and
        the ones both share (`medtune.data.cache.cache_key`)."""

    def cache_settings(self) -> dict[str, Any]:
        """What the cache key hashes of the settings: the `key_fields` of every strategy, the others'
        unread. One key layout served both tasks before the strategies, so keeping it keeps the key of
        every existing cache; the cost is a re-tokenization when a setting the task ignores changes."""
        settings: dict[str, Any] = {}
        for strategy in (InstructionTuning, ContinualPretraining):
            settings |= strategy(self.cfg).key_fields()
        return settings

    @abstractmethod
    def tokenize(self, tokenizer) -> dict[str, Any]:
        """The cached payload: train and eval examples, their stats as dicts, and the mixture counts."""

    @abstractmethod
    def stats_from(self, stats: dict[str, Any]) -> EncodingStats | BlockStats:
        """The stats object a `tokenize` payload's stats dict was made from."""

    @abstractmethod
    def trainer_feed(self, train_set: list, tokenizer) -> TrainerFeed:
        """The rows, collator and sampler the Trainer iterates over `train_set`."""

    @abstractmethod
    def step_lengths(self) -> tuple[int, int]:
        """(input tokens, target tokens) of the longest row one step sees: what the planner budgets for."""

    @abstractmethod
    def lengths_line(self) -> str:
        """The row lengths in words, for the dry-run plan."""


class InstructionTuning(TrainingData):
    """task=train: instruction/response records, loss on the response; packing or length grouping optional."""

    def source_files(self) -> list[Path]:
        from medtune.data.readers import bundled_sample_files, data_files

        dataset = self.cfg.dataset
        paths = [s.path for s in dataset.mixture.values()] if dataset.mixture else [dataset.path]
        files: list[Path] = []
        for path in paths:
            files += bundled_sample_files() if path is None else data_files(Path(path))
        return files

    def key_fields(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "prompt": [cfg.prompt.template, cfg.prompt.template_no_input],
            "limits": [
                cfg.train.max_input_tokens,
                cfg.train.max_target_tokens,
                cfg.train.overlong.value,
                cfg.train.max_total_tokens,
            ],
            "mixture": {
                name: [source.path, source.format.value, source.weight, source.max_records]
                for name, source in sorted(cfg.dataset.mixture.items())
            },
        }

    def tokenize(self, tokenizer) -> dict[str, Any]:
        from medtune.data.readers import read_records
        from medtune.data.splits import split_train_eval
        from medtune.data.tokenize import encode_records

        cfg = self.cfg
        if cfg.dataset.format == DatasetFormat.tokens:
            return self._token_payload()
        mixture = None
        if cfg.dataset.mixture:
            from medtune.data.mixture import read_mixture

            train_records, eval_records, mixture = read_mixture(
                cfg.dataset.mixture, cfg.dataset.eval_fraction, cfg.seed
            )
        else:
            records = read_records(
                Path(cfg.dataset.path) if cfg.dataset.path else None, cfg.dataset.format, cfg.dataset.max_records
            )
            train_records, eval_records = split_train_eval(records, cfg.dataset.eval_fraction, cfg.seed)
        limits = (cfg.train.max_input_tokens, cfg.train.max_target_tokens, cfg.train.overlong)
        train_set, train_stats = encode_records(
            train_records, tokenizer, cfg.prompt, *limits, cfg.train.max_total_tokens
        )
        eval_set, eval_stats = (
            encode_records(eval_records, tokenizer, cfg.prompt, *limits, cfg.train.max_total_tokens)
            if eval_records
            else ([], None)
        )
        return {
            "train": train_set,
            "eval": eval_set,
            "train_stats": asdict(train_stats),
            "eval_stats": asdict(eval_stats) if eval_stats else None,
            "mixture": mixture,
        }

    def _token_payload(self) -> dict[str, Any]:
        """dataset.format=tokens: the examples as given, split as records are."""
        from medtune.data.splits import split_train_eval
        from medtune.data.token_examples import read_token_examples, token_stats

        cfg = self.cfg
        limit = cfg.train.max_input_tokens + cfg.train.max_target_tokens
        vocab = cfg.model.architecture.vocab_size
        examples = read_token_examples(Path(cfg.dataset.path), vocab, limit, cfg.dataset.max_records)
        train_set, eval_set = split_train_eval(examples, cfg.dataset.eval_fraction, cfg.seed)
        return {
            "train": train_set,
            "eval": eval_set,
            "train_stats": asdict(token_stats(train_set)),
            "eval_stats": asdict(token_stats(eval_set)) if eval_set else None,
            "mixture": None,
        }

    def stats_from(self, stats: dict[str, Any]) -> EncodingStats:
        from medtune.data.tokenize import EncodingStats

        return EncodingStats(**stats)

    def trainer_feed(self, train_set: list, tokenizer) -> TrainerFeed:
        from medtune.data.packing import LengthGroupedSampler, PackedCollator, pack_examples, padding_free_rows
        from medtune.data.tokenize import PadCollator

        cfg = self.cfg
        pad = PadCollator(tokenizer.pad_token_id)
        if cfg.train.packing:
            budget = cfg.train.pack_max_tokens or cfg.train.max_input_tokens + cfg.train.max_target_tokens
            rows = pack_examples(train_set, budget, cfg.seed)
            return TrainerFeed(rows, PackedCollator(unpacked=pad), None, len(rows), padding_free=True)
        # Padding-free batches hold the same examples as padded ones; the eval set stays padded (its loss is
        # averaged per example by the Trainer, as before).
        rows = padding_free_rows(train_set) if cfg.train.padding_free else train_set
        collator = PackedCollator(unpacked=pad) if cfg.train.padding_free else pad
        sampler = None
        if cfg.train.sampling.value == "group_by_length":
            world = cfg.hardware.devices_per_node * cfg.hardware.num_nodes  # a chunk is split across ranks
            sampler = LengthGroupedSampler(
                [len(e["input_ids"]) for e in train_set], cfg.train.micro_batch_size * world, cfg.seed
            )
        return TrainerFeed(rows, collator, sampler, None, padding_free=cfg.train.padding_free)

    def step_lengths(self) -> tuple[int, int]:
        train = self.cfg.train
        if train.max_total_tokens and train.max_total_tokens < train.max_input_tokens + train.max_target_tokens:
            return train.max_total_tokens, 0  # the cap truncates the prompt; the split does not matter
        return train.max_input_tokens, train.max_target_tokens

    def lengths_line(self) -> str:
        return f"input <= {self.cfg.train.max_input_tokens}, target <= {self.cfg.train.max_target_tokens} tokens"


class ContinualPretraining(TrainingData):
    """task=pretrain: raw documents joined and cut into blocks of `pretrain.block_tokens`, loss on every token."""

    targets = "every position (continual pretraining)"

    def source_files(self) -> list[Path]:
        from medtune.data.text_corpus import bundled_text_file, text_files

        path = self.cfg.dataset.path
        return [bundled_text_file()] if path is None else text_files(Path(path))

    def key_fields(self) -> dict[str, Any]:
        fields = {
            "block_tokens": self.cfg.pretrain.block_tokens,
            "blocks_version": BLOCKS_VERSION,
            "text_field": self.cfg.dataset.text_field,
        }
        if self.cfg.pretrain.eval_blocks:  # decides the held-out split (0, the default, keeps older keys)
            fields["eval_blocks"] = self.cfg.pretrain.eval_blocks
        return fields

    def tokenize(self, tokenizer) -> dict[str, Any]:
        from medtune.data.splits import split_train_eval
        from medtune.data.text_corpus import encode_blocks, read_documents

        cfg = self.cfg
        block_tokens = cfg.pretrain.block_tokens
        documents = read_documents(
            Path(cfg.dataset.path) if cfg.dataset.path else None, cfg.dataset.text_field, cfg.dataset.max_records
        )
        if cfg.pretrain.eval_blocks:  # hold out the last documents until they fill about that many blocks
            train_docs, eval_docs = held_out_blocks(documents, tokenizer, block_tokens, cfg.pretrain.eval_blocks)
        else:
            train_docs, eval_docs = split_train_eval(documents, cfg.dataset.eval_fraction, cfg.seed)
        train_set, train_stats = encode_blocks(train_docs, tokenizer, block_tokens)
        eval_set, eval_stats = encode_blocks(eval_docs, tokenizer, block_tokens) if eval_docs else ([], None)
        return {
            "train": train_set,
            "eval": eval_set,
            "train_stats": train_stats.as_dict(),
            "eval_stats": eval_stats.as_dict() if eval_stats else None,
            "mixture": None,
        }

    def stats_from(self, stats: dict[str, Any]) -> BlockStats:
        from medtune.data.text_corpus import BlockStats

        return BlockStats(**stats)

    def trainer_feed(self, train_set: list, tokenizer) -> TrainerFeed:
        # Blocks are full already (no packing, no length grouping); they carry their documents' lengths.
        # Training joins a micro-batch's blocks into one padding-free row; evaluation keeps a row per block.
        from medtune.data.tokenize import PadCollator

        if self.cfg.pretrain.isolate_documents:
            from medtune.data.packing import PackedCollator, SeparateRowsCollator, padding_free_rows

            rows, evaluation = padding_free_rows(train_set), SeparateRowsCollator(tokenizer.pad_token_id)
            return TrainerFeed(rows, PackedCollator(unpacked=evaluation), None, None, padding_free=True)
        return TrainerFeed(train_set, PadCollator(tokenizer.pad_token_id), None, None)

    def step_lengths(self) -> tuple[int, int]:
        return self.cfg.pretrain.block_tokens, 0  # every token is input and target at once

    def lengths_line(self) -> str:
        return f"blocks of {self.cfg.pretrain.block_tokens} tokens"


def held_out_blocks(documents: list, tokenizer, block_tokens: int, eval_blocks: int) -> tuple[list, list]:
    """(train, eval) documents: the last ones (never the first) held out until they fill about
    `eval_blocks` blocks, counting BOS and EOS."""
    held, tokens = [], 0
    for document in reversed(documents[1:]):
        if tokens >= eval_blocks * block_tokens:
            break
        held.append(document)
        tokens += len(tokenizer(document.text, add_special_tokens=False)["input_ids"]) + 2
    held_set = {id(d) for d in held}
    return [d for d in documents if id(d) not in held_set], list(reversed(held))


STRATEGIES: dict[Task, type[TrainingData]] = {Task.train: InstructionTuning, Task.pretrain: ContinualPretraining}


def training_data_for(cfg: TrainRunConfig) -> TrainingData:
    """The strategy for `cfg.task`: the one place that decides between the two."""
    return STRATEGIES[cfg.task](cfg)
