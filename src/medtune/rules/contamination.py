"""contamination.py's rules: something to audit (a run's training data or files), the exam, and the
contamination.* settings and files every job that audits checks (`medtune.rules.common`)."""

from __future__ import annotations

from typing import Any

from medtune.rules.common import check_contamination_files, check_contamination_settings
from medtune.rules.evaluate import check_exam
from medtune.run_dir import CONFIG_FILE, RUNS_HINT, TrainRunDir


def check_audit_sources(cfg: Any) -> list[str]:
    """contamination.py: a train.py run dir (run=) or training files (contamination.files) to audit."""
    problems = []
    if not cfg.contamination.enabled:
        problems.append("contamination.enabled=false: contamination.py has nothing to do; drop it.")
    if cfg.run and not TrainRunDir(cfg.run).has_config:
        problems.append(
            f"run={cfg.run} has no {CONFIG_FILE}, so it is not a train.py run dir: its training data cannot be "
            f"read. Point run= at {RUNS_HINT}, or give the files with contamination.files=[...]."
        )
    if not cfg.run and not cfg.contamination.files:
        problems.append(
            "nothing to audit: give the training data with contamination.files=[data/train.jsonl, ...] "
            f"and/or a train.py run with run={RUNS_HINT} (its own training files are read)."
        )
    return problems


def check_show(cfg: Any) -> list[str]:
    return [] if cfg.show >= 0 else [f"show={cfg.show}: the flagged questions to print, 0 or more."]


RULES = (check_audit_sources, check_contamination_settings, check_contamination_files, check_exam, check_show)
