"""Progress of a loop that is not training (generation, requests, judging, QA chunks, log-likelihoods).

    with progress_bar(total=len(prompts), desc="generating", unit="q") as bar:
        ...
        bar.update(len(batch))
    for item in progress_bar(items, desc="log-likelihood", unit="prompt"):
        ...

On a terminal it is a tqdm bar. Redirected (a SLURM log, `> out.txt`, a pipe) a bar would write a
carriage-return redraw several times a second into the file; instead it writes plain lines: one at
the first update, one every `every_seconds`, and one when the loop ends, each with the count, the
share done, the elapsed time and, while running, the time left.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, TextIO

EVERY_SECONDS = 30.0


def on_a_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False


def duration(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


class PlainProgress:
    """The part of tqdm's interface medtune uses (update, close, iteration, `with`), as plain lines."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        disable: bool = False,
        stream: TextIO | None = None,
        every_seconds: float = EVERY_SECONDS,
    ):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.initial = initial
        self.disable = disable
        self.stream = stream
        self.every_seconds = every_seconds
        self._started = time.monotonic()
        self._last_line_at: float | None = None
        self._closed = False

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("PlainProgress was given no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self._last_line_at is None or now - self._last_line_at >= self.every_seconds:
            self._write(self.status(now, final=False))
            self._last_line_at = now

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n > self.initial:  # a loop that did nothing (all resumed, nothing to do) says nothing
            self._write(self.status(time.monotonic(), final=True))

    def status(self, now: float, final: bool) -> str:
        elapsed = now - self._started
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        text = f"{self.desc}: {count} {self.unit}{share}"
        if final:
            return f"{text} in {duration(elapsed)}"
        done_here = self.n - self.initial
        if self.total and done_here > 0 and self.n < self.total:
            left = elapsed / done_here * (self.total - self.n)
            return f"{text}, elapsed {duration(elapsed)}, ETA {duration(left)}"
        return f"{text}, elapsed {duration(elapsed)}"

    def _write(self, line: str) -> None:
        if self.disable:
            return
        stream = self.stream or sys.stderr
        print(line, file=stream, flush=True)


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any):
    """A tqdm bar on a terminal, plain lines otherwise (see the module's docstring); tqdm's arguments."""
    stream = kwargs.get("stream") or sys.stderr
    if on_a_terminal(stream):
        from tqdm.auto import tqdm

        kwargs.pop("stream", None)
        kwargs.pop("every_seconds", None)
        return tqdm(iterable, file=stream, **kwargs)
    return PlainProgress(iterable, **kwargs)
