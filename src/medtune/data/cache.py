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

from medtune.config.schema import TrainRunConfig
from medtune.data.readers import bundled_sample_files, data_files, read_records
from medtune.data.splits import split_train_eval
from medtune.data.tokenize import EncodingStats, encode_records
from medtune.distributed import local_rank
from medtune.errors import DataError
from medtune.io import write_json_atomic

CACHE_VERSION = 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json")


def _hash_files(paths: list[Path], digest) -> None:
    for path in sorted(paths):
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())


def cache_key(cfg: TrainRunConfig, checkpoint: str) -> str:
    digest = hashlib.sha256()
    source = bundled_sample_files() if cfg.dataset.path is None else data_files(Path(cfg.dataset.path))
    _hash_files(source, digest)
    tokenizer_files = [Path(checkpoint) / f for f in TOKENIZER_FILES if (Path(checkpoint) / f).is_file()]
    _hash_files(tokenizer_files, digest) if tokenizer_files else digest.update(checkpoint.encode())
    settings = {
        "version": CACHE_VERSION,
        "format": cfg.dataset.format.value, "max_records": cfg.dataset.max_records,
        "eval_fraction": cfg.dataset.eval_fraction, "seed": cfg.seed,
        "prompt": [cfg.prompt.template, cfg.prompt.template_no_input],
        "limits": [cfg.train.max_input_tokens, cfg.train.max_target_tokens, cfg.train.overlong.value],
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _tokenize(cfg: TrainRunConfig, tokenizer) -> dict[str, Any]:
    records = read_records(Path(cfg.dataset.path) if cfg.dataset.path else None, cfg.dataset.format,
                           cfg.dataset.max_records)
    train_records, eval_records = split_train_eval(records, cfg.dataset.eval_fraction, cfg.seed)
    limits = (cfg.train.max_input_tokens, cfg.train.max_target_tokens, cfg.train.overlong)
    train_set, train_stats = encode_records(train_records, tokenizer, cfg.prompt, *limits)
    eval_set, eval_stats = encode_records(eval_records, tokenizer, cfg.prompt, *limits) if eval_records else ([], None)
    return {"train": train_set, "eval": eval_set, "train_stats": asdict(train_stats),
            "eval_stats": asdict(eval_stats) if eval_stats else None}


def tokenized_datasets(cfg: TrainRunConfig, tokenizer, checkpoint: str, wait_seconds: float = 3600.0):
    """(train examples, eval examples, train stats, eval stats), tokenized once and cached."""
    path = Path(cfg.paths.cache_dir) / "tokenized" / f"{cache_key(cfg, checkpoint)}.json"
    if not path.is_file():
        if local_rank() == 0:
            write_json_atomic(path, _tokenize(cfg, tokenizer))
        else:
            _wait_for(path, wait_seconds)
    data = json.loads(path.read_text())
    eval_stats = EncodingStats(**data["eval_stats"]) if data["eval_stats"] else None
    return data["train"], data["eval"], EncodingStats(**data["train_stats"]), eval_stats


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        if time.monotonic() > deadline:
            raise DataError(
                f"waited {seconds:.0f} s for {path}, which the node's first process writes after tokenizing; "
                "check that process's log (it may have failed), then run again."
            )
        time.sleep(0.5)
