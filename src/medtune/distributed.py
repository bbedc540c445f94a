"""Process rank facts from the launcher's environment (torchrun, deepspeed, SLURM), without torch; joining
and leaving the launcher's process group (torch imported only then)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Rank 0 alone writes W&B, files and progress bars."""
    return rank() == 0


def ensure_process_group(on_cpu: bool, deepspeed: bool = False) -> None:
    """Join the launcher's process group now (gloo on CPU, NCCL on GPUs), before any model loads.

    DeepSpeed's ZeRO-3 loading (zero.Init) checks the batch sizes against the world size while
    the weights load, so the group must exist by then; Trainer would only create it later.
    """
    if world_size() <= 1:
        if not deepspeed:
            return
        as_the_only_rank()
    backend = "gloo" if on_cpu else "nccl"
    if deepspeed:  # DeepSpeed keeps its own handle on the group (deepspeed.comm); it must know it too
        import deepspeed as ds

        from medtune.quiet import quiet_prints

        clear_stale_build_locks()
        if on_cpu:
            skip_shared_memory_op()
        with quiet_prints():  # DeepSpeed's "... built successfully" lines, on every rank
            ds.init_distributed(dist_backend=backend)
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend)


def as_the_only_rank() -> None:
    """DeepSpeed creates a process group even for one process. Started without a launcher
    (`python train.py hardware.deepspeed.zero_stage=2`), it finds none of a launcher's variables and
    looks for MPI to learn its rank, which stops with `No module named 'mpi4py'`. Such a run is rank 0
    of 1: it gets the variables `torchrun --nproc_per_node 1` would give it (a free local port), and
    joins its group of one like any rank."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        os.environ.setdefault(name, value)


SHARED_MEMORY_OP = "deepspeed_shm_comm"


def skip_shared_memory_op() -> None:
    """On CPU, DeepSpeed's communication backend compiles its shared-memory all-reduce op with the C++
    compiler when the group is created: about a minute of both cores on each machine and environment
    (the build is redone when the venv moves). That op serves only DeepSpeed's inference all-reduce;
    ZeRO training goes through torch.distributed (gloo) whether it exists or not. Marking it
    incompatible in DeepSpeed's table of ops (which DeepSpeed keeps for the process so that such edits
    hold) makes the backend skip the build and use gloo for everything."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[SHARED_MEMORY_OP] = False


STALE_BUILD_LOCK_S = 15 * 60  # a torch extension (a DeepSpeed op) builds in about a minute


def clear_stale_build_locks(older_than_s: float = STALE_BUILD_LOCK_S) -> list[str]:
    """Remove the lock files of torch extension builds that were killed mid-build.

    DeepSpeed builds its shared-memory communication op on first use with torch's extension builder,
    which marks a build by creating `<build dir>/lock` and waits, without limit, while that file exists.
    A build killed before it finished (Ctrl-C, a scheduler's time limit) leaves the file behind, and
    every later multi-process run then hangs at start with no message. A lock older than any build
    is such a leftover: removed here, and said. Returns the paths removed.
    """
    import time
    from pathlib import Path

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache" / "torch_extensions")
    removed = []
    now = time.time()
    for lock in Path(root).glob("*/*/lock"):
        try:
            if now - lock.stat().st_mtime < older_than_s:
                continue
            lock.unlink()
        except FileNotFoundError:
            continue  # another rank removed it first
        except OSError as error:
            print(
                f"medtune: warning: {lock} is left from a build that did not finish and cannot be removed "
                f"({error.strerror}); if this run hangs at start, delete it.",
                file=sys.stderr,
                flush=True,
            )
            continue
        removed.append(str(lock))
        print(
            f"medtune: removed {lock}, left by a build of {lock.parent.name} that did not finish "
            f"(it would make this run wait forever); the op is built again.",
            file=sys.stderr,
            flush=True,
        )
    return removed


LEAVE_PATIENCE_S = 30.0  # on the error path: how long a rank waits to leave before it just exits


@contextmanager
def leaving_process_group() -> Iterator[None]:
    """Run the block, then leave the launcher's process group (`leave_process_group`), on the error
    path too. A preemption stop counts as finished: every rank stopped at the same step and saved."""
    from medtune.errors import Preempted

    together = False
    try:
        yield
        together = True
    except Preempted:
        together = True
        raise
    finally:
        leave_process_group(together)


def leave_process_group(together: bool, patience_s: float = LEAVE_PATIENCE_S) -> None:
    """End this rank's part in the process group, so that every rank of a finished run exits 0.

    A rank that exits without it leaves the group to interpreter shutdown: gloo's worker threads may
    still hold finished work (and its tensors) then, and tearing them down there can abort the
    process ("terminate called without an active exception", SIGABRT; pytorch/pytorch#190489), so
    torchrun calls a finished run failed, and a preempted one loses its exit code 75.

    `together`: every rank got here at the same point (the run finished, or stopped for preemption),
    so they first wait for each other at a barrier, then destroy the group. Otherwise (an error on
    this rank) another rank may still be inside a collective that never completes: the group is
    destroyed without a barrier, and a rank that cannot leave within `patience_s` exits anyway
    rather than hang until the collective's timeout.
    """
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if not together:
        import threading

        left = threading.Event()

        def leave() -> None:
            try:
                destroy_process_group()
            except Exception:  # noqa: BLE001 - the error that ended the run is the one to report
                pass
            finally:
                left.set()

        threading.Thread(target=leave, name="medtune-leave-process-group", daemon=True).start()
        if not left.wait(patience_s):
            print(
                f"medtune: rank {rank()} did not leave the process group within {patience_s:.0f} s "
                "(another rank is still in a collective); exiting without it.",
                file=sys.stderr,
                flush=True,
            )
        return
    try:
        if dist.get_backend() == "nccl":
            import torch

            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
        destroy_process_group()
    except Exception as error:  # noqa: BLE001 - leaving must not turn a finished run into a failure
        print(f"medtune: rank {rank()} could not leave the process group cleanly: {error}", file=sys.stderr)


def destroy_process_group() -> None:
    """torch's group, and DeepSpeed's handles on it when DeepSpeed joined it (`ensure_process_group`)."""
    import torch.distributed as dist

    ds = sys.modules.get("deepspeed.comm")
    if ds is not None and ds.is_initialized():
        ds.destroy_process_group()
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End a rank of a multi-process launch (WORLD_SIZE > 1) at once with `code`, once its job is over;
    a single process returns and exits the usual way.

    Leaving the process group is not enough: at interpreter shutdown C++ objects of torch's
    distributed and autograd runtimes are destroyed with their threads still joinable, and under load
    a rank of a finished ZeRO-3 run was seen to abort there ("terminate called without an active
    exception", SIGABRT), which torchrun reports as a failed run. Everything the job writes is
    closed by then (checkpoints, the adapter, W&B finished, the console log), so the rank flushes
    its streams, ends W&B's service, and exits without running the teardown."""
    if world_size() <= 1:
        return
    import logging

    wandb = sys.modules.get("wandb")
    if wandb is not None and hasattr(wandb, "teardown"):
        try:
            wandb.teardown(exit_code=code)
        except Exception:  # noqa: BLE001 - the run's files are written; the service ends with this process
            pass
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
