"""Tracking never hurts a run: a failing W&B run costs one warning, and secrets stay in the environment.

The W&B failure is the real library's: a second `wandb.init(reinit="finish_previous")` in the same
process (what a notebook cell or another library does) finishes the run medtune opened, and every
later call on it raises `wandb.errors.UsageError`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest

from conftest import cli
from medtune.config.eval_schema import EvalRunConfig
from medtune.config.schema import TrainRunConfig
from medtune.config.sweep_schema import SweepRunConfig
from medtune.tracking.offline import find_offline_runs

CANARY = "canary-tag-31337"  # not a secret: shows that the byte search sees what a run records
SECRETS = {
    "WANDB_API_KEY": "wandb-fake-key-7d1c0ffee7d1c0ffee7d1c0ffee7d1c0ffee00",
    "HF_TOKEN": "hf_fakeTokenQ9w8e7r6t5y4u3i2o1p0",
    "HUGGING_FACE_HUB_TOKEN": "hf_fakeHubTokenZ1x2c3v4b5n6m7",
    "OPENAI_API_KEY": "sk-fake-openai-5f3e2d1c0b9a8f7e6d5c4b3a",
}


def test_a_wandb_run_finished_under_medtune_costs_one_warning_not_the_training(run_train, monkeypatch, tmp_path):
    import wandb

    from medtune.tracking import wandb_run

    real_start_run = wandb_run.start_run
    intruders = []

    def start_then_lose_the_run(*args, **kwargs):
        tracker = real_start_run(*args, **kwargs)
        assert tracker.active
        # Someone else starts a run in this process: W&B finishes ours, which now refuses every call.
        intruders.append(
            wandb.init(mode="offline", dir=str(tmp_path / "elsewhere"), project="another", reinit="finish_previous")
        )
        return tracker

    monkeypatch.setattr(wandb_run, "start_run", start_then_lose_the_run)
    try:
        with pytest.warns(UserWarning) as caught:
            result = run_train(
                [
                    "logger=wandb",
                    "train.max_steps=4",
                    "train.logging_steps=1",
                    "train.global_batch_size=2",
                    "train.micro_batch_size=2",
                    "exam_eval.enabled=false",
                    "dataset.eval_fraction=0",
                ],
                name="lost-run",
            )
    finally:
        for run in intruders:
            run.finish()
    failures = [str(w.message) for w in caught if str(w.message).startswith("W&B ")]
    assert len(failures) == 1, failures  # four logged steps and the summaries fail: one warning
    assert re.search(r"W&B (log|summary) failed \(UsageError: Run \(\w+\) is finished", failures[0])
    assert "training goes on" in failures[0]
    assert result.summary["train/steps"] == 4
    assert (result.run_dir / "train_summary.json").is_file() and (result.run_dir / "adapter").is_dir()
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("train/loss" in row for row in rows) == 4  # the run's own record is complete


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_secrets_in_the_environment_never_reach_configs_logs_or_wandb(tmp_path, tiny_cache):
    """A real train.py run, W&B offline, with tokens and keys set: none of them is written anywhere."""
    result = cli(
        "train.py",
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={tiny_cache}",
        "logger=wandb",
        "logger.mode=offline",
        "train.max_steps=2",
        "train.logging_steps=1",
        "exam_eval.enabled=false",
        f"logger.tags=[{CANARY}]",
        env=SECRETS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.rglob("config.yaml") if (p.parent / ".hydra").is_dir()]
    written = files_under(run_dir)
    names = {p.relative_to(run_dir).as_posix() for p in written}
    for expected in (
        "config.yaml",
        "run_info.json",
        "train_summary.json",
        "metrics.jsonl",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        ".hydra/hydra.yaml",
    ):
        assert expected in names, sorted(names)
    (offline,) = find_offline_runs(run_dir)
    # The search can see what a run stores: a tag given on the command line is found in the W&B run's files.
    assert any(p.suffix == ".wandb" and CANARY.encode() in p.read_bytes() for p in files_under(offline))
    logs = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
    for name, secret in SECRETS.items():
        for path in written:
            assert secret.encode() not in path.read_bytes(), f"{name} leaked into {path}"
        for stream, text in logs.items():
            assert secret.encode() not in text, f"{name} leaked into {stream}"


SECRET_NAME = re.compile(
    r"^((hf_|hub_|access_|auth_|api_|bearer_)?token|(api|wandb|hub|secret)_?key|(\w+_)?secret"
    r"|(\w+_)?password|credentials?)$"
)


def secret_like_fields(schema: type, prefix: str = "") -> list[str]:
    """Keys of a config schema whose name says they hold a secret (`*_env` keys hold only a variable's name)."""
    found = []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        key = f"{prefix}{field.name}"
        if SECRET_NAME.search(field.name):
            found.append(key)
        inner = [a for a in typing.get_args(hints[field.name]) if dataclasses.is_dataclass(a)]
        for nested in ([hints[field.name]] if dataclasses.is_dataclass(hints[field.name]) else []) + inner:
            found.extend(secret_like_fields(nested, f"{key}."))
    return found


@pytest.mark.parametrize("schema", [TrainRunConfig, EvalRunConfig, SweepRunConfig])
def test_configs_hold_names_of_environment_variables_never_secrets(schema):
    assert secret_like_fields(schema) == []
    assert secret_like_fields(_WithSecret) == ["nested.api_key"]  # the check itself finds one


@dataclasses.dataclass
class _Leaky:
    api_key: str = ""
    api_key_env: str = "OPENAI_API_KEY"


@dataclasses.dataclass
class _WithSecret:
    nested: _Leaky = dataclasses.field(default_factory=_Leaky)
    max_new_tokens: int = 8
