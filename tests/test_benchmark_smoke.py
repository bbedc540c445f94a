"""The training-speed benchmark runs end to end in its smoke mode (the tiny model, 2 steps), so a change in
medtune's internals or options cannot break it unseen. Its real numbers come from the full run only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_train_speed_benchmark_smoke_mode(tmp_path, tiny_cache):
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/train_speed/run.py",
            "--smoke",
            f"--cache-dir={tiny_cache}",
            f"--work-dir={tmp_path}",
            "--threads=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "## tiny (prompt=alpaca)" in out
    assert "| medtune (default) | target-only loss + padding-free batches" in out
    assert "| plain transformers+peft |" in out
    assert "every run's per-step real token counts equal the token-id file's" in out
    losses = [line for line in out.splitlines() if line.startswith("| 1 | ")]
    assert len(losses) == 1  # step 1's loss of every contender, side by side
    values = [float(cell) for cell in losses[0].strip("| ").split(" | ")[1:]]
    assert max(values) - min(values) < 1e-4  # the same first step everywhere
