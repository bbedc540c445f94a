"""One W&B run per Hydra job: named from its overrides, grouped per multirun, tagged with its choices.

Offline by default: the run's files live in `<run dir>/wandb/` and `wandb sync` uploads them later.
Only the main process of a distributed job tracks; a tracking failure never stops training.
Every string a run records (config, summary, tables, names, tags) goes through
`medtune.secrets.mask` first: a key's value never reaches W&B's files.
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from medtune.config.job import JobContext
from medtune.config.schema import LoggerConfig, LoggerKind, WandbMode
from medtune.distributed import is_main_process
from medtune.nested import flatten  # noqa: F401  (dashboards filter on flat keys such as adapter.r)
from medtune.secrets import mask, mask_values


def run_group(logger: LoggerConfig, job: JobContext, inherited: str | None = None) -> str:
    """logger.group, else the group handed down (an evaluation joins its training run's), else one
    group per multirun, else the run's own: every run has a group, so train and eval sit together."""
    if logger.group:
        return logger.group
    if inherited:
        return inherited
    if job.is_multirun and job.sweep_dir is not None:
        return f"{job.task_name}-{job.sweep_dir.name}"
    return f"{job.task_name}-{job.run_dir.name}"


class Tracker:
    """Logs to W&B when a run is open; every call is safe when it is not."""

    def __init__(self, run: Any = None):
        self.run = run
        self.failures = 0  # tracking calls that raised; only the first one is reported

    @property
    def active(self) -> bool:
        return self.run is not None

    def _guard(self, what: str, fn, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as error:  # tracking must never cost a training run
            self.failures += 1
            if self.failures == 1:  # once per run, not once per logged step
                warnings.warn(
                    mask(
                        f"W&B {what} failed ({type(error).__name__}: {error}); training goes on, and later W&B "
                        "errors of this run are not repeated; the files in the run dir still hold every value."
                    ),
                    stacklevel=3,
                )

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._guard("log", lambda: self.run.log(mask_values(dict(metrics)), step=step))

    def summarize(self, values: Mapping[str, Any]) -> None:
        self._guard("summary", lambda: self.run.summary.update(mask_values(dict(values))))

    def log_predictions(self, rows: list[dict[str, Any]], limit: int = 2000) -> None:
        """A table of per-question results (the prompt is left out: it is in predictions.jsonl)."""

        def table():
            import wandb

            columns = [
                "id",
                "status",
                "parsed",
                "strict_status",
                "strict_parsed",
                "gold",
                "answer_text",
                "output",
                "reason",
                "agreement",
                "block",
                "category",
                "contamination",
            ]

            def cell(row: dict[str, Any], column: str) -> str:
                if column.startswith("strict_"):  # the strict reading is nested: {"status", "parsed", "reason"}
                    return str((row.get("strict") or {}).get(column.removeprefix("strict_"), ""))
                return str(row.get(column, ""))

            data = mask_values([[cell(row, c) for c in columns] for row in rows[:limit]])
            self.run.log({"exam/predictions": wandb.Table(columns=columns, data=data)})

        self._guard("table", table)

    def log_status_chart(self, metrics: Mapping[str, Any]) -> None:
        def chart():
            import wandb

            statuses = ("correct", "invalid", "wrong")
            data = [[f"{k} (paper)", metrics[k]] for k in statuses]
            strict = metrics.get("strict") or {}
            data += [[f"{k} (strict)", strict[k]] for k in statuses if k in strict]
            table = wandb.Table(columns=["status", "questions"], data=data)
            self.run.log(
                {
                    "exam/status_chart": wandb.plot.bar(
                        table, "status", "questions", title="Exam answers: paper and strict reading"
                    )
                }
            )

        self._guard("chart", chart)

    def log_table(self, name: str, columns: list[str], data: list[list[Any]]) -> None:
        def table():
            import wandb

            self.run.log(
                {
                    name: wandb.Table(
                        columns=columns,
                        data=mask_values([[str(v) if v is not None else "" for v in row] for row in data]),
                    )
                }
            )

        self._guard("table", table)

    def log_image(self, name: str, path: Path) -> None:
        def image():
            import wandb

            self.run.log({name: wandb.Image(str(path))})

        if Path(path).is_file():
            self._guard("image", image)

    @property
    def group(self) -> str | None:
        try:
            return getattr(self.run, "group", None) if self.run is not None else None
        except Exception:  # a broken run has no group to hand on; the run itself goes on
            return None

    def finish(self, exit_code: int = 0) -> None:
        self._guard("finish", lambda: self.run.finish(exit_code=exit_code))
        self.run = None

    @property
    def run_path(self) -> Path | None:
        return Path(self.run.dir).parent if self.run is not None else None


def wandb_server_reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the W&B server (WANDB_BASE_URL) open within `timeout` seconds?

    The probe runs in a daemon thread: the socket timeout does not bound the DNS lookup, which on a
    cluster node with an unreachable resolver can take half a minute."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname or "", port), timeout=timeout).close()
        except OSError:
            answer.append(False)
        else:
            answer.append(True)

    thread = threading.Thread(target=probe, name="medtune-wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def effective_mode(logger: LoggerConfig) -> WandbMode:
    """Online only when the server answers; otherwise offline files, so a run never waits on the network."""
    if logger.mode == WandbMode.online and not wandb_server_reachable():
        warnings.warn(
            "logger.mode=online but the W&B server cannot be reached; logging offline to <run dir>/wandb "
            "(upload later with `wandb sync`).",
            stacklevel=2,
        )
        return WandbMode.offline
    return logger.mode


def start_run(
    logger: LoggerConfig,
    job: JobContext,
    config: Mapping[str, Any],
    job_type: str,
    group: str | None = None,
    run_dir: Path | None = None,
) -> Tracker:
    """Open the job's W&B run; its files go under `run_dir` (default: the Hydra run dir)."""
    if logger.kind == LoggerKind.none or logger.mode == WandbMode.disabled or not is_main_process():
        return Tracker()
    try:
        import wandb
    except ImportError:
        warnings.warn("logger=wandb but wandb is not installed; pip install wandb. Tracking is off.")
        return Tracker()
    files_dir = Path(run_dir or job.run_dir)
    files_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    mode = effective_mode(logger)
    recorded = mask_values(  # what W&B stores: no key's value among them
        dict(
            name=job.run_name,
            group=run_group(logger, job, group),
            tags=[*job.group_tags(), *logger.tags],
            config={**flatten(config), "trial_key": job.trial_key},
        )
    )
    init = dict(
        project=logger.project,
        entity=logger.entity,
        job_type=job_type,
        **recorded,
        dir=str(files_dir),
        reinit="finish_previous",
        settings=wandb.Settings(
            console="off", x_disable_stats=True, disable_git=True, save_code=False, init_timeout=30
        ),
    )
    try:
        return Tracker(wandb.init(mode=mode.value, **init))
    except Exception as error:
        if mode != WandbMode.online:
            warnings.warn(mask(f"W&B could not start ({error}); the run continues untracked."))
            return Tracker()
        warnings.warn(mask(f"W&B online start failed ({error}); logging offline instead."))
    try:
        return Tracker(wandb.init(mode=WandbMode.offline.value, **init))
    except Exception as error:
        warnings.warn(mask(f"W&B could not start offline either ({error}); the run continues untracked."))
        return Tracker()
