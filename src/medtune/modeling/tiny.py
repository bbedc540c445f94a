"""The tiny default model: a random-init decoder and a locally trained tokenizer, saved as a checkpoint.

It is written once to `<cache_dir>/tiny/<key>` (key = architecture + tokenizer corpus + seed) and
then loaded with `from_pretrained`, exactly like a downloaded model, so every test and the default
run go through the real loading path. The write is atomic: concurrent ranks never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from medtune.config.schema import ArchitectureConfig
from medtune.data.json_files import iter_json_objects
from medtune.data.readers import bundled_sample_files
from medtune.io import folder_mode

BUILDER_VERSION = 1
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def tokenizer_corpus() -> list[str]:
    """Every string of the bundled sample files plus the templates' boilerplate (ja / en / vi)."""
    extra = resources.files("medtune") / "resources" / "tokenizer_extra.txt"
    texts = extra.read_text(encoding="utf-8").splitlines()
    for path in bundled_sample_files():
        for _, item in iter_json_objects(path):
            for value in item.values():
                if isinstance(value, str):
                    texts.append(value)
                elif isinstance(value, list):
                    texts.extend(str(v) for v in value)
    return texts


def cache_key(arch: ArchitectureConfig, corpus: list[str], seed: int) -> str:
    payload = json.dumps(
        {
            "arch": {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(arch).items()},
            "corpus": hashlib.sha256("\n".join(corpus).encode()).hexdigest(),
            "seed": seed,
            "builder": BUILDER_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE: any Japanese, English or Vietnamese text round-trips, common words get merges."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFC()  # NFC, not NFKC: full-width letters (ａ, ①) must survive for parsing
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer)
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


def build_tiny_checkpoint(arch: ArchitectureConfig, target: Path, corpus: list[str], seed: int) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = train_tokenizer(corpus, arch.vocab_size)
    if len(tokenizer) > arch.vocab_size:
        raise ValueError(f"the tiny tokenizer has {len(tokenizer)} tokens, more than vocab_size={arch.vocab_size}")
    config = AutoConfig.for_model(
        arch.model_type,
        vocab_size=arch.vocab_size,  # rows past len(tokenizer) stay unused; the count stays as configured
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        intermediate_size=arch.intermediate_size,
        max_position_embeddings=arch.max_position_embeddings,
        tie_word_embeddings=arch.tie_word_embeddings,
        initializer_range=arch.initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():  # building the cache must not shift the caller's random stream
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        tmp.chmod(folder_mode())  # mkdtemp's 0700 would keep the cache from the user's group
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        (tmp / "medtune_tiny.json").write_text(json.dumps({"builder": BUILDER_VERSION, "seed": seed}) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first; its checkpoint is identical
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def tiny_checkpoint(arch: ArchitectureConfig, cache_dir: Path, seed: int = 0) -> Path:
    """The directory of the tiny checkpoint for `arch`, built on first use."""
    corpus = tokenizer_corpus()
    target = Path(cache_dir) / "tiny" / cache_key(arch, corpus, seed)
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_checkpoint(arch, target, corpus, seed)
    return target
