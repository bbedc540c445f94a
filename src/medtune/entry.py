"""The entry layer shared by the entry scripts: Hydra job facts in, clean errors out.

This, `hydra_messages.py`, `hydra_help.py`, `sweep/preflight.py` and `config/store.py` are the only modules that
import Hydra; everything below receives a typed config and a `JobContext`.

    @hydra.main(version_base="1.3", config_path="conf", config_name="train")
    def main(cfg):
        return run_task(TRAIN, cfg)     # TRAIN: the job (medtune.jobs): schema, rules, task

    if __name__ == "__main__":
        run_cli(main, TRAIN)

`run_cli` refuses spellings that moved to another script, turns Hydra's own composition errors into
medtune messages (exit 2) and, after a multirun, lists the jobs that failed (exit 1, or 2 when every
failure was a medtune error). `run_task` validates one job's config by its job's rules and
`execute`s it: the job's workspace is locked, its one tracker opened and finished here, and the
value of `optimized_metric` goes back to Hydra (what a sweeper optimises). A MedtuneError becomes
a message and exit 2, or in a multirun a record (failure.json and the summary) while the other
jobs go on.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from medtune.config.job import JobContext
from medtune.distributed import exit_rank
from medtune.entry_messages import (
    FULL_ERROR,
    before_the_job,
    moved_spelling,
    print_trimmed_traceback,
    register_help_resolver,
)
from medtune.errors import PREEMPTED_EXIT_CODE, ConfigError, MedtuneError, Preempted
from medtune.jobs import Job
from medtune.run_claim import HYDRA_SUBDIR, Claim, record_failure, refusal, restore_hydra_files, write_hydra_files
from medtune.secrets import mask as mask_secrets

USER_FULL_ERROR = "MEDTUNE_USER_HYDRA_FULL_ERROR"  # what the user set, before run_cli set HYDRA_FULL_ERROR=1
SUMMARY_SKIPPED_PREFIXES = ("paths.", "hydra.")  # overrides every job of a multirun shares


def job_context(cfg: DictConfig) -> JobContext:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    is_multirun = hc.mode == RunMode.MULTIRUN
    choices = {k: str(v) for k, v in hc.runtime.choices.items() if v is not None and not k.startswith("hydra")}
    main = next((s for s in hc.runtime.config_sources if s.provider == "main" and s.schema == "file"), None)
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
        entry_dir=Path(main.path).parent if main else None,
    )


# --- a multirun's failed jobs ---------------------------------------------------------------------


@dataclass(frozen=True)
class FailedJob:
    num: int
    overrides: tuple[str, ...]
    error: str  # the error's class name
    first_line: str
    run_dir: Path
    medtune_error: bool  # a MedtuneError (a problem of the input) rather than a bug


@dataclass
class MultirunJobs:
    """The multirun jobs this process ran (Hydra's basic launcher runs them all in the launching process)."""

    overrides: list[tuple[str, ...]] = field(default_factory=list)  # every job's, to tell the swept ones
    sweep_dir: Path | None = None
    failed: list[FailedJob] = field(default_factory=list)
    cli_pid: int | None = None  # the process run_cli runs in: its jobs are the ones it can report

    def reports_here(self) -> bool:
        """Whether jobs run in run_cli's own process (the basic launcher), not in a joblib / SLURM worker."""
        return self.cli_pid == os.getpid()

    def started(self, job: JobContext) -> None:
        self.overrides.append(job.overrides)
        self.sweep_dir = job.sweep_dir

    def record(self, job: JobContext, error: BaseException, failure: Path | None = None) -> None:
        """`failure`: the job's failure.json, where one was written (its dir is the one the report names)."""
        self.failed.append(
            FailedJob(
                job.job_num,
                job.overrides,
                type(error).__name__,
                headline(error),
                failure.parent if failure is not None else job.run_dir,
                isinstance(error, MedtuneError),
            )
        )

    def swept(self, overrides: tuple[str, ...]) -> str:
        """A job's own overrides: those not shared by every job of the multirun (all of them if none differ)."""
        shared = set.intersection(*(set(o) for o in self.overrides)) if len(self.overrides) > 1 else set()
        own = [o for o in overrides if o not in shared and not o.startswith(SUMMARY_SKIPPED_PREFIXES)]
        return " ".join(own or [o for o in overrides if not o.startswith(SUMMARY_SKIPPED_PREFIXES)]) or "(none)"

    def report(self, script: str) -> str:
        rows = [(f"#{f.num}", self.swept(f.overrides), f"{f.error}: {f.first_line}") for f in self.failed]
        width = max(len("overrides"), *(len(r[1]) for r in rows))
        where = f" in {self.sweep_dir}" if self.sweep_dir else ""
        lines = [
            f"{len(self.failed)} of {len(self.overrides)} jobs failed{where}; the others ran to the end:",
            f"  {'job':<5} {'overrides':<{width}}  error",
        ]
        lines += [f"  {num:<5} {shown:<{width}}  {error}" for num, shown, error in rows]
        lines.append(
            f"Each failed job's dir holds failure.json with the whole error (e.g. {self.failed[0].run_dir}); "
            f"fix the input and rerun those jobs alone: python {script} <their overrides>."
        )
        return "\n".join(lines)

    def exit_code(self) -> int:
        return 2 if all(f.medtune_error for f in self.failed) else 1


MULTIRUN = MultirunJobs()


def headline(error: BaseException, limit: int = 200) -> str:
    """The first line a user should read: a ConfigError's first problem, else the message's first line."""
    if isinstance(error, ConfigError) and error.problems:
        more = f" (and {len(error.problems) - 1} more)" if len(error.problems) > 1 else ""
        text = error.problems[0] + more
    else:
        text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- one job ----------------------------------------------------------------------------------------


def run_task(spec: Job, cfg: DictConfig) -> Any:
    """Validate `cfg` by `spec`'s rules, execute it, return its `optimized_metric`; turn a MedtuneError
    into a message and exit 2.

    In a multirun a failed job (a MedtuneError or any other exception) is recorded in its failure.json
    and, when the job runs in run_cli's own process (the basic launcher), in `MULTIRUN`: it returns
    None so that Hydra goes on with the next job, and `run_cli` reports them all at the end. A job in
    a launcher's worker process (joblib, SLURM) raises as before, for its launcher to see.
    """
    job = job_context(cfg)
    claim = Claim(hydra_files=hydra_files(cfg))
    if job.is_multirun:
        MULTIRUN.started(job)
    try:
        typed = spec.validate(cfg, job.overrides)
        result = execute(spec, typed, job, claim)
        return objective(spec, typed, result)
    except Preempted as stop:
        print(f"\nmedtune: {stop}\n", file=sys.stderr, flush=True)
        requeue = stop.previous_handler
        if callable(requeue):  # submitit's handler (SLURM launcher): it requeues the job, then exits
            requeue(stop.signum, None)
        sys.exit(PREEMPTED_EXIT_CODE)
    except MedtuneError as error:
        record = record_failure(job, claim, error)
        print(f"\nmedtune: {mask_secrets(error)}\n", file=sys.stderr, flush=True)
        if job.is_multirun and MULTIRUN.reports_here():
            MULTIRUN.record(job, error, record)
            return None
        if job.is_multirun:
            raise
        sys.exit(2)
    except Exception as error:  # a bug or a library failure: keep the trace, and a record of it
        record = record_failure(job, claim, error)
        if job.is_multirun and MULTIRUN.reports_here():
            sys.stderr.write(mask_secrets("".join(traceback.format_exception(error))))
            MULTIRUN.record(job, error, record)
            return None
        raise
    finally:
        claim.tidy(job.run_dir)


def hydra_files(cfg: DictConfig) -> dict[str, str] | None:
    """What Hydra writes into <run dir>/.hydra/ (config.yaml, hydra.yaml, overrides.yaml), for `execute`
    to write once the directory is locked and checked; None outside a Hydra job, or when a user's
    hydra.output_subdir made Hydra write them itself."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.output_subdir is not None:
        return None
    return {
        "config.yaml": OmegaConf.to_yaml(cfg),
        "hydra.yaml": OmegaConf.to_yaml(HydraConfig.instance().cfg),
        "overrides.yaml": OmegaConf.to_yaml(hc.overrides.task),
    }


def execute(spec: Job, cfg: Any, job: JobContext, claim: Claim | None = None) -> Any:
    """Run `spec`'s task on a validated config: in its workspace, locked for the whole run, with one
    tracker opened before and finished after (marked failed when the task raises). Returns the task's
    result; a workspace of None (a dry run) runs the task with a tracker that records nothing.

    Nothing is written into the workspace before it is locked and its task's `check_existing(cfg, job,
    directory)` has passed (it refuses a directory holding results of other settings, see
    `medtune.finished`). Then the .hydra/ files; after a run that succeeds, an earlier attempt's
    failure.json there is deleted (it no longer describes the directory)."""
    from medtune.tracking.wandb_run import Tracker

    claim = claim or Claim()
    task = spec.task()
    cfg, space = task.workspace(cfg, job)
    if space is None:
        return task.run(cfg, job, Tracker())
    claim.directory = space.directory
    from omegaconf import OmegaConf

    from medtune.reporting.console_log import keep_console
    from medtune.run_lock import lock_output_dir
    from medtune.storage import storage_guard
    from medtune.tracking.wandb_run import start_run

    with (
        lock_output_dir(space.directory, setting=space.setting, task=space.activity),
        keep_console(space.directory, spec.name, discard_if=refusal),  # <dir>/<job>.log: what the console shows
    ):
        check_existing = getattr(task, "check_existing", None)
        if check_existing is not None:
            cfg = check_existing(cfg, job, space.directory)
        claim.owned = True  # from here on the job writes into its directory
        with storage_guard(
            space.directory,
            f"the run's config ({HYDRA_SUBDIR}/)",
            kept="Nothing else was written there.",
            elsewhere=f"use another directory ({space.setting}=<a writable dir with room>)",
        ):
            hydra_before = write_hydra_files(space.directory, claim.hydra_files)
        tracker = start_run(
            cfg.logger,
            job,
            OmegaConf.to_container(OmegaConf.structured(cfg)),
            space.job_type,
            group=space.group,
            run_dir=space.directory,
        )
        exit_code = 1
        try:
            result = task.run(cfg, job, tracker)
            exit_code = 0
        except BaseException as error:
            if refusal(error):  # refused by a check that needed the task's own work (changed training data)
                restore_hydra_files(space.directory, hydra_before)
            raise
        finally:
            tracker.finish(exit_code=exit_code)
        (Path(space.directory) / "failure.json").unlink(missing_ok=True)
        return result


def objective(spec: Job, cfg: Any, result: Any) -> Any:
    """The value of `cfg.optimized_metric` in the task's metrics (None when the job measured nothing,
    e.g. a dry run); a name the metrics lack is an error that lists the names they have."""
    name = getattr(cfg, "optimized_metric", None)
    if name is None:
        return result
    metrics = spec.task().metrics(result)
    if not metrics:
        return None
    if name not in metrics:
        from medtune.nested import numeric_keys

        raise ConfigError(
            [f"optimized_metric={name} is not a metric {spec.script} reports; it reports: {numeric_keys(metrics)}."]
        )
    return metrics[name]


# --- the command line --------------------------------------------------------------------------------


def user_wants_full_errors() -> bool:
    """HYDRA_FULL_ERROR=1 as the user set it; run_cli sets it for itself, and child scripts inherit both."""
    if USER_FULL_ERROR not in os.environ:
        os.environ[USER_FULL_ERROR] = os.environ.get(FULL_ERROR, "")
    return os.environ[USER_FULL_ERROR] == "1"


def run_cli(main: Callable[[], Any], spec: Job) -> None:
    """Call an entry script's `@hydra.main` function, saying Hydra's own errors as medtune messages.

    Hydra composes the config before the task runs and, for an unknown key or group option, prints
    its own message and exits 1. With HYDRA_FULL_ERROR=1 it raises instead: the errors raised before
    any job ran become a message naming the override, the problem and the fix, with exit 2. A user's
    own HYDRA_FULL_ERROR=1 keeps Hydra's full stack traces.
    """
    argv = sys.argv[1:]
    script = Path(sys.argv[0]).name
    schema = spec.schema
    register_help_resolver()
    moved = moved_spelling(argv, script)
    if moved:
        print(f"\nmedtune: {moved}\n", file=sys.stderr)
        sys.exit(2)
    full_errors = user_wants_full_errors()
    os.environ[FULL_ERROR] = "1"
    MULTIRUN.cli_pid = os.getpid()
    try:
        main()
    except SystemExit as stop:  # a job's exit code (2: a message, 75: preempted), on every rank of a launch
        exit_rank(stop.code if isinstance(stop.code, int) else 1)
        raise
    except KeyboardInterrupt:  # a second Ctrl-C (the first saves a checkpoint and exits by itself)
        print(
            "\nmedtune: stopped by Ctrl-C; nothing more was saved. Run the same command again to continue "
            "from the last checkpoint.",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(130)
    except BrokenPipeError:  # `train.py --help | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - every error leaves here as a message or a trimmed trace
        if full_errors:
            raise
        if isinstance(error, MedtuneError):  # a job of a joblib / SLURM multirun, raised again by its launcher
            print(
                f"\nmedtune: a job of this multirun stopped with a {type(error).__name__} (its message, and Hydra's "
                "'Error executing job with overrides', are above); the launcher ran the other jobs. Each "
                "failed job's dir holds failure.json with its error: fix the input and rerun those jobs.\n",
                file=sys.stderr,
            )
            sys.exit(2)
        problem = None if raised_in_a_job(error) else before_the_job(error, argv, schema, script)
        if problem is None:
            print_trimmed_traceback(error)
            sys.exit(1)
        print(f"\nmedtune: {ConfigError([problem])}\n", file=sys.stderr)
        sys.exit(2)
    if MULTIRUN.failed:
        print(f"\nmedtune: {MULTIRUN.report(script)}\n", file=sys.stderr)
        sys.exit(MULTIRUN.exit_code())
    exit_rank(0)


def raised_in_a_job(error: BaseException) -> bool:
    """Whether `error` is a job's own (it came out of `run_task`, here or in a launcher's worker and
    raised again by Hydra's `JobReturn.return_value`), not Hydra's before any job."""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code is run_task.__code__ or (
            code.co_name == "return_value" and code.co_filename.endswith(os.path.join("hydra", "core", "utils.py"))
        ):
            return True
        tb = tb.tb_next
    return False
