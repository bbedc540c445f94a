"""Typed schema of `sweep.py`: a named grid of cells, each trained (or not) and then evaluated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from medtune.config.schema import LoggerConfig, PathsConfig


@dataclass
class CellConfig:
    """One row of the study: what trains (train.py overrides), how it is evaluated, what it is compared with."""

    label: str = ""  # the row's name in Table 2, e.g. "3-2 (A)"
    model: str = ""
    tuning: str = "none"
    prompt: str = ""
    train: Optional[List[str]] = None  # null: nothing trains (an untuned base, or a predictions file)
    evaluate: List[str] = field(default_factory=list)
    reference: Optional[str] = None  # the cell whose accuracy the Improvement column subtracts
    natural_reference: bool = True  # false: the reference is written in front, as "(#1-1) +0.177"


@dataclass
class SearchConfig:
    """An Optuna search: each trial is a cell built from `template` plus the sampled train overrides."""

    n_trials: int = 0  # 0 = no search: the grid of `cells` runs
    sampler_seed: int = 0
    template: CellConfig = field(default_factory=CellConfig)
    params: Dict[str, str] = field(default_factory=dict)  # train.py key -> Optuna sweeper expression


@dataclass
class SweepConfig:
    name: str = MISSING
    description: str = ""
    # What the search optimises (and each cell record keeps as its objective): a key of each cell's
    # evaluation metrics.json, and whether bigger is better.
    optimized_metric: str = "accuracy"
    maximize: bool = True
    dir: str = "${paths.output_root}/sweeps/${sweep.name}"
    common_train: List[str] = field(default_factory=list)
    common_evaluate: List[str] = field(default_factory=list)
    # Added after the common lists, from the command line: the sweep file's own entries stay, e.g.
    # 'sweep.extra_train=["dataset.path=/data/usmle_jp.jsonl"]'.
    extra_train: List[str] = field(default_factory=list)
    extra_evaluate: List[str] = field(default_factory=list)
    cells: Dict[str, CellConfig] = field(default_factory=dict)
    systems: Dict[str, CellConfig] = field(default_factory=dict)  # published systems scored from predictions files
    pairs: List[List[str]] = field(default_factory=list)  # cell pairs for Table 3 and McNemar's test
    launcher: str = "basic"  # hydra/launcher option that runs the cells: basic, parallel, slurm_a100, ...
    train_command: List[str] = field(default_factory=list)  # [] = this Python; e.g. [torchrun, --nproc_per_node=4]
    dry_run: bool = False
    # Each cell that trains runs once per seed (train.py and evaluate.py get seed=<s>); Table 2 and
    # Figure 2 then report mean ± standard deviation and every seed's value. []: once, with the
    # composed seed.
    seeds: List[int] = field(default_factory=list)
    search: SearchConfig = field(default_factory=SearchConfig)


def every_train(sweep: SweepConfig) -> list[str]:
    """The overrides every training of the sweep gets."""
    return [*sweep.common_train, *sweep.extra_train]


def every_evaluate(sweep: SweepConfig) -> list[str]:
    """The overrides every evaluation of the sweep gets."""
    return [*sweep.common_evaluate, *sweep.extra_evaluate]


@dataclass
class SweepRunConfig:
    task_name: str = "sweep"
    sweep: SweepConfig = field(default_factory=SweepConfig)
    cell: Optional[str] = None  # set on the cell jobs a sweep launches
    trial: Dict[str, Any] = field(default_factory=dict)  # set by the Optuna sweeper on search trials
    summarize: Optional[str] = None  # rebuild the report of this sweep dir, run nothing
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
