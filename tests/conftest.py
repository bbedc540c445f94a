"""Shared fixtures: compose the real Hydra configs, run real training in-process on the tiny model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# No test may reach a model hub or W&B servers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One tiny-model cache for the whole session: the checkpoint is built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def compose():
    """compose(overrides) -> DictConfig, through Hydra's own compose API and the real conf/."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from medtune.config.store import register_configs

    register_configs()

    def _compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))

    return _compose


@pytest.fixture()
def typed(compose):
    """typed(overrides) -> TrainRunConfig after every cross-group rule."""
    from medtune.config.schema import TrainRunConfig
    from medtune.config.validate import to_typed

    def _typed(overrides=()):
        return to_typed(compose(overrides), TrainRunConfig)

    return _typed


@pytest.fixture()
def run_eval(compose, tmp_path, tiny_cache):
    """run_eval(overrides, name) -> metrics of a real in-process evaluate.py job in tmp_path/name."""
    from medtune.config.eval_schema import EvalRunConfig
    from medtune.config.job import JobContext
    from medtune.config.validate import to_typed
    from medtune.evaluation.task import run_evaluation

    def _run(overrides=(), name: str = "eval"):
        overrides = [f"paths.output_root={tmp_path}", f"paths.cache_dir={tiny_cache}", *overrides]
        cfg = to_typed(compose(overrides, config_name="evaluate"), EvalRunConfig)
        job = JobContext(run_dir=tmp_path / name, task_name="evaluate",
                         override_dirname=",".join(o for o in overrides if not o.startswith("paths.")))
        return run_evaluation(cfg, job)

    return _run


@pytest.fixture()
def shared_data() -> Path:
    """The shared data folder (MEDTUNE_SHARED, default ../shared), or skip."""
    root = Path(os.environ.get("MEDTUNE_SHARED", REPO.parent / "shared"))
    if not (root / "data" / "igakuqa").is_dir():
        pytest.skip(f"shared data not found at {root} (set MEDTUNE_SHARED to the folder that holds data/igakuqa)")
    return root


@pytest.fixture()
def run_train(typed, tmp_path, tiny_cache):
    """run_train(overrides, name) -> TrainResult of a real in-process training run in tmp_path/name."""
    from medtune.config.job import JobContext
    from medtune.training.task import run_training

    def _run(overrides=(), name: str = "run", choices: dict | None = None):
        overrides = [f"paths.output_root={tmp_path}", f"paths.cache_dir={tiny_cache}", *overrides]
        cfg = typed(overrides)
        job = JobContext(
            run_dir=tmp_path / name,
            override_dirname=",".join(o for o in overrides if not o.startswith("paths.")),
            choices=choices or {"model": cfg.model.name, "adapter": cfg.adapter.name},
        )
        return run_training(cfg, job)

    return _run


def cli(*args: str, cwd: Path = REPO, timeout: int = 600, env: dict | None = None):
    """Run an entry script as a user would, with this interpreter."""
    import subprocess

    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
