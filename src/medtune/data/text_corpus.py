"""Raw text for continual pretraining: documents in, fixed-size token blocks out.

A document is a whole `.txt` / `.md` file, or one JSON Lines record's `text` field. Documents are
tokenized one by one, each starts with BOS (when the tokenizer has one) and ends with EOS, then
they are concatenated and cut into blocks of `block_tokens`: the loss runs over every token. Each
block also records `seq_lengths`, the lengths of the document pieces in it; with
`pretrain.isolate_documents` (the default) `PackedCollator` turns them into a block-diagonal causal
mask and positions that restart at every document, so no token attends to another document and
none is trained to predict the first token of the next one. The last, shorter block is kept (the
collator pads it and masks the padding). The eval split holds whole documents, so no text is in
both splits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from medtune.data.readers import iter_json_objects
from medtune.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")
JSON_SUFFIXES = (".jsonl", ".json")
BUNDLED_TEXT = "medical_text.jsonl"


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # file, or file:line


@dataclass
class BlockStats:
    documents: int = 0
    tokens: int = 0
    blocks: int = 0
    last_block_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def bundled_text_file() -> Path:
    return Path(str(resources.files("medtune") / "resources" / "sample" / BUNDLED_TEXT))


def text_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES + JSON_SUFFIXES)
        if not files:
            raise DataError(f"{path}: the folder holds no .txt, .md, .jsonl or .json files for task=pretrain.")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file; check dataset.path.")
    return [path]


def read_documents(path: Path | None, text_field: str = "text", max_records: int | None = None) -> list[Document]:
    """Every document under `path` (None: the bundled medical text), in file order."""
    files = [bundled_text_file()] if path is None else text_files(Path(path))
    documents: list[Document] = []
    for file in files:
        before = len(documents)
        if file.suffix in TEXT_SUFFIXES:
            text = file.read_text(encoding="utf-8")
            if text.strip():
                documents.append(Document(text.strip(), str(file)))
        else:
            for where, item in iter_json_objects(file):
                if text_field not in item:
                    raise DataError(
                        f"{where}: no {text_field!r} field (fields: {', '.join(sorted(item)) or 'none'}); "
                        f"set dataset.text_field to the field that holds the document."
                    )
                value = item[text_field]
                if not isinstance(value, str):
                    raise DataError(f"{where}: {text_field!r} is a {type(value).__name__}, expected a string.")
                if value.strip():
                    documents.append(Document(value.strip(), where))
                if max_records is not None and len(documents) >= max_records:
                    return documents
        if len(documents) == before:
            raise DataError(f"{file}: the file holds no text; a data file needs at least one non-empty document.")
    return documents


def encode_blocks(documents: list[Document], tokenizer, block_tokens: int) -> tuple[list[dict[str, list[int]]], BlockStats]:
    """Concatenate the documents (BOS ... EOS each) and cut them into blocks; labels are the inputs."""
    if block_tokens < 2:
        raise DataError(f"pretrain.block_tokens={block_tokens}: a block needs at least 2 tokens.")
    stats = BlockStats(documents=len(documents))
    stream: list[int] = []
    starts: list[int] = []  # where each document begins in the stream
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for document in documents:
        ids = tokenizer(document.text, add_special_tokens=False)["input_ids"]
        starts.append(len(stream))
        stream.extend(([bos] if bos is not None else []) + ids + ([eos] if eos is not None else []))
    stats.tokens = len(stream)
    blocks = []
    for start in range(0, len(stream), block_tokens):
        block = stream[start : start + block_tokens]
        if len(block) < 2:  # one token predicts nothing
            continue
        end = start + len(block)
        cuts = [start, *(s for s in starts if start < s < end), end]
        blocks.append({"input_ids": block, "labels": list(block),
                       "seq_lengths": [b - a for a, b in zip(cuts, cuts[1:])]})
    stats.blocks = len(blocks)
    stats.last_block_tokens = len(blocks[-1]["input_ids"]) if blocks else 0
    return blocks, stats
