"""Shared fixtures: compose the real Hydra configs, run real training in-process on the tiny model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# train.py's own defaults are the real embedded model (minutes on a CPU); the suite runs on the
# random-init tiny model and the bundled sample set unless a test names another option.
TINY_TRAIN_DEFAULTS = ("model=tiny", "dataset=sample", "prompt=alpaca", "exam=sample")


def tiny_defaults(overrides) -> list[str]:
    """`overrides` plus the tiny options for every group it does not set (an experiment sets its own)."""
    overrides = list(overrides)
    if any(o.lstrip("+").startswith("experiment=") for o in overrides):
        return overrides
    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    return overrides + [d for d in TINY_TRAIN_DEFAULTS if d.split("=", 1)[0] not in named]


def train_args(args) -> list[str]:
    """A `python train.py ...` argument list with the tiny defaults appended (other scripts unchanged)."""
    args = list(args)
    if "train.py" not in args:
        return args
    at = args.index("train.py")
    flags, overrides, rest = [], [], iter(args[at + 1 :])
    for arg in rest:  # Hydra's flags first, then every override in one run (argparse wants them together)
        if arg.startswith("-"):
            flags += [arg, next(rest)] if arg in ("--cfg", "-c", "--package", "-p", "--info", "-i") else [arg]
        else:
            overrides.append(arg)
    return args[: at + 1] + flags + tiny_defaults(overrides)


# Under pytest-xdist (`make test` runs one worker per core): each worker, and every process it starts,
# computes on its share of the cores, so two workers do not fight over the same two (torch reads this
# when it is first imported, after this file).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(share))

# No test may reach a model hub or W&B servers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One model cache for the whole session: the tiny checkpoint is built once, each real model's GGUF
    converted once. Under pytest-xdist the workers share it (the cache is written for concurrent use:
    a lock per conversion, atomic renames), so no worker converts a model another one has."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "shared-cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("cache")


# The files that hold the suite's longest tests, longest first (measured with --durations on this 2-core
# machine: the default SmolLM2 run, the resume runs under DeepSpeed, the real-weights loss paths, the sweeps,
# the server outage, the two-rank runs).
LONG_FILES = (
    "test_real_models.py",
    "test_resume.py",
    "test_target_loss.py",
    "test_sweep.py",
    "test_eval_backends.py",
    "test_distributed.py",
    "test_loglik.py",
    "test_training.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Each file's tests kept together and in order, the long files first, then the files with the most
    end-to-end (`slow`) tests: with one xdist worker per core (`--dist loadfile`) the long files start
    at once and short ones fill in at the end, instead of one long file running alone last."""

    def file_of(item) -> str:
        return item.nodeid.split("::")[0]

    slow: dict[str, int] = {}
    for item in items:
        slow[file_of(item)] = slow.get(file_of(item), 0) + bool(item.get_closest_marker("slow"))
    seen = {name: index for index, name in enumerate(dict.fromkeys(file_of(i) for i in items))}

    def rank(item) -> tuple[int, int, int]:
        name = Path(file_of(item)).name
        long = LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)
        return long, -slow[file_of(item)], seen[file_of(item)]

    items.sort(key=rank)


@pytest.fixture()
def compose():
    """compose(overrides) -> DictConfig, through Hydra's own compose API and the real conf/."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from medtune.config.store import register_configs

    register_configs()

    def _compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train"):
        overrides = tiny_defaults(overrides) if config_name == "train" else list(overrides)
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides)

    return _compose


@pytest.fixture()
def typed(compose):
    """typed(overrides) -> TrainRunConfig after every cross-group rule."""
    from medtune.config.schema import TrainRunConfig
    from medtune.jobs import to_typed

    def _typed(overrides=()):
        return to_typed(compose(overrides), TrainRunConfig)

    return _typed


def job_runner(job_name: str, compose, tmp_path, tiny_cache, default_dir: str):
    """run(overrides, name, choices) -> the result of a real in-process job of `job_name` (train, evaluate,
    judge, ...) in tmp_path/name: its config composed and checked as the entry script does, then
    `entry.execute`. `choices` are Hydra's group choices (a training run's default: its model and adapter)."""
    from medtune.config.job import JobContext
    from medtune.entry import execute
    from medtune.jobs import JOBS

    spec = next(job for job in JOBS if job.name == job_name)

    def _run(overrides=(), name: str = default_dir, choices: dict | None = None):
        overrides = [f"paths.output_root={tmp_path}", f"paths.cache_dir={tiny_cache}", *overrides]
        cfg = spec.validate(compose(overrides, config_name=job_name), overrides)
        if choices is None and job_name == "train":
            choices = {"model": cfg.model.name, "adapter": cfg.adapter.name}
        job = JobContext(
            run_dir=tmp_path / name,
            task_name=job_name,
            override_dirname=",".join(o for o in overrides if not o.startswith("paths.")),
            choices=choices or {},
            overrides=tuple(overrides),
        )
        return execute(spec, cfg, job)

    return _run


@pytest.fixture()
def run_eval(compose, tmp_path, tiny_cache):
    """run_eval(overrides, name) -> metrics of a real in-process evaluate.py job in tmp_path/name."""
    return job_runner("evaluate", compose, tmp_path, tiny_cache, default_dir="eval")


@pytest.fixture()
def run_judge(compose, tmp_path, tiny_cache):
    """run_judge(overrides, name) -> metrics of a real in-process judge.py job in tmp_path/name."""
    return job_runner("judge", compose, tmp_path, tiny_cache, default_dir="judge")


@pytest.fixture()
def shared_data() -> Path:
    """The shared data folder (MEDTUNE_SHARED, default ../shared), or skip."""
    root = Path(os.environ.get("MEDTUNE_SHARED", REPO.parent / "shared"))
    if not (root / "data" / "igakuqa").is_dir():
        pytest.skip(f"shared data not found at {root} (set MEDTUNE_SHARED to the folder that holds data/igakuqa)")
    return root


@pytest.fixture()
def run_train(compose, tmp_path, tiny_cache):
    """run_train(overrides, name, choices) -> TrainResult of a real in-process training run in tmp_path/name."""
    return job_runner("train", compose, tmp_path, tiny_cache, default_dir="run")


def cli(*args: str, cwd: Path = REPO, timeout: int = 600, env: dict | None = None):
    """Run an entry script as a user would, with this interpreter."""
    import subprocess

    return subprocess.run(
        [sys.executable, *train_args(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
