"""Who writes the answers: `open_backend(cfg)` gives a backend whose `generate(prompts, on_batch)`
turns exam prompts into response texts.

- `hf`: `transformers.generate` in this process (the composed model, or run=<dir> with its adapter);
- `endpoint`: any OpenAI-compatible server, through its chat or completions API;
- `vllm`: vLLM in this process, on a GPU machine where it is installed.

Every backend gets the same prompts (`ExamPrompt`), the same decoding settings, the same stop
rules (the prompt's answer line, `###`, the chat template's end of turn), and its texts are cut
by the same `finish_response`, so the scoring that follows cannot tell them apart.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol, Sequence

from medtune.config.eval_schema import EvalBackend, EvalConfig, EvalRunConfig
from medtune.exam.prompting import ExamPrompt

OnBatch = Callable[[list[int], list[str]], None]


class Backend(Protocol):
    name: str  # how reports name it, e.g. "hf" or "endpoint:gpt-4@https://api.openai.com/v1"

    def render(self, prompt: ExamPrompt) -> str:
        """The prompt as this backend sends it (recorded in predictions.jsonl)."""

    def generate(self, prompts: Sequence[ExamPrompt], on_batch: OnBatch, progress: bool = True) -> None:
        """Answer every prompt; `on_batch(indices, texts)` receives each finished group, in any order."""

    def close(self) -> None:
        """Free what the backend holds (a model, a thread pool)."""


def decoding(settings: EvalConfig) -> EvalConfig:
    """The decoding every backend uses: self-consistency (eval.samples > 1) needs sampled chains."""
    if settings.samples > 1 and not settings.do_sample:
        return dataclasses.replace(settings, do_sample=True)
    return settings


def open_backend(cfg: EvalRunConfig) -> Backend:
    """The backend `cfg.eval.backend` names, ready to generate."""
    backend = EvalBackend(cfg.eval.backend)
    if backend == EvalBackend.endpoint:
        from medtune.evaluation.backends.endpoint import EndpointBackend

        return EndpointBackend(cfg.eval.endpoint, decoding(cfg.eval), cfg.prompt)
    if backend == EvalBackend.vllm:
        from medtune.evaluation.backends.vllm import VllmBackend

        return VllmBackend.open(cfg, decoding(cfg.eval))
    from medtune.evaluation.backends.hf import HfBackend

    return HfBackend.open(cfg, decoding(cfg.eval))
