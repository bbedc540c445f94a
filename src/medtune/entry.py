"""The entry layer shared by train.py / evaluate.py / sweep.py: Hydra job facts in, clean errors out.

This and `config/store.py` are the only modules that import Hydra; everything below receives a
typed config and a `JobContext`.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from medtune.config.job import JobContext
from medtune.errors import PREEMPTED_EXIT_CODE, MedtuneError, Preempted


def job_context(cfg: DictConfig) -> JobContext:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    is_multirun = hc.mode == RunMode.MULTIRUN
    choices = {k: str(v) for k, v in hc.runtime.choices.items() if v is not None and not k.startswith("hydra")}
    return JobContext(
        run_dir=Path(hc.runtime.output_dir),
        task_name=str(cfg.get("task_name", hc.job.name)),
        override_dirname=hc.job.override_dirname,
        choices=choices,
        is_multirun=is_multirun,
        sweep_dir=Path(hc.sweep.dir) if is_multirun else None,
        job_num=int(hc.job.num) if is_multirun else 0,
        overrides=tuple(hc.overrides.task),
        hydra_overrides=tuple(hc.overrides.hydra),
    )


def write_failure_record(run_dir: Path, error: BaseException) -> Path:
    """Leave the error in the run dir so a sweep or a person can see why a job stopped."""
    from medtune.io import write_json_atomic

    path = run_dir / "failure.json"
    write_json_atomic(
        path,
        {
            "error_type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
    )
    return path


def run_task(task: Callable[[Any, JobContext], Any], cfg: DictConfig, schema: type) -> Any:
    """Validate `cfg` against `schema`, run `task`, and turn a MedtuneError into a message and exit 2."""
    job = job_context(cfg)
    try:
        from medtune.config.validate import to_typed

        typed = to_typed(cfg, schema)
        return task(typed, job)
    except Preempted as stop:
        print(f"\nmedtune: {stop}\n", file=sys.stderr, flush=True)
        requeue = stop.previous_handler
        if callable(requeue):  # submitit's handler (SLURM launcher): it requeues the job, then exits
            requeue(stop.signum, None)
        sys.exit(PREEMPTED_EXIT_CODE)
    except MedtuneError as error:
        write_failure_record(job.run_dir, error)
        print(f"\nmedtune: {error}\n", file=sys.stderr)
        if job.is_multirun:
            raise
        sys.exit(2)
    except Exception as error:  # a bug or a library failure: keep the trace, and a record of it
        write_failure_record(job.run_dir, error)
        raise

