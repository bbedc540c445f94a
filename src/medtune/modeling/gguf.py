"""GGUF checkpoints: read their config, and convert them once into a safetensors folder in the cache.

transformers loads a GGUF file dequantized to float, but the loaded model cannot be saved as it
is (its config still says "quantized with gguf"). The conversion therefore copies the weights into
a fresh model of the same class built from the config without that entry: the logits are
identical. The folder is keyed by the file's sha256, so a changed file is converted again and an
unchanged one never is. Every later step (training, evaluation, export) sees an ordinary
checkpoint folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medtune.errors import ModelUnavailableError
from medtune.io import folder_mode, locked
from medtune.modeling.digests import remembered_digest

SOURCE_FILE = "medtune_gguf.json"  # written last: a folder without it is an interrupted conversion
CONVERTER_VERSION = 1


def split_gguf_path(path: str, gguf_file: str | None) -> tuple[Path, str] | None:
    """(folder, file name) when the model is a GGUF file, else None."""
    if gguf_file:
        candidate = Path(gguf_file)
        if candidate.is_absolute() or not path:
            return candidate.parent, candidate.name
        return Path(path), gguf_file
    if path and path.endswith(".gguf"):
        return Path(path).parent, Path(path).name
    return None


def gguf_config(gguf: Path):
    """The transformers config stored in the GGUF metadata (no tensor is dequantized)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ModelUnavailableError(
            f"{gguf}: transformers cannot read this GGUF file ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "check that it is a causal-LM GGUF of an architecture transformers supports (llama, mistral, qwen2, gemma3, ...)."
        ) from error
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


def split_gguf_config(parts: list[Path], name: str):
    """The config of a GGUF file split in `parts`, read without joining them (nothing is written where
    the model lives): the metadata and the tensor table sit at the start of the first part, so a sparse
    temporary file holding that part's bytes, as long as the whole file, reads as the file itself."""
    total = sum(part.stat().st_size for part in parts)
    with tempfile.TemporaryDirectory(prefix="medtune-gguf-header-") as folder:
        view = Path(folder) / name
        with open(parts[0], "rb") as source, open(view, "wb") as out:
            shutil.copyfileobj(source, out)
            out.truncate(total)  # the rest reads as zeros and takes no disk space
        return gguf_config(view)


def converted_dir(gguf: Path, cache_dir: Path) -> Path:
    digest = remembered_digest(gguf)
    return Path(cache_dir) / "converted" / f"{gguf.stem}-{digest[:16]}"


def is_converted(folder: Path) -> bool:
    return (folder / SOURCE_FILE).is_file() and (folder / "config.json").is_file()


def convert_gguf(gguf: Path, cache_dir: Path) -> Path:
    """The safetensors folder for `gguf`, converted on first use (tokenizer included)."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelUnavailableError(f"{gguf} does not exist: point model.path (or model.gguf_file) at the .gguf file.")
    target = converted_dir(gguf, cache_dir)
    if is_converted(target):
        return target
    with locked(target.with_name(target.name + ".lock")):  # one converter; other ranks wait, then reuse it
        if is_converted(target):
            return target
        from medtune.reporting.console import console

        console.print(f"converting {gguf.name} to safetensors once (dequantized, float32) into {target}")
        build = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
        try:
            build.chmod(folder_mode())  # mkdtemp's 0700 would keep the cache from the user's group
            write_converted(gguf, build)
            if target.exists():
                shutil.rmtree(target)  # a conversion cut short before its marker was written
            os.replace(build, target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


def write_converted(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.quiet import quiet_third_party

    # The de-quantizing bar stays (seconds to minutes); the per-tensor load and shard-writing bars go.
    quiet_third_party(cpu_only=not torch.cuda.is_available())
    with one_reader_per_file():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # "quantized with gguf" would make the folder unsaveable and unloadable
    with torch.device("meta"):
        fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {
        "gguf": str(gguf),
        "sha256": remembered_digest(gguf),
        "converter": CONVERTER_VERSION,
        "model_class": type(loaded).__name__,
        "dtype": "float32",
    }
    (out / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")


@contextlib.contextmanager
def one_reader_per_file() -> Iterator[None]:
    """While converting, transformers opens the GGUF file three times (the tokenizer's config, the
    model's config, the tensors) and parses its metadata each time: for Gemma-3's 262k-token
    vocabulary that is ~15 s a parse. Inside this block every open of the same unchanged file
    reuses the first reader (a read-only memory map, so sharing it changes nothing read)."""
    import gguf as gguf_package

    opened: dict[tuple, object] = {}
    original = gguf_package.GGUFReader

    def shared_reader(path, mode="r"):
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, mode)
        if key not in opened:
            opened[key] = original(path, mode)
        return opened[key]

    gguf_package.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf_package.GGUFReader = original
