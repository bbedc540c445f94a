"""One description of the model a run uses, resolved once from its checkpoint, before validation.

Validation (the size check), the planner, loading, export and W&B naming all read this object
instead of guessing from YAML. Where the checkpoint is on this machine its own `config.json`
(or GGUF metadata) decides the architecture, and the YAML numbers, if they disagree, are
reported. The YAML numbers remain only as the offline fallback for planning a model that is not
here (`dry_run=true`) and as the recipe of the random-init `model=tiny`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtune.config.schema import ArchitectureConfig, DType, ModelConfig, ModelSource
from medtune.errors import ModelUnavailableError
from medtune.run_dir import TrainRunDir

# ArchitectureConfig field -> the numbers the checkpoint's config gives for it.
ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
)


@dataclass(frozen=True)
class ModelDescription:
    name: str
    kind: str  # tiny | checkpoint | hub | gguf | embedded | run | export
    origin: str  # where the weights come from, for people: a folder, a hub id, a .gguf file, a package
    checkpoint: str | None  # what from_pretrained loads (folder or hub id); None = not on this machine yet
    architecture: ArchitectureConfig
    dtype: DType
    hf_config: Any = None  # the checkpoint's transformers config; None = YAML numbers only
    disagreements: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def from_checkpoint(self) -> bool:
        return self.hf_config is not None

    @property
    def model_type(self) -> str:
        return self.hf_config.model_type if self.hf_config is not None else self.architecture.model_type

    def num_parameters(self) -> int | None:
        """Exact, from the checkpoint's config on the meta device; else estimated from the YAML numbers."""
        if self.hf_config is not None:
            return count_from_config(self.hf_config)
        if None in (self.architecture.hidden_size, self.architecture.num_layers, self.architecture.vocab_size):
            return None
        from medtune.modeling.architecture import estimate_num_parameters

        return estimate_num_parameters(self.architecture)

    @property
    def counted_from(self) -> str:
        return "counted from its config" if self.from_checkpoint else "estimated from model.architecture"

    def summary(self) -> dict[str, Any]:
        """What W&B records about the model (the trained model's own counts are logged beside it)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "origin": self.origin,
            "checkpoint": self.checkpoint,
            "model_type": self.model_type,
            "dtype": self.dtype.value,
            "from_checkpoint": self.from_checkpoint,
        }


def count_from_config(hf_config: Any) -> int:
    """Every parameter of the model `hf_config` describes (tied weights once), built on the meta device."""
    key = json.dumps(hf_config.to_dict(), sort_keys=True, default=str)
    if key not in _COUNTS:
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_config)
        _COUNTS[key] = sum(p.numel() for p in model.parameters())
    return _COUNTS[key]


_COUNTS: dict[str, int] = {}


def architecture_from_config(hf_config: Any, fallback: ArchitectureConfig) -> ArchitectureConfig:
    """ArchitectureConfig numbers read from a transformers config (any family's own field names)."""
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    hidden = _first(text, "hidden_size", "n_embd", "d_model")
    heads = _first(text, "num_attention_heads", "n_head")
    values = {
        "model_type": hf_config.model_type,
        "hidden_size": hidden,
        "num_layers": _first(text, "num_hidden_layers", "n_layer"),
        "num_heads": heads,
        "num_kv_heads": _first(text, "num_key_value_heads") or heads,
        "intermediate_size": _first(text, "intermediate_size", "n_inner", "ffn_dim")
        or (4 * hidden if hidden else None),
        "vocab_size": _first(text, "vocab_size"),
        "max_position_embeddings": _first(text, "max_position_embeddings", "n_positions", "seq_length")
        or fallback.max_position_embeddings,
        "tie_word_embeddings": bool(getattr(hf_config, "tie_word_embeddings", False)),
    }
    return dataclasses.replace(fallback, **values)


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def disagreements(yaml_arch: ArchitectureConfig, real: ArchitectureConfig, checkpoint: str) -> tuple[str, ...]:
    """The YAML numbers that the checkpoint contradicts (numbers left null in YAML are not compared)."""
    found = []
    for name in ("model_type", *ARCHITECTURE_FIELDS):
        said, actual = getattr(yaml_arch, name), getattr(real, name)
        if name in ("tie_word_embeddings", "max_position_embeddings", "model_type") and yaml_arch.hidden_size is None:
            continue  # defaults of an option that states no numbers
        if said is not None and said != actual:
            found.append(f"model.architecture.{name}: the config says {said}, the checkpoint {checkpoint} has {actual}")
    return tuple(found)


def describe_model(model: ModelConfig, cache_dir: str | Path, materialize: bool = True) -> ModelDescription:
    """Resolve `model` once per process (memoized): where its weights are and what they are.

    `materialize=False` (every config check, dry runs) converts, joins, merges and builds nothing: it
    reads configs only, and a model that is not on this machine falls back to the YAML numbers."""
    recipe = model.architecture if model.source == ModelSource.tiny else None  # only tiny is built from YAML numbers
    key = (
        model.name,
        model.source.value,
        model.path,
        model.hub_id,
        model.gguf_file,
        tuple(model.package_files),
        model.sha256,
        model.revision,
        model.allow_download,
        str(cache_dir),
        materialize,
        json.dumps(dataclasses.asdict(recipe) if recipe else None, sort_keys=True, default=str),
        model.dtype.value,
    )
    if key in _DESCRIBED:
        return _DESCRIBED[key]
    resolved = _DESCRIBED.get((*key[:10], True, *key[11:]))
    if not materialize and resolved is not None:
        return resolved  # the same model, already found, converted and read: no second look
    from medtune.storage import storage_guard

    with storage_guard(
        Path(cache_dir),
        f"model={model.name}: the model cache (its converted or built weights)",
        kept="The models cached there before are unchanged (a conversion cut short is never used).",
        elsewhere="point paths.cache_dir at a writable dir with room (the model is converted there again)",
    ):
        described = _describe(model, Path(cache_dir), materialize)
    _DESCRIBED[key] = described
    return described


_DESCRIBED: dict[tuple, ModelDescription] = {}


def _describe(model: ModelConfig, cache_dir: Path, materialize: bool) -> ModelDescription:
    from medtune.modeling import gguf

    base = {"name": model.name, "dtype": model.dtype}
    given = model.path or model.gguf_file
    if given and model.source in (ModelSource.tiny, ModelSource.embedded):
        what = (
            "builds a random-init model from model.architecture"
            if model.source == ModelSource.tiny
            else "is the model shipped in an installed package"
        )
        raise ModelUnavailableError(
            f"model={model.name} {what} and would ignore model.path={given}; for your checkpoint use "
            f"model=local model.path={given} (it reads the checkpoint's own config)."
        )
    if model.source == ModelSource.tiny:
        checkpoint = str(tiny_checkpoint_for(model, cache_dir)) if materialize else None
        return ModelDescription(
            kind="tiny",
            origin="random-init, built locally",
            checkpoint=checkpoint,
            architecture=model.architecture,
            **base,
        )
    if model.source == ModelSource.embedded:
        return _from_package(model, cache_dir, materialize)
    located = gguf.split_gguf_path(model.path or "", model.gguf_file)
    if located is not None:
        file = located[0] / located[1]
        if not file.is_file():
            raise ModelUnavailableError(
                f"model={model.name}: the GGUF file {file} does not exist; point model.path at the .gguf file "
                "(or model.path at its folder and model.gguf_file at its name)."
            )
        return _from_gguf(model, file, cache_dir, materialize, "gguf", str(file))
    if model.path:
        return _from_folder(model, Path(model.path), materialize)
    if model.hub_id:
        return _from_hub(model)
    raise ModelUnavailableError(f"model={model.name} has neither model.path nor model.hub_id; set model.path.")


def _from_package(model: ModelConfig, cache_dir: Path, materialize: bool) -> ModelDescription:
    from medtune.modeling import gguf
    from medtune.modeling.embedded import embedded_gguf, embedded_gguf_if_ready, gguf_name

    package = model.package_files[0].partition("/")[0] if model.package_files else "?"
    file, parts = embedded_gguf_if_ready(model, cache_dir)
    if file is None and not materialize:  # split chunks not joined yet: read the metadata from the parts
        origin, note = (
            f"{gguf_name(model)} from the packages {package} ...",
            "joined and converted on the first real run",
        )
        return _with_config(model, "embedded", origin, None, gguf.split_gguf_config(parts, gguf_name(model)), (note,))
    if materialize:
        file = embedded_gguf(model, cache_dir)  # joined once, its digest checked
    return _from_gguf(
        model, file, cache_dir, materialize, "embedded", f"{file.name} from the installed package {package}"
    )


def _from_gguf(
    model: ModelConfig, file: Path, cache_dir: Path, materialize: bool, kind: str, origin: str
) -> ModelDescription:
    from medtune.modeling import gguf

    folder = gguf.converted_dir(file, cache_dir)
    if materialize or gguf.is_converted(folder):
        folder = gguf.convert_gguf(file, cache_dir)
        return _with_config(model, kind, origin, str(folder), _read_config(str(folder), model))
    return _with_config(
        model,
        kind,
        origin,
        None,
        gguf.gguf_config(file),
        notes=(f"{file.name} is converted to safetensors on the first real run",),
    )


def _from_folder(model: ModelConfig, path: Path, materialize: bool) -> ModelDescription:
    if not path.is_dir():
        raise ModelUnavailableError(
            f"model.path={path} is not a directory or a .gguf file on this machine (model={model.name}): point it "
            "at a local checkpoint folder, a finished train.py run dir or a .gguf file."
        )
    run = TrainRunDir(path)
    kind = "run" if run.has_config else ("export" if run.is_export else "checkpoint")
    if materialize:
        folder = checkpoint_dir(path, model.name)
        return _with_config(model, kind, str(path), str(folder), _read_config(str(folder), model))
    found = run.checkpoint_dir()
    if found is not None:
        return _with_config(model, kind, str(path), str(found), _read_config(str(found), model))
    if run.run_info_path.is_file():  # a LoRA run: its base's config (the merge into export/ waits for a real run)
        base = run.read_run_info().get("checkpoint")
        if base and Path(base, "config.json").is_file():
            return _with_config(model, kind, str(path), None, _read_config(base, model))
    raise ModelUnavailableError(
        f"model.path={path} (model={model.name}) holds no config.json, and is not a train.py run dir with model/ or "
        "adapter/: point it at a Hugging Face checkpoint folder, a finished run, or a .gguf file."
    )


def hf_cache_has(repo_id: str, revision: str | None) -> bool:
    """Whether the local Hugging Face cache holds `repo_id`'s config.json (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)


def _from_hub(model: ModelConfig) -> ModelDescription:
    if hf_cache_has(model.hub_id, model.revision):
        return _with_config(model, "hub", model.hub_id, model.hub_id, _read_config(model.hub_id, model))
    # Not here: from_pretrained downloads it later if model.allow_download=true; until then the YAML numbers stand.
    return ModelDescription(
        name=model.name,
        kind="hub",
        origin=model.hub_id,
        checkpoint=model.hub_id if model.allow_download else None,
        architecture=model.architecture,
        dtype=model.dtype,
        notes=("not on this machine: the architecture numbers come from the YAML",),
    )


def _read_config(where: str, model: ModelConfig):
    from transformers import AutoConfig

    from medtune.modeling.load import check_architecture, load_kwargs

    check_architecture(where, model)
    try:
        return AutoConfig.from_pretrained(where, **load_kwargs(model))
    except (OSError, ValueError, KeyError) as error:
        raise ModelUnavailableError(
            f"model={model.name}: cannot read the config of {where} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); check model.path, or download the checkpoint first."
        ) from error


def _with_config(
    model: ModelConfig, kind: str, origin: str, checkpoint: str | None, hf_config: Any, notes: tuple[str, ...] = ()
) -> ModelDescription:
    real = architecture_from_config(hf_config, model.architecture)
    return ModelDescription(
        name=model.name,
        kind=kind,
        origin=origin,
        checkpoint=checkpoint,
        architecture=real,
        dtype=model.dtype,
        hf_config=hf_config,
        disagreements=disagreements(model.architecture, real, checkpoint or origin),
        notes=notes,
    )


def resolve_checkpoint(model: ModelConfig, cache_dir: Path) -> str:
    """What `from_pretrained` loads for `model`: its description's checkpoint, converted or built if needed."""
    checkpoint = describe_model(model, cache_dir).checkpoint
    if checkpoint is None:
        raise ModelUnavailableError(
            f"model={model.name}: the weights of {model.hub_id or model.path} are not on this machine; set model.path "
            "to a local copy, or allow a download with model.allow_download=true."
        )
    return checkpoint


def tiny_checkpoint_for(model: ModelConfig, cache_dir: Path) -> Path:
    from medtune.modeling.load import known_model_type, transformers_version
    from medtune.modeling.tiny import tiny_checkpoint

    model_type = model.architecture.model_type
    if not known_model_type(model_type):
        raise ModelUnavailableError(
            f"model={model.name}: model.architecture.model_type={model_type} is not an architecture "
            f"transformers {transformers_version()} knows, so the tiny model cannot be built; use a decoder "
            "it knows, e.g. model.architecture.model_type=llama (the default), mistral or qwen2."
        )
    return tiny_checkpoint(model.architecture, Path(cache_dir))


def checkpoint_dir(path: Path, name: str = "model") -> Path:
    """The checkpoint inside `path`: itself, a run's full model (`model/`), or a run's merged export."""
    run = TrainRunDir(path)
    found = run.checkpoint_dir()
    if found is not None:
        return found
    if (run.adapter_dir / "adapter_config.json").is_file():
        from medtune.modeling.export import export_run
        from medtune.reporting.console import console

        console.print(f"model.path={path} is a LoRA run: merging its adapter into its base once, into {run.export_dir}")
        export_run(path, run.export_dir, base=run_base_checkpoint(run.read_config(), run.read_run_info()))
        return run.export_dir
    raise ModelUnavailableError(
        f"model.path={path} (model={name}) holds no config.json, and is not a train.py run dir with model/ or "
        "adapter/: point it at a Hugging Face checkpoint folder or a finished run."
    )


def run_base_checkpoint(cfg: Any, info: dict) -> str:
    """The base the adapter was trained on: as recorded, or rebuilt from the run's model description
    when the recorded folder was a cache entry that is gone (a converted GGUF, the tiny model)."""
    recorded = info["checkpoint"]
    if not Path(recorded).is_absolute() or Path(recorded, "config.json").is_file():  # a hub id, or still there
        return recorded
    if (
        cfg.model.source.value in ("embedded", "tiny")
        or cfg.model.gguf_file
        or (cfg.model.path or "").endswith(".gguf")
    ):
        return resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
    return recorded
