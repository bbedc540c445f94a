"""sweep.py: listing the paper's grid, launcher configs, multirun grouping, and a sweep that is
killed, resumed, retried and summarised with a failed cell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, cli
from medtune.tracking.offline import find_offline_runs, read_offline_run

MINI_SWEEP = """
name: mini
description: a resumable test grid
common_train: [model=tiny, dataset=sample, prompt=alpaca, exam=sample, train.max_steps=6, train.eval_steps=0,
               exam_eval.enabled=false, "paths.cache_dir={cache}"]
common_evaluate: [eval=loglik, exam.max_questions=8, "paths.cache_dir={cache}"]
pairs: [[tuned, base]]
cells:
  base: {{label: base, model: tiny, tuning: none, prompt: A, evaluate: []}}
  tuned: {{label: tuned, model: tiny, tuning: lora, prompt: A, train: [adapter=lora], evaluate: [], reference: base}}
  broken: {{label: broken, model: tiny, tuning: none, prompt: A, evaluate: [exam=jsonl, exam.path={missing}]}}
"""


def test_table2_dry_run_lists_the_twelve_cells_and_gpt4():
    result = cli(
        "sweep.py", "sweep=table2", "sweep.dry_run=true", 'sweep.common_train=["dataset.path=/data/usmle_jp.jsonl"]'
    )
    assert result.returncode == 0, result.stderr
    assert "every cell's train and evaluate overrides compose and pass the checks" in result.stdout
    assert "sweep table2: 12 cells + 1 published system(s)" in result.stdout
    for model in ("llama2_70b", "xwin70b", "swallow70b"):
        for tuning in ("none", "qlora"):
            for prompt in "AB":
                assert f"{model}-{tuning}-{prompt}" in result.stdout
    assert "experiment=swallow70b_qlora" in result.stdout and "system_name=gpt4" in result.stdout


@pytest.mark.parametrize("sweep", ["smoke", "table2", "jmedlora", "vi_chat", "search_smoke"])
def test_every_named_sweep_composes(compose, sweep):
    from omegaconf import OmegaConf

    from medtune.config.sweep_schema import SweepRunConfig

    cfg = compose([f"sweep={sweep}"], config_name="sweep")
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, SweepRunConfig) and typed.sweep.name == sweep
    assert typed.sweep.cells or typed.sweep.search.n_trials > 0


def test_slurm_and_parallel_launchers_compose_without_a_cluster():
    from hydra import compose, initialize_config_dir

    from medtune.config.store import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        slurm = compose("sweep", ["hydra/launcher=slurm_a100"], return_hydra_config=True).hydra.launcher
        parallel = compose("sweep", ["hydra/launcher=parallel"], return_hydra_config=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.gpus_per_node == 4 and slurm.nodes == 1
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == 2


@pytest.mark.slow
def test_evaluate_multirun_groups_runs_and_shares_a_trial_key_across_seeds(tmp_path):
    result = cli(
        "evaluate.py", "-m", "seed=1,2", "eval=loglik", "exam.max_questions=3", f"paths.output_root={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    every = [read_offline_run(p) for p in find_offline_runs(tmp_path)]
    runs = [r for r in every if r.job_type != "seeds"]  # the multirun's seed summary is a run of its own
    assert len(runs) == 2 and len({r.group for r in runs}) == 1 and runs[0].group.startswith("evaluate-")
    (summary,) = [r for r in every if r.job_type == "seeds"]
    mean = sum(json.loads(p.read_text())["accuracy"] for p in tmp_path.glob("evaluate/multiruns/*/*/metrics.json")) / 2
    assert summary.summary["seeds/accuracy_mean"] == pytest.approx(mean)
    assert {r.name for r in runs} == {
        "eval=loglik,exam.max_questions=3,seed=1",
        "eval=loglik,exam.max_questions=3,seed=2",
    }
    assert len({r.config["trial_key"] for r in runs}) == 1 and "seed" not in runs[0].config["trial_key"]
    assert all(r.job_type == "eval" for r in runs)


def records(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("cells/*/cell.json")}


@pytest.mark.slow
def test_a_killed_sweep_resumes_retries_failures_and_summarises(tmp_path, tiny_cache):
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True)
    (conf / "mini.yaml").write_text(MINI_SWEEP.format(cache=tiny_cache, missing=tmp_path / "no_exam.jsonl"))
    args = ["sweep.py", "sweep=mini", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"paths.output_root={tmp_path}"]
    sweep_dir = tmp_path / "sweeps" / "mini"

    process = subprocess.Popen(
        [sys.executable, *args], cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if records(sweep_dir).get("base", {}).get("status") == "done":
            os.killpg(process.pid, signal.SIGKILL)  # the sweep and the cell it is running
            break
        time.sleep(0.1)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    before = records(sweep_dir)
    done_before = sorted(n for n, r in before.items() if r["status"] == "done")
    assert "base" in done_before and "tuned" not in done_before

    second = cli(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"{len(done_before)} cells done, {3 - len(done_before)} to run" in second.stdout
    after = records(sweep_dir)
    assert after["base"]["started"] == before["base"]["started"]  # not run again
    assert after["tuned"]["status"] == "done" and after["broken"]["status"] == "failed"
    assert f"exam.path={tmp_path / 'no_exam.jsonl'} does not exist" in after["broken"]["error"]
    attempts = after["broken"]["attempts"]

    third = cli(*args)
    assert "2 cells done, 1 to run" in third.stdout
    assert records(sweep_dir)["broken"]["attempts"] == attempts + 1  # failed cells are retried

    summary = cli("sweep.py", f"summarize={sweep_dir}", f"paths.output_root={tmp_path}")
    assert summary.returncode == 0, summary.stderr[-2000:]
    report = (sweep_dir / "report" / "report.md").read_text()
    assert "broken" in report and "failed" in report
    rows = (sweep_dir / "report" / "table2.csv").read_text().splitlines()
    assert len(rows) == 3  # header + base + tuned
    assert "tuned" in (sweep_dir / "report" / "table3.md").read_text()
    assert (sweep_dir / "report" / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    runs = [read_offline_run(p) for p in find_offline_runs(sweep_dir)]
    assert {r.group for r in runs} == {"sweep-mini"}
    assert {"train", "eval", "sweep-summary"} <= {r.job_type for r in runs}


SEEDED_SWEEP = """
name: seeded
description: one tuned cell, two seeds
common_train: [model=tiny, dataset=sample, prompt=alpaca, exam=sample, train.max_steps=3, train.eval_steps=0,
               exam_eval.enabled=false, "paths.cache_dir={cache}"]
