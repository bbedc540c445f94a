"""The `hf` backend: batched `transformers.generate` in this process (left padding, KV cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from medtune.config.eval_schema import EvalConfig, EvalRunConfig
from medtune.config.schema import PromptConfig
from medtune.exam.prompting import ExamPrompt


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


class HfBackend:
    name = "hf"

    def __init__(self, model, tokenizer, settings: EvalConfig, prompt: PromptConfig):
        from medtune.data.templates import stop_token_ids

        self.model, self.tokenizer, self.settings, self.prompt = model, tokenizer, settings, prompt
        self.stop_ids = stop_token_ids(tokenizer, prompt)

    @classmethod
    def open(cls, cfg: EvalRunConfig, settings: EvalConfig) -> HfBackend:
        from medtune.data.templates import require_chat_template
        from medtune.reporting.console import console

        with console.status("Loading model"):
            model, tokenizer = load_eval_model(cfg)
        require_chat_template(cfg.prompt, tokenizer, cfg.run or cfg.model.name)
        return cls(model, tokenizer, settings, cfg.prompt)

    def render(self, prompt: ExamPrompt) -> str:
        return prompt.render(self.tokenizer)

    def generate(self, prompts: Sequence[ExamPrompt], on_batch, progress: bool = True) -> None:
        from medtune.llm.generation import generate_responses

        max_positions = getattr(self.model.config, "max_position_embeddings", 4096)
        generate_responses(
            self.model,
            self.tokenizer,
            [self.render(p) for p in prompts],
            self.settings,
            max_positions,
            on_batch,
            progress=progress,
            answer_marker=self.prompt.answer_marker,
            stop_ids=self.stop_ids,
        )

    def close(self) -> None:
        self.model = None
