"""Secrets never echo: `mask(text)` replaces every known secret value in a text with `***`.

The known values are the keys medtune reads (`register`, called when an endpoint config names its
key's environment variable through `api_key_env`) and the value of every environment variable
whose name ends in _KEY, _TOKEN or _SECRET (WANDB_API_KEY, HF_TOKEN, OPENAI_API_KEY, ...), read
when `mask` runs, so a variable a config names through `${oc.env:...}` is covered too. Values
shorter than `MIN_SECRET_CHARS` are left alone: masking "1" or "true" would garble every message.

Apply `mask` where text leaves the process: messages (an endpoint's error body may quote the
Authorization header back), failure.json, W&B records (`mask_values` walks a config or a row).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Mapping

MASK = "***"
MIN_SECRET_CHARS = 6
SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET")

_registered: set[str] = set()
_lock = threading.Lock()


def register(value: str | None) -> None:
    """Remember `value` (a key read from the environment) as a secret to mask from now on."""
    if value and len(value.strip()) >= MIN_SECRET_CHARS:
        with _lock:
            _registered.add(value.strip())


def secret_env_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names of the environment variables whose values are masked by their name alone."""
    env = os.environ if environ is None else environ
    return sorted(name for name in env if name.upper().endswith(SECRET_SUFFIXES))


def secret_values() -> list[str]:
    """Every value `mask` hides, longest first (a key that contains another is hidden whole)."""
    with _lock:
        values = set(_registered)
    for name in secret_env_names():
        value = os.environ.get(name, "").strip()
        if len(value) >= MIN_SECRET_CHARS:
            values.add(value)
    return sorted(values, key=len, reverse=True)


def mask(text: Any, values: list[str] | None = None) -> str:
    """`text` (made a string) with every secret value replaced by `***`; `values` (from
    `secret_values()`) saves looking them up again when masking many texts at once."""
    text = text if isinstance(text, str) else str(text)
    for value in secret_values() if values is None else values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask_values(value: Any, values: list[str] | None = None) -> Any:
    """A copy of a config, a row or a summary (dicts, lists, tuples, strings) with every string masked."""
    values = secret_values() if values is None else values
    if isinstance(value, str):
        return mask(value, values)
    if isinstance(value, dict):
        return {mask_values(k, values): mask_values(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_values(v, values) for v in value)
    return value


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in each record's message (for handlers that write logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
