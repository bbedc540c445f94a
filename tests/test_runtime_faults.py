"""A catalogue of faults while a run trains or reloads: each case checks the message and what is left on disk.

The faults are real or injected at the lowest level the Trainer reaches: a checkpoint file cut in
half, a disk-full `OSError(ENOSPC)` / `SafetensorError` raised by the save function transformers
and PEFT call (after half the bytes are written, as a full disk does), a Ctrl-C sent to a
`train.py` subprocess, and a truncated adapter in a finished run dir. Every message names the
input, the problem and the fix (`Expect`); every case states the run dir it leaves behind.
"""

from __future__ import annotations

import errno
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, TINY_TRAIN_DEFAULTS
from medtune.errors import PREEMPTED_EXIT_CODE, ModelUnavailableError
from medtune.training.checkpoints import CheckpointError, DiskFullError, checkpoint_problems

SAVE_EVERY = 2
# Tiny model, few steps; evaluation at every save so that resuming must not log an evaluation twice.
RUN = ["train.save_steps=2", "train.eval_steps=2", "train.logging_steps=1", "logger=none", "exam_eval.enabled=false"]


@dataclass(frozen=True)
class Expect:
    input: str  # regex: the file or folder the message names
    problem: str  # regex: what is wrong
    fix: str  # regex: what to do


def check_message(message: str, expect: Expect) -> None:
    assert "Traceback" not in message
    for part in ("input", "problem", "fix"):
        pattern = getattr(expect, part)
        assert re.search(pattern, message, re.S), f"the {part} /{pattern}/ is not in:\n{message}"


# --- what a run dir holds ----------------------------------------------------------------------------


