"""The `endpoint` backend: any OpenAI-compatible server (vLLM, llama.cpp, TGI, SGLang, a hosted API,
or `python -m medtune.llm.server`), asked `eval.endpoint.concurrency` questions at a time.

With `eval.endpoint.api=chat` each question goes to `<url>/chat/completions` as its chat messages
(the server applies the model's chat template); with `api=completions` medtune renders the prompt
text itself and sends it to `<url>/completions`. Decoding follows eval.* (greedy = temperature 0),
generation stops at the same strings as the `hf` backend, and every text is cut where the `hf`
backend stops (after the first complete answer line) and by the same `finish_response`, so
predictions.jsonl reads the same whoever generated it.

Answers reach `on_batch` one by one in the calling thread, as they arrive: a failure after the last
retry raises `EndpointError` only after every finished answer was handed over, so rerunning the
same command resumes where the server stopped.
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Optional, Sequence

from medtune.config.exam_schema import EndpointApi, EndpointConfig, EvalConfig
from medtune.config.schema import PromptConfig
from medtune.errors import ConfigError
from medtune.exam.prompting import ExamPrompt
from medtune.llm.backend import EndpointError
from medtune.llm.generation import STOP_STRINGS, finish_response
from medtune.llm.http import (
    CONNECTION,
    RATE_LIMITED,
    REFUSED,
    SERVER_ERROR,
    TIMEOUT,
    RequestFailed,
    RetryPolicy,
    advice,
    chat_message_text,
    completion_text,
    post_json,
    read_api_key,
)
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


class EndpointBackend:
    def __init__(self, endpoint: EndpointConfig, settings: EvalConfig, prompt: PromptConfig):
        problems = endpoint_problems(endpoint, prompt)
        try:
            self.key = read_api_key(endpoint.api_key_env, f"{KEY}.api_key_env")
        except ConfigError as missing:
            problems += missing.problems
        if problems:
            raise ConfigError(problems)
        self.endpoint, self.settings, self.prompt = endpoint, settings, prompt
        self.api = EndpointApi(endpoint.api)
        root = endpoint.url.rstrip("/")
        self.url = f"{root}/chat/completions" if self.api == EndpointApi.chat else f"{root}/completions"
        self.name = f"endpoint:{endpoint.model}@{root}"
        self.retry = RetryPolicy(max_retries=endpoint.max_retries, backoff_s=endpoint.backoff_s)
        self.empty_answers, self._count_lock = 0, threading.Lock()  # null or empty answers of this generate

    def render(self, prompt: ExamPrompt) -> str:
        """The prompt text (completions), or the chat messages as indented JSON (chat)."""
        if self.api == EndpointApi.completions:
            return prompt.text
        return json.dumps(list(prompt.messages), ensure_ascii=False, indent=1)

    def body(self, prompt: ExamPrompt) -> dict[str, Any]:
        if self.api == EndpointApi.chat:
            content = {"messages": [dict(m) for m in prompt.messages]}
        else:
            content = {"prompt": prompt.text}
        return {"model": self.endpoint.model, **content, **decoding_fields(self.settings)}

    def ask(self, prompt: ExamPrompt, cancel: Optional[threading.Event] = None) -> str:
        """One prompt's finished response text; RequestFailed once retrying is over. A failure sets
        `cancel` at once, so that no other request starts or retries. A null or empty answer reads
        as "" (an invalid answer) and is counted in `self.empty_answers`."""
        read = chat_message_text if self.api == EndpointApi.chat else completion_text
        what = "a chat completion" if self.api == EndpointApi.chat else "a text completion"
        if cancel is not None and cancel.is_set():
            raise RequestFailed("not sent: another request failed", 0, cancelled=True)
        try:
            text = post_json(
                self.url,
                self.body(prompt),
                read,
                key=self.key,
                timeout_s=self.endpoint.timeout_s,
                retry=self.retry,
                cancel=cancel,
                what=what,
            )
        except RequestFailed:
            if cancel is not None:
                cancel.set()
            raise
        if not text or not text.strip():
            with self._count_lock:
                self.empty_answers += 1
            return ""
        return server_response(text, self.prompt.answer_marker)

    def generate(self, prompts: Sequence[ExamPrompt], on_batch, progress: bool = True) -> None:
        """Ask every prompt, `endpoint.concurrency` at once; `on_batch([i], [text])` runs in this thread
        as each answer arrives. On a request that fails for good the others stop retrying, the answers
        already back are handed over, then EndpointError is raised. Empty answers are counted and
        warned about (they score as invalid answers)."""
        from medtune.reporting.progress_bar import progress_bar

        self.empty_answers = 0
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.endpoint.concurrency, thread_name_prefix="endpoint")
        index: dict[Future, int] = {pool.submit(self.ask, p, cancel): i for i, p in enumerate(prompts)}
        failure: Optional[RequestFailed] = None
        answered = 0
        try:
            with progress_bar(total=len(prompts), desc="requests", unit="q", disable=not progress) as bar:
                pending = set(index)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in sorted(finished, key=index.get):
                        error = future.exception()
                        if error is None:
                            on_batch([index[future]], [future.result()])
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
            self.warn_empty(answered)
        if failure is not None:
            raise self.error(failure, answered, len(prompts))

    def warn_empty(self, answered: int) -> None:
        if self.empty_answers:
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

    def close(self) -> None:
        """Nothing is held between calls (each `generate` has its own thread pool)."""
