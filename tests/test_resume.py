"""Resume after SIGKILL or SIGTERM gives the adapter of an uninterrupted run; a changed setup is refused.

Every run here is the real `train.py` in a subprocess, as a user (or SLURM) would start it again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_TRAIN_DEFAULTS
from medtune.errors import PREEMPTED_EXIT_CODE
from test_distributed import assert_every_rank_exited_0

REPO = Path(__file__).resolve().parents[1]
STEPS, SAVE_EVERY = 24, 4
# Same config, data and seed on the same machine: the resumed adapter should match to float rounding.
TOLERANCE = 1e-6


pytestmark = pytest.mark.slow


# Kill steps are drawn at random to cover many steps over many runs, but from a logged seed so a
# failure can be replayed: MEDTUNE_TEST_SEED=<the printed seed> pytest tests/test_resume.py
TEST_SEED = int(os.environ.get("MEDTUNE_TEST_SEED", random.SystemRandom().randrange(2**32)))


def kill_step(low: int, high: int) -> int:
    step = random.Random(f"{TEST_SEED}:{low}:{high}").randint(low, high)
    print(f"kill at step {step} of [{low}, {high}] (replay with MEDTUNE_TEST_SEED={TEST_SEED})")
    return step


def command(run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "train.py",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={cache}",
        f"train.max_steps={STEPS}",
        f"train.save_steps={SAVE_EVERY}",
        "train.logging_steps=1",
        "logger=none",
        "exam_eval.enabled=false",
        *TINY_TRAIN_DEFAULTS,
        *extra,
    ]


def run(run_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(run_dir, cache, *extra), cwd=REPO, capture_output=True, text=True, timeout=600)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return max((row["step"] for row in rows if "train/loss" in row), default=0)


def interrupt(run_dir: Path, cache: Path, at_step: int, signum: int) -> subprocess.CompletedProcess:
    """Start training and send `signum` once step `at_step` has been logged."""
    process = subprocess.Popen(
        command(run_dir, cache), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while logged_steps(run_dir) < at_step:
        assert process.poll() is None, f"training ended before step {at_step}: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "training did not reach the step in time"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_cache):
    """An uninterrupted run with the same command."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = run(run_dir, tiny_cache)
    assert result.returncode == 0, result.stderr[-3000:]
    return adapter(run_dir)


