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

from medtune.data.file_checks import check_data_file
from medtune.data.json_files import iter_json_objects
from medtune.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")
JSON_SUFFIXES = (".jsonl", ".json")
BUNDLED_TEXT = "medical_text.jsonl"


@dataclass(frozen=True)
class Document:
    text: str
    name: str  # the file (relative to the folder read), or file:line for a JSON Lines record


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


def text_files(path: Path, path_key: str = "dataset.path") -> list[Path]:
    """The document files of a file or folder (.txt, .md, .jsonl, .json); `path_key` names the setting."""
    suffixes = TEXT_SUFFIXES + JSON_SUFFIXES
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)
        if not files:
            raise DataError(
                f"{path_key}={path}: the folder holds no .txt, .md, .jsonl or .json files; "
                f"point {path_key} at a folder of text files."
            )
        return files
    if not path.exists():
        raise DataError(f"{path_key}={path}: no such file or folder; point {path_key} at your documents.")
    check_data_file(path, path_key)  # a FIFO or a device is refused before anything opens it
    if path.suffix not in suffixes:
        raise DataError(
            f"{path_key}={path}: medtune reads .txt, .md, .jsonl or .json documents, not "
            f"'{path.suffix}'; convert the file to plain text first."
        )
    return [path]


def read_documents(
    path: Path | str | None,
    text_field: str = "text",
    max_records: int | None = None,
    path_key: str = "dataset.path",
    field_key: str = "dataset.text_field",
) -> list[Document]:
    """Every non-empty document under `path` (None: the bundled medical text), in file order.

    Used by task=pretrain (`dataset.*`) and generate_qa.py (`qa.documents`, `qa.text_field`): the
    keys only change how messages name the settings."""
    root = bundled_text_file() if path is None else Path(path)
    files = text_files(root, path_key)
    documents: list[Document] = []
    for file in files:
        name = str(file.relative_to(root)) if root.is_dir() else file.name
        try:
            if file.suffix in TEXT_SUFFIXES:
                documents.append(Document(check_data_file(file).read_text(encoding="utf-8").strip(), name))
                continue
            for where, item in iter_json_objects(file):
                value = item.get(text_field)
                if not isinstance(value, str):
                    raise DataError(
                        f"{where}: no string field {text_field!r} (fields: {', '.join(sorted(item)) or 'none'}); "
                        f"set {field_key} to the field that holds the document."
                    )
                documents.append(Document(value.strip(), f"{name}:{where.rsplit(':', 1)[1]}"))
                if max_records is not None and len(documents) >= max_records:
                    break
        except UnicodeDecodeError as error:
            raise DataError(f"{file}: not UTF-8 text (byte {error.start}); save the file as UTF-8.") from error
        if max_records is not None and len(documents) >= max_records:
            break
    documents = [d for d in documents if d.text]
    if not documents:
        raise DataError(f"{path_key}={root}: every document is empty; there is no text to read.")
    return documents


def encode_blocks(
    documents: list[Document], tokenizer, block_tokens: int
) -> tuple[list[dict[str, list[int]]], BlockStats]:
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
        blocks.append(
            {"input_ids": block, "labels": list(block), "seq_lengths": [b - a for a, b in zip(cuts, cuts[1:])]}
        )
    stats.blocks = len(blocks)
    stats.last_block_tokens = len(blocks[-1]["input_ids"]) if blocks else 0
    return blocks, stats
