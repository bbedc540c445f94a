"""The jobs medtune runs, each with its schema, its rules and its task, for the entry layer.

    train.py        -> TRAIN          evaluate.py  -> EVALUATE       sweep.py -> SWEEP
    generate_qa.py  -> GENERATE_QA    judge.py     -> JUDGE          contamination.py -> CONTAMINATION

A job's task module (imported only when the job runs, so `--help` and `--cfg` stay fast) provides

    workspace(cfg, job) -> (cfg, Workspace | None)   # where it writes; None: nothing is written (a dry run)
    check_existing(cfg, job, directory) -> cfg        # optional: refuse finished results of other settings
    run(cfg, job, tracker) -> result                  # the work, inside the locked workspace
    metrics(result) -> dict                           # what `optimized_metric` picks from

and the entry layer (`medtune.entry.execute`) locks the workspace, runs `check_existing` before
anything is written there, opens and finishes the tracker, and returns
`metrics(result)[cfg.optimized_metric]` to Hydra's sweepers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from omegaconf import DictConfig

from medtune.config.audit_schema import ContaminationRunConfig
from medtune.config.eval_schema import EvalRunConfig
from medtune.config.judge_schema import JudgeRunConfig
from medtune.config.qa_schema import GenerateQARunConfig
from medtune.config.read_only import freeze
from medtune.config.schema import TrainRunConfig
from medtune.config.sweep_schema import SweepRunConfig
from medtune.config.validate import typed_config
from medtune.errors import ConfigError
from medtune.rules import contamination as contamination_rules
from medtune.rules import evaluate as evaluate_rules
from medtune.rules import generate_qa as generate_qa_rules
from medtune.rules import judge as judge_rules
from medtune.rules import train as train_rules
from medtune.rules.resolve import Step, command_line_overrides, described_model, micro_batch, run_prompt, settle

Rule = Callable[[Any], list[str]]


@dataclass(frozen=True)
class Job:
    name: str
    script: str  # the entry script users type
    schema: type
    task_module: str  # imported when the job runs
    rules: Sequence[Rule] = ()
    portable_rules: Sequence[Rule] = ()  # the rules that read the config alone: a sweep's preflight
    resolve: Sequence[Step] = ()  # settle derived values before the rules (medtune.rules.resolve)
    aliases: Sequence[str] = field(default_factory=tuple)

    def task(self):
        return importlib.import_module(self.task_module)

    def validate(self, cfg: DictConfig, overrides: Sequence[str] | None = None) -> Any:
        """The composed config as `schema`, resolved (`medtune.rules.resolve`, with the command line's
        `overrides`: the running Hydra job's when None), checked by every rule (all problems in one
        ConfigError), and frozen: the task receives it read-only."""
        typed = typed_config(cfg, self.schema)
        overrides = command_line_overrides() if overrides is None else tuple(overrides)
        typed, problems = settle(typed, overrides, self.resolve)
        problems += [problem for rule in self.rules for problem in rule(typed)]
        if problems:
            raise ConfigError(problems)
        return freeze(typed)


TRAIN = Job(
    "train",
    "train.py",
    TrainRunConfig,
    "medtune.training.task",
    train_rules.RULES,
    train_rules.PORTABLE_RULES,
    (described_model(train_rules.loads_model), micro_batch),
)
EVALUATE = Job(
    "evaluate",
    "evaluate.py",
    EvalRunConfig,
    "medtune.evaluation.task",
    evaluate_rules.RULES,
    evaluate_rules.PORTABLE_RULES,
    (run_prompt, described_model(evaluate_rules.loads_composed_model)),
)
GENERATE_QA = Job(
    "generate_qa",
    "generate_qa.py",
    GenerateQARunConfig,
    "medtune.qa.task",
    generate_qa_rules.RULES,
    generate_qa_rules.RULES_WITHOUT_MACHINE,
    (described_model(generate_qa_rules.uses_composed_model),),
)
JUDGE = Job(
    "judge",
    "judge.py",
    JudgeRunConfig,
    "medtune.judge.task",
    judge_rules.RULES,
    judge_rules.RULES,
    (described_model(judge_rules.uses_composed_model),),
)
SWEEP = Job("sweep", "sweep.py", SweepRunConfig, "medtune.sweep.task")
CONTAMINATION = Job(
    "contamination",
    "contamination.py",
    ContaminationRunConfig,
    "medtune.audit.task",
    contamination_rules.RULES,
    contamination_rules.RULES,
)

JOBS = (TRAIN, EVALUATE, GENERATE_QA, JUDGE, SWEEP, CONTAMINATION)


def job_for(schema: type) -> Job:
    return next(job for job in JOBS if job.schema is schema)


def to_typed(cfg: DictConfig, schema: type) -> Any:
    """`cfg` checked by the rules of the job whose schema is `schema` (what the entry scripts do)."""
    return job_for(schema).validate(cfg)
