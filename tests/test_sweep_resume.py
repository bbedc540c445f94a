"""sweep.py reliability: every cell's overrides are checked before the first cell runs; a cell that
was cut short continues (training from its checkpoint, evaluation from its partial predictions)
and nothing a cell wrote is deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, cli
from medtune.config.sweep_schema import CellConfig, SweepConfig
from medtune.sweep.cells import read_cell_record, run_cell, train_key

BROKEN_SWEEP = """
name: broken
description: cells whose overrides cannot compose
common_train: [model=tiny, dataset=sample, prompt=alpaca, exam=sample, train.max_steps=6, exam_eval.enabled=false]
common_evaluate: [eval=loglik, exam.max_questions=4]
cells:
  base: {label: base, evaluate: []}
  tuned: {label: tuned, train: [adapter=qlorra], evaluate: []}
  third: {label: third, evaluate: [exam.max_questionz=4]}
"""

RESUMABLE_SWEEP = """
name: resumable
description: one tuned cell whose training is long enough to be killed after a checkpoint
common_train: [model=tiny, dataset=sample, prompt=alpaca, exam=sample, train.max_steps=12, train.save_steps=4,
               train.logging_steps=1, train.eval_steps=0, train.global_batch_size=2, train.micro_batch_size=2,
               exam_eval.enabled=false, "paths.cache_dir={cache}"]
common_evaluate: [eval=loglik, exam.max_questions=4, "paths.cache_dir={cache}"]
cells:
  tuned: {{label: tuned, model: tiny, tuning: lora, prompt: A, train: [adapter=lora], evaluate: []}}
"""


def sweep_args(tmp_path: Path, name: str, text: str, *extra: str) -> list[str]:
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / f"{name}.yaml").write_text(text)
    return [
        "sweep.py",
        f"sweep={name}",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        f"paths.output_root={tmp_path}",
        *extra,
    ]


@pytest.mark.parametrize("dry_run", [False, True])
def test_broken_overrides_of_any_cell_refuse_the_sweep_before_a_cell_runs(tmp_path, dry_run):
    args = sweep_args(tmp_path, "broken", BROKEN_SWEEP, *(["sweep.dry_run=true"] if dry_run else []))
    result = cli(*args, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr
    assert "sweep=broken: 2 problems in the cells' overrides, found before any cell ran" in message
    lines = {line.split(": ", 1)[0]: line for line in message.splitlines() if line.startswith("  - ")}
    assert set(lines) == {
        "  - cell tuned [train] adapter=qlorra (sweep.cells.tuned.train)",
        "  - cell third [evaluate] exam.max_questionz=4 (sweep.cells.third.evaluate)",
    }
    assert "Did you mean adapter=qlora?" in lines["  - cell tuned [train] adapter=qlorra (sweep.cells.tuned.train)"]
    assert "Did you mean exam.max_questions=4?" in message
    assert "Fix them in conf/sweep/broken.yaml" in message
    sweep_dir = tmp_path / "sweeps" / "broken"
    assert not (sweep_dir / "cells").exists() and not (sweep_dir / "train").exists()  # not one cell started
    if dry_run:
        assert "sweep broken: 3 cells" in result.stdout  # the listing comes first, then the check


def test_a_problem_of_the_common_overrides_is_reported_once_for_every_cell_it_breaks(tmp_path):
    from medtune.sweep.preflight import sweep_problems

    sweep = SweepConfig(
        name="shared",
        common_train=["model=tiny", "dataset=sample", "train.max_steps=abc"],
        common_evaluate=["eval.batch_size=0"],
        cells={"a": CellConfig(train=["adapter=lora"]), "b": CellConfig(train=["adapter=qlora"])},
    )
    problems = [p.render() for p in sweep_problems(sweep, ["a", "b"], tmp_path, "g", REPO / "conf")]
    assert len(problems) == 2  # one line per problem, naming every cell it breaks
    assert problems[0].startswith("cells a, b [train] train.max_steps=abc (sweep.common_train): ")
    assert "could not be converted to Integer" in problems[0]
    assert problems[1].startswith("cells a, b [evaluate] eval.batch_size=0 (sweep.common_evaluate): ")


FAKE_TRAIN = """
import json, sys
from pathlib import Path
run = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("hydra.run.dir=")))
run.mkdir(parents=True, exist_ok=True)
message = (f"The configuration has 1 problem:\\n  - {run}/checkpoints/checkpoint-5 was saved with a different "
           "setup, so this run cannot continue from it:\\n      train.learning_rate: 0.01 -> 0.02")
(run / "failure.json").write_text(json.dumps({"error_type": "ConfigError", "message": message}))
print("medtune: " + message, file=sys.stderr)
sys.exit(2)
"""

FAKE_EVALUATE = """
import sys
from pathlib import Path
out = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("eval.output_dir=")))
partial = out / "predictions.partial.jsonl"
print(f"answered so far: {len(partial.read_text().splitlines()) if partial.is_file() else 0}")
with open(partial, "a") as handle:
    handle.write('{"id": "q"}\\n')
