"""Tokenize once per data + tokenizer + settings; other ranks wait for the file, not on a collective.

The node's first process (LOCAL_RANK 0) reads, splits and tokenizes the records and writes the
result atomically under `<cache_dir>/tokenized/<key>.json`; every other process polls for that
file. A 70B job's ranks therefore never sit in an NCCL collective with a timeout while rank 0
tokenizes, and a second run with the same data starts at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medtune.config.schema import Task, TrainRunConfig
from medtune.data.readers import bundled_sample_files, data_files, read_records
from medtune.data.splits import split_train_eval
from medtune.data.tokenize import EncodingStats, encode_records
from medtune.distributed import local_rank
from medtune.errors import DataError
from medtune.io import write_json_atomic

CACHE_VERSION = 3  # 3: one answer normaliser (sorted multi-answer targets, folded full-width digits)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json")


def _hash_files(paths: list[Path], digest) -> None:
    for path in sorted(paths):
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())


def source_files(cfg: TrainRunConfig) -> list[Path]:
    """Every file the data is read from: what the cache key (and a resume fingerprint) hashes."""
    if cfg.task == Task.pretrain:
        from medtune.data.text_corpus import bundled_text_file, text_files

        return [bundled_text_file()] if cfg.dataset.path is None else text_files(Path(cfg.dataset.path))
    paths = [s.path for s in cfg.dataset.mixture.values()] if cfg.dataset.mixture else [cfg.dataset.path]
    files: list[Path] = []
    for path in paths:
        files += bundled_sample_files() if path is None else data_files(Path(path))
    return files


def cache_key(cfg: TrainRunConfig, checkpoint: str) -> str:
    digest = hashlib.sha256()
    _hash_files(source_files(cfg), digest)
    tokenizer_files = [Path(checkpoint) / f for f in TOKENIZER_FILES if (Path(checkpoint) / f).is_file()]
    _hash_files(tokenizer_files, digest) if tokenizer_files else digest.update(checkpoint.encode())
    settings = {
        "version": CACHE_VERSION,
        "format": cfg.dataset.format.value, "max_records": cfg.dataset.max_records,
        "eval_fraction": cfg.dataset.eval_fraction, "seed": cfg.seed,
        "prompt": [cfg.prompt.template, cfg.prompt.template_no_input],
        "limits": [cfg.train.max_input_tokens, cfg.train.max_target_tokens, cfg.train.overlong.value,
                   cfg.train.max_total_tokens],
        "task": cfg.task.value, "block_tokens": cfg.pretrain.block_tokens, "blocks_version": 2, "text_field": cfg.dataset.text_field,
        "mixture": {n: [s.path, s.format.value, s.weight, s.max_records] for n, s in sorted(cfg.dataset.mixture.items())},
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _tokenize(cfg: TrainRunConfig, tokenizer) -> dict[str, Any]:
    if cfg.task == Task.pretrain:
        return _tokenize_text(cfg, tokenizer)
    mixture = None
    if cfg.dataset.mixture:
        from medtune.data.mixture import read_mixture

        train_records, eval_records, mixture = read_mixture(cfg.dataset.mixture, cfg.dataset.eval_fraction, cfg.seed)
    else:
        records = read_records(Path(cfg.dataset.path) if cfg.dataset.path else None, cfg.dataset.format,
                               cfg.dataset.max_records)
        train_records, eval_records = split_train_eval(records, cfg.dataset.eval_fraction, cfg.seed)
    limits = (cfg.train.max_input_tokens, cfg.train.max_target_tokens, cfg.train.overlong)
    train_set, train_stats = encode_records(train_records, tokenizer, cfg.prompt, *limits, cfg.train.max_total_tokens)
    eval_set, eval_stats = (encode_records(eval_records, tokenizer, cfg.prompt, *limits, cfg.train.max_total_tokens)
                            if eval_records else ([], None))
    return {"train": train_set, "eval": eval_set, "train_stats": asdict(train_stats),
            "eval_stats": asdict(eval_stats) if eval_stats else None, "mixture": mixture}


def _tokenize_text(cfg: TrainRunConfig, tokenizer) -> dict[str, Any]:
    from medtune.data.text_corpus import encode_blocks, read_documents

    documents = read_documents(Path(cfg.dataset.path) if cfg.dataset.path else None, cfg.dataset.text_field,
                               cfg.dataset.max_records)
    if cfg.pretrain.eval_blocks:  # hold out the last documents until they fill about that many blocks
        train_docs, eval_docs = _split_by_blocks(documents, tokenizer, cfg.pretrain.block_tokens, cfg.pretrain.eval_blocks)
    else:
        train_docs, eval_docs = split_train_eval(documents, cfg.dataset.eval_fraction, cfg.seed)
    train_set, train_stats = encode_blocks(train_docs, tokenizer, cfg.pretrain.block_tokens)
    eval_set, eval_stats = encode_blocks(eval_docs, tokenizer, cfg.pretrain.block_tokens) if eval_docs else ([], None)
    return {"train": train_set, "eval": eval_set, "train_stats": train_stats.as_dict(),
            "eval_stats": eval_stats.as_dict() if eval_stats else None, "mixture": None}


def _split_by_blocks(documents, tokenizer, block_tokens: int, eval_blocks: int):
    held, tokens = [], 0
    for document in reversed(documents[1:]):
        if tokens >= eval_blocks * block_tokens:
            break
        held.append(document)
        tokens += len(tokenizer(document.text, add_special_tokens=False)["input_ids"]) + 2
    held_set = {id(d) for d in held}
    return [d for d in documents if id(d) not in held_set], list(reversed(held))


def tokenized_datasets(cfg: TrainRunConfig, tokenizer, key: str, wait_seconds: float = 3600.0):
    """(train examples, eval examples, train stats, eval stats), tokenized once and cached under
    `key` (`cache_key(cfg, checkpoint)`, which the resume fingerprint reuses)."""
    path = Path(cfg.paths.cache_dir) / "tokenized" / f"{key}.json"
    if not path.is_file():
        if local_rank() == 0:
            write_json_atomic(path, _tokenize(cfg, tokenizer))
        else:
            _wait_for(path, wait_seconds)
    data = json.loads(path.read_text())
    if cfg.task == Task.pretrain:
        from medtune.data.text_corpus import BlockStats

        stats_type = BlockStats
    else:
        stats_type = EncodingStats
    train_stats = stats_type(**data["train_stats"])
    train_stats.mixture = data.get("mixture")
    eval_stats = stats_type(**data["eval_stats"]) if data["eval_stats"] else None
    return data["train"], data["eval"], train_stats, eval_stats


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        if time.monotonic() > deadline:
            raise DataError(
                f"waited {seconds:.0f} s for {path}, which the node's first process writes after tokenizing; "
                "check that process's log (it may have failed), then run again."
            )
        time.sleep(0.5)
