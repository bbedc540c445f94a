"""Typed schema of `judge.py`: two systems' answers scored side by side by a judge model.

Each system's answers come from a file (judged as is), or are generated with the Vietnamese
paper's decoding (temperature 0.5, top-k 20, repetition penalty 1.2, 256 new tokens) by a train.py
run (with the run's own prompt template), a local checkpoint, the composed `model=`, or an endpoint.
The judge is a `GeneratorConfig` too: a local model or an OpenAI-compatible endpoint by URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from medtune.config.field_help import help_field
from medtune.config.generator_schema import GeneratorConfig
from medtune.config.read_only import ConfigNode
from medtune.config.schema import HardwareConfig, LoggerConfig, ModelConfig, PathsConfig, PromptConfig


def paper_decoding() -> GeneratorConfig:
    """The Vietnamese paper's inference settings (its section IV-C)."""
    return GeneratorConfig(max_new_tokens=256, temperature=0.5, top_k=20, repetition_penalty=1.2)


@dataclass
class JudgeSystemConfig(ConfigNode):
    """One of the two systems. Set one source: answers, model_path, generator.run or generator.url
    (with generator.kind=endpoint); none of them means the composed `model=` with `prompt=`."""

    name: Optional[str] = help_field(
        None, "The system's column in the table; null = the answers file's, run's or model's name."
    )
    answers: Optional[str] = help_field(
        None, 'A JSONL of answers {"id", "answer"} (or Vicuna\'s {"question_id", "text"}), judged as is.'
    )
    model_path: Optional[str] = help_field(None, "A local checkpoint, untuned, asked in the composed prompt=.")
    generator: GeneratorConfig = help_field(
        help="How the system's answers are generated (the paper's decoding by default).", factory=paper_decoding
    )


@dataclass
class JudgeConfig(ConfigNode):
    questions: Optional[str] = help_field(
        None, 'A JSONL of {"id", "category", "question", "reference"?}; null = the bundled Vietnamese set.'
    )
    categories: List[str] = help_field(
        help="Categories to ask; [] = every category of the question file.", factory=list
    )
    max_questions: Optional[int] = help_field(
        None, "Ask only the first N questions (after the category filter); null = all."
    )
    a: JudgeSystemConfig = help_field(
        help="System a, the paper's left column (the untuned base).", factory=JudgeSystemConfig
    )
    b: JudgeSystemConfig = help_field(
        help="System b, the paper's right column (the tuned model).", factory=JudgeSystemConfig
    )
    judge: GeneratorConfig = help_field(
        help="Who scores: kind=endpoint with a url, or a local model.", factory=GeneratorConfig
    )
    swap: bool = help_field(
        True, "true: judge both orders and average, to cancel the judge's preference for a position."
    )
    with_reference: bool = help_field(
        False, "true: show the question's reference answer to the judge (not in the paper's prompt)."
    )
    min_score: float = help_field(
        1.0, "The rubric's lowest score (scale up to 10); scores outside [min_score, 10] count as unparsable."
    )
    output_dir: Optional[str] = help_field(
        None, "Where answers and judgments go; null = the run dir. An earlier judge run's dir continues it."
    )


@dataclass
class JudgeRunConfig(ConfigNode):
    """The whole `judge.py` config: the composed model and prompt (an untuned system a, or a local judge),
    the machine, the judging settings and the run keys."""

    task_name: str = help_field("judge", "Names the output folder: <paths.output_root>/<task_name>/runs/<time>.")
    seed: int = help_field(42, "Seeds the sampled answers generated in this process.")
    optimized_metric: str = help_field(
        "judge/b_total", "What the job returns to a Hydra sweeper: a key of metrics.json."
    )
    overwrite: bool = help_field(
        False, "true: replace judgments made with other settings in the output dir (deletes them)."
    )
    model: ModelConfig = help_field(
        help="The composed model: system a without another source, and a local judge (model=<option>).",
        factory=ModelConfig,
    )
    prompt: PromptConfig = help_field(
        help="The template untuned systems are asked in; a run uses its own (prompt=<option>).", factory=PromptConfig
    )
    hardware: HardwareConfig = help_field(help="The machine (hardware=<option>).", factory=HardwareConfig)
    logger: LoggerConfig = help_field(help="Experiment tracking (logger=<option>).", factory=LoggerConfig)
    judge: JudgeConfig = help_field(help="The questions, the two systems and the judge.", factory=JudgeConfig)
    paths: PathsConfig = help_field(help="Where outputs, caches and the shared data are.", factory=PathsConfig)
