"""The server's reading of an OpenAI-shaped request: its messages, its numbers within bounds, its stop
strings and the decoding settings that decide which requests share a batch. Anything it cannot
answer as sent is a `BadRequest` (a 400 reply with the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from medtune.config.exam_schema import EvalConfig
from medtune.llm.protocol import ChatRequest

MAX_CHOICES = 16  # most `n` a request may ask for


class BadRequest(ValueError):
    """A request this server cannot answer as sent (a 400 reply with this message)."""


def message_text(content: Any) -> str:
    """A message's content: a string, or OpenAI's list of parts (the text parts, joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    raise BadRequest(f"a message's content must be a string or a list of text parts, not {type(content).__name__}")


def read_messages(body: dict) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("expected 'messages': a non-empty list of {role, content}")
    read = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise BadRequest("every message needs a role of system, user or assistant")
        read.append({"role": message["role"], "content": message_text(message.get("content"))})
    return read


def split_messages(messages: list[dict]) -> ChatRequest:
    """System messages become the system text; user and assistant turns are joined in order (for a
    model that has no chat template, or a run trained on a plain template)."""
    system = "\n".join(m.get("content") or "" for m in messages if m.get("role") == "system") or None
    turns = [m.get("content") or "" for m in messages if m.get("role") != "system"]
    return ChatRequest(user="\n\n".join(turns), system=system)


def number(
    body: dict,
    key: str,
    kind: type,
    default: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> Any:
    """body[key] as `kind` within bounds (None or absent: `default`); BadRequest otherwise."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise BadRequest(f"'{key}' must be a number{' (a whole one)' if kind is int else ''}, not {value!r}")
    value = kind(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise BadRequest(f"'{key}'={value} must be {'above' if low_open else 'at least'} {low}")
    if high is not None and value > high:
        raise BadRequest(f"'{key}'={value} must be at most {high}")
    return value


def read_stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest("'stop' must be a string or a list of strings")
    return tuple(s for s in stops if s)


@dataclass(frozen=True)
class Decoding:
    """The settings that decide a generation; requests with equal settings share a batch."""

    max_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    repetition_penalty: float = 1.0
    seed: Optional[int] = None
    stop_ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, body: dict, default_max_tokens: int, stop_ids: list[int]) -> Decoding:
        temperature = number(body, "temperature", float, 0.0, low=0.0)
        top_p = number(body, "top_p", float, None, low=0.0, high=1.0, low_open=True)
        top_k = number(body, "top_k", int, None)
        return cls(
            max_tokens=number(body, "max_tokens", int, default_max_tokens, low=1),
            temperature=temperature,
            top_p=top_p if temperature > 0 and top_p not in (None, 1.0) else None,
            top_k=top_k if temperature > 0 and top_k not in (None, 0, -1) else None,
            repetition_penalty=number(body, "repetition_penalty", float, 1.0, low=0.0, low_open=True),
            seed=number(body, "seed", int, None),
            stop_ids=tuple(stop_ids),
        )

    def settings(self, batch_size: int):
        """These settings as the EvalConfig `generate_responses` reads."""
        return EvalConfig(
            batch_size=batch_size,
            max_new_tokens=self.max_tokens,
            do_sample=self.temperature > 0,
            temperature=self.temperature if self.temperature > 0 else 1.0,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
        )


def cut_at_stops(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first of `stops` (the stop itself excluded), and whether one was found."""
    positions = [p for p in (text.find(s) for s in stops) if p >= 0]
    return (text[: min(positions)], True) if positions else (text, False)
