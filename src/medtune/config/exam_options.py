"""Exams named by their conf/exam option outside the `exam` group: train.py's retention exams
(`exam_eval.retention=[medqa_en]`). Each is read the way the `exam` group would compose it: the
option's YAML (its defaults list, which only picks evaluate.py's prompt, is not used) over the
ExamConfig schema, its `${paths.*}` interpolations resolved against the run's paths."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medtune.config.exam_schema import ExamConfig
from medtune.config.schema import PathsConfig
from medtune.errors import ConfigError

REPO_CONF = Path(__file__).resolve().parents[3] / "conf"  # the repository's configs (editable install)


def conf_dir() -> Path:
    """The running Hydra app's config folder (train.py's conf/), else the repository's."""
    try:
        from hydra.core.hydra_config import HydraConfig

        sources = HydraConfig.get().runtime.config_sources
        main = next((s for s in sources if s.provider == "main" and s.schema == "file"), None)
        if main is not None:
            return Path(main.path)
    except ValueError:  # no Hydra app is running (a test, a library call)
        pass
    return REPO_CONF


def exam_option_names(folder: Optional[Path] = None) -> list[str]:
    return sorted(p.stem for p in ((folder or conf_dir()) / "exam").glob("*.yaml"))


def exam_option(name: str, paths: PathsConfig, key: str, folder: Optional[Path] = None) -> ExamConfig:
    """The ExamConfig of conf/exam/<name>.yaml; `key` names the setting that asked for it in errors."""
    folder = folder or conf_dir()
    path = folder / "exam" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(exam_option_names(folder))
        raise ConfigError([f"{key}: no exam option {name!r} (no {path}); the options are: {known}."])
    try:
        loaded = OmegaConf.load(path)
        loaded.pop("defaults", None)
        root = OmegaConf.create({"paths": OmegaConf.structured(paths)})
        root.exam = OmegaConf.merge(OmegaConf.structured(ExamConfig), loaded)
        exam = OmegaConf.to_object(root.exam)
    except OmegaConfBaseException as error:
        raise ConfigError([f"{key}: exam option {name!r} ({path}) does not read as an exam: {error}"]) from error
    return exam
