"""Typed schema of `sweep.py`: a named grid of cells, each trained (or not) and then evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode
from medtune.config.schema import LoggerConfig, PathsConfig


@dataclass
class CellConfig(ConfigNode):
    """One row of the study: what trains (train.py overrides), how it is evaluated, what it is compared with."""

    label: str = help_field("", 'The row\'s name in Table 2, e.g. "3-2 (A)".')
    model: str = help_field("", "The model column of the report, e.g. swallow70b.")
    tuning: str = help_field("none", "The tuning column of the report, e.g. none or qlora.")
    prompt: str = help_field("", "The prompt column of the report, e.g. A.")
    train: Optional[List[str]] = help_field(
        None,
        "train.py overrides of the cell's training; null: nothing trains (an untuned base, or a predictions file).",
    )
    evaluate: List[str] = help_field(help="evaluate.py overrides of the cell's evaluation.", factory=list)
    reference: Optional[str] = help_field(
        None, "The cell whose accuracy the Improvement column subtracts; null = none."
    )
    natural_reference: bool = help_field(
        True, 'false: the reference is written in front of the improvement, as "(#1-1) +0.177".'
    )


@dataclass
class SearchConfig(ConfigNode):
    """An Optuna search: each trial is a cell built from `template` plus the sampled train overrides."""

    n_trials: int = help_field(0, "Optuna trials; 0 = no search: the grid of sweep.cells runs.")
    sampler_seed: int = help_field(0, "Seeds Optuna's sampler.")
    template: CellConfig = help_field(
        help="The cell every trial starts from (its train list gets the sampled overrides).", factory=CellConfig
    )
    params: Dict[str, str] = help_field(
        help="train.py key -> Optuna sweeper expression, e.g. train.learning_rate: tag(log, interval(1e-3, 3e-2)).",
        factory=dict,
    )


@dataclass
class SweepConfig(ConfigNode):
    name: str = help_field(MISSING, "The sweep's name (sweep=<name>); names its folder and W&B group sweep-<name>.")
    description: str = help_field("", "What the study is, in words; the report's title.")
    optimized_metric: str = help_field(
        "accuracy", "What the search optimises and each cell record keeps: a key of each cell's metrics.json."
    )
    maximize: bool = help_field(True, "true: bigger optimized_metric is better; false for a loss.")
    dir: str = help_field("${paths.output_root}/sweeps/${sweep.name}", "The sweep's folder: cells, trainings, report.")
    common_train: List[str] = help_field(help="train.py overrides every cell's training gets.", factory=list)
    common_evaluate: List[str] = help_field(help="evaluate.py overrides every cell's evaluation gets.", factory=list)
    extra_train: List[str] = help_field(
        help="More training overrides after common_train, from the command line: the sweep file's entries stay, "
        "e.g. 'sweep.extra_train=[\"dataset.path=/data/usmle_jp.jsonl\"]'.",
        factory=list,
    )
    extra_evaluate: List[str] = help_field(
        help="More evaluation overrides after common_evaluate, from the command line.", factory=list
    )
    cells: Dict[str, CellConfig] = help_field(help="The study's rows, by name.", factory=dict)
    systems: Dict[str, CellConfig] = help_field(
        help="Published systems scored from predictions files, by name.", factory=dict
    )
    pairs: List[List[str]] = help_field(
        help="Pairs of cell names for Table 3 and McNemar's test, e.g. [[tiny-qlora-A, tiny-none-A]].", factory=list
    )
    launcher: str = help_field(
        "basic", "The hydra/launcher option that runs the cells: basic (one after another), parallel, slurm_a100."
    )
    train_command: List[str] = help_field(
        help="How a cell's training is launched; [] = this Python, e.g. [torchrun, --nproc_per_node=4].",
        factory=list,
    )
    dry_run: bool = help_field(
        False, "true: list the cells and check that their overrides compose and pass the checks; run nothing."
    )
    seeds: List[int] = help_field(
        help="Run each cell that trains once per seed (train.py and evaluate.py get seed=<s>); Table 2 and Figure 2 "
        "then give mean ± standard deviation and every seed's value. [] = once, with the composed seed.",
        factory=list,
    )
    search: SearchConfig = help_field(help="An Optuna search instead of the grid.", factory=SearchConfig)


def every_train(sweep: SweepConfig) -> list[str]:
    """The overrides every training of the sweep gets."""
    return [*sweep.common_train, *sweep.extra_train]


def every_evaluate(sweep: SweepConfig) -> list[str]:
    """The overrides every evaluation of the sweep gets."""
    return [*sweep.common_evaluate, *sweep.extra_evaluate]


@dataclass
class SweepRunConfig(ConfigNode):
    task_name: str = help_field("sweep", "The job's name in W&B group names; the sweep's folder is sweep.dir.")
    sweep: SweepConfig = help_field(help="The study: its cells, their overrides, the search.", factory=SweepConfig)
    cell: Optional[str] = help_field(None, "Set on the cell jobs a sweep launches: the cell to run.")
    trial: Dict[str, Any] = help_field(
        help="Set by the Optuna sweeper on search trials: the sampled values.", factory=dict
    )
    summarize: Optional[str] = help_field(None, "A sweep dir: rebuild its report from the finished cells, run nothing.")
    logger: LoggerConfig = help_field(help="Experiment tracking (logger=<option>).", factory=LoggerConfig)
    paths: PathsConfig = help_field(help="Where outputs, caches and the shared data are.", factory=PathsConfig)
