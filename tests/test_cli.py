"""The entry script as a user runs it on the tiny model: a run to the end, and a multirun that gives one W&B
group. The default job (`make run`, SmolLM2) is tested in test_real_models.py."""

from __future__ import annotations

import json

import pytest

from conftest import cli
from medtune.tracking.offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.slow


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
