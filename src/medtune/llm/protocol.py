"""One way to reach a model, whoever serves it: the `ModelAccess` protocol every task uses.

An access renders a request through the prompt or the chat template (`render`), generates in
batches and hands each finished group to a callback (`generate`), and, when the model runs in this
process, scores the continuations of a prompt (`loglikelihood`). Its implementations:

- `medtune.llm.hf`: transformers in this process (`HfBackend` for an exam, `LocalGenerator` for a
  judge, a QA generator or the server);
- `medtune.llm.vllm`: vLLM's offline engine in this process;
- `medtune.llm.endpoint`: any OpenAI-compatible server, through the one HTTP client
  (`medtune.llm.http`): `EndpointBackend` for an exam, `EndpointGenerator` for a generator.

`medtune.llm.access` opens the one a config asks for. A request is an exam prompt (`ExamPrompt`:
chat messages, or the finished text of a plain template) or a `ChatRequest` (a user text and a
system text, as a judge or a QA generator asks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

from medtune.config.eval_schema import EvalConfig, LoglikTarget
from medtune.errors import MedtuneError
from medtune.exam.prompting import ExamPrompt
from medtune.llm.loglik import ChoiceScores
from medtune.vocabulary import ExamQuestion

OnBatch = Callable[[list[int], list[str]], None]


class EndpointError(MedtuneError):
    """An endpoint that cannot be reached or answers with an error, after every retry."""


@dataclass(frozen=True)
class ChatRequest:
    user: str
    system: Optional[str] = None


Request = ExamPrompt | ChatRequest


class ModelAccess(Protocol):
    name: str  # how reports name it, e.g. "hf" or "endpoint:gpt-4@https://api.openai.com/v1"

    def render(self, request: Request) -> str:
        """The request as this access sends it (recorded in predictions.jsonl)."""

    def generate(
        self, requests: Sequence[Request], on_batch: Optional[OnBatch] = None, progress: bool = True
    ) -> list[str]:
        """Every request's response text, in order; `on_batch(indices, texts)` receives each finished
        group as it is done (in any order), so an interrupted caller keeps what was answered."""

    def loglikelihood(self, prompt: str, question: ExamQuestion, target: LoglikTarget) -> ChoiceScores:
        """The log-probabilities of the question's choices as continuations of the rendered `prompt`."""

    def close(self) -> None:
        """Free what the access holds (a model, a thread pool)."""


class InOrder:
    """An `on_batch` that keeps every text in its request's place and passes each group on."""

    def __init__(self, count: int, on_batch: Optional[OnBatch] = None):
        self.texts: list[str] = [""] * count
        self.on_batch = on_batch

    def __call__(self, indices: list[int], texts: list[str]) -> None:
        for index, text in zip(indices, texts):
            self.texts[index] = text
        if self.on_batch is not None:
            self.on_batch(indices, texts)


def decoding(settings: EvalConfig) -> EvalConfig:
    """The decoding every backend uses: self-consistency (eval.samples > 1) needs sampled chains."""
    if settings.samples > 1 and not settings.do_sample:
        return dataclasses.replace(settings, do_sample=True)
    return settings


def no_loglikelihood(name: str) -> MedtuneError:
    """What an access without the model's log-probabilities in this process says when asked for them."""
    return MedtuneError(
        f"{name} gives no log-probabilities in this process; eval=loglik needs eval.backend=hf (the rules refuse "
        "any other backend before a model loads)."
    )
