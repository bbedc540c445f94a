"""Rules more than one job applies: the seed, prompt templates, step counts, learning rates and the
contamination audit's settings and files."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from medtune.config.contamination_schema import ContaminationConfig
from medtune.data.file_checks import data_file_problem
from medtune.errors import warn  # noqa: F401  (the rules' warnings: printed once, before any model loads)

MAX_SHOTS = 5  # worked examples bundled per language, less the one a question may itself be

# Step counts. The 70B paper trains 3000 steps (Table 4, global batch 16: 48,000 examples), and the
# published medical instruction-tuning runs we know stay below 10^5 steps. 10^7 steps is over 3,000
# times the paper even at the smallest batch (one example a step: ten million examples, about 10^10
# tokens at the default 512 + 512 token caps): a typo (`10**12`, an extra digit), never a plan; it
# would also run for weeks before its first scheduled thing happened. Above the soft bound the run
# is allowed, with a warning.
MAX_STEPS_HARD = 10**7
MAX_STEPS_SOFT = 10**5
PAPER_STEPS = 3000
SEED_BOUND = 2**32  # numpy's and torch's seeds are unsigned 32-bit: 0 .. 4294967295


def check_seed(cfg: Any) -> list[str]:
    """`seed` must be a valid numpy / torch seed."""
    if 0 <= cfg.seed < SEED_BOUND:
        return []
    return [
        f"seed={cfg.seed} is outside [0, {SEED_BOUND}) (0 to 2^32 - 1 = {SEED_BOUND - 1}, the seeds numpy and "
        f"torch accept): pick one in that range, e.g. seed=42."
    ]


def check_learning_rate(lr: float) -> list[str]:
    if not math.isfinite(lr):
        return [
            f"train.learning_rate={lr} is not a finite number, so the first step would make every weight "
            f"nan or inf: set a positive finite rate, e.g. train.learning_rate=2e-4."
        ]
    if lr <= 0:
        return [f"train.learning_rate={lr} must be positive, e.g. train.learning_rate=2e-4."]
    return []


def check_step_count(steps: int) -> list[str]:
    if steps <= 0:
        return [f"train.max_steps={steps} must be positive, e.g. train.max_steps=100."]
    if steps > MAX_STEPS_HARD:
        return [
            f"train.max_steps={steps} is more than {MAX_STEPS_HARD:,} steps, over {MAX_STEPS_HARD // PAPER_STEPS:,} "
            f"times the paper's {PAPER_STEPS} and past any published fine-tuning run: a typo? Set the steps you "
            f"mean, e.g. train.max_steps={PAPER_STEPS}, or train.epochs=3 to derive them from the data."
        ]
    if steps > MAX_STEPS_SOFT:
        warn(
            f"train.max_steps={steps:,} is over {MAX_STEPS_SOFT:,} steps ({steps / PAPER_STEPS:,.0f} times the "
            f"paper's {PAPER_STEPS}); the run goes on, but check that this is the number you meant."
        )
    return []


# What data.templates.fill_template fills; the choice counts come from the record's lettered choices.
FILLED_PLACEHOLDERS = ("instruction", "input", "choice_count", "choice_count_word")


def check_prompt(cfg: Any) -> list[str]:
    """The prompt's templates reach the model with {instruction} and {input} filled, nothing else."""
    problems = []
    templates = {"prompt.template": cfg.prompt.template, "prompt.template_no_input": cfg.prompt.template_no_input}
    for key, template in templates.items():
        if template is None:
            continue
        if "{instruction}" not in template:
            problems.append(
                f"prompt={cfg.prompt.name}: {key} has no {{instruction}} placeholder, so the question "
                "would never reach the model; add {instruction} (and {input} for choices or context)."
            )
        unknown = sorted(set(re.findall(r"\{([A-Za-z_]\w*)\}", template)) - set(FILLED_PLACEHOLDERS))
        if unknown:
            filled = ", ".join(f"{{{name}}}" for name in FILLED_PLACEHOLDERS)
            problems.append(
                f"prompt={cfg.prompt.name}: {key} has {{{unknown[0]}}}, a placeholder medtune never fills (it fills "
                f"{filled} only); rename it, or it reaches the model as literal text."
            )
    return problems


def check_contamination_settings(cfg: Any) -> list[str]:
    """Every contamination.* setting out of its range (`ContaminationConfig.problems`); none when it is off."""
    settings: ContaminationConfig = cfg.contamination
    return settings.problems() if settings.enabled else []


def check_contamination_files(cfg: Any) -> list[str]:
    """Each of contamination.files exists (a file of training text, or a folder of them)."""
    settings: ContaminationConfig = cfg.contamination
    if not settings.enabled:
        return []
    problems = []
    for path in settings.files:
        if not Path(path).exists():
            problems.append(
                f"contamination.files: {path} does not exist; give the paths of the training data to audit "
                "(.jsonl, .json, .txt, .md files or folders of them), e.g. contamination.files=[data/train.jsonl]."
            )
        elif not Path(path).is_dir():
            problem = data_file_problem(path, "contamination.files")
            if problem:
                problems.append(problem)
    return problems
