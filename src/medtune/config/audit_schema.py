"""Typed schema of `contamination.py`: an exam's questions audited against training data, no model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from medtune.config.contamination_schema import ContaminationConfig
from medtune.config.exam_schema import ExamConfig
from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode
from medtune.config.schema import LoggerConfig, PathsConfig


@dataclass
class ContaminationRunConfig(ConfigNode):
    """The whole `contamination.py` config."""

    task_name: str = help_field(
        "contamination", "Names the output folder: <paths.output_root>/<task_name>/runs/<time>."
    )
    run: Optional[str] = help_field(
        None, "A train.py run dir: the files it trained on (read from its config.yaml) are audited."
    )
    show: int = help_field(10, "Flagged questions printed with their closest training record (0: none).")
    exam: ExamConfig = help_field(help="The exam audited (exam=<option>).", factory=ExamConfig)
    contamination: ContaminationConfig = help_field(
        help="The training data audited against the exam (run=, .files).",
        factory=ContaminationConfig,
    )
    logger: LoggerConfig = help_field(help="Experiment tracking (logger=<option>).", factory=LoggerConfig)
    paths: PathsConfig = help_field(help="Where outputs, caches and the shared data are.", factory=PathsConfig)
