"""Rules for the task-specific keys of train.py: task=pretrain, dataset mixtures, epochs, length caps."""

from __future__ import annotations

import math

from medtune.config.schema import DatasetFormat, Task, TrainRunConfig


def check_task(cfg: TrainRunConfig) -> list[str]:
    problems = []
    d, t = cfg.dataset, cfg.train
    if cfg.task == Task.pretrain and d.format != DatasetFormat.text and not d.mixture:
        problems.append(
            f"task=pretrain reads raw text, but dataset={d.name} has dataset.format={d.format.value}: "
            "use dataset=medical_text (or dataset.format=text with .txt files or JSONL with a text field)."
        )
    if cfg.task == Task.pretrain and d.mixture:
        problems.append("task=pretrain takes one text corpus (dataset.path); dataset.mixture is for instruction data.")
    if cfg.task == Task.train and d.format == DatasetFormat.text:
        problems.append(
            f"dataset={d.name} is raw text (dataset.format=text), which has no responses to learn: "
            "continue pretraining on it with task=pretrain, or pick an instruction dataset."
        )
    if cfg.task == Task.pretrain:
        limit = cfg.model.architecture.max_position_embeddings
        if not 2 <= cfg.pretrain.block_tokens <= limit:
            problems.append(
                f"pretrain.block_tokens={cfg.pretrain.block_tokens} must be between 2 and model={cfg.model.name}'s "
                f"{limit} positions."
            )
        if cfg.pretrain.eval_blocks < 0:
            problems.append(f"pretrain.eval_blocks={cfg.pretrain.eval_blocks} must be >= 0 (0 = dataset.eval_fraction).")
    if d.mixture and d.path is not None:
        problems.append(
            f"dataset={d.name} sets both dataset.path={d.path} and dataset.mixture ({', '.join(d.mixture)}): "
            "a mixture replaces the path; set dataset.path=null or drop the mixture."
        )
    for name, source in d.mixture.items():
        if source.weight < 0:
            problems.append(f"dataset.mixture.{name}.weight={source.weight} must be >= 0 (0 leaves the source out).")
        if source.max_records is not None and source.max_records <= 0:
            problems.append(f"dataset.mixture.{name}.max_records={source.max_records} must be positive, or null.")
    if d.mixture and sum(s.weight for s in d.mixture.values()) <= 0:
        problems.append("dataset.mixture: every weight is 0, so nothing would train; give a source a weight > 0.")
    if t.epochs is not None and (not math.isfinite(t.epochs) or t.epochs <= 0):
        problems.append(f"train.epochs={t.epochs} must be positive and finite, or null to train for "
                        "train.max_steps.")
    if t.max_total_tokens is not None and t.max_total_tokens < 2:
        problems.append(f"train.max_total_tokens={t.max_total_tokens} must be at least 2, or null for no cap.")
    return problems
