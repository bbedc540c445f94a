"""The train task: its workspace (the locked run dir), the check of what that dir already holds, the
memory plan of a dry run, and otherwise the training recipe (`medtune.training.recipe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtune.config.job import JobContext, Workspace
from medtune.config.schema import TrainRunConfig
from medtune.distributed import is_main_process, leaving_process_group
from medtune.quiet import quiet_third_party
from medtune.reporting.console import console, print_plan
from medtune.run_dir import TrainRunDir
from medtune.training.result import TrainResult


def workspace(cfg: TrainRunConfig, job: JobContext) -> tuple[TrainRunConfig, Workspace | None]:
    """A training run holds its run dir (rank 0 locks it) and one W&B run; a dry run writes nothing."""
    if cfg.dry_run:
        return cfg, None
    return cfg, Workspace(job.run_dir, setting="hydra.run.dir", activity="training", job_type="train")


def check_existing(cfg: TrainRunConfig, job: JobContext, directory: Path) -> TrainRunConfig:
    """Before train.py writes into its run dir: a finished run there made with other settings (or an
    unfinished one whose checkpoints were) is refused, or deleted with overwrite=true
    (`medtune.training.existing`). Only the main process looks: it alone writes and deletes."""
    if not is_main_process():
        return cfg
    from medtune.training.existing import check_existing as check

    return check(cfg, Path(directory))


def run(cfg: TrainRunConfig, job: JobContext, tracker) -> TrainResult | None:
    """The train.py task: the memory plan of a dry run, else a training run in the locked run dir."""
    if cfg.dry_run:
        from medtune.modeling.description import describe_model
        from medtune.modeling.planner import format_plan, plan

        quiet_third_party(cpu_only=True)  # the plan only builds meta-device models
        print_plan(cfg, job, describe_model(cfg.model, cfg.paths.cache_dir, materialize=False))
        with console.status("Counting parameters on the meta device"):
            memory = plan(cfg)
        console.print(format_plan(memory))
        return None
    quiet_third_party(cpu_only=cfg.hardware.accelerator.value == "cpu")
    # After quiet_third_party: the recipe imports transformers, peft and (through the Trainer) DeepSpeed,
    # which read DS_ACCELERATOR and the log levels when imported.
    from medtune.modeling.trained import save_run_config
    from medtune.training.recipe import TrainingRecipe

    if is_main_process() and not TrainRunDir(job.run_dir).has_config:
        save_run_config(cfg, job.run_dir)  # a new run dir: its config from the start (a continued one: below)
    with leaving_process_group():  # every rank ends in order, also on an error: each exits by itself
        return TrainingRecipe(cfg, job, tracker).run()


def metrics(result: TrainResult | None) -> dict[str, Any]:
    """train_summary.json's numbers (what `optimized_metric` names, e.g. eval/loss_after); none for a dry run."""
    return {} if result is None else result.summary
