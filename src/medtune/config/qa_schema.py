"""Typed schema of `generate_qa.py`: documents -> chunks -> a generator's question/answer pairs -> JSONL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from medtune.config.field_help import help_field
from medtune.config.generator_schema import GeneratorConfig
from medtune.config.read_only import ConfigNode
from medtune.config.schema import HardwareConfig, LoggerConfig, ModelConfig, PathsConfig


@dataclass
class QAGenerationConfig(ConfigNode):
    documents: Optional[str] = help_field(
        None,
        'A file or folder of .txt / .md / .jsonl / .json documents ("text" field); null = the bundled sample article.',
    )
    text_field: str = help_field("text", ".jsonl / .json documents: the field that holds each document's text.")
    chunk_tokens: int = help_field(384, "Document text per request, in tokens, cut at paragraph / sentence ends.")
    chunk_overlap_tokens: int = help_field(
        32, "Tokens repeated from the end of one chunk at the start of the next (whole sentences when they fit)."
    )
    chars_per_token: Optional[float] = help_field(
        None,
        "Endpoint generators (no tokenizer here): chunk budget = tokens x this many characters; "
        "null = 1.2 for ja, 4.0 otherwise.",
    )
    pairs_per_chunk: int = help_field(3, "Pairs asked of the generator per chunk; it may give fewer.")
    language: str = help_field("ja", "The language the pairs are asked in; picks the bundled template (ja or en).")
    template: Optional[str] = help_field(
        None,
        "The request: a file path or the text itself, with {document} and {n}; null = the bundled JMedLoRA-style one.",
    )
    max_chunks: Optional[int] = help_field(
        None, "Stop after this many chunks (a quick look at a new corpus); null = all."
    )
    min_answer_chars: int = help_field(2, "Shorter answers (after trimming) are dropped as answer_too_short.")
    min_question_chars: int = help_field(5, "Shorter questions are dropped as question_too_short.")
    dedupe_threshold: float = help_field(
        0.9, "Questions at least this similar (0-1) to a kept one are dropped; 1.0 = exact repeats only."
    )
    generator: GeneratorConfig = help_field(
        help="Who writes the pairs: a local model or an endpoint.", factory=GeneratorConfig
    )


@dataclass
class GenerateQARunConfig(ConfigNode):
    """The whole `generate_qa.py` config: the generator's model and machine, the QA settings, the run keys."""

    task_name: str = help_field("generate_qa", "Names the output folder: <paths.output_root>/<task_name>/runs/<time>.")
    seed: int = help_field(
        42, "The run's seed, 0 to 2^32 - 1: a local generator samples from it (qa.generator.temperature > 0)."
    )
    dry_run: bool = help_field(False, "true: chunk the documents and show the first prompt; ask nothing.")
    optimized_metric: str = help_field(
        "qa/records", "What the job returns to a Hydra sweeper: a key of qa_summary.json."
    )
    overwrite: bool = help_field(
        False, "true: replace QA pairs made with other settings in the run dir (deletes them)."
    )
    model: ModelConfig = help_field(
        help="The local generator's model without qa.generator.run (model=<option>).", factory=ModelConfig
    )
    hardware: HardwareConfig = help_field(help="The machine (hardware=<option>).", factory=HardwareConfig)
    logger: LoggerConfig = help_field(help="Experiment tracking (logger=<option>).", factory=LoggerConfig)
    qa: QAGenerationConfig = help_field(
        help="Documents, chunks, the generator and the filters.", factory=QAGenerationConfig
    )
    paths: PathsConfig = help_field(help="Where outputs, caches and the shared data are.", factory=PathsConfig)
