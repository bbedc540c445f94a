"""The server's batcher: one thread owns the model and answers the requests that arrive together in
one batched generation per group of equal decoding settings (`python -m medtune.llm.server`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from medtune.llm.generation import generate_responses
from medtune.llm.server_requests import Decoding

WAIT_GAPS = 4  # a batch waits for late requests at most this many --batch-wait-ms in all


@dataclass
class Job:
    """One request's prompts (n copies each), waiting for the worker."""

    prompts: list[str]
    decoding: Decoding
    done: threading.Event = field(default_factory=threading.Event)
    texts: list[str] = field(default_factory=list)
    error: Optional[str] = None


class BatchWorker:
    """One thread owns the model: it takes the requests waiting (up to `max_batch`; while others keep
    arriving less than `wait_s` apart, it waits for them, at most WAIT_GAPS * `wait_s` in all), and
    runs one batched `generate_responses` per group of requests with equal decoding settings.
    Handler threads block in `submit` until theirs is done."""

    def __init__(self, model, tokenizer, max_batch: int = 8, wait_s: float = 0.005):
        self.model, self.tokenizer, self.max_batch, self.wait_s = model, tokenizer, max(1, max_batch), wait_s
        self.jobs: queue.Queue[Optional[Job]] = queue.Queue()
        self.counts = {"requests": 0, "batches": 0, "prompts": 0, "largest_batch": 0}
        self.thread = threading.Thread(target=self.run, name="medtune-batcher", daemon=True)
        self.thread.start()

    def submit(self, prompts: list[str], decoding: Decoding) -> list[str]:
        job = Job(prompts, decoding)
        self.jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise RuntimeError(job.error)
        return job.texts

    def take(self) -> Optional[list[Job]]:
        """The next jobs to run together (None: the worker is closing)."""
        first = self.jobs.get()
        if first is None:
            return None
        taken, deadline = [first], time.monotonic() + WAIT_GAPS * self.wait_s
        while len(taken) < self.max_batch:
            timeout = min(self.wait_s, deadline - time.monotonic())
            try:
                job = self.jobs.get(timeout=timeout) if timeout > 0 else self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self.jobs.put(None)  # close after this batch
                break
            taken.append(job)
        return taken

    def run(self) -> None:
        while (jobs := self.take()) is not None:
            groups: dict[Decoding, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.decoding, []).append(job)
            for decoding, group in groups.items():
                self.run_group(decoding, group)

    def run_group(self, decoding: Decoding, group: list[Job]) -> None:
        import torch

        prompts = [p for job in group for p in job.prompts]
        texts = [""] * len(prompts)

        def keep(indices: list[int], outputs: list[str]) -> None:
            for index, text in zip(indices, outputs):
                texts[index] = text

        try:
            if decoding.seed is not None:
                torch.manual_seed(decoding.seed)
            max_positions = getattr(self.model.config, "max_position_embeddings", 4096)
            generate_responses(
                self.model,
                self.tokenizer,
                prompts,
                decoding.settings(len(prompts)),
                max_positions,
                keep,
                progress=False,
                stop_ids=list(decoding.stop_ids),
            )
        except Exception as error:  # the request fails (a 500), the server stays up
            for job in group:
                job.error = f"generation failed: {error.__class__.__name__}: {error}"
                job.done.set()
            return
        self.counts["requests"] += len(group)
        self.counts["batches"] += 1
        self.counts["prompts"] += len(prompts)
        self.counts["largest_batch"] = max(self.counts["largest_batch"], len(prompts))
        start = 0
        for job in group:
            job.texts = texts[start : start + len(job.prompts)]
            start += len(job.prompts)
            job.done.set()

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=5)