def test_sigkill_at_a_random_step_then_the_same_command_gives_the_same_adapter(reference, tmp_path, tiny_cache):
    at_step = kill_step(SAVE_EVERY + 1, STEPS - 2)
    killed = interrupt(tmp_path, tiny_cache, at_step, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "adapter").exists()
    resumed = run(tmp_path, tiny_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    start = int(Path(summary["train/resumed_from"]).name.split("-")[1])
    assert start % SAVE_EVERY == 0 and 0 < start <= at_step  # the newest complete checkpoint before the kill
    assert summary["train/steps"] == STEPS
    difference = max_difference(adapter(tmp_path), reference)
    assert difference <= TOLERANCE, f"killed at step {at_step}, resumed from {start}: max difference {difference}"
    # Rotation kept the disk bounded: save_total_limit=2 checkpoints.
    assert len(list((tmp_path / "checkpoints").glob("checkpoint-*"))) == 2


def test_sigterm_saves_at_that_step_exits_75_and_resumes_to_the_same_adapter(reference, tmp_path, tiny_cache):
    at_step = kill_step(2, STEPS - 3)
    stopped = interrupt(tmp_path, tiny_cache, at_step, signal.SIGTERM)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert "stopped by SIGTERM after step" in stopped.stderr and "same run dir" in stopped.stderr
    saved = sorted((tmp_path / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    step = int(saved.name.split("-")[1])
    assert at_step <= step <= at_step + 2  # the step that was running when the signal came
    assert (saved / "medtune_fingerprint.json").is_file() and (saved / "optimizer.pt").is_file()
    resumed = run(tmp_path, tiny_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {saved}" in resumed.stdout
    assert max_difference(adapter(tmp_path), reference) <= TOLERANCE


def test_a_changed_config_or_data_refuses_to_resume_unless_forced(tmp_path, tiny_cache):
    first = run(tmp_path, tiny_cache, f"train.max_steps={SAVE_EVERY}")
    assert first.returncode == 0, first.stderr[-3000:]

    changed = run(tmp_path, tiny_cache, f"train.max_steps={SAVE_EVERY}", "train.learning_rate=0.02", "adapter.r=4")
    assert changed.returncode == 2
    assert "holds a finished training run" in changed.stderr  # a finished run is not replaced by other settings
    assert "train.learning_rate: 0.01 -> 0.02" in changed.stderr and "adapter.r: 8 -> 4" in changed.stderr
    assert "resume=force" in changed.stderr and "overwrite=true" in changed.stderr
    # Watching keys may change: logging, evaluation and checkpoint cadence are not part of the fingerprint.
    watched = run(tmp_path, tiny_cache, f"train.max_steps={SAVE_EVERY}", "train.logging_steps=2")
    assert watched.returncode == 0 and "resuming from" in watched.stdout

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    other = tmp_path / "other"
    assert (
        run(
            other,
            tiny_cache,
            "dataset=alpaca_json",
            f"dataset.path={data}",
            "dataset.eval_fraction=0",
            f"train.max_steps={SAVE_EVERY}",
        ).returncode
        == 0
    )
    data.write_text(json.dumps({"instruction": "q2", "output": "a2"}) + "\n")
    refused = run(
        other,
        tiny_cache,
        "dataset=alpaca_json",
        f"dataset.path={data}",
        "dataset.eval_fraction=0",
        f"train.max_steps={SAVE_EVERY}",
    )
    assert refused.returncode == 2 and "the training data" in refused.stderr

    forced = run(tmp_path, tiny_cache, f"train.max_steps={SAVE_EVERY + 2}", "train.learning_rate=0.02", "resume=force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "resume=force: continuing from" in forced.stdout
    fresh = run(tmp_path, tiny_cache, f"train.max_steps={SAVE_EVERY}", "adapter.r=4", "resume=off")
    assert fresh.returncode == 2 and "overwrite=true" in fresh.stderr  # resume=off would replace the finished run
    fresh = run(tmp_path, tiny_cache, f"train.max_steps={SAVE_EVERY}", "adapter.r=4", "resume=off", "overwrite=true")
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout


def test_a_checkpoint_cut_short_is_skipped(tmp_path, tiny_cache):
    first = run(tmp_path, tiny_cache, f"train.max_steps={2 * SAVE_EVERY}")
    assert first.returncode == 0, first.stderr[-3000:]
    newest = tmp_path / "checkpoints" / f"checkpoint-{2 * SAVE_EVERY}"
    (newest / "medtune_fingerprint.json").unlink()  # as if the process died while saving it
    again = run(tmp_path, tiny_cache, f"train.max_steps={2 * SAVE_EVERY}")
    assert again.returncode == 0
    assert f"resuming from {tmp_path / 'checkpoints' / f'checkpoint-{SAVE_EVERY}'}" in again.stdout


def test_under_the_submitit_launcher_a_preempted_job_is_requeued_and_finishes(reference, tmp_path, tiny_cache):
    """submitit's local executor runs the job like SLURM would: its preemption signal (USR2) makes
    medtune save, hand the signal to submitit, which requeues; the requeued job resumes and ends."""
    sweep_dir = tmp_path / "sweep"
    args = [a for a in command(tmp_path, tiny_cache) if not a.startswith("hydra.run.dir=")]
    process = subprocess.Popen(
        [*args[:2], "-m", *args[2:], "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = sweep_dir / "0"
    at_step = kill_step(2, STEPS - 3)
    deadline = time.monotonic() + 300
    while logged_steps(run_dir) < at_step:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job = subprocess.run(["pgrep", "-f", f"submitit.core._submit {sweep_dir}"], capture_output=True, text=True)
    os.kill(int(job.stdout.split()[0]), signal.SIGUSR2)  # what submitit sends before a SLURM preemption
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.*"))
    assert "stopped by SIGUSR2" in logs and "Requeued job" in logs and "resuming from" in logs
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["train/steps"] == STEPS and summary["train/resumed_from"]
    assert max_difference(adapter(run_dir), reference) <= TOLERANCE


DEEPSPEED = [
    "train.micro_batch_size=4",
    "train.global_batch_size=8",
    "train.sampling=sequential",
    "adapter.dropout=0.0",
    "hardware.devices_per_node=2",
]


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_deepspeed_two_ranks_resume_after_sigterm_to_the_same_adapter(tmp_path, tiny_cache, zero_stage):
    import socket

    def torchrun(run_dir: Path) -> list[str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={port}",
            *command(run_dir, tiny_cache, *DEEPSPEED, f"hardware.deepspeed.zero_stage={zero_stage}")[1:],
        ]

    whole = tmp_path / "whole"
    done = subprocess.run(torchrun(whole), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert_every_rank_exited_0(done.returncode, done.stderr)

    run_dir = tmp_path / "interrupted"
    process = subprocess.Popen(torchrun(run_dir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    at_step = kill_step(2, STEPS // 2)
    deadline = time.monotonic() + 300
    while logged_steps(run_dir) < at_step:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    _, stderr = process.communicate(timeout=300)
    assert "stopped by SIGTERM" in stderr, stderr[-3000:]
    saved = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    assert (saved / "medtune_fingerprint.json").is_file()
    assert any(p.is_dir() and p.name.startswith("global_step") for p in saved.iterdir())  # DeepSpeed's own state

    resumed = subprocess.run(torchrun(run_dir), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert_every_rank_exited_0(resumed.returncode, resumed.stderr)
    assert f"resuming from {saved}" in resumed.stdout
    assert max_difference(adapter(run_dir), adapter(whole)) <= 1e-5  # float32 all-reduce order may differ
