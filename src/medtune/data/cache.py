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
from pathlib import Path

from medtune.data.training_data import TrainingData
from medtune.distributed import local_rank
from medtune.errors import DataError
from medtune.io import write_json_atomic

CACHE_VERSION = 3  # 3: one answer normaliser (sorted multi-answer targets, folded full-width digits)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json")


def _hash_files(paths: list[Path], digest) -> None:
    for path in sorted(paths):
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())


def cache_key(data: TrainingData, checkpoint: str) -> str:
    """The data files, the tokenizer and every setting the tokenized sets depend on, hashed."""
    cfg = data.cfg
    digest = hashlib.sha256()
    _hash_files(data.source_files(), digest)
    tokenizer_files = [Path(checkpoint) / f for f in TOKENIZER_FILES if (Path(checkpoint) / f).is_file()]
    _hash_files(tokenizer_files, digest) if tokenizer_files else digest.update(checkpoint.encode())
    settings = {
        "version": CACHE_VERSION,
        "format": cfg.dataset.format.value,
        "max_records": cfg.dataset.max_records,
        "eval_fraction": cfg.dataset.eval_fraction,
        "seed": cfg.seed,
        "task": cfg.task.value,
        **data.cache_settings(),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def tokenized_datasets(data: TrainingData, tokenizer, key: str, wait_seconds: float = 3600.0):
    """(train examples, eval examples, train stats, eval stats), tokenized once by `data` and cached
    under `key` (`cache_key(data, checkpoint)`, which the resume fingerprint reuses)."""
    path = Path(data.cfg.paths.cache_dir) / "tokenized" / f"{key}.json"
    if not path.is_file():
        if local_rank() == 0:
            write_json_atomic(path, data.tokenize(tokenizer))
        else:
            _wait_for(path, wait_seconds)
    cached = json.loads(path.read_text())
    train_stats = data.stats_from(cached["train_stats"])
    train_stats.mixture = cached.get("mixture")
    eval_stats = data.stats_from(cached["eval_stats"]) if cached["eval_stats"] else None
    return cached["train"], cached["eval"], train_stats, eval_stats


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        if time.monotonic() > deadline:
            raise DataError(
                f"waited {seconds:.0f} s for {path}, which the node's first process writes after tokenizing; "
                "check that process's log (it may have failed), then run again."
            )
        time.sleep(0.5)
