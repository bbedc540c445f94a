"""Read an offline W&B run back (config, group, tags, history, summary) without any network.

Uses the `wandb leet inspect --json` reader that ships with wandb, so what we read is what
`wandb sync` would upload.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OfflineRun:
    path: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]


def find_offline_runs(root: Path) -> list[Path]:
    """Offline run folders under `root` (a run dir, a sweep dir, or a wandb dir), oldest first."""
    return sorted(p.parent for p in Path(root).rglob("offline-run-*/run-*.wandb"))


def _inspect(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def read_offline_run(path: Path) -> OfflineRun:
    run = OfflineRun(path=Path(path))
    for record in _inspect(path):
        kind = record.get("type")
        if kind == "run":
            body = record["run"]
            run.name = body.get("display_name", "")
            run.group = body.get("run_group", "")
            run.job_type = body.get("job_type", "")
            run.tags = list(body.get("tags", []))
            run.config.update(body.get("config", {}).get("update", {}))
        elif kind == "config":
            run.config.update(record["config"].get("update", {}))
        elif kind == "history":
            run.history.append(record["history"]["item"])
        elif kind == "summary":
            run.summary.update(record["summary"].get("update", {}))
    run.config.pop("_wandb", None)
    return run