sys.exit(1)  # cut short, as a killed evaluation would be
"""


def fake_scripts(tmp_path: Path) -> Path:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "train.py").write_text(textwrap.dedent(FAKE_TRAIN))
    (scripts / "evaluate.py").write_text(textwrap.dedent(FAKE_EVALUATE))
    return scripts


def test_a_training_refused_for_changed_settings_fails_its_cell_and_keeps_the_run(tmp_path):
    scripts = fake_scripts(tmp_path)
    sweep = SweepConfig(name="fake", cells={"tuned": CellConfig(train=["adapter=lora"])})
    sweep_dir = tmp_path / "sweep"
    train_dir = sweep_dir / "train" / train_key(sweep, sweep.cells["tuned"])
    (train_dir / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (train_dir / "marker").write_text("an earlier run's files")

    for attempt in (1, 2):
        record = run_cell(sweep, "tuned", sweep_dir, "g", scripts)
        assert record["status"] == "failed" and record["stage"] == "train" and record["attempts"] == attempt
    error = record["error"]
    assert f"the training in {train_dir} was interrupted" in error
    assert "train.learning_rate: 0.01 -> 0.02" in error
    assert f"delete {train_dir} (or move it away)" in error and "restore the settings" in error
    assert (train_dir / "marker").is_file() and (train_dir / "checkpoints" / "checkpoint-5").is_dir()
    logs = sorted(p.name for p in (sweep_dir / "train").glob("*.log"))
    assert logs == [f"{train_dir.name}.1.log", f"{train_dir.name}.log"]  # the first attempt's log is kept
    assert [(a["attempts"], a["stage"]) for a in record["earlier_attempts"]] == [(1, "train")]


def test_a_retried_evaluation_continues_in_its_dir_and_keeps_every_log(tmp_path):
    scripts = fake_scripts(tmp_path)
    sweep = SweepConfig(name="fake", cells={"base": CellConfig(evaluate=["eval=loglik"])})
    sweep_dir = tmp_path / "sweep"
    for attempt in (1, 2, 3):
        record = run_cell(sweep, "base", sweep_dir, "g", scripts)
        assert record["status"] == "failed" and record["attempts"] == attempt
    here = sweep_dir / "cells" / "base"
    assert (here / "evaluate.1.log").read_text().count("answered so far: 0") == 1
    assert "answered so far: 1" in (here / "evaluate.2.log").read_text()
    assert "answered so far: 2" in (here / "evaluate.log").read_text()  # the partial predictions were kept
    assert [a["attempts"] for a in record["earlier_attempts"]] == [1, 2]


def newest_complete_checkpoint(train_root: Path) -> Path | None:
    """The highest-step checkpoint that train.py has marked complete (its fingerprint is written last)."""
    found = [c for c in train_root.glob("*/checkpoints/checkpoint-*") if (c / "medtune_fingerprint.json").is_file()]
    return max(found, key=lambda c: int(c.name.split("-")[1]), default=None)


@pytest.mark.slow
def test_a_sweep_killed_during_training_resumes_it_from_its_checkpoint(tmp_path, tiny_cache):
    args = sweep_args(tmp_path, "resumable", RESUMABLE_SWEEP.format(cache=tiny_cache))
    sweep_dir = tmp_path / "sweeps" / "resumable"
    process = subprocess.Popen(
        [sys.executable, *args], cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            if newest_complete_checkpoint(sweep_dir / "train") is not None:
                break
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the sweep, its cell job and train.py
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    checkpoint = newest_complete_checkpoint(sweep_dir / "train")
    train_dir = checkpoint.parents[1]
    step = int(checkpoint.name.split("-")[1])
    assert step < 12 and not (train_dir / "train_summary.json").exists()
    (train_dir / "marker").write_text("this dir must survive the rerun")

    second = cli(*args, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert read_cell_record(sweep_dir, "tuned")["status"] == "done"
    assert (train_dir / "marker").is_file()  # the training dir was continued, never deleted
    log = (train_dir.parent / f"{train_dir.name}.log").read_text()
    assert f"resuming from {checkpoint} (same config and data)" in " ".join(log.split())
    assert "resuming" not in (train_dir.parent / f"{train_dir.name}.1.log").read_text()  # the first attempt's log
    summary = json.loads((train_dir / "train_summary.json").read_text())
    assert summary["train/resumed_from"] == str(checkpoint) and summary["train/steps"] == 12
    steps = [
        json.loads(line)["step"]
        for line in (train_dir / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in line
    ]
    rerun = steps[len(steps) - 1 - steps[::-1].index(step + 1) :]  # the rows the rerun logged
    assert rerun == list(range(step + 1, 13)) and steps.count(1) == 1  # continued, not from step 0


def test_partial_predictions_of_a_replaced_training_are_moved_aside_not_continued(tmp_path):
    scripts = fake_scripts(tmp_path)
    sweep = SweepConfig(name="fake", cells={"tuned": CellConfig(train=["adapter=lora"])})
    sweep_dir = tmp_path / "sweep"
    train_dir = sweep_dir / "train" / train_key(sweep, sweep.cells["tuned"])
    train_dir.mkdir(parents=True)
    for name in ("run_info.json", "train_summary.json"):  # a finished training: the train stage is skipped
        (train_dir / name).write_text('{"run": 1}')
    run_cell(sweep, "tuned", sweep_dir, "g", scripts)
    here = sweep_dir / "cells" / "tuned"
    run_cell(sweep, "tuned", sweep_dir, "g", scripts)
    assert "answered so far: 1" in (here / "evaluate.log").read_text()  # same training: continued

    (train_dir / "train_summary.json").write_text('{"run": 2}')  # deleted and trained again by the user
    record = run_cell(sweep, "tuned", sweep_dir, "g", scripts)
    assert record["attempts"] == 3
    assert "answered so far: 0" in (here / "evaluate.log").read_text()  # not the old run's answers
    assert len((here / "eval.superseded.1" / "predictions.partial.jsonl").read_text().splitlines()) == 2
