"""One way to ask a model for text, whoever serves it: `make_generator(cfg, ...)` returns a generator
whose `generate(requests)` maps chat requests (system + user text) to response texts, in order.

- `LocalGenerator`: a transformers model in this process (a checkpoint, or a train.py run with its
  adapter). Requests are rendered with a medtune prompt template when there is one (a trained run's
  own), else with the tokenizer's chat template, else as plain text; decoded in batches.
- `EndpointGenerator`: an OpenAI-compatible `/chat/completions` server (OpenAI, vLLM, llama.cpp,
  or `python -m medtune.llm.server`), through `medtune.llm.http`: standard library HTTP, retries with
  backoff on connection errors, 429 and 5xx; the key comes from the environment variable `api_key_env` names.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from medtune.config.generator_schema import GeneratorConfig, GeneratorKind
from medtune.errors import ConfigError, MedtuneError
from medtune.llm.http import RequestFailed, RetryPolicy, advice, chat_message_text, post_json, read_api_key
from medtune.secrets import mask


class EndpointError(MedtuneError):
    """An endpoint that cannot be reached or answers with an error, after every retry."""


@dataclass(frozen=True)
class ChatRequest:
    user: str
    system: Optional[str] = None


class LocalGenerator:
    def __init__(self, model, tokenizer, cfg: GeneratorConfig, prompt=None, name: str = "local"):
        self.model, self.tokenizer, self.cfg, self.prompt, self.name = model, tokenizer, cfg, prompt, name
        self.tokenizer.padding_side = "left"
        self.model.eval()

    def render(self, request: ChatRequest) -> str:
        system = request.system if request.system is not None else self.cfg.system_prompt
        if self.prompt is not None:  # a trained run answers in the template it was trained on
            from medtune.data.readers import InstructionRecord
            from medtune.data.templates import render_prompt

            if self.prompt.chat:  # trained through the chat template: answer through it too
                import dataclasses

                prompt = dataclasses.replace(self.prompt, system=system) if system else self.prompt
                return render_prompt(prompt, InstructionRecord(request.user, "", "", "generator"), self.tokenizer)
            text = render_prompt(self.prompt, InstructionRecord(request.user, "", "", "generator"))
            return f"{system}\n\n{text}" if system else text
        if getattr(self.tokenizer, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": request.user}
            ]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{request.user}\n\n" if system else f"{request.user}\n\n"

    def stop_ids(self) -> list[int]:
        """EOS, and the chat template's end of turn when the requests go through it."""
        from medtune.config.schema import PromptConfig
        from medtune.data.templates import stop_token_ids

        prompt = self.prompt
        if prompt is None and getattr(self.tokenizer, "chat_template", None):
            prompt = PromptConfig(name="chat", template="{instruction}", chat=True)
        return stop_token_ids(self.tokenizer, prompt)

    def generate(self, requests: Sequence[ChatRequest], progress: bool = True) -> list[str]:
        from medtune.config.exam_schema import EvalConfig
        from medtune.llm.generation import generate_responses

        settings = EvalConfig(
            batch_size=self.cfg.batch_size,
            max_new_tokens=self.cfg.max_new_tokens,
            do_sample=self.cfg.temperature > 0,
            temperature=self.cfg.temperature or 1.0,
            top_k=self.cfg.top_k,
            repetition_penalty=self.cfg.repetition_penalty,
        )
        texts: list[str] = [""] * len(requests)

        def keep(indices: list[int], outputs: list[str]) -> None:
            for index, text in zip(indices, outputs):
                texts[index] = text

        max_positions = getattr(self.model.config, "max_position_embeddings", 4096)
        generate_responses(
            self.model,
            self.tokenizer,
            [self.render(r) for r in requests],
            settings,
            max_positions,
            keep,
            progress=progress,
            stop_ids=self.stop_ids(),
        )
        return texts


