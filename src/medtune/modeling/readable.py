"""Does a saved weights or state file read back? A header or archive check that loads no tensor data.

A save cut short (a kill, a full disk, a copy that stopped half way) leaves a file that exists but
does not load, and the library that reads it later fails with a message that names no file
(`SafetensorError: incomplete metadata`, `OSError: [Errno 22] Invalid argument`). These checks
take milliseconds even for large files, so a caller can test every file first and name the bad one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from medtune.config.schema import AdapterKind, TrainRunConfig
from medtune.errors import ModelUnavailableError
from medtune.run_dir import TrainRunDir
from medtune.storage import human_bytes

TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def describe_failure(error: BaseException, path: Path) -> str:
    """`<size>; <error type>: <first line>` for a message (an empty message says the file ends early)."""
    size = path.stat().st_size if path.is_file() else 0
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{human_bytes(size)}; {type(error).__name__}: {text or 'the file ends early'}"


def safetensors_problem(path: Path) -> str | None:
    """None if the header parses and covers the whole file (what a truncated file fails), else why not."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as error:  # SafetensorError, OSError
        return describe_failure(error, path)
    return None


def torch_problem(path: Path) -> str | None:
    """None if `torch.load(weights_only=True)` reads it, as transformers does when it resumes.

    A zip-format file is memory-mapped, so the check reads the index and pickle, not the tensors."""
    import torch
    from transformers.trainer_pt_utils import safe_globals  # numpy's RNG state, allowed as transformers allows it

    try:
        with safe_globals():
            torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # OSError, RuntimeError (zip), EOFError, UnpicklingError
        return describe_failure(error, path)
    return None


def archive_problem(path: Path) -> str | None:
    """None if a torch zip archive is whole (its central directory, written last, is there).

    For files another library unpickles with its own objects (DeepSpeed's shards)."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except Exception as error:  # BadZipFile, OSError
        return describe_failure(error, path)
    return None


def json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except Exception as error:  # OSError, UnicodeDecodeError, JSONDecodeError
        return describe_failure(error, path)
    return None


def file_problem(path: Path) -> str | None:
    """Why the weights or state file at `path` would not load, or None; other kinds of file pass."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    if path.suffix in TORCH_SUFFIXES:
        return torch_problem(path)
    if path.suffix == ".json":
        return json_problem(path)
    return None


def load_run_config(run_dir: Path) -> TrainRunConfig:
    """The run's typed config; its saved weights are checked to read back (`require_readable_weights`),
    so evaluate, export and chat name a damaged file before any model loads."""
    cfg = TrainRunDir(run_dir).read_config()
    require_readable_weights(Path(run_dir), cfg)
    return cfg


def require_readable_weights(run_dir: Path, cfg: TrainRunConfig) -> None:
    """Refuse a run whose saved adapter or model has a safetensors file that does not read back (a copy
    or a save cut short); a missing folder is left to the callers, which say what is missing."""
    saved = TrainRunDir(run_dir).saved_dir(cfg.adapter.kind == AdapterKind.full)
    for path in sorted(saved.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise unreadable_weights(path, problem, run_dir)


def unreadable_weights(path: Path, problem: str, run_dir: Path) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"{path} cannot be read ({problem}): the file is cut short or damaged, e.g. by a copy or a save that "
        f"did not finish. Copy it again from where run={run_dir} was trained, or train the run again."
    )
