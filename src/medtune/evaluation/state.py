"""An evaluation's files and settings in its output dir: what it holds, whether this evaluation may
continue there, and the answers an interrupted one kept.

    predictions.partial.jsonl   every finished question, appended as it is answered
    eval_state.json             the decisive settings those answers were made with
    predictions.jsonl, metrics.json   written atomically at the end; then the partial file is removed

A directory holding an evaluation made with other settings is refused unless overwrite=true
(`held_results`, read by the task's `check_existing`); the same settings continue (`resume_rows`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medtune.config.eval_schema import EvalRunConfig
from medtune.errors import ConfigError, DataError
from medtune.finished import HeldResults, present, written_at
from medtune.jsonl_store import JsonlStore, SettingsFile, normalized, read_jsonl, settings_fingerprint
from medtune.nested import changes
from medtune.reporting.console import console

PARTIAL = "predictions.partial.jsonl"
FINAL = "predictions.jsonl"
STATE = "eval_state.json"
METRICS = "metrics.json"
RELIABILITY = "reliability.png"  # the reliability diagram (evaluation.calibration)
RESULT_FILES = (METRICS, FINAL, PARTIAL, STATE, RELIABILITY)  # what overwrite=true deletes


def held_results(cfg: EvalRunConfig, out: Path) -> HeldResults | None:
    """The evaluation `out` holds, with how `cfg`'s decisive settings differ from the recorded ones."""
    finished = (out / METRICS).is_file() and (out / FINAL).is_file()
    answered = len(read_jsonl(out / PARTIAL).rows)
    if not finished and not answered:
        return None
    try:
        record = SettingsFile(out / STATE).read() or {}
    except DataError:
        record = {}
    if "settings" in record:
        changed = changes(record["settings"], normalized(decisive_settings(cfg)))
    elif "fingerprint" in record:  # a state file of an earlier version
        changed = (
            []
            if record["fingerprint"] == fingerprint(cfg)
            else [f"fingerprint {record['fingerprint']!r} -> {fingerprint(cfg)!r}"]
        )
    else:
        changed = [f"the settings it was made with: not recorded ({STATE} is missing or unreadable)"]
    holds = (
        finished_description(out)
        if finished
        else f"an interrupted evaluation ({answered} question(s) answered in {PARTIAL})"
    )
    return HeldResults(out, holds, changed, present(out, RESULT_FILES))


def finished_description(out: Path) -> str:
    """'a finished evaluation of <system> on exam=<exam> (accuracy 0.25 of 8 questions; metrics.json from <time>)'."""
    try:
        metrics = json.loads((out / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    if not isinstance(metrics, dict):
        metrics = {}
    subject = f" of {metrics['system']}" if metrics.get("system") else ""
    exam = f" on exam={metrics['exam']}" if metrics.get("exam") else ""
    score = ""
    if isinstance(metrics.get("accuracy"), (int, float)):
        count = f" of {metrics['n']} questions" if isinstance(metrics.get("n"), int) else ""
        score = f"accuracy {metrics['accuracy']:.3f}{count}; "
    return f"a finished evaluation{subject}{exam} ({score}{METRICS} from {written_at(out / METRICS)})"


def kept_answers(out: Path) -> str:
    """What an evaluation stopped by a full or read-only disk leaves in `out`, for its message."""
    try:
        answered = len(read_jsonl(out / PARTIAL).rows)
    except (OSError, DataError):
        answered = 0
    said = (
        f"The {answered} question(s) answered before are kept in {out / PARTIAL}; the same command continues from them."
        if answered
        else "No answer had been saved yet."
    )
    if (out / METRICS).is_file():
        said += f" {METRICS} and {FINAL} there are as they were (they are written whole or not at all)."
    return said


# Settings that change how answers travel, not what they are: a resumed evaluation may differ in them.
TRANSPORT_KEYS = ("batch_size", "output_dir")
ENDPOINT_TRANSPORT_KEYS = ("concurrency", "timeout_s", "max_retries", "backoff_s", "api_key_env")


def decisive_settings(cfg: EvalRunConfig) -> dict[str, Any]:
    """What decides the answers: a resumed evaluation must have the same (recorded in eval_state.json)."""
    container = OmegaConf.to_container(OmegaConf.structured(cfg))
    decisive = {k: container[k] for k in ("run", "predictions", "model", "adapter", "prompt", "exam", "seed")}
    decisive["eval"] = {k: v for k, v in container["eval"].items() if k not in TRANSPORT_KEYS}
    endpoint = decisive["eval"].get("endpoint") or {}
    decisive["eval"]["endpoint"] = {k: v for k, v in endpoint.items() if k not in ENDPOINT_TRANSPORT_KEYS}
    return decisive


def fingerprint(cfg: EvalRunConfig) -> str:
    """The decisive settings' fingerprint, as eval_state.json records it."""
    return settings_fingerprint(decisive_settings(cfg))


def predictions_store(out: Path) -> JsonlStore:
    """predictions.partial.jsonl, appended to question by question, finished as predictions.jsonl."""
    return JsonlStore(
        out / PARTIAL,
        final=out / FINAL,
        settings_at=SettingsFile(out / STATE),
        fix="delete that line (the question is answered again), or delete the file to start over.",
    )


def resume_rows(out: Path, settings: dict[str, Any]) -> dict[str, dict]:
    """Rows already answered by an interrupted evaluation in `out` with the same decisive settings."""
    store = predictions_store(out)
    rows = {
        row["id"]: row
        for row in store.open(
            settings,
            what="an interrupted evaluation",
            fresh=f"evaluate into another directory (eval.output_dir=...) or delete {PARTIAL} and {STATE} there to "
            "start over.",
        )
    }
    if rows:
        console.print(f"resuming: {len(rows)} questions already answered in {store.path}")
    return rows


def check_state_unchanged(out: Path, key: str) -> None:
    """Before the final write: eval_state.json must still name this evaluation's settings. Another
    evaluation that wrote into `out` meanwhile (past the directory lock, e.g. from another machine)
    would otherwise leave predictions.jsonl mixing two settings under one metrics.json."""
    state_path = out / STATE
    found = json.loads(state_path.read_text()).get("fingerprint") if state_path.is_file() else None
    if found != key:
        now = f"fingerprint {found}" if found else "no state file"
        raise ConfigError(
            [
                f"{state_path} changed while this evaluation ran (it started with fingerprint {key}, the file now "
                f"has {now}): another evaluation with different settings wrote into {out}, so its answers may be "
                f"mixed with these and nothing was written. Evaluate into a directory of its own (eval.output_dir=...), "
                f"or delete {out / PARTIAL} and {state_path} and run again."
            ]
        )
