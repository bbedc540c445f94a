"""What a judge.py output dir already holds, checked before judge.py writes anything into it.

The same settings reuse what is there (answers and judgments of an interrupted or finished run).
Other settings are refused with `medtune.finished`'s message, or deleted first with overwrite=true:
- the judge itself (judge_state.json: its model, decoding, rubric, `judge.with_reference`),
- a system's saved answers (answers_<name>.jsonl rows carry the fingerprint of their model, prompt,
  decoding and seed; "file" for answers read from judge.<a|b>.answers),
- for a finished run (metrics.json), the two systems judged, and questions it judged that this
  command would leave out (more questions only add to the table).
"""

from __future__ import annotations

import json
from pathlib import Path

from medtune.config.judge_schema import JudgeRunConfig
from medtune.errors import DataError
from medtune.finished import HeldResults, present, settle, written_at
from medtune.jsonl_store import SettingsFile, normalized, read_jsonl
from medtune.judge import judging
from medtune.judge.answers import System, answers_path, generation_key, make_systems
from medtune.judge.questions import read_questions, select_questions
from medtune.nested import changes

METRICS = "metrics.json"
TABLES = ("judge_table.md", "judge_table.csv")


def check_existing(cfg: JudgeRunConfig, out: Path) -> JudgeRunConfig:
    """Refuse (or with overwrite=true delete) the judge results in `out` made with other settings."""
    settle(held_results(cfg, Path(out)), cfg.overwrite, "judge.output_dir")
    return cfg


def held_results(cfg: JudgeRunConfig, out: Path) -> HeldResults | None:
    a, b = make_systems(cfg)
    judged = rows(out / judging.FINAL) + rows(out / judging.PARTIAL)
    answered = {s.name: rows(answers_path(out, s)) + rows(partial_answers(out, s)) for s in (a, b)}
    finished = (out / METRICS).is_file() and (out / judging.FINAL).is_file()
    if not finished and not judged and not any(answered.values()):
        return None
    changed = judge_changes(cfg, out) if judged else []
    for system in (a, b):
        made = {str(row.get("key")) for row in answered[system.name]}
        wanted = "file" if system.source == "answers" else generation_key(system, cfg)
        if made - {wanted}:
            changed.append(f"the answers of {system.name!r}: their model, prompt, decoding or seed (or source)")
    if finished:
        changed += finished_changes(cfg, out, (a, b))
    files = [*TABLES, METRICS, judging.FINAL, judging.PARTIAL, judging.STATE]
    for system in (a, b):
        files += [answers_path(out, system).name, partial_answers(out, system).name]
    return HeldResults(out, description(out, finished, len(judged)), changed, present(out, files))


def rows(path: Path) -> list[dict]:
    return read_jsonl(path).rows


def partial_answers(out: Path, system: System) -> Path:
    return answers_path(out, system).with_suffix(".partial.jsonl")


def judge_changes(cfg: JudgeRunConfig, out: Path) -> list[str]:
    try:
        record = SettingsFile(out / judging.STATE, field="judge").read() or {}
    except DataError:
        record = {}
    if "judge" not in record:
        return [f"the judge's settings: not recorded ({judging.STATE} is missing or unreadable)"]
    identity = [cfg.model.name, cfg.model.path, cfg.model.hub_id]
    current = normalized(judging.judge_settings(cfg.judge, identity))
    return changes(record["judge"], current)


def finished_changes(cfg: JudgeRunConfig, out: Path, systems: tuple[System, System]) -> list[str]:
    """The systems and the questions of the finished table against this command's."""
    found = []
    metrics = read_metrics(out)
    names = metrics.get("systems") if isinstance(metrics.get("systems"), dict) else {}
    for system in systems:
        before = names.get(system.role)
        if before is not None and before != system.name:
            found.append(f"judge.{system.role} (the system judged): {before!r} -> {system.name!r}")
    try:
        wanted = select_questions(read_questions(cfg.judge.questions), cfg.judge.categories, cfg.judge.max_questions)
    except Exception:  # noqa: BLE001 - a questions problem is reported by the run itself, with its own message
        return found
    dropped = sorted({str(row.get("id")) for row in rows(out / judging.FINAL)} - {q.qid for q in wanted})
    if dropped:  # more questions only add to the table; fewer or others would lose judgments
        shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        found.append(
            f"the questions (judge.questions / judge.categories / judge.max_questions): {len(dropped)} judged "
            f"question(s) would be left out ({shown})"
        )
    return found


def read_metrics(out: Path) -> dict:
    try:
        metrics = json.loads((out / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def description(out: Path, finished: bool, judged: int) -> str:
    if not finished:
        return f"an interrupted judge run ({judged} judgment(s), and the answers saved so far)"
    metrics = read_metrics(out)
    names = metrics.get("systems") if isinstance(metrics.get("systems"), dict) else {}
    pair = f" of {names.get('a')} vs {names.get('b')}" if names else ""
    by = f" judged by {metrics['judge']}" if metrics.get("judge") else ""
    return f"a finished judge run{pair}{by} ({METRICS} from {written_at(out / METRICS)})"
