"""Checkpoints on disk: written whole or not at all, checked before a resume, and a full disk named.

`MedtuneTrainer` writes each checkpoint into `<checkpoints>/.tmp-checkpoint-<step>/checkpoint-<step>/`;
once every file is written and synced it is renamed to `<checkpoints>/checkpoint-<step>`. A kill, a
crash or a full disk during the save leaves the earlier checkpoints as they were and at most a
`.tmp-*` folder, which resume never picks and the next run removes (`remove_leftovers`).

Before a run continues from a checkpoint, `checkpoint_problems` checks that every file the Trainer
will read is there and reads back (safetensors headers, `torch.load(weights_only=True)` of the
optimizer, scheduler and RNG states), so a damaged one is skipped with a reason instead of failing
deep inside transformers with a message that names no file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

from medtune.errors import MedtuneError
from medtune.modeling.readable import archive_problem, file_problem
from medtune.storage import errors_in_chain, human_bytes

FINGERPRINT_FILE = "medtune_fingerprint.json"  # medtune's own file, written into a checkpoint last
TRAINER_STATE = "trainer_state.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STAGING_PREFIX = ".tmp-"
WEIGHTS = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
NOT_READ_ON_RESUME = {"training_args.bin"}  # a pickle of the arguments; transformers never loads it back
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
NO_SPACE_TEXT = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")


class CheckpointError(MedtuneError):
    """A checkpoint that cannot be written, or none that can be read back to continue from."""


class DiskFullError(CheckpointError):
    """A checkpoint save ran out of disk space; the earlier checkpoints are intact."""


# --- names and layout ---------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"


def step_of(folder: Path) -> int:
    found = CHECKPOINT.match(Path(folder).name)
    if not found:
        raise ValueError(f"{folder} is not named checkpoint-<step>")
    return int(found.group(1))


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Every `checkpoint-<step>` folder in `output_dir`, newest (highest step) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if CHECKPOINT.match(p.name) and p.is_dir()]
    return sorted(found, key=step_of, reverse=True)


def staging_root(output_dir: Path, step: int) -> Path:
    """The temporary folder a checkpoint is written into before it is renamed into place."""
    return Path(output_dir) / f"{STAGING_PREFIX}{checkpoint_name(step)}"


def remove_leftovers(output_dir: Path) -> list[Path]:
    """Delete the `.tmp-*` folders a save cut short left behind; returns what was removed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    leftovers = [p for p in output_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return leftovers


# --- writing one whole --------------------------------------------------------------------------


def sync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then the folders: the data is on disk before the rename.

    On network filesystems a full disk can first show up here, not in the write itself."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(Path(root))


def sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:  # some filesystems cannot fsync a directory; the rename is still atomic
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def publish(staged: Path, final: Path) -> None:
    """Rename the finished folder `staged` to `final`; a folder already there (from an earlier attempt
    at this step) is moved aside first and deleted once the new one is in place."""
    replaced = final.parent / f"{STAGING_PREFIX}replaced-{final.name}"
    if final.exists():
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(staged, final)
    sync_dir(final.parent)
    shutil.rmtree(replaced, ignore_errors=True)


# --- reading back -------------------------------------------------------------------------------


def checkpoint_problems(folder: Path) -> list[str]:
    """What stops the Trainer from continuing from `folder`: missing files, or files that do not read back.

    An empty list means it loads. Files are checked the way transformers reads them on resume."""
    folder = Path(folder)
    problems: list[str] = []
    if not (folder / FINGERPRINT_FILE).is_file():
        problems.append(
            f"{FINGERPRINT_FILE} is missing (medtune writes it last: the save was cut short, "
            "or the checkpoint was kept for inspection after the loss diverged)"
        )
    if not (folder / TRAINER_STATE).is_file():
        problems.append(f"{TRAINER_STATE} is missing")
    deepspeed = sorted(p for p in folder.glob("global_step*") if p.is_dir())
    if not deepspeed and not any((folder / name).is_file() for name in WEIGHTS):
        problems.append("it holds no model or adapter weights (adapter_model.safetensors or model.safetensors)")
    if deepspeed:
        problems += deepspeed_problems(folder, deepspeed)
    else:
        problems += [f"{name} is missing" for name in ("optimizer.pt", "scheduler.pt") if not (folder / name).is_file()]
    if not any(folder.glob("rng_state*.pth")):
        problems.append("rng_state.pth is missing")
    problems += shard_problems(folder)
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name not in NOT_READ_ON_RESUME:
            problem = file_problem(path)
            if problem:
                problems.append(f"{path.name} does not load ({problem})")
    return problems


def shard_problems(folder: Path) -> list[str]:
    """The shards a `*.index.json` names but that are not there (their contents are checked with the rest)."""
    problems = []
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except Exception:  # reported as an unreadable file by checkpoint_problems
            continue
        problems += [
            f"{shard} (listed in {index.name}) is missing" for shard in sorted(shards) if not (folder / shard).is_file()
        ]
    return problems


def deepspeed_problems(folder: Path, step_dirs: list[Path]) -> list[str]:
    """DeepSpeed's layout: a `latest` file naming its `global_step*` folder of whole model and optimizer shards."""
    problems = []
    if not (folder / "latest").is_file():
        problems.append("DeepSpeed's `latest` file is missing")
    for step_dir in step_dirs:
        shards = sorted(step_dir.glob("*.pt"))
        if not any("optim_states" in p.name for p in shards):
            problems.append(f"{step_dir.name}/ holds no optimizer states")
        for shard in shards:  # DeepSpeed unpickles its own objects: check the archive, not weights_only
            problem = archive_problem(shard)
            if problem:
                problems.append(f"{step_dir.name}/{shard.name} does not load ({problem})")
    return problems


def no_loadable_checkpoint(output_dir: Path, broken: list[tuple[Path, list[str]]]) -> CheckpointError:
    listing = "\n".join(f"  {folder.name}: {'; '.join(problems)}" for folder, problems in broken)
    names = " ".join(str(folder) for folder, _ in broken)
    which = "its only checkpoint" if len(broken) == 1 else f"none of its {len(broken)} checkpoints"
    them = "it" if len(broken) == 1 else "them"
    return CheckpointError(
        f"{output_dir}: {which} can be loaded, so this run cannot continue:\n{listing}\n"
        f"Fix: delete {them} (rm -r {names}) to start again from step 0 in this run dir, "
        "or train into a new run dir (another hydra.run.dir)."
    )


# --- a full disk --------------------------------------------------------------------------------


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def is_disk_full(error: BaseException, free: int, needed: int) -> bool:
    """An ENOSPC / EDQUOT OSError, a library error that says so (safetensors: `os error 28`), or a
    failed write (torch.save says only `unexpected pos`) while the disk has less room than the save needs."""
    for item in errors_in_chain(error):
        if isinstance(item, OSError) and item.errno in NO_SPACE_ERRNOS:
            return True
        if any(text in str(item).lower() for text in NO_SPACE_TEXT):
            return True
    return isinstance(error, (OSError, RuntimeError)) and free < needed


def space_needed(output_dir: Path, step: int, model, optimizer) -> tuple[int, str]:
    """(bytes, how they were estimated): the size of the newest earlier checkpoint, or failing that the
    weights a checkpoint holds (trainable ones for an adapter) plus the optimizer's state."""
    earlier = [p for p in checkpoint_dirs(output_dir) if step_of(p) < step]
    if earlier:
        return folder_bytes(earlier[0]), f"the size of {earlier[0].name}"
    import torch

    adapter = hasattr(model, "peft_config")
    weights = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad or not adapter)
    state = 0
    for per_param in getattr(optimizer, "state", {}).values():
        if isinstance(per_param, dict):
            state += sum(t.numel() * t.element_size() for t in per_param.values() if isinstance(t, torch.Tensor))
    return weights + state, "the saved weights plus the optimizer state"


def disk_full_message(
    output_dir: Path, step: int, needed: tuple[int, str], free: int, save_total_limit: int | None, error: BaseException
) -> str:
    output_dir = Path(output_dir)
    earlier = [p for p in checkpoint_dirs(output_dir) if step_of(p) < step]
    if earlier:
        intact = f"{earlier[0].name} is intact"
        then = f"then run the same command in the same run dir to continue from {earlier[0].name}"
    else:
        intact = "there is no earlier checkpoint"
        then = "then run the same command again (it starts from step 0)"
    keep = (
        f"lower train.save_total_limit (now {save_total_limit}) to keep fewer checkpoints, "
        if save_total_limit
        else "set train.save_total_limit to keep fewer checkpoints, "
    )
    cause = (str(error).strip().splitlines() or [""])[0][:200]
    return (
        f"{checkpoint_name(step)} could not be saved in {output_dir}: the disk is full "
        f"({type(error).__name__}: {cause}). The save needs about {human_bytes(needed[0])} ({needed[1]}); "
        f"{human_bytes(free)} is free there now. The partial save was removed and {intact}. "
        f"Fix: free space on that disk, {keep}or move the run dir to a disk with room and pass "
        f"hydra.run.dir=<its new path>; {then}."
    )
