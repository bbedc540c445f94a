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
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{run_dir} has no {CONFIG_FILE}: is it the run dir of a finished train.py run?")
    merged = OmegaConf.merge(OmegaConf.structured(TrainRunConfig), OmegaConf.load(path))
    return OmegaConf.to_object(merged)


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

    try:
        return PeftModel.from_pretrained(base, str(adapter_dir))
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
