"""The `endpoint` access: any OpenAI-compatible server (vLLM, llama.cpp, TGI, SGLang, a hosted API,
or `python -m medtune.llm.server`), asked `concurrency` requests at a time through the one HTTP
client (`medtune.llm.http`).

`EndpointBackend` answers an exam (eval.endpoint.*). With `eval.endpoint.api=chat` each question
goes to `<url>/chat/completions` as its chat messages (the server applies the model's chat
template); with `api=completions` medtune renders the prompt text itself and sends it to
`<url>/completions`. Decoding follows eval.* (greedy = temperature 0), generation stops at the same
strings as the `hf` backend, and every text is cut where the `hf` backend stops (after the first
complete answer line) and by the same `finish_response`, so predictions.jsonl reads the same
whoever generated it. `EndpointGenerator` answers a judge's or a QA generator's chat requests
(`<key>.url`, `<key>.endpoint_model`, ...), its texts as the server sent them.

Both hand answers to `on_batch` one by one in the calling thread, as they arrive: a failure after
the last retry raises `EndpointError` only after every finished answer was handed over (the other
requests stop retrying), so rerunning the same command resumes where the server stopped.
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Optional, Sequence

from medtune.config.exam_schema import EndpointApi, EndpointConfig, EvalConfig
from medtune.config.generator_schema import GeneratorConfig
from medtune.config.schema import PromptConfig
from medtune.errors import ConfigError
from medtune.exam.prompting import ExamPrompt
from medtune.llm.generation import STOP_STRINGS, finish_response
from medtune.llm.http import (
    CONNECTION,
    RATE_LIMITED,
    REFUSED,
    SERVER_ERROR,
    TIMEOUT,
    RequestFailed,
    RetryPolicy,
    post_json,
)
from medtune.llm.openai_api import advice, chat_message_text, completion_text, read_api_key
from medtune.llm.protocol import EndpointError, InOrder, OnBatch, Request, no_loglikelihood
from medtune.secrets import mask

KEY = "eval.endpoint"  # how messages name the settings


def endpoint_problems(endpoint: EndpointConfig, prompt: PromptConfig) -> list[str]:
    """Every reason `endpoint` cannot serve `prompt`, each with its fix."""
    problems = []
    if not endpoint.url:
        problems.append(
            f"eval.backend=endpoint needs {KEY}.url, the server's API root, e.g. "
            f"{KEY}.url=http://127.0.0.1:8000/v1 (python -m medtune.llm.server serves one)."
        )
    elif not endpoint.url.lower().startswith(("http://", "https://")):
        problems.append(
            f"{KEY}.url={endpoint.url} is not an http:// or https:// URL; give the server's API root, e.g. "
            f"{KEY}.url=http://127.0.0.1:8000/v1."
        )
    if EndpointApi(endpoint.api) == EndpointApi.completions and prompt.chat:
        problems.append(
            f"{KEY}.api=completions sends finished prompt text, but prompt={prompt.name} is a chat prompt "
            "(prompt.chat=true) that only the model's chat template can render; use "
            f"{KEY}.api=chat (the server applies its chat template), or a plain prompt such as prompt=medpalm2_cot_en."
        )
    if endpoint.concurrency < 1:
        problems.append(f"{KEY}.concurrency={endpoint.concurrency} must be at least 1.")
    if endpoint.timeout_s <= 0:
        problems.append(f"{KEY}.timeout_s={endpoint.timeout_s} must be positive.")
    if endpoint.max_retries < 0:
        problems.append(f"{KEY}.max_retries={endpoint.max_retries} must be 0 or more.")
    if endpoint.backoff_s < 0:
        problems.append(f"{KEY}.backoff_s={endpoint.backoff_s} must be 0 or more.")
    return problems


def decoding_fields(settings: EvalConfig) -> dict[str, Any]:
    """The request fields eval.* decides: greedy is temperature 0; optional fields only when set."""
    fields: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature if settings.do_sample else 0.0,
        "stop": list(STOP_STRINGS),
    }
    if settings.do_sample and settings.top_p is not None:
        fields["top_p"] = settings.top_p
    if settings.do_sample and settings.top_k is not None:
        fields["top_k"] = settings.top_k  # an extension vLLM and llama.cpp accept; OpenAI refuses it
    if settings.repetition_penalty != 1.0:
        fields["repetition_penalty"] = settings.repetition_penalty
    return fields


def server_response(text: str, marker: Optional[str]) -> str:
    """A server's raw completion, cut as every backend cuts it (`finish_response`)."""
    return finish_response(text, marker)


def fix_for(failed: RequestFailed, has_key: bool, key_env: Optional[str]) -> str:
    """What to try for a request that failed for good."""
    if failed.kind == REFUSED and failed.status not in (401, 403, 404):
        return (
            f"the server refused the request; check {KEY}.model and {KEY}.api, and the decoding settings "
            "it may not support (eval.top_k, eval.repetition_penalty)"
        )
    fix = advice(failed, KEY, f"{KEY}.model", has_key, key_env)
    if failed.kind in (TIMEOUT, CONNECTION, SERVER_ERROR, RATE_LIMITED):
        fix += ": the answers so far are kept and it resumes"
    return fix


