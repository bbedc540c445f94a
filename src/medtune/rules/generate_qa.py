"""generate_qa.py's rules: chunking and filter settings, and the generator (an endpoint with a URL,
or a local model this machine can hold)."""

from __future__ import annotations

from medtune.config.generator_schema import GeneratorKind
from medtune.config.qa_schema import GenerateQARunConfig, QAGenerationConfig
from medtune.rules.common import check_seed
from medtune.rules.model import (
    check_model,
    check_run_dir,
    device_problems,
    size_problems,
)


def uses_composed_model(cfg: GenerateQARunConfig) -> bool:
    """A local generator without qa.generator.run is the composed `model=`."""
    return cfg.qa.generator.kind == GeneratorKind.local and not cfg.qa.generator.run


def check_qa_settings(qa: QAGenerationConfig) -> list[str]:
    problems = []
    if qa.chunk_tokens <= 0:
        problems.append(f"qa.chunk_tokens={qa.chunk_tokens} must be positive, e.g. qa.chunk_tokens=384.")
    if not 0 <= qa.chunk_overlap_tokens < max(qa.chunk_tokens, 1):
        problems.append(
            f"qa.chunk_overlap_tokens={qa.chunk_overlap_tokens} must be at least 0 and below "
            f"qa.chunk_tokens={qa.chunk_tokens}, e.g. a tenth of it."
        )
    if qa.pairs_per_chunk < 1:
        problems.append(f"qa.pairs_per_chunk={qa.pairs_per_chunk} must be at least 1.")
    if qa.chars_per_token is not None and qa.chars_per_token <= 0:
        problems.append(
            f"qa.chars_per_token={qa.chars_per_token} must be positive, or null for the language's default."
        )
    if qa.max_chunks is not None and qa.max_chunks <= 0:
        problems.append(f"qa.max_chunks={qa.max_chunks} must be positive, or null for every chunk.")
    if not 0 < qa.dedupe_threshold <= 1:
        problems.append(f"qa.dedupe_threshold={qa.dedupe_threshold} must be in (0, 1]; 1.0 drops exact repeats only.")
    if qa.min_answer_chars < 0 or qa.min_question_chars < 0:
        problems.append("qa.min_answer_chars and qa.min_question_chars must be 0 or more.")
    if qa.generator.kind == GeneratorKind.endpoint and not qa.generator.url:
        problems.append(
            "qa.generator.kind=endpoint needs qa.generator.url, e.g. qa.generator.url=http://127.0.0.1:8000/v1."
        )
    return problems


def check_settings(cfg: GenerateQARunConfig) -> list[str]:
    return check_qa_settings(cfg.qa)


def check_generator(cfg: GenerateQARunConfig) -> list[str]:
    """The generator is reachable: a finished run, or the composed model on devices this machine has."""
    generator = cfg.qa.generator
    if generator.kind != GeneratorKind.local:
        return []
    if generator.run:
        return check_run_dir("qa.generator.run", generator.run)
    problems = check_model(cfg.model, dry_run=cfg.dry_run)
    if not cfg.dry_run:
        problems += device_problems(cfg.hardware)
    return problems + size_problems(cfg.model, cfg.hardware, cfg.paths.cache_dir)


RULES_WITHOUT_MACHINE = (check_seed, check_settings)
RULES = (check_seed, check_settings, check_generator)
