"""What a train.py run directory holds, and the one place that says whether it can be used.

    config.yaml         the resolved config the run was trained with
    run_info.json       the base checkpoint the adapter belongs to; written with the adapter, so a run
                        without it stopped before saving anything usable
    adapter/ | model/   the LoRA adapter (adapter_config.json + weights), or with adapter=full the model
    train_summary.json  written last: the training ran to its end
    failure.json        why the last attempt failed (medtune.entry writes it)
    export/             the merged standalone model, when `medtune export` (or model.path=<run>) made one

This module is a low layer: configuration rules import it, so it imports no task package and loads
no model library.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtune.errors import ConfigError, MedtuneError, ModelUnavailableError
from medtune.io import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from medtune.config.schema import TrainRunConfig

CONFIG_FILE = "config.yaml"
RUN_INFO_FILE = "run_info.json"
SUMMARY_FILE = "train_summary.json"
FAILURE_FILE = "failure.json"
ADAPTER_DIR = "adapter"
FULL_MODEL_DIR = "model"
EXPORT_DIR = "export"
EXPORT_FILE = "medtune_export.json"  # marks a `medtune export` directory
RUNS_HINT = "outputs/train/runs/<time>/"


class TrainRunDir:
    """A train.py run directory: the paths of what it holds, reading them, and what is wrong with it."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"TrainRunDir({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def run_info_path(self) -> Path:
        return self.path / RUN_INFO_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def failure_path(self) -> Path:
        return self.path / FAILURE_FILE

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def full_model_dir(self) -> Path:
        return self.path / FULL_MODEL_DIR

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    def saved_dir(self, full: bool) -> Path:
        """Where training saves what it trained: `model/` for adapter=full, else `adapter/`."""
        return self.full_model_dir if full else self.adapter_dir

    @property
    def has_config(self) -> bool:
        """config.yaml is there: the directory is a train.py run dir (finished or not)."""
        return self.config_path.is_file()

    @property
    def is_export(self) -> bool:
        """The directory is a `medtune export`, not a run."""
        return (self.path / EXPORT_FILE).is_file()

    @property
    def is_finished(self) -> bool:
        """The training ran to its end: run_info.json and train_summary.json, its last file, are there."""
        return self.summary_path.is_file() and self.run_info_path.is_file()

    # --- reading -------------------------------------------------------------------------------------

    def read_config(self) -> TrainRunConfig:
        """The typed config the run was trained with; ModelUnavailableError when there is none."""
        from omegaconf import OmegaConf

        from medtune.config.schema import TrainRunConfig

        if not self.has_config:
            raise ModelUnavailableError(self._missing_config())
        merged = OmegaConf.merge(OmegaConf.structured(TrainRunConfig), OmegaConf.load(self.config_path))
        return OmegaConf.to_object(merged)

    def adapter_kind(self) -> str | None:
        """`adapter.kind` as config.yaml spells it (lora, full, none), read without the schema; None if absent."""
        from omegaconf import OmegaConf

        if not self.has_config:
            return None
        kind = OmegaConf.select(OmegaConf.load(self.config_path), "adapter.kind", default=None)
        return None if kind is None else str(kind)

    def read_run_info(self) -> dict[str, Any]:
        """run_info.json; ModelUnavailableError saying why the run has none."""
        if not self.run_info_path.is_file():
            raise ModelUnavailableError(self._unfinished(None))
        return json.loads(self.run_info_path.read_text(encoding="utf-8"))

    def wandb_group(self) -> str | None:
        """The run's W&B group (evaluations of the run join it), if run_info.json names one."""
        if not self.run_info_path.is_file():
            return None
        return json.loads(self.run_info_path.read_text(encoding="utf-8")).get("wandb_group")

    def failure(self) -> dict[str, Any] | None:
        """failure.json, the error of the last attempt that failed; None when there is none."""
        if not self.failure_path.is_file():
            return None
        return json.loads(self.failure_path.read_text(encoding="utf-8"))

    def identity(self) -> str:
        """A digest of run_info.json and train_summary.json: it changes when the run is trained again."""
        parts = [path.read_bytes() for path in (self.run_info_path, self.summary_path) if path.is_file()]
        return hashlib.sha256(b"\n".join(parts)).hexdigest()[:16]

    def checkpoint_dir(self) -> Path | None:
        """A folder here that transformers loads as is (config.json): the directory itself, `model/`, or `export/`."""
        for candidate in (self.path, self.full_model_dir, self.export_dir):
            if (candidate / "config.json").is_file():
                return candidate
        return None

    # --- writing (train.py) --------------------------------------------------------------------------

    def write_config(self, cfg: TrainRunConfig) -> None:
        from omegaconf import OmegaConf

        write_text_atomic(self.config_path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    def write_run_info(self, info: dict[str, Any]) -> None:
        write_json_atomic(self.run_info_path, info)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def clear_failure(self) -> None:
        """An attempt that finished: an earlier attempt's failure.json no longer describes the run."""
        self.failure_path.unlink(missing_ok=True)

    # --- what is wrong with it -----------------------------------------------------------------------

    def problem(self, key: str | None = None) -> str | None:
        """Why this directory cannot be used as a finished train.py run (evaluated, judged, exported,
        chatted with, or generating QA pairs), or None when it can. The message names the directory
        (as `key=<dir>` when a setting gave it), what is missing, and the fix."""
        found = self._problem(key)
        return found[1] if found else None

    def require(self, key: str | None = None) -> None:
        """Raise `problem`'s message: a ConfigError for a run configured to train nothing, else
        ModelUnavailableError."""
        found = self._problem(key)
        if found:
            kind, message = found
            raise kind([message]) if kind is ConfigError else kind(message)

    def _subject(self, key: str | None) -> str:
        return f"{key}={self.path}" if key else str(self.path)

    def _point(self, key: str | None) -> str:
        return f"point {key} at" if key else "pass"

    def _missing_config(self, key: str | None = None) -> str:
        return (
            f"{self._subject(key)} is not the directory of a finished train.py run: it has no {CONFIG_FILE}, "
            f"so it is not a train.py run dir at all. {self._point(key).capitalize()} {RUNS_HINT} of a "
            "finished run."
        )

    def _unfinished(self, key: str | None, saved: str = "adapter or model") -> str:
        failure = None
        try:
            failure = self.failure()
        except (OSError, ValueError):
            pass
        if failure:
            first = (str(failure.get("message", "")).strip().splitlines() or [""])[0][:200]
            why = (
                f"the run failed before saving its {saved} ({failure.get('error_type', 'error')}: {first}; "
                f"{FAILURE_FILE} there has the whole error)"
            )
        else:
            why = f"the run stopped before saving its {saved} (it was killed, or is still running)"
        return (
            f"{self._subject(key)} has no {RUN_INFO_FILE}: {why}. Train it again (the same command continues "
            f"from its last checkpoint), or {self._point(key)} a finished run."
        )

    def _problem(self, key: str | None) -> tuple[type[MedtuneError], str] | None:
        subject, point = self._subject(key), self._point(key)
        if not self.path.exists():
            return (
                ModelUnavailableError,
                f"{subject} does not exist; {point} the run dir of a finished train.py run ({RUNS_HINT}).",
            )
        if not self.path.is_dir():
            return (
                ModelUnavailableError,
                f"{subject} is a file, not a directory; {point} the run dir of a finished train.py run ({RUNS_HINT}).",
            )
        if self.is_export:
            return ModelUnavailableError, (
                f"{subject} is already an export (it has {EXPORT_FILE}); load it with "
                "AutoModelForCausalLM.from_pretrained (or model.path=<it>), or "
                f"{point} the train run dir it came from."
            )
        if not self.has_config:
            return ModelUnavailableError, self._missing_config(key)
        import yaml
        from omegaconf.errors import OmegaConfBaseException

        try:
            kind = self.adapter_kind()
        except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException) as error:
            return ModelUnavailableError, (
                f"{subject}: {CONFIG_FILE} cannot be read ({type(error).__name__}: "
                f"{(str(error).strip().splitlines() or [''])[0][:200]}); restore it, or train the run again."
            )
        if kind == "none":
            return ConfigError, (
                f"{subject} was configured with adapter=none: it trained nothing, so there is nothing to load "
                "or merge. Its base checkpoint is already a standalone model (use it as model.path); or "
                f"{point} a run trained with adapter=lora, qlora, lora_int8 or full."
            )
        full = kind == "full"
        if not self.run_info_path.is_file():
            return ModelUnavailableError, self._unfinished(key, "model" if full else "adapter")
        saved = self.saved_dir(full)
        marker = "config.json" if full else "adapter_config.json"
        if not (saved / marker).is_file():
            return ModelUnavailableError, (
                f"{f'{key}={self.path}: ' if key else ''}{saved} has no {marker}: the {saved.name} of this run is "
                "missing or incomplete; train the run again, or restore that directory."
            )
        return None


def check_train_run(key: str, value: str | Path) -> list[str]:
    """Configuration rule: `key`=`value` names a finished train.py run dir. [] when it does, else its problem."""
    problem = TrainRunDir(value).problem(key)
    return [problem] if problem else []
