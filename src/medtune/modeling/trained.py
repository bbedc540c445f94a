"""Reload what a training run saved: its typed config, its base checkpoint, and its adapter."""

from __future__ import annotations

import json
import re
from pathlib import Path

from omegaconf import OmegaConf

from medtune.config.schema import AdapterKind, HardwareConfig, TrainRunConfig
from medtune.errors import ModelUnavailableError
from medtune.modeling.load import load_base_model, load_tokenizer

CONFIG_FILE = "config.yaml"
RUN_INFO_FILE = "run_info.json"


def save_run_config(cfg: TrainRunConfig, run_dir: Path) -> None:
    from medtune.io import write_text_atomic

    write_text_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def load_run_config(run_dir: Path) -> TrainRunConfig:
    """The run's typed config; its saved weights are checked to read back (`require_readable_weights`),
    so evaluate, export and chat name a damaged file before any model loads."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{run_dir} has no {CONFIG_FILE}: is it the run dir of a finished train.py run?")
    merged = OmegaConf.merge(OmegaConf.structured(TrainRunConfig), OmegaConf.load(path))
    cfg = OmegaConf.to_object(merged)
    require_readable_weights(Path(run_dir), cfg)
    return cfg


def require_readable_weights(run_dir: Path, cfg: TrainRunConfig) -> None:
    """Refuse a run whose saved adapter or model has a safetensors file that does not read back (a copy
    or a save cut short); a missing folder is left to the callers, which say what is missing."""
    from medtune.modeling.readable import safetensors_problem

    saved = run_dir / ("model" if cfg.adapter.kind == AdapterKind.full else "adapter")
    for path in sorted(saved.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise unreadable_weights(path, problem, run_dir)


def unreadable_weights(path: Path, problem: str, run_dir: Path) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"{path} cannot be read ({problem}): the file is cut short or damaged, e.g. by a copy or a save that "
        f"did not finish. Copy it again from where run={run_dir} was trained, or train the run again."
    )


def load_trained(run_dir: Path, hardware: HardwareConfig | None = None):
    """(model, tokenizer, config) of a finished run: the base as it was trained, plus the adapter.

    `hardware` places it for inference (evaluate.py's choice); default: the run's own hardware."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if hardware is not None:
        cfg.hardware = hardware
    info = json.loads((run_dir / RUN_INFO_FILE).read_text())
    if cfg.adapter.kind == AdapterKind.full:
        tokenizer = load_tokenizer(str(run_dir / "model"), cfg.model)
        model = load_base_model(str(run_dir / "model"), cfg.model, cfg.adapter, cfg.hardware)
        return model, tokenizer, cfg
    adapter_dir = run_dir / "adapter"
    tokenizer = load_tokenizer(str(adapter_dir), cfg.model)
    checkpoint = base_checkpoint(cfg, info)
    base = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware)
    return attach_adapter(base, adapter_dir, checkpoint, run_dir), tokenizer, cfg


def base_checkpoint(cfg: TrainRunConfig, info: dict) -> str:
    """The base the adapter was trained on: as recorded, or rebuilt from the run's model description
    when the recorded folder was a cache entry that is gone (a converted GGUF, the tiny model)."""
    recorded = info["checkpoint"]
    if not Path(recorded).is_absolute() or Path(recorded, "config.json").is_file():  # a hub id, or still there
        return recorded
    from medtune.modeling.description import resolve_checkpoint

    if cfg.model.source.value in ("embedded", "tiny") or cfg.model.gguf_file or (cfg.model.path or "").endswith(".gguf"):
        return resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
    return recorded


MISMATCH = re.compile(
    r"size mismatch for (?:base_model\.model\.)?(?P<param>\S+): copying a param with shape "
    r"(?:torch\.Size\()?(?P<saved>\[[^\]]*\])\)? from checkpoint, "
    r"the shape in current model is (?:torch\.Size\()?(?P<here>\[[^\]]*\])"
)


def attach_adapter(base, adapter_dir: Path, checkpoint: str, run_dir: Path):
    """The base with the run's LoRA adapter on it; an adapter trained on another base is refused with
    a message (PEFT would raise a page of size mismatches, or a list of missing target modules)."""
    from peft import PeftModel
    from safetensors import SafetensorError

    try:
        return PeftModel.from_pretrained(base, str(adapter_dir))
    except SafetensorError as error:  # changed since load_run_config checked it
        raise unreadable_weights(adapter_dir / "adapter_model.safetensors", str(error).splitlines()[0], run_dir) from error
    except (RuntimeError, ValueError, KeyError) as error:
        text = str(error)
        found = MISMATCH.search(text)
        if found:
            count = len(MISMATCH.findall(text))
            detail = (f"{found['param']} is {found['saved']} in the adapter but {found['here']} on this base"
                      f"{f', and {count - 1} more tensors differ' if count > 1 else ''}")
        elif "not found in the base model" in text or "Target modules" in text:
            detail = text.strip().splitlines()[0][:300]
        else:
            raise
        raise ModelUnavailableError(
            f"run={run_dir}: its adapter ({adapter_dir}) was trained on a different base than the checkpoint "
            f"now at {checkpoint} ({detail}). Put the base the run was trained on back at that path (run_info.json "
            "records where it was), or train a new adapter on this base."
        ) from error