class EndpointGenerator:
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
        self.url = cfg.url.rstrip("/") + "/chat/completions"
        self.name = f"{cfg.endpoint_model}@{cfg.url}"
        self.key = read_api_key(cfg.api_key_env, f"{key}.api_key_env")
        self.empty_answers, self._count_lock = 0, threading.Lock()  # null or empty answers so far

    def body(self, request: ChatRequest) -> dict:
        system = request.system if request.system is not None else self.cfg.system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": request.user}
        ]
        body = {
            "model": self.cfg.endpoint_model,
            "messages": messages,
            "max_tokens": self.cfg.max_new_tokens,
            "temperature": self.cfg.temperature,
        }
        if self.cfg.top_k is not None:
            body["top_k"] = self.cfg.top_k
        if self.cfg.repetition_penalty != 1.0:
            body["repetition_penalty"] = self.cfg.repetition_penalty
        return body

    def ask(self, request: ChatRequest) -> str:
        """One request's text ("" for a null or empty answer, counted in `self.empty_answers`)."""
        retry = RetryPolicy(max_retries=self.cfg.max_retries, backoff_s=1.0, max_backoff_s=30.0)
        try:
            text = post_json(
                self.url,
                self.body(request),
                chat_message_text,
                key=self.key,
                timeout_s=self.cfg.timeout_s,
                retry=retry,
                what="a chat completion",
            )
        except RequestFailed as failed:
            fix = advice(
                failed, self.key_name, f"{self.key_name}.endpoint_model", self.key is not None, self.cfg.api_key_env
            )
            raise EndpointError(
                mask(
                    f"{self.key_name}.url={self.cfg.url}: {failed.problem} (after {failed.attempts} attempt(s)); {fix}."
                )
            ) from None
        if not text or not text.strip():
            with self._count_lock:
                self.empty_answers += 1
            return ""
        return text

    def generate(self, requests: Sequence[ChatRequest], progress: bool = True) -> list[str]:
        """Every request's text, in order; null or empty answers are counted and warned about."""
        from medtune.reporting.progress_bar import progress_bar

        before = self.empty_answers
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            texts = list(
                progress_bar(
                    pool.map(self.ask, requests), total=len(requests), desc="requests", unit="req", disable=not progress
                )
            )
        empty = self.empty_answers - before
        if empty:
            print(
                f"medtune: warning: {empty} of {len(requests)} answers from {self.key_name}.url={self.cfg.url} held "
                f"no text (content null or empty); they are kept as empty answers. A reasoning model may spend "
                f"{self.key_name}.max_new_tokens={self.cfg.max_new_tokens} before it answers, or the server failed "
                "without saying so.",
                file=sys.stderr,
                flush=True,
            )
        return texts


def make_generator(
    cfg: GeneratorConfig,
    model_cfg=None,
    hardware=None,
    cache_dir: str | Path = "outputs/cache",
    prompt=None,
    key: str = "generator",
):
    """A generator for `cfg`: the endpoint, the run in `cfg.run`, or the composed `model_cfg` (untuned)."""
    if cfg.kind == GeneratorKind.endpoint:
        return EndpointGenerator(cfg, key)
    if cfg.run:
        from medtune.modeling.trained import load_trained

        model, tokenizer, run_cfg = load_trained(Path(cfg.run), hardware)
        return LocalGenerator(model, tokenizer, cfg, prompt or run_cfg.prompt, name=Path(cfg.run).name)
    if model_cfg is None:
        raise ConfigError([f"{key}.kind=local needs {key}.run=<train run dir> or a model= choice"])
    from medtune.config.schema import AdapterConfig, AdapterKind, HardwareConfig
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer

    checkpoint = resolve_checkpoint(model_cfg, Path(cache_dir))
    tokenizer = load_tokenizer(checkpoint, model_cfg)
    model = load_base_model(
        checkpoint, model_cfg, AdapterConfig(name="none", kind=AdapterKind.none), hardware or HardwareConfig(name="cpu")
    )
    return LocalGenerator(model, tokenizer, cfg, prompt, name=model_cfg.name)
