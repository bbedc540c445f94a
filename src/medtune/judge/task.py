"""The judge task (`judge.py`): answers -> pairwise judgments -> the paper's category table.

Writes to the run dir (or judge.output_dir): answers_<system>.jsonl, judgments.jsonl (one row per question
and order: both answers, the judge's raw text, the scores read or why none could be), judge_table.md
and .csv, and metrics.json; logs the table's numbers as W&B summary values and both tables as W&B
tables, and prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtune.config.generator_schema import GeneratorKind
from medtune.config.job import JobContext, Workspace
from medtune.config.judge_schema import JudgeRunConfig
from medtune.io import write_json_atomic, write_text_atomic
from medtune.judge import judging
from medtune.judge.aggregate import category_table
from medtune.judge.answers import System, collect_answers, make_systems
from medtune.judge.questions import category_order, read_questions, select_questions
from medtune.judge.report import csv_text, markdown, print_table, table_rows
from medtune.quiet import quiet_third_party
from medtune.run_dir import TrainRunDir

JUDGMENT_COLUMNS = [
    "id",
    "category",
    "order",
    "assistant_1",
    "assistant_2",
    "score_a",
    "score_b",
    "status",
    "reason",
    "raw",
    "answer_1",
    "answer_2",
]


def judge_name(cfg: JudgeRunConfig) -> str:
    g = cfg.judge.judge
    if g.kind == GeneratorKind.endpoint:
        return f"{g.endpoint_model}@{g.url}"
    return Path(g.run).name if g.run else cfg.model.name


def output_dir(cfg: JudgeRunConfig, job: JobContext) -> Path:
    return Path(cfg.judge.output_dir) if cfg.judge.output_dir else job.run_dir


def wandb_group(system: System) -> str | None:
    """A tuned system's training group, so the judgment sits beside its training run in W&B."""
    if system.source != "run":
        return None
    return TrainRunDir(system.cfg.generator.run).wandb_group()


def workspace(cfg: JudgeRunConfig, job: JobContext) -> tuple[JudgeRunConfig, Workspace]:
    """A judge run holds its output dir and one W&B run, in system b's training group when b is a run."""
    a, b = make_systems(cfg)
    return cfg, Workspace(
        output_dir(cfg, job), setting="judge.output_dir", activity="judge", job_type="judge", group=wandb_group(b)
    )


def check_existing(cfg: JudgeRunConfig, job: JobContext, directory: Path) -> JudgeRunConfig:
    """Before judge.py writes into its output dir: results there made with other settings are refused,
    or deleted with overwrite=true (`medtune.judge.existing`)."""
    from medtune.judge.existing import check_existing as check

    return check(cfg, Path(directory))


def run(cfg: JudgeRunConfig, job: JobContext, tracker) -> dict[str, Any]:
    """Collect both systems' answers, judge them and write the table into the held output dir."""
    quiet_third_party(cpu_only=cfg.hardware.accelerator.value == "cpu")
    out = output_dir(cfg, job)
    out.mkdir(parents=True, exist_ok=True)
    questions = select_questions(read_questions(cfg.judge.questions), cfg.judge.categories, cfg.judge.max_questions)
    a, b = make_systems(cfg)
    answers_a = collect_answers(a, questions, cfg, out)
    answers_b = collect_answers(b, questions, cfg, out)
    pairs = judging.pairings(questions, a, b, answers_a, answers_b, cfg.judge.swap)
    identity = [cfg.model.name, cfg.model.path, cfg.model.hub_id]
    rows = judging.run_judgments(
        lambda: load_judge(cfg), judge_name(cfg), pairs, cfg.judge, out, judging.judge_settings(cfg.judge, identity)
    )
    judging.check_readable(rows, out)  # not one judgment readable: no table, and the run fails
    result = finish(cfg, (a, b), questions, rows, out, tracker)
    judging.warn_unreadable(rows, out)
    return result


def metrics(result: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's numbers, with each system's total score as judge/a_total and judge/b_total."""
    return {**result, "judge/a_total": result["total"]["a"], "judge/b_total": result["total"]["b"]}


def load_judge(cfg: JudgeRunConfig):
    from medtune.llm.access import make_generator
    from medtune.reporting.console import console

    with console.status("Loading the judge"):
        # The composed model reads the rubric as is (or through its chat template); a run, in its own template.
        return make_generator(
            cfg.judge.judge, cfg.model, cfg.hardware, cfg.paths.cache_dir, prompt=None, key="judge.judge"
        )


def finish(
    cfg: JudgeRunConfig, systems: tuple[System, System], questions, rows: list[dict], out: Path, tracker
) -> dict[str, Any]:
    a, b = systems
    table = category_table(rows, category_order(questions))
    table["names"] = {"a": a.name, "b": b.name}
    title = f"{a.name} vs {b.name}, judged by {judge_name(cfg)}"
    total = table["total"]
    metrics = {
        "mode": "judge",
        "judge": judge_name(cfg),
        "systems": {"a": a.name, "b": b.name},
        "sources": {"a": a.source, "b": b.source},
        "questions": len(questions),
        "swap": cfg.judge.swap,
        "categories": [row.as_dict() for row in table["categories"]],
        "total": total.as_dict(),
        "judgments": table["judgments"],
        "unparsable_judgments": table["unparsable_judgments"],
        "unparsable_questions": total.unparsable,
        "order_disagreements": total.order_disagreements,
        "position_bias": table["position_bias"],
        "objective": total.b,
    }
    judging.judgment_store(out).finish(rows)
    write_text_atomic(out / "judge_table.md", markdown(table, cfg.judge.swap, title))
    write_text_atomic(out / "judge_table.csv", csv_text(table, cfg.judge.swap))
    write_json_atomic(out / "metrics.json", metrics)
    summary = {
        "judge/system_a": a.name,
        "judge/system_b": b.name,
        "judge/judge": judge_name(cfg),
        "judge/judgments": table["judgments"],
        "judge/unparsable_judgments": table["unparsable_judgments"],
        "judge/position_bias": table["position_bias"],
    }
    for row in [*table["categories"], total]:
        key = f"judge/{row.category}"
        summary.update(
            {
                f"{key}/a": row.a,
                f"{key}/b": row.b,
                f"{key}/samples": row.samples,
                f"{key}/unparsable": row.unparsable,
                f"{key}/order_disagreements": row.order_disagreements,
            }
        )
    tracker.summarize({k: v for k, v in summary.items() if v is not None})
    header, body, total_row = table_rows(table, cfg.judge.swap)
    tracker.log_table("judge/table", header, [*body, total_row])
    tracker.log_table("judge/judgments", JUDGMENT_COLUMNS, [[row.get(c) for c in JUDGMENT_COLUMNS] for row in rows])
    print_table(table, cfg.judge.swap, title, out)
    return metrics