def checkpoint_names(run_dir: Path) -> list[str]:
    """Everything in the checkpoints folder, temporary folders included."""
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def metrics_steps(run_dir: Path) -> tuple[list[int], list[int]]:
    """(steps of the training-loss rows, steps of the eval-loss rows) in metrics.jsonl, in file order."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "train/loss" in r], [r["step"] for r in rows if "eval/loss" in r]


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- faults injected where the save writes ---------------------------------------------------------


def fail_second_write(monkeypatch, module, name: str, target: str, raised: BaseException) -> None:
    """Replace `module.name` (a save function) so that its second write of a file named `target` writes
    half a file and raises `raised`, as a full disk does; other writes go through."""
    original = getattr(module, name)
    seen = []

    def save(obj, path, *args, **kwargs):
        if Path(path).name == target:
            seen.append(path)
            if len(seen) == 2:
                original(obj, path, *args, **kwargs)
                cut_in_half(Path(path))
                raise raised
        return original(obj, path, *args, **kwargs)

    monkeypatch.setattr(module, name, save)


def full_disk_in_torch_save(monkeypatch) -> None:
    import torch

    fail_second_write(
        monkeypatch, torch, "save", "optimizer.pt", OSError(errno.ENOSPC, "No space left on device", "optimizer.pt")
    )


def full_disk_in_safetensors(monkeypatch) -> None:
    import peft.peft_model
    from safetensors import SafetensorError

    # What safetensors raises on a full disk (seen on a 64 KiB tmpfs).
    raised = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    fail_second_write(monkeypatch, peft.peft_model, "safe_save_file", "adapter_model.safetensors", raised)


# --- the cases ----------------------------------------------------------------------------------------


def test_a_truncated_optimizer_in_the_newest_checkpoint_falls_back_to_the_one_before(run_train, tmp_path, capsys):
    run_dir, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    run_train([*RUN, "train.max_steps=4"])
    cut_in_half(checkpoints / "checkpoint-4" / "optimizer.pt")  # reads back as OSError: [Errno 22] Invalid argument
    leftover = checkpoints / ".tmp-checkpoint-6" / "checkpoint-6"  # a save cut short by a kill
    leftover.mkdir(parents=True)
    (leftover / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    capsys.readouterr()

    result = run_train([*RUN, "train.max_steps=4"])

    out = capsys.readouterr().out
    check_message(
        out,
        Expect(
            input=rf"skipping {re.escape(str(checkpoints / 'checkpoint-4'))}: optimizer.pt",
            problem=r"optimizer.pt does not load \([\d.]+ KiB; OSError: \[Errno 22\] Invalid argument\)",
            fix=r"trying the checkpoint before it",
        ),
    )
    assert f"resuming from {checkpoints / 'checkpoint-2'}" in out
    assert "removed .tmp-checkpoint-6, a checkpoint save that was cut short" in out
    assert result.summary["train/resumed_from"] == str(checkpoints / "checkpoint-2")
    assert result.summary["train/steps"] == 4
    # Left on disk: checkpoint-4 written again, whole; no temporary folder; each step logged once.
    assert checkpoint_names(run_dir) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoint_problems(checkpoints / "checkpoint-4") == []
    assert metrics_steps(run_dir) == ([1, 2, 3, 4], [0, 2, 4])


def test_when_no_checkpoint_loads_the_run_stops_and_names_each_one(run_train, tmp_path):
    run_dir, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    run_train([*RUN, "train.max_steps=4"])
    cut_in_half(checkpoints / "checkpoint-4" / "optimizer.pt")
    (checkpoints / "checkpoint-2" / "adapter_model.safetensors").write_bytes(b"")
    before = {name: file_bytes(checkpoints / name) for name in checkpoint_names(run_dir)}
    summary = (run_dir / "train_summary.json").read_text()

    with pytest.raises(CheckpointError) as raised:
        run_train([*RUN, "train.max_steps=4"])

    check_message(
        str(raised.value),
        Expect(
            input=re.escape(str(checkpoints)) + r": none of its 2 checkpoints can be loaded",
            problem=r"checkpoint-4: optimizer.pt does not load \(.*Invalid argument\).*"
            r"checkpoint-2: adapter_model.safetensors does not load \(0 bytes; SafetensorError: .*header too small\)",
            fix=r"Fix: delete them \(rm -r \S+checkpoint-4 \S+checkpoint-2\) to start again from step 0 .*new run dir",
        ),
    )
    # Left on disk: both checkpoints exactly as they were, and the earlier run's outputs untouched.
    assert {name: file_bytes(checkpoints / name) for name in checkpoint_names(run_dir)} == before
    assert (run_dir / "train_summary.json").read_text() == summary


@pytest.mark.parametrize(
    "inject",
    [full_disk_in_torch_save, full_disk_in_safetensors],
    ids=["enospc-in-optimizer-pt", "safetensors-os-error-28"],
)
def test_a_full_disk_at_the_second_save_keeps_the_first_and_the_rerun_finishes(
    run_train, tmp_path, monkeypatch, inject
):
    from medtune.run_claim import write_failure_record

    run_dir, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    overrides = [*RUN, "train.max_steps=6"]
    inject(monkeypatch)

    with pytest.raises(DiskFullError) as raised:
        run_train(overrides)

    check_message(
        str(raised.value),
        Expect(
            input=rf"checkpoint-4 could not be saved in {re.escape(str(checkpoints))}",
            problem=r"the disk is full \((OSError: \[Errno 28\]|SafetensorError: .*os error 28).*"
            r"The save needs about [\d.]+ KiB \(the size of checkpoint-2\); [\d.]+ [KMGT]iB is free there now",
            fix=r"checkpoint-2 is intact\. Fix: free space on that disk, lower train.save_total_limit \(now 2\).*"
            r"continue from checkpoint-2",
        ),
    )
    # Left on disk: checkpoint-2 whole, no half checkpoint-4 and no temporary folder, no adapter.
    assert checkpoint_names(run_dir) == ["checkpoint-2"]
    assert checkpoint_problems(checkpoints / "checkpoint-2") == []
    assert not (run_dir / "adapter").exists()

    write_failure_record(run_dir, raised.value)  # what the entry layer does with the error
    monkeypatch.undo()  # space is freed
    result = run_train(overrides)

    assert result.summary["train/resumed_from"] == str(checkpoints / "checkpoint-2")
    assert result.summary["train/steps"] == 6
    assert not (run_dir / "failure.json").exists()
    assert checkpoint_names(run_dir) == ["checkpoint-4", "checkpoint-6"]
    assert metrics_steps(run_dir) == ([1, 2, 3, 4, 5, 6], [0, 2, 4, 6])


def test_a_second_ctrl_c_stops_at_once():
    from medtune.training.preemption import PreemptionCallback

    before = signal.getsignal(signal.SIGINT)
    preemption = PreemptionCallback().install()
    try:
        signal.raise_signal(signal.SIGINT)  # the first: noted, the run would save at the end of its step
        assert preemption.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        preemption.uninstall()
    assert signal.getsignal(signal.SIGINT) is before
    # Python's own Ctrl-C handler is not handed the signal: it would raise KeyboardInterrupt over the clean exit.
    assert preemption.preempted("checkpoint-3").previous_handler is None


def test_a_truncated_adapter_in_a_run_dir_is_named_with_the_fix(run_train, run_eval, tmp_path):
    from medtune.chat import load_chat_model
    from medtune.modeling.export import export_run

    result = run_train(["train.max_steps=1", "train.save_steps=0", "logger=none", "exam_eval.enabled=false"])
    adapter = result.run_dir / "adapter" / "adapter_model.safetensors"
    cut_in_half(adapter)
    truncated = adapter.read_bytes()
    expect = Expect(
        input=re.escape(str(adapter)) + " cannot be read",
        problem=r"\([\d.]+ KiB; SafetensorError: .*incomplete metadata.*\): the file is cut short or damaged",
        fix=rf"Copy it again from where run={re.escape(str(result.run_dir))} was trained, or train the run again",
    )

    for load in (
        lambda: run_eval([f"run={result.run_dir}", "exam.max_questions=2"]),  # evaluate.py run=<dir>
        lambda: load_chat_model(result.run_dir),  # medtune chat <dir>
        lambda: export_run(result.run_dir),
    ):  # medtune export <dir>
        with pytest.raises(ModelUnavailableError) as raised:
            load()
        check_message(str(raised.value), expect)
    # Left on disk: the adapter as it was, and no export.
    assert adapter.read_bytes() == truncated
    assert not (result.run_dir / "export").exists()


# --- Ctrl-C to train.py ------------------------------------------------------------------------------

STEPS = 12


def command(run_dir: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "train.py",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={cache}",
        f"train.max_steps={STEPS}",
        *RUN,
        *TINY_TRAIN_DEFAULTS,
    ]


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return max(metrics_steps(run_dir)[0], default=0) if path.is_file() else 0


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_exits_as_preempted_and_the_rerun_continues(tmp_path, tiny_cache):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        command(run_dir, tiny_cache), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while logged_steps(run_dir) < 3:
        assert process.poll() is None, f"training ended before step 3: {process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "training did not reach step 3 in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)

    assert process.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    assert "received SIGINT (Ctrl-C); saving a checkpoint at the end of this step" in stdout
    assert "KeyboardInterrupt" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    saved = max((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    check_message(
        stderr,
        Expect(
            input=rf"the checkpoint is in {re.escape(str(saved))}",
            problem=r"stopped by SIGINT \(Ctrl-C\) after step \d+",
            fix=r"Run the same command in the same run dir",
        ),
    )
    # Left on disk: a whole checkpoint at the step that was running, nothing temporary, no failure record.
    assert int(saved.name.split("-")[1]) >= 3
    assert checkpoint_problems(saved) == []
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert not (run_dir / "failure.json").exists() and not (run_dir / "adapter").exists()

    resumed = subprocess.run(command(run_dir, tiny_cache), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {saved}" in resumed.stdout
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["train/steps"] == STEPS
    train_steps, eval_steps = metrics_steps(run_dir)
    assert train_steps == list(range(1, STEPS + 1)) and len(eval_steps) == len(set(eval_steps))


def test_a_build_lock_left_by_a_killed_op_build_is_removed_and_a_live_one_kept(tmp_path, monkeypatch, capsys):
    """torch's extension builder waits forever while `<build dir>/lock` exists: a lock older than any
    build (a build killed mid-way) would hang every later multi-process DeepSpeed run at start."""
    import os
    import time

    from medtune.distributed import STALE_BUILD_LOCK_S, clear_stale_build_locks

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale = tmp_path / "py311_cpu" / "deepspeed_shm_comm" / "lock"
    live = tmp_path / "py311_cpu" / "other_op" / "lock"
    for lock in (stale, live):
        lock.parent.mkdir(parents=True)
        lock.touch()
    long_ago = time.time() - STALE_BUILD_LOCK_S - 60
    os.utime(stale, (long_ago, long_ago))
    assert clear_stale_build_locks() == [str(stale)]
    assert not stale.exists() and live.exists()
    err = capsys.readouterr().err
    assert f"removed {stale}" in err and "deepspeed_shm_comm" in err and "did not finish" in err
    assert clear_stale_build_locks() == []  # nothing left to clear, nothing said
    assert capsys.readouterr().err == ""
