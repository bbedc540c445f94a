"""Typed schema of `evaluate.py`: the run-level keys around the exam and evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from medtune.config.contamination_schema import ContaminationConfig
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
from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode
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
class EvalRunConfig(ConfigNode):
    """The whole `evaluate.py` config."""

    task_name: str = help_field("evaluate", "Names the output folder: <paths.output_root>/<task_name>/runs/<time>.")
    seed: int = help_field(42, "Seeds sampled decoding.")
    optimized_metric: str = help_field("accuracy", "What the job returns to a Hydra sweeper: a key of metrics.json.")
    overwrite: bool = help_field(
        False, "true: replace an evaluation made with other settings in the output dir (deletes it)."
    )
    run: Optional[str] = help_field(
        None, "A train.py run dir: its base model and adapter are evaluated, in the prompt it was trained with."
    )
    predictions: Optional[str] = help_field(
        None, "Score an IgakuQA-style predictions file (or folder) instead of asking a model."
    )
    system_name: Optional[str] = help_field(None, "How a predictions file is named in reports, e.g. gpt4.")
    predictions_format: PredictionsFormat = help_field(
        PredictionsFormat.igakuqa,
        'How predictions are read: igakuqa (evaluate_main.py\'s rule: split on ",", compare verbatim) or lenient '
        '(trimmed, letters normalised: "a, B" reads as a,b).',
    )
    model: ModelConfig = help_field(
        help="The base model asked (model=<option>); run= names its own.", factory=ModelConfig
    )
    adapter: AdapterConfig = help_field(
        help="The adapter's settings (adapter=<option>; none = the untuned base).", factory=AdapterConfig
    )
    prompt: PromptConfig = help_field(
        help="The template questions are asked in (prompt=<option>).", factory=PromptConfig
    )
    hardware: HardwareConfig = help_field(help="The machine (hardware=<option>).", factory=HardwareConfig)
    logger: LoggerConfig = help_field(help="Experiment tracking (logger=<option>).", factory=LoggerConfig)
    exam: ExamConfig = help_field(help="The exam asked (exam=<option>).", factory=ExamConfig)
    eval: EvalConfig = help_field(help="How the exam is asked and read (eval=<option>).", factory=EvalConfig)
    contamination: ContaminationConfig = help_field(
        help="The training data audited against the exam (run=, .files).",
        factory=ContaminationConfig,
    )
    paths: PathsConfig = help_field(help="Where outputs, caches and the shared data are.", factory=PathsConfig)
