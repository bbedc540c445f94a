"""One job, one entry: the old spellings of QA generation and judging name the new scripts, every
entry composes its own config with the shared paths/ and hydra/ groups, and optimized_metric picks
what a job returns to a sweeper."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from medtune.errors import ConfigError


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "old,new",
    [
        (
            ["train.py", "task=generate_qa", "qa.documents=articles/", "logger=none"],
            "python generate_qa.py qa.documents=articles/ logger=none",
        ),
        (
            ["evaluate.py", "eval=judge", "judge.a.answers=a.jsonl", "eval.output_dir=out"],
            "python judge.py judge.a.answers=a.jsonl judge.output_dir=out",
        ),
        (["evaluate.py", "eval.mode=judge"], "python judge.py"),
    ],
)
def test_an_old_spelling_stops_with_the_new_command(old, new, tmp_path):
    result = run(*old, f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2
    assert new in result.stderr and "is a job of its own now" in result.stderr
    assert not (tmp_path / "run").exists()  # refused before Hydra made a run dir


def test_exam_eval_mode_judge_is_no_longer_a_value():
    result = run("train.py", "exam_eval.mode=judge", "--cfg", "job")
    assert result.returncode == 2 and "exam_eval.mode" in result.stderr


@pytest.mark.parametrize(
    "script,config_name",
    [
        ("train.py", "train"),
        ("evaluate.py", "evaluate"),
        ("generate_qa.py", "generate_qa"),
        ("judge.py", "judge"),
        ("contamination.py", "contamination"),
    ],
)
def test_every_entry_shares_the_paths_and_hydra_groups(compose, script, config_name):
    cfg = compose(["paths.output_root=/tmp/elsewhere"], config_name=config_name)
    assert cfg.paths.cache_dir == "/tmp/elsewhere/cache"
    result = run(script, "--cfg", "hydra", "--package", "hydra.run")
    assert result.returncode == 0, result.stderr
    assert "runs/${launch_stamp:}" in result.stdout  # conf/hydra/default.yaml


def test_generate_qa_and_judge_have_their_own_schemas(compose):
    from medtune.config.judge_schema import JudgeRunConfig
    from medtune.config.qa_schema import GenerateQARunConfig
    from medtune.jobs import to_typed

    qa = to_typed(
        compose(
            ["model=tiny", "qa.generator.kind=endpoint", "qa.generator.url=http://127.0.0.1:9/v1"],
            config_name="generate_qa",
        ),
        GenerateQARunConfig,
    )
    assert qa.optimized_metric == "qa/records" and not hasattr(qa, "dataset") and not hasattr(qa, "exam")
    with pytest.raises(ConfigError) as error:
        to_typed(compose(["judge.a.answers=/nowhere.jsonl"], config_name="judge"), JudgeRunConfig)
    assert "judge.a.answers=/nowhere.jsonl does not exist" in str(error.value)


def test_optimized_metric_picks_the_returned_value_and_an_unknown_name_lists_the_known():
    from types import SimpleNamespace

    from medtune.entry import objective
    from medtune.jobs import EVALUATE, TRAIN
    from medtune.training.task import TrainResult

    metrics = {"accuracy": 0.25, "correct": 10, "invalid": 4, "mode": "generate"}
    assert objective(EVALUATE, SimpleNamespace(optimized_metric="invalid"), metrics) == 4
    with pytest.raises(ConfigError) as error:
        objective(EVALUATE, SimpleNamespace(optimized_metric="accurracy"), metrics)
    assert "optimized_metric=accurracy" in str(error.value) and "accuracy, correct, invalid" in str(error.value)
    trained = TrainResult(
        summary={"eval/loss_after": 0.5, "train/loss_last": 0.7}, model=None, tokenizer=None, run_dir=None
    )
    assert objective(TRAIN, SimpleNamespace(optimized_metric="train/loss_last"), trained) == 0.7
    assert objective(TRAIN, SimpleNamespace(optimized_metric="eval/loss_after"), None) is None  # a dry run