def chat_messages_of(request: Request, system_prompt: Optional[str] = None) -> list[dict[str, str]]:
    """A request's chat messages: an exam prompt's own, or a user text after its system text."""
    if isinstance(request, ExamPrompt):
        return [dict(m) for m in request.messages]
    system = request.system if request.system is not None else system_prompt
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": request.user}]


class EndpointClient:
    """What both endpoint accesses share: each request POSTed on its own, `concurrency` at once;
    answers reach `on_batch` in the calling thread as they arrive; a request that fails for good
    stops the others' retries, and its error is raised once the answers back are handed over."""

    name: str
    unit = "q"  # the progress bar's

    def __init__(self, url: str, key: Optional[str], retry: RetryPolicy, timeout_s: float, concurrency: int):
        self.url, self.key, self.retry, self.timeout_s, self.concurrency = url, key, retry, timeout_s, concurrency
        self.read: Callable[[Any], Optional[str]] = chat_message_text
        self.what = "a chat completion"
        self.empty_answers, self._count_lock = 0, threading.Lock()  # null or empty answers of this generate

    def body(self, request: Request) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self, text: str) -> str:
        """A server's non-empty text as the caller reads it."""
        return text

    def ask(self, request: Request, cancel: Optional[threading.Event] = None) -> str:
        """One request's finished response text; RequestFailed once retrying is over. A failure sets
        `cancel` at once, so that no other request starts or retries. A null or empty answer reads
        as "" and is counted in `self.empty_answers`."""
        if cancel is not None and cancel.is_set():
            raise RequestFailed("not sent: another request failed", 0, cancelled=True)
        try:
            text = post_json(
                self.url,
                self.body(request),
                self.read,
                key=self.key,
                timeout_s=self.timeout_s,
                retry=self.retry,
                cancel=cancel,
                what=self.what,
            )
        except RequestFailed:
            if cancel is not None:
                cancel.set()
            raise
        if not text or not text.strip():
            with self._count_lock:
                self.empty_answers += 1
            return ""
        return self.finish(text)

    def generate(
        self, requests: Sequence[Request], on_batch: Optional[OnBatch] = None, progress: bool = True
    ) -> list[str]:
        """Ask every request, `concurrency` at once; `on_batch([i], [text])` runs in this thread as
        each answer arrives. On a request that fails for good the others stop retrying, the answers
        already back are handed over, then EndpointError is raised. Empty answers are counted and
        warned about."""
        from medtune.reporting.progress_bar import progress_bar

        kept = InOrder(len(requests), on_batch)
        self.empty_answers = 0
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="endpoint")
        index: dict[Future, int] = {pool.submit(self.ask, r, cancel): i for i, r in enumerate(requests)}
        failure: Optional[RequestFailed] = None
        answered = 0
        try:
            with progress_bar(total=len(requests), desc="requests", unit=self.unit, disable=not progress) as bar:
                pending = set(index)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in sorted(finished, key=index.get):
                        error = future.exception()
                        if error is None:
                            kept([index[future]], [future.result()])
                            answered += 1
                            bar.update(1)
                        elif not isinstance(error, RequestFailed):
                            raise error
                        elif failure is None or (failure.cancelled and not error.cancelled):
                            failure = error  # the request that failed for its own sake names the problem
                            cancel.set()  # the others stop retrying; those in flight still finish
                            for other in pending:
                                other.cancel()
                    pending = {f for f in pending if not f.cancelled()}
        finally:
            cancel.set()
            pool.shutdown(wait=failure is not None, cancel_futures=True)
            if self.empty_answers:
                self.warn_empty(answered, len(requests))
        if failure is not None:
            raise self.error(failure, answered, len(requests))
        return kept.texts

    def warn_empty(self, answered: int, total: int) -> None:
        raise NotImplementedError

    def error(self, failed: RequestFailed, answered: int, total: int) -> EndpointError:
        raise NotImplementedError

    def loglikelihood(self, prompt, question, target):
        raise no_loglikelihood(self.name)

    def close(self) -> None:
        """Nothing is held between calls (each `generate` has its own thread pool)."""


