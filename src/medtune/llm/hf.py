"""The `hf` access: batched `transformers.generate` in this process (left padding, KV cache), and
log-likelihoods of continuations from one shared prompt pass.

`HfModel` is the implementation; `HfBackend` configures it for an exam (eval.* decoding, the prompt's
stop tokens and answer line), `LocalGenerator` for a judge, a QA generator or the server (the
generator's decoding; requests rendered in a trained run's own template, else the chat template).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from medtune.config.eval_schema import EvalConfig, EvalRunConfig, LoglikTarget
from medtune.config.generator_schema import GeneratorConfig
from medtune.config.schema import PromptConfig
from medtune.data.readers import InstructionRecord
from medtune.data.templates import render_prompt, stop_token_ids
from medtune.llm.generation import generate_responses
from medtune.llm.loglik import ChoiceScores, score_choices
from medtune.llm.protocol import ChatRequest, InOrder, OnBatch, Request
from medtune.vocabulary import ExamQuestion


def render_chat_request(tokenizer, request: ChatRequest, prompt: Optional[PromptConfig], source: str) -> str:
    """A user text (after its system text, if any) as the model reads it: in `prompt` (a trained run
    answers in the template it was trained on; a chat prompt through the tokenizer's chat template,
    its system text replaced), else through the tokenizer's chat template, else as plain text."""
    system = request.system
    if prompt is not None:
        record = InstructionRecord(request.user, "", "", source)
        if prompt.chat:  # trained through the chat template: answer through it too
            chosen = dataclasses.replace(prompt, system=system) if system else prompt
            return render_prompt(chosen, record, tokenizer)
        text = render_prompt(prompt, record)
        return f"{system}\n\n{text}" if system else text
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": request.user}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system}\n\n{request.user}\n\n" if system else f"{request.user}\n\n"


class HfModel:
    """A transformers model and its tokenizer, answering requests in batches. It changes neither (a
    training loop's exam check may wrap the model it trains): prompts are left-padded by
    `generate_responses` whatever the tokenizer's padding side."""

    def __init__(
        self,
        model,
        tokenizer,
        settings: EvalConfig,
        prompt: Optional[PromptConfig],
        name: str,
        stop_ids: list[int],
        answer_marker: Optional[str] = None,
        system_prompt: Optional[str] = None,
    ):
        self.model, self.tokenizer, self.settings, self.prompt, self.name = model, tokenizer, settings, prompt, name
        self.stop_token_ids, self.answer_marker, self.system_prompt = stop_ids, answer_marker, system_prompt

    def render(self, request: Request) -> str:
        if isinstance(request, ChatRequest):
            system = request.system if request.system is not None else self.system_prompt
            return render_chat_request(self.tokenizer, ChatRequest(request.user, system), self.prompt, "generator")
        return request.render(self.tokenizer)

    def generate(
        self, requests: Sequence[Request], on_batch: Optional[OnBatch] = None, progress: bool = True
    ) -> list[str]:
        kept = InOrder(len(requests), on_batch)
        generate_responses(
            self.model,
            self.tokenizer,
            [self.render(r) for r in requests],
            self.settings,
            self.max_positions(),
            kept,
            progress=progress,
            answer_marker=self.answer_marker,
            stop_ids=self.stop_token_ids,
        )
        return kept.texts

    def max_positions(self) -> int:
        return getattr(self.model.config, "max_position_embeddings", None) or 4096

    def stream(self, request: Request, write: Callable[[str], Any]) -> str:
        """One response, written through `write` as it is generated (what `medtune chat` shows); its text."""
        from medtune.llm.streaming import make_streamer

        streamer = make_streamer(self.tokenizer, write)
        generate_responses(
            self.model,
            self.tokenizer,
            [self.render(request)],
            dataclasses.replace(self.settings, batch_size=1),
            self.max_positions(),
            lambda indices, texts: None,
            progress=False,
            answer_marker=self.answer_marker,
            stop_ids=self.stop_token_ids,
            streamer=streamer,
        )
        return streamer.shown

    def loglikelihood(self, prompt: str, question: ExamQuestion, target: LoglikTarget) -> ChoiceScores:
        return score_choices(self.model, self.tokenizer, prompt, question, target)

    def close(self) -> None:
        self.model = None


def load_eval_model(cfg: EvalRunConfig):
    """The model and tokenizer an evaluation asks for: run=<dir> (base + adapter) or model.*."""
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer

    if cfg.run:
        from medtune.modeling.trained import load_trained

        model, tokenizer, _ = load_trained(Path(cfg.run), cfg.hardware)
    else:
        checkpoint = resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
        tokenizer = load_tokenizer(checkpoint, cfg.model)
        model = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware)
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer


class HfBackend(HfModel):
    """An exam's: eval.* decoding, the exam prompt's stop tokens, stopping after its answer line."""

    def __init__(self, model, tokenizer, settings: EvalConfig, prompt: PromptConfig):
        stop_ids = stop_token_ids(tokenizer, prompt)
        super().__init__(model, tokenizer, settings, prompt, "hf", stop_ids, answer_marker=prompt.answer_marker)
        self.stop_ids = stop_ids

    @classmethod
    def open(cls, cfg: EvalRunConfig, settings: EvalConfig) -> HfBackend:
        from medtune.data.templates import require_chat_template
        from medtune.reporting.console import console

        with console.status("Loading model"):
            model, tokenizer = load_eval_model(cfg)
        require_chat_template(cfg.prompt, tokenizer, cfg.run or cfg.model.name)
        return cls(model, tokenizer, settings, cfg.prompt)


def generator_settings(cfg: GeneratorConfig) -> EvalConfig:
    """A generator's decoding as the EvalConfig `generate_responses` reads."""
    return EvalConfig(
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.temperature > 0,
        temperature=cfg.temperature or 1.0,
        top_k=cfg.top_k,
        repetition_penalty=cfg.repetition_penalty,
    )


def generator_stop_ids(tokenizer, prompt: Optional[PromptConfig]) -> list[int]:
    """EOS, and the chat template's end of turn when the requests go through it."""
    if prompt is None and getattr(tokenizer, "chat_template", None):
        prompt = PromptConfig(name="chat", template="{instruction}", chat=True)
    return stop_token_ids(tokenizer, prompt)


class LocalGenerator(HfModel):
    """A generator's (judge, QA generation, the server): a checkpoint, or a train.py run with its
    adapter, answering `ChatRequest`s in the run's own template or the tokenizer's chat template."""

    def __init__(self, model, tokenizer, cfg: GeneratorConfig, prompt=None, name: str = "local"):
        super().__init__(
            model,
            tokenizer,
            generator_settings(cfg),
            prompt,
            name,
            generator_stop_ids(tokenizer, prompt),
            system_prompt=cfg.system_prompt,
        )
        self.cfg = cfg
        self.tokenizer.padding_side = "left"
        self.model.eval()

    def stop_ids(self) -> list[int]:
        """EOS, and the chat template's end of turn when the requests go through it (read now: the
        server's tests swap the chat template of a loaded tokenizer)."""
        return generator_stop_ids(self.tokenizer, self.prompt)

    def generate(
        self, requests: Sequence[Request], on_batch: Optional[OnBatch] = None, progress: bool = True
    ) -> list[str]:
        self.stop_token_ids = self.stop_ids()
        return super().generate(requests, on_batch, progress)

    def stream(self, request: Request, write: Callable[[str], Any]) -> str:
        self.stop_token_ids = self.stop_ids()
        return super().stream(request, write)
