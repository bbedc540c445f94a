"""The sweep task: list, launch, resume and report a grid of cells (or an Optuna search).

`python sweep.py sweep=<name>` first composes and checks every pending cell's train and evaluate
overrides (`medtune.sweep.preflight`; `sweep.dry_run=true` shows the same check) and refuses,
listing every problem, before any cell runs. It then saves the sweep's config in its directory,
launches the cells that are not done as a Hydra multirun of this same script (`cell=a,b,...`
with the chosen launcher: sequential, joblib or SLURM), and builds the report from every cell
record. A cell that fails is recorded and the others go on; running the same command again only
runs what is not done, and continues an interrupted training or evaluation where it stopped.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medtune.config.job import JobContext
from medtune.config.sweep_schema import CellConfig, SweepConfig, SweepRunConfig, every_evaluate, every_train
from medtune.errors import ConfigError
from medtune.io import write_text_atomic
from medtune.reporting.console import console
from medtune.sweep.cells import (
    all_cells,
    all_pairs,
    cell_dir,
    declared_cells,
    evaluate_command,
    pending_cells,
    read_cell_record,
    run_cell,
    split_seed,
    train_dir_of,
    train_overrides,
)
from medtune.sweep.preflight import check_sweep_cells

SWEEP_FILE = "sweep.yaml"


def group_of(sweep: SweepConfig) -> str:
    return f"sweep-{sweep.name}"


def workspace(cfg: SweepRunConfig, job: JobContext) -> tuple[SweepRunConfig, None]:
    """The sweep itself holds no run dir: each cell's train.py / evaluate.py holds its own, and the
    summary's W&B run is opened by `summarize` once the cells are done."""
    return cfg, None


def run(cfg: SweepRunConfig, job: JobContext, tracker) -> float | None:
    """The sweep.py task. Returns the best cell's exam accuracy (`best_accuracy` of the summary), one
    cell's accuracy when run as `cell=`, a search trial's objective, or None for a dry run."""
    if job.entry_dir is None:
        raise ConfigError(
            ["sweep.py must run from its own folder's conf/ (the cells run train.py and evaluate.py beside it)."]
        )
    return sweep(cfg, job, job.entry_dir)


def metrics(result: float | None) -> dict:
    return {}


def sweep(cfg: SweepRunConfig, job: JobContext, scripts: Path) -> float | None:
    if cfg.summarize:
        return summarize(Path(cfg.summarize), cfg, job)["best_accuracy"]
    sweep_dir = Path(cfg.sweep.dir)
    check_cells(cfg.sweep)
    if cfg.sweep.dry_run:
        print_cells(cfg.sweep, sweep_dir, scripts)
        check_sweep_cells(cfg.sweep, pending_cells(cfg.sweep, sweep_dir), sweep_dir, group_of(cfg.sweep), scripts)
        console.print("every cell's train and evaluate overrides compose and pass the checks.")
        return None
    if cfg.cell:
        return run_cell(cfg.sweep, cfg.cell, sweep_dir, group_of(cfg.sweep), scripts).get("accuracy")
    if cfg.trial:
        return run_trial(cfg, job, sweep_dir, scripts)
    check_sweep_cells(cfg.sweep, pending_cells(cfg.sweep, sweep_dir), sweep_dir, group_of(cfg.sweep), scripts)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(sweep_dir / SWEEP_FILE, OmegaConf.to_yaml(OmegaConf.structured(cfg.sweep)))
    launch(cfg, job, sweep_dir, scripts)
    return summarize(sweep_dir, cfg, job)["best_accuracy"]


def check_cells(sweep: SweepConfig) -> None:
    cells = declared_cells(sweep)
    problems = [
        f"sweep.cells.{name}.reference={cell.reference} names no cell of sweep={sweep.name}"
        for name, cell in cells.items()
        if cell.reference and cell.reference not in cells
    ]
    problems += [
        f"sweep.pairs: {a} or {b} is not a cell of sweep={sweep.name}"
        for a, b in map(tuple, sweep.pairs)
        if a not in cells or b not in cells
    ]
    repeated = sorted({seed for seed in sweep.seeds if list(sweep.seeds).count(seed) > 1})
    if repeated:
        problems.append(f"sweep.seeds={list(sweep.seeds)} repeats {repeated}: each seed runs once; list each once.")
    if not cells and sweep.search.n_trials <= 0:
        problems.append(f"sweep={sweep.name} has no cells and no search (sweep.search.n_trials).")
    if problems:
        raise ConfigError(problems)


