"""What a training run dir already holds, checked before train.py writes anything into it.

- A finished run (train_summary.json, run_info.json and its adapter/ or model/) made with other
  settings is refused (with `resume=off` too); `overwrite=true` deletes it (adapter or model, export,
  checkpoints, evaluations under eval/, summaries, config.yaml) and trains again from step 0, and
  `resume=force` trains it further from its last checkpoint with the new settings, as asked.
- An unfinished run whose newest checkpoint was saved with another config is refused here too
  (`resume=auto`), with the fixes `resume=force` / `resume=off` / overwrite=true / another dir, rather
  than after the data is tokenized. A change of the training data alone is only known then
  (`training.resume.checkpoint_to_resume`).
- The same settings go on as before: `resume=auto` continues from the last checkpoint.

"Same settings" is the resume fingerprint's config (`training.resume.decisive_config`): what the run
learns from, not where it logs or how fast each step runs. Keys a run settles itself are left out
of the comparison when this command leaves them to it (`train.micro_batch_size=auto` and the
gradient checkpointing it picks, `train.max_steps` under `train.epochs`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.config.schema import ResumeMode, TrainRunConfig
from medtune.finished import HeldResults, present, settle, written_at
from medtune.nested import changes
from medtune.run_dir import (
    ADAPTER_DIR,
    CONFIG_FILE,
    EXPORT_DIR,
    FAILURE_FILE,
    FULL_MODEL_DIR,
    RUN_INFO_FILE,
    SUMMARY_FILE,
    TrainRunDir,
)
from medtune.training.checkpoints import FINGERPRINT_FILE, checkpoint_dirs
from medtune.training.resume import CHECKPOINTS, decisive_config

# What overwrite=true deletes: everything the earlier run made (W&B's offline files stay, under wandb/).
RUN_RESULTS = (
    SUMMARY_FILE,
    RUN_INFO_FILE,
    ADAPTER_DIR,
    FULL_MODEL_DIR,
    EXPORT_DIR,
    CHECKPOINTS,
    "eval",
    "metrics.jsonl",
    FAILURE_FILE,
    CONFIG_FILE,
)
ELSEWHERE = "train into a new run dir (leave out hydra.run.dir, or hydra.run.dir=<another dir>)"


def check_existing(cfg: TrainRunConfig, run_dir: Path) -> TrainRunConfig:
    """Refuse (or with overwrite=true delete) what `run_dir` holds when it was made with other settings."""
    run = TrainRunDir(run_dir)
    if run.is_finished and cfg.resume != ResumeMode.force:
        settle(
            HeldResults(
                run.path, finished_description(run), finished_changes(run, cfg), present(run.path, RUN_RESULTS)
            ),
            cfg.overwrite,
            "hydra.run.dir",
            ELSEWHERE,
            "To train it further from its last checkpoint with these settings instead, add resume=force.",
        )
        return cfg
    if cfg.resume != ResumeMode.auto:
        return cfg  # resume=force continues anyway, resume=off starts from step 0: both were asked for
    newest = newest_stamped_checkpoint(run.path / CHECKPOINTS)
    if newest is None:
        return cfg
    folder, stored = newest
    changed = compared(stored.get("config", {}), decisive_config(cfg), cfg)
    holds = f"an unfinished training run ({folder.name}, saved {written_at(folder / FINGERPRINT_FILE)})"
    settle(
        HeldResults(run.path, holds, changed, present(run.path, RUN_RESULTS)),
        cfg.overwrite,
        "hydra.run.dir",
        ELSEWHERE,
        f"Or continue from {folder.name} anyway with resume=force, or start from step 0 in this dir with resume=off.",
    )
    return cfg


def finished_description(run: TrainRunDir) -> str:
    """'a finished training run of model=tiny with adapter=lora (12 steps; train_summary.json from <time>)'."""
    what = ""
    try:
        config = run.read_config()
        what = f" of model={config.model.name} with adapter={config.adapter.name}"
    except Exception:  # noqa: BLE001 - a config.yaml that does not read back: say less
        pass
    steps = ""
    try:
        summary = json.loads(run.summary_path.read_text(encoding="utf-8"))
        if isinstance(summary, dict) and isinstance(summary.get("train/steps"), int):
            steps = f"{summary['train/steps']} steps; "
    except (OSError, ValueError):
        pass
    return f"a finished training run{what} ({steps}{SUMMARY_FILE} from {written_at(run.summary_path)})"


def finished_changes(run: TrainRunDir, cfg: TrainRunConfig) -> list[str]:
    """How `cfg` differs from the config the finished run was trained with (its config.yaml)."""
    try:
        trained = run.read_config()
    except Exception as error:  # noqa: BLE001 - unreadable: the settings cannot be shown to be the same
        first = (str(error).strip().splitlines() or [""])[0][:160]
        return [f"the settings it was trained with: {CONFIG_FILE} does not read back ({type(error).__name__}: {first})"]
    return compared(decisive_config(trained), decisive_config(cfg), cfg)


def compared(before: dict[str, Any], after: dict[str, Any], cfg: TrainRunConfig) -> list[str]:
    """`changes` between two decisive configs, without the keys this command leaves to the run to settle."""
    settled_by_run = []
    if cfg.train.micro_batch_size == "auto":
        settled_by_run += [("train", "micro_batch_size"), ("hardware", "gradient_checkpointing")]
    if cfg.train.epochs is not None:
        settled_by_run.append(("train", "max_steps"))
    before, after = json.loads(json.dumps(before, default=str)), json.loads(json.dumps(after, default=str))
    for head, leaf in settled_by_run:
        for side in (before, after):
            if isinstance(side.get(head), dict):
                side[head].pop(leaf, None)
    return changes(before, after)


def newest_stamped_checkpoint(output_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint with a readable fingerprint (a complete save), and that fingerprint."""
    for folder in checkpoint_dirs(output_dir):
        try:
            stored = json.loads((folder / FINGERPRINT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(stored, dict):
            return folder, stored
    return None
