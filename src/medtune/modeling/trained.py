"""Reload what a training run saved: its typed config, its base checkpoint, and its adapter."""

from __future__ import annotations

import re
from pathlib import Path

from medtune.config.schema import AdapterKind, HardwareConfig, TrainRunConfig
from medtune.errors import ModelUnavailableError
from medtune.modeling.description import run_base_checkpoint as base_checkpoint  # noqa: F401 (re-exported)
from medtune.modeling.load import load_base_model, load_tokenizer
from medtune.modeling.readable import load_run_config, require_readable_weights, unreadable_weights  # noqa: F401
from medtune.run_dir import TrainRunDir


def save_run_config(cfg: TrainRunConfig, run_dir: Path) -> None:
    TrainRunDir(run_dir).write_config(cfg)


def load_trained(run_dir: Path, hardware: HardwareConfig | None = None):
    """(model, tokenizer, config) of a finished run: the base as it was trained, plus the adapter.

    `hardware` places it for inference (evaluate.py's choice); default: the run's own hardware."""
    run_dir = Path(run_dir)
    run = TrainRunDir(run_dir)
    cfg = load_run_config(run_dir)
    if hardware is not None:
        cfg.hardware = hardware
    info = run.read_run_info()
    if cfg.adapter.kind == AdapterKind.full:
        tokenizer = load_tokenizer(str(run.full_model_dir), cfg.model)
        model = load_base_model(str(run.full_model_dir), cfg.model, cfg.adapter, cfg.hardware)
        return model, tokenizer, cfg
    adapter_dir = run.adapter_dir
    tokenizer = load_tokenizer(str(adapter_dir), cfg.model)
    checkpoint = base_checkpoint(cfg, info)
    base = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware)
    return attach_adapter(base, adapter_dir, checkpoint, run_dir), tokenizer, cfg


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
        raise unreadable_weights(
            adapter_dir / "adapter_model.safetensors", str(error).splitlines()[0], run_dir
        ) from error
    except (RuntimeError, ValueError, KeyError) as error:
        text = str(error)
        found = MISMATCH.search(text)
        if found:
            count = len(MISMATCH.findall(text))
            detail = (
                f"{found['param']} is {found['saved']} in the adapter but {found['here']} on this base"
                f"{f', and {count - 1} more tensors differ' if count > 1 else ''}"
            )
        elif "not found in the base model" in text or "Target modules" in text:
            detail = text.strip().splitlines()[0][:300]
        else:
            raise
        raise ModelUnavailableError(
            f"run={run_dir}: its adapter ({adapter_dir}) was trained on a different base than the checkpoint "
            f"now at {checkpoint} ({detail}). Put the base the run was trained on back at that path (run_info.json "
            "records where it was), or train a new adapter on this base."
        ) from error