def launch(cfg: SweepRunConfig, job: JobContext, sweep_dir: Path, scripts: Path) -> None:
    """Run the cells that are not done as a multirun of sweep.py (one job per cell)."""
    passthrough = [o for o in job.overrides if not o.startswith(("cell=", "trial.", "+trial.", "summarize="))]
    passthrough += [
        o
        for o in job.hydra_overrides
        if not o.startswith(("hydra.run.", "hydra.sweep.", "hydra.mode", "hydra/launcher", "hydra/sweeper"))
    ]
    base = [sys.executable, str(scripts / "sweep.py"), "-m", *passthrough, f"hydra/launcher={cfg.sweep.launcher}"]
    search = cfg.sweep.search
    if search.n_trials > 0:
        searchpath = write_search_sweeper(cfg.sweep, sweep_dir)
        command = [*base, f"hydra.searchpath=[file://{searchpath}]", "hydra/sweeper=medtune_search"]
        console.print(f"sweep {cfg.sweep.name}: Optuna search, {search.n_trials} trials -> {sweep_dir}")
    else:
        pending = pending_cells(cfg.sweep, sweep_dir)
        done = len(all_cells(cfg.sweep)) - len(pending)
        console.print(f"sweep {cfg.sweep.name}: {done} cells done, {len(pending)} to run -> {sweep_dir}")
        if not pending:
            return
        command = [*base, f"cell={','.join(pending)}"]
    result = subprocess.run(command, cwd=scripts)
    if result.returncode != 0:
        console.print(
            f"[yellow]the cell launcher exited with {result.returncode}; the report covers what finished.[/yellow]"
        )


def write_search_sweeper(sweep: SweepConfig, sweep_dir: Path) -> Path:
    """An Optuna sweeper config optimising `sweep.optimized_metric` over `sweep.search.params`.

    Written as a config file (not command-line overrides) because its parameter names contain dots;
    `trial.<key with __ for .>` carries each sampled value to the trial's cell."""
    search = sweep.search
    root = sweep_dir / "search_conf"
    sweeper = {
        "defaults": ["optuna"],
        "direction": "maximize" if sweep.maximize else "minimize",
        "n_trials": search.n_trials,
        "n_jobs": 1,
        "study_name": sweep.name,
        "sampler": {"seed": search.sampler_seed},
        "params": {f"+trial.{key.replace('.', '__')}": expr for key, expr in search.params.items()},
    }
    write_text_atomic(root / "hydra" / "sweeper" / "medtune_search.yaml", OmegaConf.to_yaml(OmegaConf.create(sweeper)))
    return root.resolve()


def run_trial(cfg: SweepRunConfig, job: JobContext, sweep_dir: Path, scripts: Path) -> float:
    """One Optuna trial: the search template plus the sampled training overrides, as a cell."""
    flat = flat_trial(cfg.trial)
    template = cfg.sweep.search.template
    name = f"trial-{job.job_num:03d}"
    label = ", ".join(
        f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}" for k, v in flat.items()
    )
    cell = CellConfig(
        label=f"{name}: {label}",
        model=template.model,
        tuning=template.tuning,
        prompt=template.prompt,
        train=[*(template.train or []), *(f"{k}={v}" for k, v in flat.items())],
        evaluate=list(template.evaluate),
    )
    cfg.sweep.cells[name] = cell
    record = run_cell(cfg.sweep, name, sweep_dir, group_of(cfg.sweep), scripts)
    if record["status"] == "done":
        return record["objective"]
    return 0.0 if cfg.sweep.maximize else float("inf")  # a failed trial is the worst value


def flat_trial(trial: dict) -> dict[str, Any]:
    """`{"train__learning_rate": 0.01}` -> `{"train.learning_rate": 0.01}`, the train.py override keys."""
    return {key.replace("__", "."): value for key, value in trial.items()}


def print_cells(sweep: SweepConfig, sweep_dir: Path, scripts: Path) -> None:
    from rich.table import Table

    table = Table(
        title=f"sweep {sweep.name}: {len(sweep.cells)} cells"
        + (f" + {len(sweep.systems)} published system(s)" if sweep.systems else "")
        + " (dry run)"
    )
    table.add_column("cell", no_wrap=True)
    for column in ("row", "trains", "evaluates", "compared with", "status"):
        table.add_column(column)
    for name, cell in all_cells(sweep).items():
        trains = " ".join(cell.train) if cell.train is not None else "-"
        evaluates = " ".join(cell.evaluate)
        status = read_cell_record(sweep_dir, name)["status"]
        table.add_row(name, cell.label, trains, evaluates, cell.reference or "-", status)
    console.print(f"every training adds: {' '.join(every_train(sweep)) or '-'}", soft_wrap=True)
    console.print(f"every evaluation adds: {' '.join(every_evaluate(sweep)) or '-'}", soft_wrap=True)
    console.print(table)
    console.print("commands each cell would run:")
    for name, cell in all_cells(sweep).items():
        run = train_dir_of(sweep, cell, sweep_dir)
        if run is not None:
            launcher = list(sweep.train_command) or ["python"]
            command = [*launcher, "train.py", *train_overrides(sweep, cell, run, group_of(sweep))]
            console.print(f"  {name}: {shlex.join(command)}", soft_wrap=True)
        command = evaluate_command(sweep, cell, cell_dir(sweep_dir, name) / "eval", group_of(sweep), scripts, run)
        console.print(f"  {name}: {shlex.join(['python', 'evaluate.py', *command[2:]])}", soft_wrap=True)


