"""Run one cell of a sweep: train.py (unless nothing trains) then evaluate.py, each as its own process.

A cell's state lives in `<sweep>/cells/<name>/cell.json`: `done` cells are skipped when the sweep
runs again, `failed` ones keep their error and are retried. Training runs that several cells share
(prompts A and B of one tuned model) live once in `<sweep>/train/<key>`, built under a file lock.

Nothing a cell wrote is ever deleted. A training that was cut short is run again into the same
directory, where train.py continues from its newest complete checkpoint (or refuses, when the
settings changed, and the cell fails saying so); an evaluation that was cut short continues from
its partial predictions in the same way. The log of each earlier attempt is kept beside the new
one (`evaluate.1.log`, `evaluate.2.log`, ... oldest first).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from medtune.config.sweep_schema import CellConfig, SweepConfig, every_evaluate, every_train
from medtune.errors import PREEMPTED_EXIT_CODE
from medtune.io import locked, write_json_atomic
from medtune.nested import numeric_keys
from medtune.run_dir import TrainRunDir

CELL_FILE = "cell.json"
TAIL_LINES = 30
EVAL_DIR = "eval"
EVAL_SOURCE = "eval_source.json"  # which training the predictions in eval/ came from
# Words of train.py's refusal to continue from a checkpoint saved with other settings (training/resume.py).
CHANGED_SETUP = "was saved with a different setup"


def cell_dir(sweep_dir: Path, name: str) -> Path:
    return sweep_dir / "cells" / name


def read_cell_record(sweep_dir: Path, name: str) -> dict:
    path = cell_dir(sweep_dir, name) / CELL_FILE
    return json.loads(path.read_text()) if path.is_file() else {"status": "pending"}


SEED_MARK = "__seed"  # a cell run once per seed of sweep.seeds is named <cell>__seed<seed>


def declared_cells(sweep: SweepConfig) -> dict[str, CellConfig]:
    """The cells and published systems as the sweep file names them."""
    return {**sweep.cells, **sweep.systems}


def seeded_name(name: str, seed: int) -> str:
    return f"{name}{SEED_MARK}{seed}"


def split_seed(name: str) -> tuple[str, int | None]:
    """(declared cell, seed) of a cell name; seed None for a cell that runs once."""
    base, mark, seed = name.rpartition(SEED_MARK)
    if mark and base and seed.lstrip("-").isdigit():
        return base, int(seed)
    return name, None


def runs_per_seed(sweep: SweepConfig, cell: CellConfig) -> bool:
    """Cells that train run once per seed; a cell that trains nothing (an untuned base, a published
    system's predictions) gives the same answers for every training seed, so it runs once."""
    return bool(sweep.seeds) and cell.train is not None


def all_cells(sweep: SweepConfig) -> dict[str, CellConfig]:
    """Every cell that runs: the declared ones, each training cell once per seed of `sweep.seeds`
    (its train.py and evaluate.py get `seed=<seed>`; a reference that also runs per seed is the
    run of the same seed)."""
    declared = declared_cells(sweep)
    cells: dict[str, CellConfig] = {}
    for name, cell in declared.items():
        if not runs_per_seed(sweep, cell):
            cells[name] = cell
            continue
        for seed in sweep.seeds:
            reference = cell.reference
            if reference in declared and runs_per_seed(sweep, declared[reference]):
                reference = seeded_name(reference, seed)
            cells[seeded_name(name, seed)] = dataclasses.replace(
                cell,
                train=[*(cell.train or []), f"seed={seed}"],
                evaluate=[*cell.evaluate, f"seed={seed}"],
                reference=reference,
            )
    return cells


def all_pairs(sweep: SweepConfig) -> list[tuple[str, str]]:
    """sweep.pairs with each cell that runs per seed replaced by its runs, seed by seed."""
    declared = declared_cells(sweep)
    pairs: list[tuple[str, str]] = []
    for a, b in map(tuple, sweep.pairs):
        seeded = [runs_per_seed(sweep, declared[x]) if x in declared else False for x in (a, b)]
        if not any(seeded):
            pairs.append((a, b))
            continue
        for seed in sweep.seeds:
            pairs.append(tuple(seeded_name(x, seed) if s else x for x, s in zip((a, b), seeded)))
    return pairs


def pending_cells(sweep: SweepConfig, sweep_dir: Path) -> list[str]:
    """The cells a launch would run: every cell whose record is not `done`."""
    return [name for name in all_cells(sweep) if read_cell_record(sweep_dir, name)["status"] != "done"]


def train_key(sweep: SweepConfig, cell: CellConfig) -> str:
    """Cells with the same training overrides share one training run."""
    overrides = [*every_train(sweep), *(cell.train or [])]
    readable = "_".join(o.split("=")[-1] for o in (cell.train or []))[:40] or "default"
    digest = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
    return f"{readable}-{digest}".replace("/", "_")


def train_dir_of(sweep: SweepConfig, cell: CellConfig, sweep_dir: Path) -> Path | None:
    """Where the cell's training runs, or None when nothing trains."""
    return sweep_dir / "train" / train_key(sweep, cell) if cell.train is not None else None


def train_overrides(sweep: SweepConfig, cell: CellConfig, train_dir: Path, group: str) -> list[str]:
    """train.py's overrides for the cell: the sweep's, the cell's, then where it runs."""
    return [*every_train(sweep), *(cell.train or []), f"hydra.run.dir={train_dir}", f"logger.group={group}"]


def evaluate_overrides(sweep: SweepConfig, cell: CellConfig, out: Path, group: str, run: Path | None) -> list[str]:
    """evaluate.py's overrides for the cell: the sweep's, the cell's, then its run and where it writes."""
    return [
        *every_evaluate(sweep),
        *cell.evaluate,
        *([f"run={run}"] if run else []),
        f"eval.output_dir={out}",
        f"hydra.run.dir={out}",
        f"logger.group={group}",
    ]


def evaluate_command(
    sweep: SweepConfig, cell: CellConfig, out: Path, group: str, scripts: Path, run: Path | None
) -> list[str]:
    return [sys.executable, str(scripts / "evaluate.py"), *evaluate_overrides(sweep, cell, out, group, run)]


def keep_previous(log_path: Path) -> None:
    """Move an earlier attempt's log aside (`train.log` -> `train.<n>.log`, the first free n) instead of overwriting it."""
    if not log_path.exists():
        return
    number = 1
    while (aside := log_path.with_name(f"{log_path.stem}.{number}{log_path.suffix}")).exists():
        number += 1
    log_path.rename(aside)


def run_stage(command: list[str], log_path: Path, cwd: Path) -> tuple[int, str]:
    """Run one entry script; its output goes to `log_path` (an earlier attempt's log is kept aside);
    returns (exit code, the output's tail)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    keep_previous(log_path)
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        code = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT).returncode
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-TAIL_LINES:])
    return code, tail


class CellFailure(Exception):
    """A stage of a cell that did not finish: its exit code, the log's tail, and what to do when known."""

    def __init__(self, stage: str, code: int, tail: str, command: list[str], advice: str | None = None):
        self.stage, self.code, self.tail, self.command, self.advice = stage, code, tail, command, advice
        super().__init__(f"{stage} exited with {code}")

    @property
    def error(self) -> str:
        return f"{self.advice}\n--- the log's last lines ---\n{self.tail}" if self.advice else self.tail


def training_is_finished(train_dir: Path) -> bool:
    return TrainRunDir(train_dir).is_finished


def train_stage(
    sweep: SweepConfig, cell: CellConfig, sweep_dir: Path, group: str, scripts: Path
) -> tuple[Path, list[str]]:
    """Train the cell into `<sweep>/train/<key>` unless that training is finished; an interrupted one
    is run again in place, and train.py continues it from its newest complete checkpoint."""
    train_dir = train_dir_of(sweep, cell, sweep_dir)
    launcher = list(sweep.train_command) or [sys.executable]
    command = [*launcher, str(scripts / "train.py"), *train_overrides(sweep, cell, train_dir, group)]
    with locked(sweep_dir / "train" / f".{train_dir.name}.lock"):
        if training_is_finished(train_dir):
            return train_dir, command
        started = time.time()
        code, tail = run_stage(command, train_dir.parent / f"{train_dir.name}.log", scripts)
    if code != 0:
        raise CellFailure("train", code, tail, command, training_advice(train_dir, code, started))
    return train_dir, command


def training_advice(train_dir: Path, code: int, started: float) -> str | None:
    """What to do about a training that stopped: continue it, or settle a changed setup (never by the sweep deleting it)."""
    if code == PREEMPTED_EXIT_CODE:
        return (
            f"train.py stopped on a signal after saving a checkpoint in {train_dir}; run the same sweep "
            "command again to continue it from there."
        )
    run = TrainRunDir(train_dir)
    if not run.failure_path.is_file() or run.failure_path.stat().st_mtime < started:
        return None  # no record from this attempt: the log's tail says what happened
    message = (run.failure() or {}).get("message", "")
    if CHANGED_SETUP not in message:
        return None
    return (
        f"the training in {train_dir} was interrupted, and its checkpoints were saved with settings that differ "
        f"from this cell's, so train.py refuses to continue it:\n{message}\n"
        f"The sweep never deletes a run. To continue it, restore the settings it started with (the conf/ files, "
        f"sweep.common_train, the cell's train overrides, the data); to train this cell again from step 0, "
        f"delete {train_dir} (or move it away) and run the sweep again."
    )


def training_identity(train_dir: Path | None) -> str | None:
    """A digest of a finished training's records: it changes when the run in that directory is replaced."""
    return TrainRunDir(train_dir).identity() if train_dir is not None else None


def evaluation_dir(here: Path, train_dir: Path | None) -> Path:
    """The cell's eval dir, where evaluate.py continues partial predictions; if they came from another
    training (the run was deleted and trained again), that eval dir is moved aside, not reused or deleted."""
    out = here / EVAL_DIR
    source = out / EVAL_SOURCE
    identity = training_identity(train_dir)
    if source.is_file() and json.loads(source.read_text()).get("training") != identity:
        number = 1
        while (aside := here / f"{EVAL_DIR}.superseded.{number}").exists():
            number += 1
        out.rename(aside)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(source, {"train_dir": str(train_dir) if train_dir else None, "training": identity})
    return out


def earlier_attempt(record: dict) -> dict | None:
    """The short form of a previous attempt's record kept in the new one (its full logs stay on disk)."""
    if record.get("status") in (None, "pending"):
        return None
    kept = {k: record[k] for k in ("attempts", "status", "stage", "exit_code", "started", "seconds") if k in record}
    if kept["status"] == "running":  # its process was killed before it could write an outcome
        kept["status"] = "interrupted"
    return kept


def objective_of(sweep: SweepConfig, metrics: dict, out: Path) -> float:
    """The cell's sweep.optimized_metric, from its evaluation's metrics.json."""
    if sweep.optimized_metric not in metrics:
        raise CellFailure(
            "evaluate",
            0,
            f"sweep.optimized_metric={sweep.optimized_metric} is not in {out / 'metrics.json'}; it has: "
            f"{numeric_keys(metrics)}. Set sweep.optimized_metric to one of them.",
            [],
        )
    return metrics[sweep.optimized_metric]


def run_cell(sweep: SweepConfig, name: str, sweep_dir: Path, group: str, scripts: Path) -> dict:
    """Train and evaluate cell `name`; returns its record (also written to cell.json)."""
    record = read_cell_record(sweep_dir, name)
    if record["status"] == "done":
        return record
    cell = all_cells(sweep)[name]
    here = cell_dir(sweep_dir, name)
    here.mkdir(parents=True, exist_ok=True)
    attempts = record.get("attempts", 0) + 1
    earlier = [*record.get("earlier_attempts", []), *filter(None, [earlier_attempt(record)])]
    started = time.time()
    record = {
        "status": "running",
        "cell": name,
        "attempts": attempts,
        "started": started,
        "cell_config": {
            k: getattr(cell, k) for k in ("label", "model", "tuning", "prompt", "reference", "natural_reference")
        },
    }
    if earlier:
        record["earlier_attempts"] = earlier
    write_json_atomic(here / CELL_FILE, record)
    try:
        train_dir, train_cmd = (
            train_stage(sweep, cell, sweep_dir, group, scripts) if cell.train is not None else (None, None)
        )
        out = evaluation_dir(here, train_dir)
        command = evaluate_command(sweep, cell, out, group, scripts, train_dir)
        code, tail = run_stage(command, here / "evaluate.log", scripts)
        if code != 0 or not (out / "metrics.json").is_file():
            raise CellFailure("evaluate", code, tail, command)
        metrics = json.loads((out / "metrics.json").read_text())
        record.update(
            status="done",
            train_dir=str(train_dir) if train_dir else None,
            eval_dir=str(out),
            accuracy=metrics["accuracy"],
            objective=objective_of(sweep, metrics, out),
            commands=[c for c in (train_cmd, command) if c],
        )
    except CellFailure as failure:
        record.update(
            status="failed", stage=failure.stage, exit_code=failure.code, error=failure.error, command=failure.command
        )
    except Exception as error:  # a bug of ours must not stop the other cells either
        record.update(status="failed", stage="sweep", error=f"{type(error).__name__}: {error}")
    record["seconds"] = round(time.time() - started, 1)
    write_json_atomic(here / CELL_FILE, record)
    return record
