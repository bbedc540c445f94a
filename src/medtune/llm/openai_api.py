"""What OpenAI-compatible servers send and what to do when they fail: the text of a chat or text
completion (`chat_message_text`, `completion_text`), the key a config names (`read_api_key`), and
the advice for a request that failed for good (`advice`). The HTTP exchange itself is
`medtune.llm.http.post_json`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from medtune.errors import ConfigError
from medtune.llm.http import NOT_OPENAI, RATE_LIMITED, REFUSED, TIMEOUT, TOO_LARGE, RequestFailed
from medtune.secrets import register


class ShapeError(ValueError):
    """A JSON answer that is not what an OpenAI-compatible server sends (the message says where)."""


def read_api_key(env_name: Optional[str], key: str) -> Optional[str]:
    """The key in the environment variable `env_name` names (None when none is named); `key` is the
    config key that names it, e.g. eval.endpoint.api_key_env, for the message when it is not set.
    The value is registered as a secret: no message, record or log shows it from now on."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(
            [
                f"{key}={env_name}: that environment variable is not set; "
                f"export {env_name}=<key> (keys never go in configs)."
            ]
        )
    register(value)
    return value


# -- the shapes of OpenAI-compatible answers --------------------------------------------------------


def _first_choice(answer: Any) -> dict:
    if not isinstance(answer, dict):
        raise ShapeError(f"the JSON is a {type(answer).__name__}, not an object with 'choices'")
    if "choices" not in answer:
        raise ShapeError(f"the JSON object has no 'choices' (its keys: {sorted(answer)[:8]})")
    choices = answer["choices"]
    if not isinstance(choices, list) or not choices:
        raise ShapeError(f"'choices' is {json.dumps(choices)[:60]}, not a list with one choice")
    if not isinstance(choices[0], dict):
        raise ShapeError(f"choices[0] is a {type(choices[0]).__name__}, not an object")
    return choices[0]


def content_text(content: Any, where: str) -> Optional[str]:
    """A message's content as text: a string, null (None), or a list of parts such as
    [{"type": "text", "text": "..."}] joined; any other shape is a ShapeError naming `where`."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") not in (None, "text"):
                continue  # a part that is not text (an image, a tool call): nothing to read
            else:
                raise ShapeError(f"{where}[{index}] is {json.dumps(part)[:60]}, not a text part")
        return "".join(texts)
    raise ShapeError(f"{where} is a {type(content).__name__} ({json.dumps(content)[:60]}), not text")


def chat_message_text(answer: Any) -> Optional[str]:
    """The text of a `/chat/completions` answer; None when the server sent none (null content)."""
    choice = _first_choice(answer)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ShapeError("choices[0] has no 'message' object")
    if "content" not in message:
        raise ShapeError(f"choices[0].message has no 'content' (its keys: {sorted(message)[:8]})")
    return content_text(message["content"], "choices[0].message.content")


def completion_text(answer: Any) -> Optional[str]:
    """The text of a `/completions` answer; None when the server sent none."""
    choice = _first_choice(answer)
    if "text" not in choice:
        raise ShapeError(f"choices[0] has no 'text' (its keys: {sorted(choice)[:8]})")
    return content_text(choice["text"], "choices[0].text")


def advice(failed: RequestFailed, prefix: str, model_key: str, has_key: bool, key_env: Optional[str]) -> str:
    """What to try for a request that failed for good; `prefix` is how the config names the endpoint
    (eval.endpoint, judge.judge, qa.generator) and `model_key` its model field."""
    if failed.kind == RATE_LIMITED:
        return (
            f"rate limited: lower {prefix}.concurrency (or raise {prefix}.max_retries to wait longer), then "
            "rerun the same command"
        )
    if failed.kind == TIMEOUT:
        return f"raise {prefix}.timeout_s or check the server, then rerun the same command"
    if failed.kind in (NOT_OPENAI, TOO_LARGE):
        return (
            f"check that {prefix}.url is the API root of an OpenAI-compatible server (it usually ends in /v1), "
            "not a web page, a login page or a proxy in between"
        )
    if failed.status in (401, 403):
        where = (
            f"the key in ${key_env} ({prefix}.api_key_env)"
            if has_key
            else f"a key: set {prefix}.api_key_env=<VARIABLE>"
        )
        return f"the server refused the credentials; check {where}"
    if failed.status == 404:
        return f"check that {prefix}.url is the API root (it usually ends in /v1) and that the server offers this API"
    if failed.kind == REFUSED:
        return f"the server refused the request; check {model_key} and the decoding settings it may not support"
    return (
        f"check that the server is running at {prefix}.url (or raise {prefix}.max_retries), then rerun the same command"
    )
