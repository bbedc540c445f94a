"""Typed schema of a text generator: a local model (a checkpoint or a train.py run) or an HTTP endpoint.

Judge evaluation and QA generation both ask a generator for text. Keys and tokens never live in a
config: `api_key_env` names the environment variable that holds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode


class GeneratorKind(str, Enum):
    local = "local"  # a model loaded in this process (model.* or generator.run)
    endpoint = "endpoint"  # an OpenAI-compatible chat-completions server at generator.url


@dataclass
class GeneratorConfig(ConfigNode):
    kind: GeneratorKind = help_field(
        GeneratorKind.local,
        "local: a model loaded in this process (the composed model.*, or generator.run); endpoint: an "
        "OpenAI-compatible chat-completions server at generator.url.",
    )
    run: Optional[str] = help_field(
        None, "local: a train.py run dir (its base + adapter); null = the composed model.*."
    )
    url: Optional[str] = help_field(
        None, "endpoint: the base URL, e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1."
    )
    endpoint_model: str = help_field("default", 'endpoint: the "model" field of each request, e.g. gpt-4.')
    api_key_env: Optional[str] = help_field(
        None, "endpoint: the NAME of the environment variable holding the key; null = no key."
    )
    timeout_s: float = help_field(
        120.0, "endpoint: the most one request may take, in seconds, from connecting to the answer's last byte."
    )
    max_retries: int = help_field(2, "endpoint: retries on connection errors and 429 / 5xx answers.")
    concurrency: int = help_field(4, "endpoint: requests in flight at once.")
    batch_size: int = help_field(4, "local: prompts per generate() call.")
    max_new_tokens: int = help_field(512, "The most tokens generated per answer.")
    temperature: float = help_field(0.0, "Sampling temperature; 0 = greedy.")
    top_k: Optional[int] = help_field(None, "Sample from the k likeliest tokens; null = all.")
    repetition_penalty: float = help_field(1.0, "Penalty on repeated tokens; 1.0 = none.")
    system_prompt: Optional[str] = help_field(
        None, "A system message sent with every request unless the caller gives one; null = none."
    )
