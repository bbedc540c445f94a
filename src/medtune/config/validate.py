"""Cross-group rules, checked in one place before any model loads and reported together.

Single-key problems (unknown keys, wrong types, bad enum values) already fail at composition
through the typed schema; what is left here needs more than one key, the file system, or the
machine (CUDA devices, installed packages, the local Hugging Face cache).
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medtune.config.schema import (
    Accelerator,
    AdapterKind,
    ModelSource,
    Quantization,
    TrainRunConfig,
)
from medtune.errors import ConfigError
from medtune.modeling.architecture import estimate_num_parameters

# Fixes for keys a config option leaves for the user (`???` in YAML).
MISSING_HINTS = {
    "dataset.path": "point it at your copy, e.g. dataset.path=/data/{name}.jsonl",
    "model.path": "point it at a local checkpoint directory, e.g. model.path=/models/{name}",
    "exam.path": "point it at your exam file or folder, e.g. exam.path=/data/{name}.jsonl",
}


def missing_value_problems(cfg: DictConfig) -> list[str]:
    problems = []
    for key in sorted(OmegaConf.missing_keys(cfg)):
        group = key.split(".")[0]
        option = OmegaConf.select(cfg, f"{group}.name", default=group)
        hint = MISSING_HINTS.get(key, f"set it on the command line, e.g. {key}=...").format(name=option)
        if key.startswith("dataset.mixture.") and key.endswith(".path"):
            hint = f"point it at your copy of that source, e.g. {key}=/data/{key.split('.')[2]}.json"
        problems.append(f"{key} is required by {group}={option} and has no value: {hint}.")
    return problems


def unknown_key_problem(cfg: DictConfig, schema: type) -> str | None:
    """Keys added with `+key=value` slip past Hydra's struct check; merging into the schema catches them."""
    try:
        OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(cfg, resolve=False))
    except OmegaConfBaseException as error:
        key = error.full_key or "?"
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(OmegaConf.structured(schema), parent) if parent else OmegaConf.structured(schema)
        known = list(node.keys()) if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(leaf, known, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else f"known keys: {', '.join(known)}"
        return f"{key} is not a key medtune knows ({error.msg.splitlines()[0]}); {hint}"
    return None


def to_typed(cfg: DictConfig, schema: type) -> Any:
    """Check the composed config and return it as `schema` (a dataclass with real enums)."""
    problems = missing_value_problems(cfg)
    unknown = unknown_key_problem(cfg, schema)
    if unknown:
        problems.append(unknown)
    if problems:
        raise ConfigError(problems)
    typed = OmegaConf.to_object(cfg)
    if not isinstance(typed, schema):
        raise ConfigError([f"the composed config is a {type(typed).__name__}, expected {schema.__name__}"])
    problems = []
    if hasattr(typed, "model") and hasattr(typed, "paths"):
        from medtune.modeling.description import describe_run_model  # the checkpoint's own numbers, before the rules

        problems += describe_run_model(typed)
    rules = rules_for(schema)
    problems += [p for rule in rules for p in rule(typed)]
    if problems:
        raise ConfigError(problems)
    return typed


def _cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def needs_model(cfg: Any) -> bool:
    """Training loads a model unless nothing trains; evaluation unless it scores a predictions file."""
    if hasattr(cfg, "predictions"):
        return not cfg.predictions
    return cfg.adapter.kind != AdapterKind.none


def check_adapter(cfg: TrainRunConfig) -> list[str]:
    a = cfg.adapter
    problems = []
    if a.kind == AdapterKind.none:
        problems.append(
            "adapter=none trains nothing: pick adapter=lora, qlora, lora_int8 or full "
            "(an untuned base is evaluated with evaluate.py, not trained)."
        )
    if a.kind == AdapterKind.lora:
        if a.r <= 0:
            problems.append(f"adapter.r={a.r} must be a positive rank, e.g. adapter.r=8.")
        if a.alpha <= 0:
            problems.append(f"adapter.alpha={a.alpha} must be positive, e.g. adapter.alpha=16.")
        if not 0.0 <= a.dropout < 1.0:
            problems.append(f"adapter.dropout={a.dropout} must be in [0, 1), e.g. adapter.dropout=0.1.")
    quantized = a.quantization.method != Quantization.none
    if quantized and a.kind == AdapterKind.full:
        problems.append(
            f"adapter.quantization.method={a.quantization.method.value} with adapter=full: a quantized base "
            "cannot be fully fine-tuned; use adapter=qlora or adapter=lora_int8."
        )
    if quantized and importlib.util.find_spec("bitsandbytes") is None:
        problems.append(
            f"adapter={a.name} loads the base in {a.quantization.method.value}, which needs bitsandbytes: "
            "pip install bitsandbytes (or pick adapter=lora)."
        )
    return problems


def check_hardware(cfg: TrainRunConfig) -> list[str]:
    hw = cfg.hardware
    problems = []
    if hw.accelerator == Accelerator.cuda and not getattr(cfg, "dry_run", False) and needs_model(cfg):
        wanted = hw.devices_per_node
        found = _cuda_device_count()
        if found < wanted:
            seen = "no CUDA device was found on this machine" if found == 0 else f"this machine has {found}"
            problems.append(
                f"hardware={hw.name} needs {wanted} CUDA device(s) per node, but {seen}: "
                "pick hardware=cpu, run on a GPU node, or plan the run with dry_run=true."
            )
    if hw.max_model_params_billion is not None and needs_model(cfg):
        count, counted_from = model_size(cfg)
        if count is not None and count / 1e9 > hw.max_model_params_billion:
            problems.append(
                f"model={cfg.model.name} has {count / 1e9:.1f}B parameters ({count:,}, {counted_from}), more than "
                f"hardware={hw.name} trains (at most {hw.max_model_params_billion:g}B): pick a GPU option such as "
                "hardware=a100x4, or plan the run with dry_run=true."
            )
    four_bit = cfg.adapter.quantization.method in (Quantization.nf4, Quantization.fp4)
    arch = cfg.model.architecture
    if four_bit and hw.accelerator == Accelerator.cpu and arch.hidden_size and arch.intermediate_size and (
            arch.hidden_size % 64 or arch.intermediate_size % 64):
        problems.append(
            f"adapter={cfg.adapter.name} on hardware=cpu: bitsandbytes packs 4-bit CPU weights in blocks of 64, "
            f"but model={cfg.model.name} has hidden_size={arch.hidden_size} and intermediate_size="
            f"{arch.intermediate_size}; use multiples of 64, or adapter=lora."
        )
    quant = cfg.adapter.quantization
    if hw.deepspeed.zero_stage == 3 and four_bit and quant.quant_storage not in (None, quant.compute_dtype):
        problems.append(
            f"adapter.quantization.quant_storage={quant.quant_storage.value} under ZeRO-3 (hardware={hw.name}): "
            f"ZeRO-3 shards the 4-bit base only when it is stored in the compute dtype "
            f"({quant.compute_dtype.value}); set adapter.quantization.quant_storage=null."
        )
    if hw.deepspeed.zero_stage == 3 and quant.method == Quantization.int8:
        problems.append(
            f"adapter={cfg.adapter.name} (8-bit base) cannot be sharded by ZeRO-3 (hardware={hw.name}): "
            "use a ZeRO-2 option, or adapter=qlora."
        )
    if not 0 <= hw.deepspeed.zero_stage <= 3:
        problems.append(f"hardware.deepspeed.zero_stage={hw.deepspeed.zero_stage} must be 0 (off), 1, 2 or 3.")
    return problems


def model_size(cfg: Any) -> tuple[int | None, str]:
    """(parameters, how they were found): exact from the checkpoint's config when it is here."""
    from medtune.errors import ModelUnavailableError
    from medtune.modeling.description import describe_model

    try:
        described = describe_model(cfg.model, cfg.paths.cache_dir, materialize=False)
    except ModelUnavailableError:
        described = None  # reported by describe_run_model
    if described is not None and described.from_checkpoint:
        return described.num_parameters(), described.counted_from
    if None in (cfg.model.architecture.hidden_size, cfg.model.architecture.num_layers):
        return None, "unknown"
    return estimate_num_parameters(cfg.model.architecture), "estimated from model.architecture"


def check_model(cfg: TrainRunConfig) -> list[str]:
    from medtune.modeling.description import hf_cache_has

    m = cfg.model
    if m.path or m.source in (ModelSource.embedded, ModelSource.tiny):
        return []  # found, read, converted or refused by the model description before the rules
    if not m.hub_id:
        return [f"model={m.name} has neither model.path nor model.hub_id: set model.path=/path/to/checkpoint."]
    if getattr(cfg, "dry_run", False) or m.allow_download or hf_cache_has(m.hub_id, m.revision):
        return []
    return [
        f"model={m.name}: the weights of {m.hub_id} are not on this machine (model.path is unset and the "
        "Hugging Face cache has no copy). Download them where there is network (huggingface-cli download "
        f"{m.hub_id} --local-dir /models/{m.name}) and set model.path=/models/{m.name}, "
        "or allow a download with model.allow_download=true."
    ]


def check_data(cfg: TrainRunConfig) -> list[str]:
    d = cfg.dataset
    problems = []
    if d.path is not None and not Path(d.path).exists():
        shared_hint = " (or set MEDTUNE_SHARED to the folder that holds data/)" if "shared" in d.path else ""
        problems.append(
            f"dataset.path={d.path} does not exist (dataset={d.name}): point dataset.path at the file{shared_hint}."
        )
    if not 0.0 <= d.eval_fraction < 1.0:
        problems.append(f"dataset.eval_fraction={d.eval_fraction} must be in [0, 1), e.g. 0.1.")
    if d.max_records is not None and d.max_records <= 0:
        problems.append(f"dataset.max_records={d.max_records} must be positive, or null for all records.")
    return problems


# Step counts. The 70B paper trains 3000 steps (Table 4, global batch 16: 48,000 examples), and the
# published medical instruction-tuning runs we know stay below 10^5 steps. 10^7 steps is over 3,000
# times the paper even at the smallest batch (one example a step: ten million examples, about 10^10
# tokens at the default 512 + 512 token caps): a typo (`10**12`, an extra digit), never a plan; it
# would also run for weeks before its first scheduled thing happened. Above the soft bound the run
# is allowed, with a warning.
MAX_STEPS_HARD = 10**7
MAX_STEPS_SOFT = 10**5
PAPER_STEPS = 3000
SEED_BOUND = 2**32  # numpy's and torch's seeds are unsigned 32-bit: 0 .. 4294967295


def warn(message: str) -> None:
    """A problem that does not stop the run: printed once, before any model loads."""
    print(f"medtune: warning: {message}", file=sys.stderr, flush=True)


def check_seed(cfg: Any) -> list[str]:
    """`seed` (train.py and evaluate.py) must be a valid numpy / torch seed."""
    if 0 <= cfg.seed < SEED_BOUND:
        return []
    return [f"seed={cfg.seed} is outside [0, {SEED_BOUND}) (0 to 2^32 - 1 = {SEED_BOUND - 1}, the seeds numpy and "
            f"torch accept): pick one in that range, e.g. seed=42."]


def check_learning_rate(lr: float) -> list[str]:
    if not math.isfinite(lr):
        return [f"train.learning_rate={lr} is not a finite number, so the first step would make every weight "
                f"nan or inf: set a positive finite rate, e.g. train.learning_rate=2e-4."]
    if lr <= 0:
        return [f"train.learning_rate={lr} must be positive, e.g. train.learning_rate=2e-4."]
    return []


def check_step_count(steps: int) -> list[str]:
    if steps <= 0:
        return [f"train.max_steps={steps} must be positive, e.g. train.max_steps=100."]
    if steps > MAX_STEPS_HARD:
        return [f"train.max_steps={steps} is more than {MAX_STEPS_HARD:,} steps, over {MAX_STEPS_HARD // PAPER_STEPS:,} "
                f"times the paper's {PAPER_STEPS} and past any published fine-tuning run: a typo? Set the steps you "
                f"mean, e.g. train.max_steps={PAPER_STEPS}, or train.epochs=3 to derive them from the data."]
    if steps > MAX_STEPS_SOFT:
        warn(f"train.max_steps={steps:,} is over {MAX_STEPS_SOFT:,} steps ({steps / PAPER_STEPS:,.0f} times the "
             f"paper's {PAPER_STEPS}); the run goes on, but check that this is the number you meant.")
    return []


def check_schedule(cfg: TrainRunConfig) -> list[str]:
    t = cfg.train
    problems = check_step_count(t.max_steps) + check_learning_rate(t.learning_rate)
    world = cfg.hardware.devices_per_node * cfg.hardware.num_nodes
    for key, example in (("weight_decay", 0.0), ("max_grad_norm", "1.0 (0 turns clipping off)")):
        if not math.isfinite(getattr(t, key)):
            problems.append(f"train.{key}={getattr(t, key)} is not a finite number: set one, e.g. train.{key}={example}.")
    if t.micro_batch_size <= 0 or t.global_batch_size <= 0:
        problems.append("train.global_batch_size and train.micro_batch_size must be positive.")
    elif t.global_batch_size % (t.micro_batch_size * world):
        problems.append(
            f"train.global_batch_size={t.global_batch_size} is not a multiple of train.micro_batch_size="
            f"{t.micro_batch_size} x {world} device(s) (hardware={cfg.hardware.name}): change one of them."
        )
    for key in ("max_input_tokens", "max_target_tokens"):
        if getattr(t, key) <= 0:
            problems.append(f"train.{key}={getattr(t, key)} must be positive, e.g. train.{key}=512.")
    for key, example in (("warmup_steps", 0), ("weight_decay", 0.0), ("max_grad_norm", 1.0), ("eval_steps", 0),
                         ("save_steps", 0), ("pack_max_tokens", 0)):
        if math.isfinite(getattr(t, key)) and getattr(t, key) < 0:  # non-finite ones are reported above
            problems.append(f"train.{key}={getattr(t, key)} must not be negative, e.g. train.{key}={example}.")
    if t.logging_steps <= 0:
        problems.append(f"train.logging_steps={t.logging_steps} must be positive, e.g. train.logging_steps=10.")
    if t.save_total_limit <= 0:
        problems.append(f"train.save_total_limit={t.save_total_limit} must be positive, e.g. train.save_total_limit=2.")
    return problems


def check_exam_eval(cfg: TrainRunConfig) -> list[str]:
    e = cfg.exam_eval
    if not e.enabled:
        return []
    problems = []
    if e.every_steps < 0:
        problems.append(f"exam_eval.every_steps={e.every_steps} must be 0 (before and after only) or positive.")
    for key in ("batch_size", "max_new_tokens"):
        if getattr(e, key) <= 0:
            problems.append(f"exam_eval.{key}={getattr(e, key)} must be positive (or exam_eval.enabled=false).")
    if e.num_shots < 0:
        problems.append(f"exam_eval.num_shots={e.num_shots} must be 0 or more.")
    if e.mode.value == "judge":
        problems.append("exam_eval.mode=judge: the exam check during training scores an exam (generate or loglik); "
                        "judge two systems after training with evaluate.py eval=judge.")
    return problems


def check_prompt(cfg: Any) -> list[str]:
    problems = []
    templates = {"prompt.template": cfg.prompt.template, "prompt.template_no_input": cfg.prompt.template_no_input}
    for key, template in templates.items():
        if template is None:
            continue
        if "{instruction}" not in template:
            problems.append(
                f"prompt={cfg.prompt.name}: {key} has no {{instruction}} placeholder, so the question "
                "would never reach the model; add {instruction} (and {input} for choices or context)."
            )
        unknown = sorted(set(re.findall(r"\{([A-Za-z_]\w*)\}", template)) - {"instruction", "input"})
        if unknown:
            problems.append(
                f"prompt={cfg.prompt.name}: {key} has {{{unknown[0]}}}, a placeholder medtune never fills (it fills "
                "{instruction} and {input} only); rename it, or it reaches the model as literal text."
            )
    return problems


def check_generate_qa(cfg: TrainRunConfig) -> list[str]:
    """task=generate_qa trains nothing: its generator must be reachable, its QA settings sane."""
    from medtune.config.generator_schema import GeneratorKind
    from medtune.qa.task import check_config

    problems = check_config(cfg.qa)
    generator = cfg.qa.generator
    if generator.kind == GeneratorKind.local and not generator.run:
        problems += check_model(cfg) + [p for p in check_hardware(cfg) if "parameters" in p or "CUDA" in p]
    if generator.kind == GeneratorKind.local and generator.run and not (Path(generator.run) / "config.yaml").is_file():
        problems.append(f"qa.generator.run={generator.run} is not a finished train.py run dir (no config.yaml).")
    return problems


def rules_for(schema: type) -> list[Callable[[Any], list[str]]]:
    if schema is TrainRunConfig:
        from medtune.config.task_rules import check_task

        training = [check_adapter, check_hardware, check_model, check_data, check_prompt, check_schedule,
                    check_exam_eval, check_task]
        return [check_seed, lambda cfg: check_generate_qa(cfg) if cfg.task.value == "generate_qa"
                else [p for rule in training for p in rule(cfg)]]
    from medtune.config.eval_rules import EVAL_RULES

    return [check_seed, *EVAL_RULES] if schema.__name__ == "EvalRunConfig" else []
