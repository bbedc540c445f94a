"""Dataset mixtures: several sources read in their own formats, each weighted, combined with a seed.

`weight` is how many copies of a source enter the mix: 1 takes every record once, 0.5 a seeded
half, 2.5 every record twice plus a seeded half. The Vietnamese paper's chat data is Alpaca +
GPT4All at weight 1 each; its doctor data is Alpaca + ChatDoctor.
"""

from __future__ import annotations

import random
from pathlib import Path

from medtune.config.schema import MixtureSourceConfig
from medtune.data.readers import InstructionRecord, read_records
from medtune.data.splits import split_train_eval
from medtune.errors import ConfigError


def weighted_sample(records: list, weight: float, rng: random.Random) -> list:
    """`weight` copies of `records`: whole copies first, then a seeded sample for the fraction."""
    whole, fraction = int(weight), weight - int(weight)
    picked = list(records) * whole
    extra = round(fraction * len(records))
    if extra:
        picked += rng.sample(records, extra)
    return picked


def read_mixture(sources: dict[str, MixtureSourceConfig], eval_fraction: float, seed: int):
    """(train records, eval records, train records per source). Each source is split before it is
    weighted, so a repeated record never lands in both splits; eval takes each held-out record once."""
    problems = [
        f"dataset.mixture.{name}.weight={source.weight} must be >= 0 (0 leaves the source out)."
        for name, source in sources.items()
        if source.weight < 0
    ]
    if sum(source.weight for source in sources.values()) <= 0:
        problems.append("dataset.mixture: every weight is 0, so nothing would train; give a source weight > 0.")
    if problems:
        raise ConfigError(problems)
    rng = random.Random(seed)
    train: list[InstructionRecord] = []
    held_out: list[InstructionRecord] = []
    counts: dict[str, int] = {}
    for name, source in sources.items():
        records = read_records(Path(source.path) if source.path else None, source.format, source.max_records)
        source_train, source_eval = split_train_eval(records, eval_fraction, seed)
        picked = weighted_sample(source_train, source.weight, rng)
        counts[name] = len(picked)
        train.extend(picked)
        held_out.extend(source_eval)
    rng.shuffle(train)
    return train, held_out, counts
