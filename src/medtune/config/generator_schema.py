"""Typed schema of a text generator: a local model (a checkpoint or a train.py run) or an HTTP endpoint.

Judge evaluation and QA generation both ask a generator for text. Keys and tokens never live in a
config: `api_key_env` names the environment variable that holds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class GeneratorKind(str, Enum):
    local = "local"  # a model loaded in this process (model.* or generator.run)
    endpoint = "endpoint"  # an OpenAI-compatible chat-completions server at generator.url


@dataclass
class GeneratorConfig:
    kind: GeneratorKind = GeneratorKind.local
    run: Optional[str] = None  # local: a train.py run dir (its base + adapter); null = the composed model.*
    url: Optional[str] = None  # endpoint: base URL, e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1
    endpoint_model: str = "default"  # endpoint: the "model" field of each request, e.g. gpt-4
    api_key_env: Optional[str] = None  # endpoint: name of the environment variable holding the key
    timeout_s: float = 120.0  # endpoint: the most one request may take, connecting to the answer's last byte
    max_retries: int = 2  # endpoint: retries on connection errors and 429 / 5xx answers
    concurrency: int = 4  # endpoint: requests in flight at once
    batch_size: int = 4  # local: prompts per generate() call
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_k: Optional[int] = None
    repetition_penalty: float = 1.0
    system_prompt: Optional[str] = None  # sent with every request unless the caller gives one
