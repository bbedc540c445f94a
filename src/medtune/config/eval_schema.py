"""Typed schema of `evaluate.py`: the run-level keys around the exam and evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from medtune.config.exam_schema import (  # noqa: F401  (re-exported for evaluate.py's modules)
    EndpointApi,
    EndpointConfig,
    EvalBackend,
    EvalConfig,
    EvalMode,
    ExamConfig,
    ExamFieldsConfig,
    ExamFormat,
    LoglikTarget,
    Similarity,
)
from medtune.config.schema import (
    AdapterConfig,
    HardwareConfig,
    LoggerConfig,
    ModelConfig,
    PathsConfig,
    PromptConfig,
)


class PredictionsFormat(str, Enum):
    igakuqa = "igakuqa"  # IgakuQA's evaluate_main.py rule: split on ",", compare verbatim
    lenient = "lenient"  # trim and normalise letters ("a, B" reads as a,b)


@dataclass
class EvalRunConfig:
    """The whole `evaluate.py` config."""

    task_name: str = "evaluate"
    seed: int = 42
    optimized_metric: str = "accuracy"  # what the job returns to a Hydra sweeper (a key of metrics.json)
    overwrite: bool = False  # true: replace an evaluation made with other settings in the output dir (deletes it)
    run: Optional[str] = None  # a train.py run dir: its base model and adapter are evaluated
    predictions: Optional[str] = None  # score an IgakuQA-style predictions file (or folder); no model
    system_name: Optional[str] = None  # how a predictions file is named in reports, e.g. gpt4
    predictions_format: PredictionsFormat = PredictionsFormat.igakuqa
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    exam: ExamConfig = field(default_factory=ExamConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
