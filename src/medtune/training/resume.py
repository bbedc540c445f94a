"""Continue a training run from its last checkpoint, but only with the config and data it started with.

Every checkpoint (`<run dir>/checkpoints/checkpoint-<step>/`) gets a `medtune_fingerprint.json`
written after the Trainer has saved the model, optimizer, scheduler, RNG states and trainer state.
Its presence marks the checkpoint as complete: one cut short by a kill is skipped. Rerunning the
same command in the same run dir (`hydra.run.dir=<dir>`, or a SLURM requeue) compares the stored
fingerprint with the new one and resumes (`resume=auto`), refuses with the list of what changed,
or resumes anyway (`resume=force`). `resume=off` ignores the checkpoints and starts from step 0.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from transformers import TrainerCallback

from medtune.config.schema import ResumeMode, TrainRunConfig
from medtune.distributed import is_main_process
from medtune.errors import ConfigError
from medtune.io import write_json_atomic
from medtune.nested import changes

FINGERPRINT_FILE = "medtune_fingerprint.json"
CHECKPOINTS = "checkpoints"  # under the run dir: the Trainer's output_dir
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Keys that change how a run is watched or where it writes, not what it learns.
NOT_DECISIVE = {
    "task_name", "dry_run", "resume", "logger", "paths", "exam", "exam_eval",
    "train.logging_steps", "train.eval_steps", "train.save_steps", "train.save_total_limit",
}


def decisive_config(cfg: TrainRunConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    for key in NOT_DECISIVE:
        head, _, leaf = key.partition(".")
        if leaf:
            container.get(head, {}).pop(leaf, None)
        else:
            container.pop(head, None)
    return container


def fingerprint(cfg: TrainRunConfig, data_key: str) -> dict[str, Any]:
    config = decisive_config(cfg)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"config_sha": digest, "data_key": data_key, "config": config}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for every decisive key that differs, and a line if the data changed."""
    changed = changes(old["config"], new["config"])
    if old.get("data_key") != new.get("data_key"):
        changed.append("the training data (its files, the tokenizer or the tokenization settings) changed")
    return changed


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints with a fingerprint (written last), newest first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True) if (p / FINGERPRINT_FILE).is_file()
            and (p / "trainer_state.json").is_file()]


def checkpoint_to_resume(output_dir: Path, current: dict[str, Any], mode: ResumeMode) -> Path | None:
    """The checkpoint this run continues from, or None to start at step 0; refuses a changed setup."""
    if mode == ResumeMode.off:
        return None
    checkpoints = complete_checkpoints(output_dir)
    if not checkpoints:
        return None
    latest = checkpoints[0]
    stored = json.loads((latest / FINGERPRINT_FILE).read_text())
    changed = differences(stored, current)
    if changed and mode == ResumeMode.auto:
        raise ConfigError([
            f"{latest} was saved with a different setup, so this run cannot continue from it:\n      "
            + "\n      ".join(changed)
            + "\n    Rerun with the original settings to continue; pass resume=force to continue anyway, "
            "resume=off to start again from step 0 in this dir, or train into a new run dir."
        ])
    if changed and is_main_process():
        from medtune.reporting.console import console

        console.print(f"[yellow]resume=force: continuing from {latest} although "
                      f"{len(changed)} thing(s) changed: {'; '.join(changed)}[/yellow]")
    return latest


class FingerprintWriter(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has written it (and not for a diverged one)."""

    def __init__(self, fingerprint: dict[str, Any], guard=None):
        self.fingerprint = fingerprint
        self.guard = guard

    def on_save(self, args, state, control, **kwargs):
        if not is_main_process() or (self.guard is not None and self.guard.diverged is not None):
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            write_json_atomic(checkpoint / FINGERPRINT_FILE, {**self.fingerprint, "step": state.global_step})