common_evaluate: [eval=loglik, exam.max_questions=6, "paths.cache_dir={cache}"]
seeds: [1, 2]
pairs: [[tuned, base]]
cells:
  base: {{label: base, model: tiny, tuning: none, prompt: A, evaluate: []}}
  tuned: {{label: tuned, model: tiny, tuning: lora, prompt: A, train: [adapter=lora], evaluate: [], reference: base}}
"""


def test_seeds_run_each_training_cell_once_per_seed_in_the_dry_run():
    result = cli("sweep.py", "sweep=smoke", "sweep.seeds=[7,8]", "sweep.dry_run=true")
    assert result.returncode == 0, result.stderr[-2000:]
    # 4 untuned cells run once, 4 tuned cells twice
    for seed in (7, 8):
        assert f"tiny-qlora-A__seed{seed}" in result.stdout
        assert f"seed={seed}" in result.stdout
    assert "tiny-none-A__seed" not in result.stdout
    repeated = cli("sweep.py", "sweep=smoke", "sweep.seeds=[7,7]", "sweep.dry_run=true")
    assert repeated.returncode == 2
    assert "sweep.seeds=[7, 7] repeats [7]: each seed runs once" in repeated.stderr


@pytest.mark.slow
def test_a_seeded_sweep_reports_mean_and_spread_over_its_seeds(tmp_path, tiny_cache):
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True)
    (conf / "seeded.yaml").write_text(SEEDED_SWEEP.format(cache=tiny_cache))
    args = [
        "sweep.py",
        "sweep=seeded",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        f"paths.output_root={tmp_path}",
    ]
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    sweep_dir = tmp_path / "sweeps" / "seeded"
    done = {n: r["status"] for n, r in records(sweep_dir).items()}
    assert done == {"base": "done", "tuned__seed1": "done", "tuned__seed2": "done"}
    seeds = sorted(yaml.safe_load(p.read_text())["seed"] for p in (sweep_dir / "train").glob("*/config.yaml"))
    assert seeds == [1, 2]  # one training per seed, each with its seed
    report = sweep_dir / "report"
    folded = (report / "table2_seeds.csv").read_text().splitlines()
    assert folded[0].startswith("cell,label") and len(folded) == 3
    assert "| tuned |" in (report / "table2.md").read_text() and "### Every seed" in (report / "table2.md").read_text()
    table3 = (report / "table3.md").read_text()
    assert "tuned seed 1 vs base" in table3 and "tuned seed 2 vs base" in table3
    assert "Paired bootstrap (95%, questions resampled)" in table3
