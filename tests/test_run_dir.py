"""medtune.run_dir.TrainRunDir: what a train.py run dir holds, and the one message for each way it can be
unusable (naming the dir, what is missing and the fix), as every consumer reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from medtune.errors import ConfigError, ModelUnavailableError
from medtune.run_dir import TrainRunDir, check_train_run


def make_run(root: Path, kind: str = "lora", *, run_info: bool = True, saved: bool = True) -> TrainRunDir:
    """A run dir as train.py leaves it (config.yaml holds only what the checks read)."""
    run = TrainRunDir(root / "run")
    run.path.mkdir(parents=True)
    run.config_path.write_text(f"adapter:\n  name: {kind}\n  kind: {kind}\n")
    if run_info:
        run.write_run_info({"checkpoint": "/models/base", "wandb_group": "g-1"})
    if saved:
        folder = run.saved_dir(kind == "full")
        folder.mkdir()
        (folder / ("config.json" if kind == "full" else "adapter_config.json")).write_text("{}")
    return run


def test_a_finished_run_has_no_problem(tmp_path):
    run = make_run(tmp_path)
    assert run.problem() is None and run.problem("run") is None and check_train_run("run", run.path) == []
    run.require()
    assert run.read_run_info()["checkpoint"] == "/models/base" and run.wandb_group() == "g-1"
    assert not run.is_finished  # train_summary.json, written last, is not there yet
    run.write_summary({"eval/loss_after": 1.0})
    assert run.is_finished


def test_a_missing_path_or_a_file(tmp_path):
    assert check_train_run("run", tmp_path / "nowhere") == [
        f"run={tmp_path / 'nowhere'} does not exist; point run at the run dir of a finished train.py run "
        "(outputs/train/runs/<time>/)."
    ]
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelUnavailableError, match=r"notes\.txt is a file, not a directory; pass the run dir"):
        TrainRunDir(tmp_path / "notes.txt").require()


def test_a_folder_without_config_yaml_is_not_a_run(tmp_path):
    message = TrainRunDir(tmp_path).problem("judge.b.generator.run")
    assert message == (
        f"judge.b.generator.run={tmp_path} is not the directory of a finished train.py run: it has "
        "no config.yaml, so it is not a train.py run dir at all. Point judge.b.generator.run at "
        "outputs/train/runs/<time>/ of a finished run."
    )
    with pytest.raises(ModelUnavailableError, match=r"has no config\.yaml.*\. Pass outputs/train/runs/<time>/"):
        TrainRunDir(tmp_path).require()


def test_an_export_is_named_as_one(tmp_path):
    (tmp_path / "medtune_export.json").write_text("{}")
    assert "is already an export (it has medtune_export.json)" in TrainRunDir(tmp_path).problem()


def test_a_run_configured_to_train_nothing_is_a_config_error(tmp_path):
    run = make_run(tmp_path, "none", run_info=False, saved=False)
    with pytest.raises(ConfigError, match=r"adapter=none: it trained nothing"):
        run.require()


def test_a_run_that_failed_before_saving_names_its_error(tmp_path):
    run = make_run(tmp_path, run_info=False, saved=False)
    assert run.problem("run") == (
        f"run={run.path} has no run_info.json: the run stopped before saving its adapter (it was killed, or is "
        "still running). Train it again (the same command continues from its last checkpoint), or point run at "
        "a finished run."
    )
    run.failure_path.write_text(
        json.dumps(
            {"error_type": "TrainingDivergedError", "message": "The loss became NaN at step 7.\nFix: lower the rate."}
        )
    )
    assert (
        "the run failed before saving its adapter (TrainingDivergedError: The loss became NaN at step 7.; "
        "failure.json there has the whole error)"
    ) in run.problem()
    full = make_run(tmp_path / "full", "full", run_info=False, saved=False)
    assert "before saving its model" in full.problem()
    with pytest.raises(ModelUnavailableError, match="has no run_info.json"):
        run.read_run_info()


@pytest.mark.parametrize(
    "kind, folder, marker", [("lora", "adapter", "adapter_config.json"), ("full", "model", "config.json")]
)
def test_a_run_whose_saved_weights_are_gone(tmp_path, kind, folder, marker):
    run = make_run(tmp_path, kind, saved=False)
    assert run.problem() == (
        f"{run.path / folder} has no {marker}: the {folder} of this run is missing or "
        "incomplete; train the run again, or restore that directory."
    )
    assert check_train_run("run", run.path)[0].startswith(f"run={run.path}: {run.path / folder} has no {marker}")


def test_an_unreadable_config_yaml_is_reported_not_raised(tmp_path):
    run = make_run(tmp_path)
    run.config_path.write_text("adapter: [unclosed\n")
    assert "config.yaml cannot be read (" in run.problem() and "restore it, or train the run again" in run.problem()


def test_identity_changes_when_the_run_is_trained_again(tmp_path):
    run = make_run(tmp_path)
    run.write_summary({"run": 1})
    first = run.identity()
    assert run.identity() == first
    run.write_summary({"run": 2})
    assert run.identity() != first


def test_the_typed_config_reads_back(typed, tmp_path):
    cfg = typed(["adapter=lora", "train.max_steps=3"])
    run = TrainRunDir(tmp_path)
    run.write_config(cfg)
    again = run.read_config()
    assert again.train.max_steps == 3 and again.adapter.kind == cfg.adapter.kind and run.adapter_kind() == "lora"


def test_the_module_loads_no_task_package_and_no_model_library():
    code = (
        "import sys, medtune.run_dir, medtune.jsonl_store; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft') "
        "or m.startswith(('medtune.training', 'medtune.evaluation', 'medtune.judge', 'medtune.qa'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
