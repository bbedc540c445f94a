"""File digests: a file's sha256, and the same remembered beside it so a large file is hashed once."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

CHUNK_BYTES = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def remembered_digest(path: Path) -> str:
    """The file's sha256, remembered beside it by size and mtime so a large file is hashed once."""
    path = Path(path)
    stat = path.stat()
    memo = Path(os.environ.get("MEDTUNE_DIGEST_MEMO", Path(tempfile.gettempdir()) / "medtune-digests.json"))
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = sha256_of(path)
        try:
            tmp = memo.with_name(f"{memo.name}.{os.getpid()}")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, memo)
        except OSError:
            pass  # a read-only temp dir only costs a re-hash next time
    return known[key]
