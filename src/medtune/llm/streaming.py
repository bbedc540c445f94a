"""A response shown as it is generated (`medtune chat`): only the response, nothing from a stop string on."""

from __future__ import annotations

from typing import Any, Callable

from medtune.llm.generation import STOP_STRINGS


def stop_prefix_length(text: str) -> int:
    """Length of the longest end of `text` that could still grow into a stop string."""
    return max((n for s in STOP_STRINGS for n in range(1, len(s)) if text.endswith(s[:n])), default=0)


def make_streamer(tokenizer, write: Callable[[str], Any]):
    """A TextStreamer that writes only the response: no leading blanks, nothing from a stop string on
    (what may still become one is held back). `.shown` is the text written."""
    from transformers import TextStreamer

    class ResponseStreamer(TextStreamer):
        def __init__(self):
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.text, self.shown = "", ""

        def on_finalized_text(self, text: str, stream_end: bool = False):
            self.text += text
            visible = self.text.lstrip()
            stops = [visible.find(s) for s in STOP_STRINGS if s in visible]
            if stops:
                visible = visible[: min(stops)].rstrip()
            elif stream_end:
                visible = visible.rstrip()
            else:  # hold back what may still become a stop string, and trailing blanks
                visible = visible[: len(visible) - stop_prefix_length(visible)].rstrip()
            if len(visible) > len(self.shown) and visible.startswith(self.shown):
                write(visible[len(self.shown) :])
                self.shown = visible

    return ResponseStreamer()
