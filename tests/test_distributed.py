"""Real multi-process training on CPU: 2 ranks under torchrun with DeepSpeed ZeRO-2 and ZeRO-3,
with LoRA and with a 4-bit base, and 2 "nodes" of 1 rank each over loopback. Each must give the
per-step training losses of a single process with the same global batch.

The ranks train on medtune's defaults (the target-only loss, padding-free batches with per-example
attention); the single process on transformers' own path (full logits, padded batches), so the same
comparison also shows the fast path equal to the plain one under ZeRO.

Tolerance: the runs see the same 8 examples per optimizer step (sequential sampling; rank r takes
every other example) and transformers normalises the loss by the token count of all ranks, so the
only difference is float32 summation order in the gradient all-reduce: 1e-4 relative is ample
(observed differences are ~1e-6). Dropout is 0 so that no rank-dependent random mask enters.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_TRAIN_DEFAULTS
from medtune.tracking.offline import find_offline_runs

pytestmark = pytest.mark.slow

COMMON = [
    "train.max_steps=6",
    "train.logging_steps=1",
    "train.micro_batch_size=4",
    "train.global_batch_size=8",
    "train.sampling=sequential",
    "train.eval_steps=0",
    "exam_eval.enabled=false",
    "adapter.dropout=0.0",
    *TINY_TRAIN_DEFAULTS,
]
_reference: dict[str, list[float]] = {}


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["train/loss"] for row in rows if "train/loss" in row]


def train(
    run_dir: Path, cache: Path, overrides: list[str], launcher: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = [*launcher, "train.py", *COMMON, *overrides, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}"]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=environment)


def reference(adapter: str, tmp_path_factory, cache: Path) -> list[float]:
    if adapter not in _reference:
        run_dir = tmp_path_factory.mktemp(f"single-{adapter}")
        plain = ["train.loss=full_logits", "train.padding_free=false"]
        result = train(run_dir, cache, [f"adapter={adapter}", "logger=none", *plain], [sys.executable])
        assert result.returncode == 0, result.stderr[-3000:]
        _reference[adapter] = losses(run_dir)
    return _reference[adapter]


def assert_every_rank_exited_0(returncode: int, stderr: str) -> None:
    """torchrun exits 0 only when every rank did: a rank that finished its steps and then aborted at
    interpreter exit ("terminate called without an active exception", SIGABRT) fails the run."""
    assert returncode == 0, stderr[-3000:]
    assert "terminate called" not in stderr and "ChildFailedError" not in stderr, stderr[-3000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.parametrize("zero_stage,adapter", [(2, "lora"), (3, "lora"), (2, "qlora"), (3, "qlora")])
def test_two_ranks_under_deepspeed_match_one_process(tmp_path, tmp_path_factory, tiny_cache, zero_stage, adapter):
    expected = reference(adapter, tmp_path_factory, tiny_cache)
    run_dir = tmp_path / "run"
    launcher = [*TORCHRUN, "--nproc_per_node=2", f"--master_port={free_port()}"]
    overrides = [
        f"adapter={adapter}",
        f"hardware.deepspeed.zero_stage={zero_stage}",
        "hardware.devices_per_node=2",
        "logger=wandb",
    ]
    # An empty extension cache, as on a fresh machine: DeepSpeed's CPU shared-memory op (inference only)
    # is not compiled, so nothing is built there.
    extensions = tmp_path / "torch_extensions"
    result = train(run_dir, tiny_cache, overrides, launcher, env={"TORCH_EXTENSIONS_DIR": str(extensions)})
    assert_every_rank_exited_0(result.returncode, result.stderr)
    assert not any(extensions.rglob("*.so")), sorted(extensions.rglob("*"))
    assert losses(run_dir) == pytest.approx(expected, rel=1e-4)
    assert len(find_offline_runs(run_dir)) == 1  # only rank 0 tracks
    # One console for both ranks: rank 0's progress lines, no library chatter; rank 0 keeps train.log.
    for noise in ("{'loss':", "built successfully", "compilers.C.base", "Setting accelerator to CPU"):
        assert noise not in result.stdout + result.stderr, noise
    assert result.stdout.count("step 6/6 (100%)") == 1 and "step 6/6 (100%)" in (run_dir / "train.log").read_text()
    summary = json.loads((run_dir / "train_summary.json").read_text())
    if zero_stage == 3:
        assert summary["zero3/local_fraction"] == pytest.approx(0.5, abs=0.01)  # parameters sharded over 2 ranks
        if adapter == "qlora":
            assert summary["zero3/local_fraction_4bit"] == pytest.approx(0.5, abs=0.01)  # the 4-bit base too
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_one_process_runs_zero_without_a_launcher(tmp_path, tmp_path_factory, tiny_cache):
    """`python train.py hardware.deepspeed.zero_stage=3`, no torchrun: DeepSpeed still creates a group, and
    without a launcher's variables it would look for MPI (mpi4py) and stop. medtune makes it rank 0 of 1:
    it trains, compiles no op, and gives the single process's losses."""
    expected = reference("lora", tmp_path_factory, tiny_cache)
    extensions = tmp_path / "torch_extensions"
    run_dir = tmp_path / "run"
    overrides = ["adapter=lora", "hardware.deepspeed.zero_stage=3", "logger=none"]
    result = train(run_dir, tiny_cache, overrides, [sys.executable], env={"TORCH_EXTENSIONS_DIR": str(extensions)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(extensions.rglob("*.so")), sorted(extensions.rglob("*"))
    assert losses(run_dir) == pytest.approx(expected, rel=1e-4)


def test_two_nodes_of_one_rank_over_loopback_match_one_process(tmp_path, tmp_path_factory, tiny_cache):
    expected = reference("lora", tmp_path_factory, tiny_cache)
    port = free_port()
    run_dir = tmp_path / "run"
    processes = []
    for node in range(2):
        launcher = [
            *TORCHRUN,
            "--nnodes=2",
            "--nproc_per_node=1",
            f"--node_rank={node}",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
        ]
        command = [
            *launcher,
            "train.py",
            *COMMON,
            "adapter=lora",
            "hardware.deepspeed.zero_stage=2",
            "logger=none",
            f"paths.cache_dir={tiny_cache}",
            f"hydra.run.dir={run_dir}",
        ]
        processes.append(subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert_every_rank_exited_0(process.returncode, stderr)
    assert losses(run_dir) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("together", [True, False], ids=["finished", "error"])
def test_a_rank_leaves_the_process_group_when_the_run_ends(together):
    """Finished (barrier, then destroy) or ended by an error (destroy without waiting for the others):
    either way no process group is left for interpreter shutdown to tear down."""
    import torch
    import torch.distributed as dist

    from medtune.distributed import leave_process_group

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", world_size=1, rank=0)
    dist.all_reduce(torch.ones(3))
    leave_process_group(together)
    assert not dist.is_initialized()