def summarize(sweep_dir: Path, cfg: SweepRunConfig, job: JobContext) -> dict[str, Any]:
    """Build the report from the cell records in `sweep_dir`, log it to W&B, print Table 2."""
    from medtune.reporting.sweep_report import CellOutcome, print_table2, write_report
    from medtune.tracking.wandb_run import start_run

    saved = sweep_dir / SWEEP_FILE
    if not saved.is_file():
        raise ConfigError([f"summarize={sweep_dir} has no {SWEEP_FILE}: is it the directory of a sweep.py run?"])
    spec: SweepConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepConfig), OmegaConf.load(saved)))
    cells = dict(all_cells(spec))
    for path in sorted((sweep_dir / "cells").glob("trial-*/cell.json")):
        record = read_cell_record(sweep_dir, path.parent.name)
        cells[path.parent.name] = (
            CellConfig(**record.get("cell_config", {}))
            if "cell_config" in record
            else CellConfig(label=path.parent.name)
        )
    outcomes = []
    for name, cell in cells.items():
        record = read_cell_record(sweep_dir, name)
        eval_dir = Path(record["eval_dir"]) if record.get("eval_dir") else None
        metrics = (eval_dir / "metrics.json") if eval_dir else None
        base, seed = split_seed(name)
        outcomes.append(
            CellOutcome(
                name=name,
                base=base,
                seed=seed,
                label=cell.label,
                model=cell.model,
                tuning=cell.tuning,
                prompt=cell.prompt,
                reference=cell.reference,
                natural_reference=cell.natural_reference,
                status=record["status"],
                metrics=_json(metrics) if metrics and metrics.is_file() else None,
                predictions_path=eval_dir / "predictions.jsonl" if eval_dir else None,
                error=record.get("error", ""),
            )
        )
    pairs = all_pairs(spec)
    summary = write_report(outcomes, pairs, sweep_dir / "report", title=f"sweep {spec.name}: {spec.description}")
    accuracies = [o.metrics["accuracy"] for o in outcomes if o.metrics]
    summary["best_accuracy"] = max(accuracies, default=0.0)
    tracker = start_run(
        cfg.logger,
        job,
        {"sweep": OmegaConf.to_container(OmegaConf.structured(spec))},
        "sweep-summary",
        group=group_of(spec),
        run_dir=sweep_dir / "report",
    )
    try:
        log_report(tracker, summary, sweep_dir / "report")
    finally:
        tracker.finish()
    print_table2(summary["rows"])
    for failed in summary.get("failed", []):
        name = failed.get("cell") or failed.get("name")
        console.print(f"[red]cell {name} failed[/red]: see {sweep_dir / 'cells' / str(name) / 'cell.json'}")
    console.print(f"report: [bold]{sweep_dir / 'report' / 'report.md'}[/bold] (table2.md/.csv, figure2.png, table3.md)")
    return summary


def log_report(tracker, summary: dict[str, Any], report_dir: Path) -> None:
    rows = summary.get("rows", [])
    columns = [
        "cell",
        "label",
        "model",
        "tuning",
        "prompt",
        "correct",
        "invalid",
        "wrong",
        "accuracy",
        "improvement_text",
    ]
    tracker.log_table("sweep/table2", columns, [[row.get(c) for c in columns] for row in rows])
    seed_rows = summary.get("seed_rows") or []
    if seed_rows:
        seed_columns = ["cell", "label", "seeds", "accuracy_mean", "accuracy_sd", "accuracy_per_seed"]
        tracker.log_table(
            "sweep/table2_seeds", seed_columns, [[str(row.get(c)) for c in seed_columns] for row in seed_rows]
        )
    tracker.log_image("sweep/figure2", report_dir / "figure2.png")
    best = summary.get("best")
    tracker.summarize(
        {
            "sweep/best_cell": best,
            "sweep/best_accuracy": summary["best_accuracy"],
            "sweep/cells_done": len(rows),
            "sweep/cells_failed": len(summary.get("failed", [])),
        }
    )


def _json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
