"""Reload what a training run saved: its typed config, its base checkpoint, and its adapter."""

from __future__ import annotations

import json
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
    from peft import PeftModel

    adapter_dir = run_dir / "adapter"
    tokenizer = load_tokenizer(str(adapter_dir), cfg.model)
    base = load_base_model(info["checkpoint"], cfg.model, cfg.adapter, cfg.hardware)
    return PeftModel.from_pretrained(base, str(adapter_dir)), tokenizer, cfg
