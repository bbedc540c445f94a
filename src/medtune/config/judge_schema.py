"""Typed schema of `judge.py`: two systems' answers scored side by side by a judge model.

Each system's answers come from a file (judged as is), or are generated with the Vietnamese
paper's decoding (temperature 0.5, top-k 20, repetition penalty 1.2, 256 new tokens) by a train.py
run (with the run's own prompt template), a local checkpoint, the composed `model=`, or an endpoint.
The judge is a `GeneratorConfig` too: a local model or an OpenAI-compatible endpoint by URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from medtune.config.generator_schema import GeneratorConfig
from medtune.config.schema import HardwareConfig, LoggerConfig, ModelConfig, PathsConfig, PromptConfig


def paper_decoding() -> GeneratorConfig:
    """The Vietnamese paper's inference settings (its section IV-C)."""
    return GeneratorConfig(max_new_tokens=256, temperature=0.5, top_k=20, repetition_penalty=1.2)


@dataclass
class JudgeSystemConfig:
    """One of the two systems. Set one source: answers, model_path, generator.run or generator.url
    (with generator.kind=endpoint); none of them means the composed `model=` with `prompt=`."""

    name: Optional[str] = None  # its column in the table; null = the answers file's, run's or model's name
    answers: Optional[str] = None  # JSONL {"id", "answer"} (or Vicuna's {"question_id", "text"}); nothing generated
    model_path: Optional[str] = None  # a local checkpoint, untuned, prompted with the composed prompt=
    generator: GeneratorConfig = field(default_factory=paper_decoding)


@dataclass
class JudgeConfig:
    questions: Optional[str] = None  # JSONL {"id", "category", "question", "reference"?}; null = the bundled set
    categories: List[str] = field(default_factory=list)  # [] = every category of the question file
    max_questions: Optional[int] = None  # the first N questions (after the category filter)
    a: JudgeSystemConfig = field(default_factory=JudgeSystemConfig)  # the paper's left column: the untuned base
    b: JudgeSystemConfig = field(default_factory=JudgeSystemConfig)  # the paper's right column: the tuned model
    judge: GeneratorConfig = field(default_factory=GeneratorConfig)  # who scores: kind=endpoint + url, or a local model
    swap: bool = True  # judge both orders and average, to cancel the judge's preference for a position
    with_reference: bool = False  # show the question's reference answer to the judge (not in the paper's prompt)
    min_score: float = 1.0  # the rubric's 1-10 scale; scores outside [min_score, 10] count as unparsable
    output_dir: Optional[str] = None  # null = the run dir; an earlier judge run's dir continues it


@dataclass
class JudgeRunConfig:
    """The whole `judge.py` config: the composed model and prompt (an untuned system a, or a local judge),
    the machine, the judging settings and the run keys."""

    task_name: str = "judge"
    seed: int = 42
    optimized_metric: str = "judge/b_total"  # what the job returns to a Hydra sweeper (a key of metrics.json)
    overwrite: bool = False  # true: replace judgments made with other settings in the output dir (deletes them)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
