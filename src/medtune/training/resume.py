"""Continue a training run from its last checkpoint, but only with the config and data it started with.

Every checkpoint (`<run dir>/checkpoints/checkpoint-<step>/`) gets a `medtune_fingerprint.json`,
written after the Trainer has saved the model, optimizer, scheduler, RNG states and trainer state
and before the folder is renamed into place (`training/checkpoints.py`). Rerunning the same command
in the same run dir (`hydra.run.dir=<dir>`, or a SLURM requeue) takes the newest checkpoint that
loads (a damaged one is skipped, with the reason), compares its stored fingerprint with the new one
and resumes (`resume=auto`), refuses with the list of what changed, or resumes anyway
(`resume=force`). `resume=off` ignores the checkpoints and starts from step 0.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medtune.config.schema import ResumeMode, TrainRunConfig
from medtune.distributed import is_main_process
from medtune.errors import ConfigError
from medtune.io import write_json_atomic
from medtune.nested import changes
from medtune.training.checkpoints import (  # noqa: F401  (CHECKPOINT, FINGERPRINT_FILE re-exported)
    CHECKPOINT,
    FINGERPRINT_FILE,
    checkpoint_dirs,
    checkpoint_problems,
    no_loadable_checkpoint,
)

CHECKPOINTS = "checkpoints"  # under the run dir: the Trainer's output_dir
# Keys that change how a run is watched or where it writes, not what it learns.
NOT_DECISIVE = {
    "task_name",
    "dry_run",
    "resume",
    "overwrite",
    "logger",
    "paths",
    "exam",
    "exam_eval",
    "train.logging_steps",
    "train.eval_steps",
    "train.save_steps",
    "train.save_total_limit",
    # how a step is computed, not what it computes (the loss is the same on every path): a run started
    # one way resumes the other, and checkpoints from before these keys existed keep their fingerprint
    "train.loss",
    "train.padding_free",
    "train.attention",
    "train.kernels",
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


def loadable_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that loads, or None if there is none; skipped ones are named with the reason.

    Checkpoints without a fingerprint (a save cut short before saves were atomic, or the state kept
    after a divergence) were never complete: when only those exist the run starts from step 0. When
    every complete one is damaged the run stops with `CheckpointError` rather than start again silently."""
    broken: list[tuple[Path, list[str]]] = []
    candidates = checkpoint_dirs(output_dir)
    for position, folder in enumerate(candidates, start=1):
        problems = checkpoint_problems(folder)
        if not problems:
            return folder
        if is_main_process():
            from rich.markup import escape

            from medtune.reporting.console import console

            then = "trying the checkpoint before it" if position < len(candidates) else "no checkpoint is left to try"
            console.print(
                f"[yellow]skipping {escape(str(folder))}: {escape('; '.join(problems))}; {then}[/yellow]",
                soft_wrap=True,
            )
        if (folder / FINGERPRINT_FILE).is_file():
            broken.append((folder, problems))
    if broken:
        raise no_loadable_checkpoint(Path(output_dir), broken)
    return None


def checkpoint_to_resume(output_dir: Path, current: dict[str, Any], mode: ResumeMode) -> Path | None:
    """The checkpoint this run continues from, or None to start at step 0; refuses a changed setup."""
    if mode == ResumeMode.off:
        return None
    latest = loadable_checkpoint(output_dir)
    if latest is None:
        return None
    stored = json.loads((latest / FINGERPRINT_FILE).read_text())
    changed = differences(stored, current)
    if changed and mode == ResumeMode.auto:
        raise ConfigError(
            [
                f"{latest} was saved with a different setup, so this run cannot continue from it:\n      "
                + "\n      ".join(changed)
                + "\n    Rerun with the original settings to continue; pass resume=force to continue anyway, "
                "resume=off to start again from step 0 in this dir, or train into a new run dir."
            ]
        )
    if changed and is_main_process():
        from medtune.reporting.console import console

        console.print(
            f"[yellow]resume=force: continuing from {latest} although "
            f"{len(changed)} thing(s) changed: {'; '.join(changed)}[/yellow]"
        )
    return latest


class FingerprintWriter:
    """Marks each checkpoint complete before it is renamed into place (and not one saved after a divergence)."""

    def __init__(self, fingerprint: dict[str, Any], guard=None):
        self.fingerprint = fingerprint
        self.guard = guard

    def write(self, checkpoint: Path, step: int) -> None:
        """`MedtuneTrainer.stamp_checkpoint`: called on the process that writes the checkpoint."""
        if self.guard is not None and self.guard.diverged is not None:
            return
        write_json_atomic(Path(checkpoint) / FINGERPRINT_FILE, {**self.fingerprint, "step": step})
