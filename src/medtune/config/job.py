"""What a task needs to know about the Hydra job that runs it, without importing Hydra."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Config groups whose choices name and tag a run.
GROUPS = ("model", "adapter", "dataset", "prompt", "hardware", "logger", "experiment", "exam", "eval")


@dataclass(frozen=True)
class JobContext:
    run_dir: Path
    task_name: str = "train"
    override_dirname: str = ""
    choices: dict[str, str] = field(default_factory=dict)
    is_multirun: bool = False
    sweep_dir: Path | None = None
    job_num: int = 0
    overrides: tuple[str, ...] = ()  # the job's command-line overrides, as typed
    hydra_overrides: tuple[str, ...] = ()  # the hydra.* ones (search path, launcher settings, ...)
    entry_dir: Path | None = None  # the folder of the entry scripts and their conf/ (a sweep runs them)

    @property
    def trial_key(self) -> str:
        """The job's overrides without the seed (and without where files go): runs that differ only
        by seed share it, so a dashboard can average over seeds."""
        skip = ("seed=", "+seed=", "hydra.", "paths.", "logger.", "eval.output_dir=")
        return ",".join(sorted(o for o in self.overrides if not o.startswith(skip))) or "default"

    @property
    def run_name(self) -> str:
        """A W&B run name from the job's own overrides, e.g. `adapter=qlora,model=tiny`."""
        return self.override_dirname or "default"

    def group_tags(self) -> list[str]:
        return [f"{g}:{self.choices[g]}" for g in GROUPS if self.choices.get(g)]


@dataclass(frozen=True)
class Workspace:
    """Where a job writes and how it is tracked: the entry layer locks `directory` for the job's whole
    run and opens (and finishes) the job's one W&B run there."""

    directory: Path
    setting: str  # the key that moves it, named when another process holds it (e.g. hydra.run.dir)
    activity: str  # what holds it, in messages: "training", "evaluation", ...
    job_type: str  # the W&B job type
    group: str | None = None  # a W&B group to join (an evaluation joins its training run's)
