"""How long a response of `max_new_tokens` tokens can be, and cutting one that is longer.

A token decodes to a few characters, and to a few dozen at most: the longest of SmolLM2's tokens
(the default model) is 81 characters (a line break and 80 spaces), Gemma 3's 31. No response that
kept to `max_new_tokens` can therefore be longer than `MAX_CHARS_PER_TOKEN` characters per token. A
longer text came from a backend that did not keep to the limit (a server that ignores max_tokens,
a proxy that joins answers): reading all of it would only cost time and memory, so it is cut to its
first `char_limit(max_new_tokens)` characters (what the model wrote first, which is what the limit
would have kept) before any answer is read from it, and the cut is said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

MAX_CHARS_PER_TOKEN = 128
# Where a reader does not know the generator's max_new_tokens (judgments, QA responses read back from a
# file): the limit of a generous 2,048 tokens.
DEFAULT_MAX_TOKENS = 2048


def char_limit(max_new_tokens: int) -> int:
    """The longest text `max_new_tokens` tokens can decode to (at least one token's worth)."""
    return max(1, int(max_new_tokens)) * MAX_CHARS_PER_TOKEN


DEFAULT_MAX_CHARS = char_limit(DEFAULT_MAX_TOKENS)


@dataclass(frozen=True)
class Cut:
    """A response cut to the limit: how long it was and how much of it was kept."""

    chars: int
    kept: int

    def record(self) -> dict[str, Any]:
        """What a prediction row records about the cut (`output_cut`)."""
        return {"output_cut": {"chars": self.chars, "kept_chars": self.kept}}


def cut_to(text: str, max_chars: int) -> tuple[str, Cut | None]:
    """`text`, or its first `max_chars` characters and the `Cut` when it is longer."""
    if len(text) <= max_chars:
        return text, None
    return text[:max_chars], Cut(len(text), max_chars)


class ResponseLimit:
    """Cuts each response to what `max_new_tokens` allows; warns about the first few cuts and counts them.

    `setting` names the limit in messages (e.g. "eval.max_new_tokens"); `warn` prints a message.
    """

    WARNED = 3  # cut responses described one by one; later ones are only counted

    def __init__(self, max_new_tokens: int, setting: str, warn: Callable[[str], None]):
        self.max_new_tokens, self.setting, self.warn = max_new_tokens, setting, warn
        self.max_chars = char_limit(max_new_tokens)
        self.cut = 0

    def apply(self, text: str, what: str) -> tuple[str, dict[str, Any]]:
        """(the text to read, what the row records: {} or `Cut.record()`); `what` names the response."""
        kept, cut = cut_to(text, self.max_chars)
        if cut is None:
            return text, {}
        self.cut += 1
        if self.cut <= self.WARNED:
            self.warn(
                f"{what}: the response is {cut.chars:,} characters, more than {self.setting}={self.max_new_tokens} "
                f"tokens can hold ({self.max_chars:,} at {MAX_CHARS_PER_TOKEN} characters per token): the backend "
                f"did not stop at the limit. Its first {cut.kept:,} characters are read and scored; the row says "
                '"output_cut".' + (" Further cut responses are only counted." if self.cut == self.WARNED else "")
            )
        return kept, cut.record()