class EndpointBackend(EndpointClient):
    """An exam's: eval.endpoint.* and eval.* decoding; texts cut as every backend cuts them."""

    def __init__(self, endpoint: EndpointConfig, settings: EvalConfig, prompt: PromptConfig):
        problems = endpoint_problems(endpoint, prompt)
        try:
            key = read_api_key(endpoint.api_key_env, f"{KEY}.api_key_env")
        except ConfigError as missing:
            key, problems = None, problems + missing.problems
        if problems:
            raise ConfigError(problems)
        self.endpoint, self.settings, self.prompt = endpoint, settings, prompt
        self.api = EndpointApi(endpoint.api)
        root = endpoint.url.rstrip("/")
        url = f"{root}/chat/completions" if self.api == EndpointApi.chat else f"{root}/completions"
        retry = RetryPolicy(max_retries=endpoint.max_retries, backoff_s=endpoint.backoff_s)
        super().__init__(url, key, retry, endpoint.timeout_s, endpoint.concurrency)
        self.name = f"endpoint:{endpoint.model}@{root}"
        if self.api == EndpointApi.completions:
            self.read, self.what = completion_text, "a text completion"

    def render(self, request: Request) -> str:
        """The prompt text (completions), or the chat messages as indented JSON (chat)."""
        if self.api == EndpointApi.completions:
            return request.text
        return json.dumps(chat_messages_of(request), ensure_ascii=False, indent=1)

    def body(self, request: Request) -> dict[str, Any]:
        if self.api == EndpointApi.chat:
            content: dict[str, Any] = {"messages": chat_messages_of(request)}
        else:
            content = {"prompt": request.text}
        return {"model": self.endpoint.model, **content, **decoding_fields(self.settings)}

    def finish(self, text: str) -> str:
        return server_response(text, self.prompt.answer_marker)

    def warn_empty(self, answered: int, total: int) -> None:
        print(
            f"medtune: warning: {self.empty_answers} of {answered} answers from {KEY}.url={self.endpoint.url} "
            f"held no text (content null or empty); they count as invalid answers. A reasoning model may "
            f"spend eval.max_new_tokens={self.settings.max_new_tokens} before it answers, or the server "
            "failed without saying so.",
            file=sys.stderr,
            flush=True,
        )

    def error(self, failed: RequestFailed, answered: int, total: int) -> EndpointError:
        fix = fix_for(failed, self.key is not None, self.endpoint.api_key_env)
        return EndpointError(
            mask(
                f"{KEY}.url={self.endpoint.url} ({self.url}): {failed.problem} (after {failed.attempts} attempt(s)); "
                f"{answered} of {total} answers were received and kept; {fix}."
            )
        )


class EndpointGenerator(EndpointClient):
    """A judge's or a QA generator's: `<key>.url`, `<key>.endpoint_model` and its decoding; texts as sent."""

    unit = "req"

    def __init__(self, cfg: GeneratorConfig, key: str = "generator"):
        self.key_name = key  # how the config names this generator in messages, e.g. qa.generator
        if not cfg.url:
            raise ConfigError([f"{key}.kind=endpoint needs {key}.url, e.g. {key}.url=http://127.0.0.1:8000/v1"])
        if not cfg.url.lower().startswith(("http://", "https://")):
            raise ConfigError(
                [
                    f"{key}.url={cfg.url} is not an http:// or https:// URL; give the server's API root, e.g. "
                    f"{key}.url=http://127.0.0.1:8000/v1"
                ]
            )
        self.cfg = cfg
        retry = RetryPolicy(max_retries=cfg.max_retries, backoff_s=1.0, max_backoff_s=30.0)
        api_key = read_api_key(cfg.api_key_env, f"{key}.api_key_env")
        super().__init__(cfg.url.rstrip("/") + "/chat/completions", api_key, retry, cfg.timeout_s, cfg.concurrency)
        self.name = f"{cfg.endpoint_model}@{cfg.url}"

    def render(self, request: Request) -> str:
        return json.dumps(chat_messages_of(request, self.cfg.system_prompt), ensure_ascii=False, indent=1)

    def body(self, request: Request) -> dict:
        body = {
            "model": self.cfg.endpoint_model,
            "messages": chat_messages_of(request, self.cfg.system_prompt),
            "max_tokens": self.cfg.max_new_tokens,
            "temperature": self.cfg.temperature,
        }
        if self.cfg.top_k is not None:
            body["top_k"] = self.cfg.top_k
        if self.cfg.repetition_penalty != 1.0:
            body["repetition_penalty"] = self.cfg.repetition_penalty
        return body

    def warn_empty(self, answered: int, total: int) -> None:
        print(
            f"medtune: warning: {self.empty_answers} of {total} answers from {self.key_name}.url={self.cfg.url} held "
            f"no text (content null or empty); they are kept as empty answers. A reasoning model may spend "
            f"{self.key_name}.max_new_tokens={self.cfg.max_new_tokens} before it answers, or the server failed "
            "without saying so.",
            file=sys.stderr,
            flush=True,
        )

    def error(self, failed: RequestFailed, answered: int, total: int) -> EndpointError:
        fix = advice(
            failed, self.key_name, f"{self.key_name}.endpoint_model", self.key is not None, self.cfg.api_key_env
        )
        return EndpointError(
            mask(f"{self.key_name}.url={self.cfg.url}: {failed.problem} (after {failed.attempts} attempt(s)); {fix}.")
        )
