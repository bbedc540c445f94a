"""Run one cell of a sweep: train.py (unless nothing trains) then evaluate.py, each as its own process.

A cell's state lives in `<sweep>/cells/<name>/cell.json`: `done` cells are skipped when the sweep
runs again, `failed` ones keep their error and are retried. Training runs that several cells share
(prompts A and B of one tuned model) live once in `<sweep>/train/<key>`, built under a file lock.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from medtune.config.sweep_schema import CellConfig, SweepConfig
from medtune.io import locked, write_json_atomic

CELL_FILE = "cell.json"
TAIL_LINES = 30


def cell_dir(sweep_dir: Path, name: str) -> Path:
    return sweep_dir / "cells" / name


def read_cell_record(sweep_dir: Path, name: str) -> dict:
    path = cell_dir(sweep_dir, name) / CELL_FILE
    return json.loads(path.read_text()) if path.is_file() else {"status": "pending"}


def all_cells(sweep: SweepConfig) -> dict[str, CellConfig]:
    return {**sweep.cells, **sweep.systems}


def train_key(sweep: SweepConfig, cell: CellConfig) -> str:
    """Cells with the same training overrides share one training run."""
    overrides = [*sweep.common_train, *(cell.train or [])]
    readable = "_".join(o.split("=")[-1] for o in (cell.train or []))[:40] or "default"
    digest = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
    return f"{readable}-{digest}".replace("/", "_")




def run_stage(command: list[str], log_path: Path, cwd: Path) -> tuple[int, str]:
    """Run one entry script; its output goes to `log_path`; returns (exit code, the output's tail)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        code = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT).returncode
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-TAIL_LINES:])
    return code, tail


def train_stage(sweep: SweepConfig, cell: CellConfig, sweep_dir: Path, group: str, scripts: Path) -> tuple[Path, list[str]]:
    train_dir = sweep_dir / "train" / train_key(sweep, cell)
    launcher = list(sweep.train_command) or [sys.executable]
    command = [*launcher, str(scripts / "train.py"), *sweep.common_train, *(cell.train or []),
               f"hydra.run.dir={train_dir}", f"logger.group={group}"]
    with locked(sweep_dir / "train" / f".{train_dir.name}.lock"):
        if (train_dir / "train_summary.json").is_file() and (train_dir / "run_info.json").is_file():
            return train_dir, command
        if train_dir.exists():  # an interrupted training: start it clean rather than mix two runs
            shutil.rmtree(train_dir)
        code, tail = run_stage(command, train_dir.parent / f"{train_dir.name}.log", scripts)
    if code != 0:
        raise CellFailure("train", code, tail, command)
    return train_dir, command


def evaluate_command(sweep: SweepConfig, cell: CellConfig, out: Path, group: str, scripts: Path, run: Path | None) -> list[str]:
    return [sys.executable, str(scripts / "evaluate.py"), *sweep.common_evaluate, *cell.evaluate,
            *([f"run={run}"] if run else []), f"eval.output_dir={out}", f"hydra.run.dir={out}", f"logger.group={group}"]


class CellFailure(Exception):
    def __init__(self, stage: str, code: int, tail: str, command: list[str]):
        self.stage, self.code, self.tail, self.command = stage, code, tail, command
        super().__init__(f"{stage} exited with {code}")


def run_cell(sweep: SweepConfig, name: str, sweep_dir: Path, group: str, scripts: Path) -> dict:
    """Train and evaluate cell `name`; returns its record (also written to cell.json)."""
    record = read_cell_record(sweep_dir, name)
    if record["status"] == "done":
        return record
    cell = all_cells(sweep)[name]
    here = cell_dir(sweep_dir, name)
    attempts = record.get("attempts", 0) + 1
    if here.exists():
        shutil.rmtree(here)
    here.mkdir(parents=True)
    started = time.time()
    record = {"status": "running", "cell": name, "attempts": attempts, "started": started,
              "cell_config": {k: getattr(cell, k) for k in ("label", "model", "tuning", "prompt", "reference",
                                                            "natural_reference")}}
    write_json_atomic(here / CELL_FILE, record)
    try:
        train_dir, train_cmd = train_stage(sweep, cell, sweep_dir, group, scripts) if cell.train is not None else (None, None)
        out = here / "eval"
        command = evaluate_command(sweep, cell, out, group, scripts, train_dir)
        code, tail = run_stage(command, here / "evaluate.log", scripts)
        if code != 0 or not (out / "metrics.json").is_file():
            raise CellFailure("evaluate", code, tail, command)
        metrics = json.loads((out / "metrics.json").read_text())
        record.update(status="done", train_dir=str(train_dir) if train_dir else None, eval_dir=str(out),
                      accuracy=metrics["accuracy"], commands=[c for c in (train_cmd, command) if c])
    except CellFailure as failure:
        record.update(status="failed", stage=failure.stage, exit_code=failure.code, error=failure.tail,
                      command=failure.command)
    except Exception as error:  # a bug of ours must not stop the other cells either
        record.update(status="failed", stage="sweep", error=f"{type(error).__name__}: {error}")
    record["seconds"] = round(time.time() - started, 1)
    write_json_atomic(here / CELL_FILE, record)
    return record
