"""The model access a task asks for, opened from its config (`medtune.llm.protocol.ModelAccess`).

- `open_backend(cfg)`: an evaluation's, as `eval.backend` names it: `hf` (the composed model, or
  run=<dir> with its adapter), `endpoint` (any OpenAI-compatible server) or `vllm`;
- `make_generator(cfg, ...)`: a judge's, a QA generator's or the server's, from a `GeneratorConfig`:
  the endpoint, the run in `cfg.run`, or the composed model (untuned).

Every exam backend gets the same prompts (`ExamPrompt`), the same decoding settings, the same stop
rules (the prompt's answer line, `###`, the chat template's end of turn), and its texts are cut
by the same `finish_response`, so the scoring that follows cannot tell them apart.
"""

from __future__ import annotations

from pathlib import Path

from medtune.config.eval_schema import EvalBackend, EvalRunConfig
from medtune.config.generator_schema import GeneratorConfig, GeneratorKind
from medtune.errors import ConfigError
from medtune.llm.endpoint import EndpointBackend, EndpointGenerator
from medtune.llm.hf import HfBackend, LocalGenerator
from medtune.llm.protocol import ModelAccess, decoding


def open_backend(cfg: EvalRunConfig) -> ModelAccess:
    """The backend `cfg.eval.backend` names, ready to generate."""
    backend = EvalBackend(cfg.eval.backend)
    if backend == EvalBackend.endpoint:
        return EndpointBackend(cfg.eval.endpoint, decoding(cfg.eval), cfg.prompt)
    if backend == EvalBackend.vllm:
        from medtune.llm.vllm import VllmBackend  # imports vLLM only when it is asked for

        return VllmBackend.open(cfg, decoding(cfg.eval))
    return HfBackend.open(cfg, decoding(cfg.eval))


def make_generator(
    cfg: GeneratorConfig,
    model_cfg=None,
    hardware=None,
    cache_dir: str | Path = "outputs/cache",
    prompt=None,
    key: str = "generator",
) -> EndpointGenerator | LocalGenerator:
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
