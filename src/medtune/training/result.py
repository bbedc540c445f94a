"""What a training run returns (light: train.py's task module imports it before any library loads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    summary: dict[str, Any]
    model: Any  # the trained model, still in memory (a PeftModel for LoRA)
    tokenizer: Any
    run_dir: Path
