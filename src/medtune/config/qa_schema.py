"""Typed schema of `generate_qa.py`: documents -> chunks -> a generator's question/answer pairs -> JSONL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from medtune.config.generator_schema import GeneratorConfig
from medtune.config.schema import HardwareConfig, LoggerConfig, ModelConfig, PathsConfig


@dataclass
class QAGenerationConfig:
    documents: Optional[str] = (
        None  # a file or folder of .txt / .md / .jsonl / .json ("text" field); null = the bundled sample article
    )
    text_field: str = "text"  # .jsonl / .json documents: the field that holds each document's text
    chunk_tokens: int = 384  # document text per request, cut at paragraph / sentence ends
    chunk_overlap_tokens: int = (
        32  # text repeated from the end of one chunk at the start of the next (whole sentences when they fit)
    )
    chars_per_token: Optional[float] = (
        None  # endpoint generators (no tokenizer here): chunk budget = tokens x this; null = 1.2 for ja, 4.0 otherwise
    )
    pairs_per_chunk: int = 3  # asked of the generator; it may give fewer
    language: str = "ja"  # the language the pairs are asked in; picks the bundled template (ja or en)
    template: Optional[str] = (
        None  # null = the bundled JMedLoRA-style template; a file path or the text itself, with {document} and {n}
    )
    max_chunks: Optional[int] = None  # stop after this many chunks (a quick look at a new corpus)
    min_answer_chars: int = 2  # shorter answers (after trimming) are dropped as answer_too_short
    min_question_chars: int = 5  # shorter questions are dropped as question_too_short
    dedupe_threshold: float = (
        0.9  # questions at least this similar (0-1) to a kept one are dropped; 1.0 = exact repeats only
    )
    generator: GeneratorConfig = field(
        default_factory=GeneratorConfig
    )  # who writes the pairs: a local model or an endpoint


@dataclass
class GenerateQARunConfig:
    """The whole `generate_qa.py` config: the generator's model and machine, the QA settings, the run keys."""

    task_name: str = "generate_qa"
    seed: int = 42
    dry_run: bool = False  # chunk the documents and show the first prompt; ask nothing
    optimized_metric: str = "qa/records"  # what the job returns to a Hydra sweeper (a key of qa_summary.json)
    overwrite: bool = False  # true: replace QA pairs made with other settings in the run dir (deletes them)
    model: ModelConfig = field(default_factory=ModelConfig)  # a local generator without qa.generator.run
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    qa: QAGenerationConfig = field(default_factory=QAGenerationConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
