"""train.py's rules: adapter, machine, model, data, prompt, schedule, the exam check and the task."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from medtune.config.exam_options import exam_option
from medtune.config.schema import AdapterKind, AttentionKind, DatasetFormat, Kernels, Task, TrainRunConfig
from medtune.data.file_checks import data_file_problem
from medtune.errors import ConfigError
from medtune.rules.common import (
    MAX_SHOTS,
    check_contamination_files,
    check_contamination_settings,
    check_learning_rate,
    check_prompt,
    check_seed,
    check_step_count,
)
from medtune.rules.language import check_prompt_language
from medtune.rules.model import check_adapter, check_hardware, check_model


def loads_model(cfg: TrainRunConfig) -> bool:
    """Whether the run loads the model (adapter=none is refused by the rules, before any model is read)."""
    return cfg.adapter.kind != AdapterKind.none


def check_machine(cfg: TrainRunConfig) -> list[str]:
    return check_hardware(cfg, loads_model=cfg.adapter.kind != AdapterKind.none, dry_run=cfg.dry_run)


def check_weights(cfg: TrainRunConfig) -> list[str]:
    return check_model(cfg.model, dry_run=cfg.dry_run)


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


def check_schedule(cfg: TrainRunConfig) -> list[str]:
    t = cfg.train
    problems = check_step_count(t.max_steps) + check_learning_rate(t.learning_rate)
    world = cfg.hardware.devices_per_node * cfg.hardware.num_nodes
    for key, example in (("weight_decay", 0.0), ("max_grad_norm", "1.0 (0 turns clipping off)")):
        if not math.isfinite(getattr(t, key)):
            problems.append(
                f"train.{key}={getattr(t, key)} is not a finite number: set one, e.g. train.{key}={example}."
            )
    micro = t.micro_batch_size
    if micro != "auto" and (isinstance(micro, bool) or not isinstance(micro, int)):
        problems.append(
            f"train.micro_batch_size={micro!r} must be a whole number of examples per device, e.g. "
            "train.micro_batch_size=4, or auto (the largest that the memory plan fits on the device)."
        )
    elif micro == "auto":
        if t.global_batch_size <= 0 or t.global_batch_size % world:
            problems.append(
                f"train.global_batch_size={t.global_batch_size} must be a positive multiple of the {world} device(s) "
                f"(hardware={cfg.hardware.name}) for train.micro_batch_size=auto to divide it."
            )
    elif micro <= 0 or t.global_batch_size <= 0:
        problems.append("train.global_batch_size and train.micro_batch_size must be positive.")
    elif t.global_batch_size % (micro * world):
        problems.append(
            f"train.global_batch_size={t.global_batch_size} is not a multiple of train.micro_batch_size="
            f"{t.micro_batch_size} x {world} device(s) (hardware={cfg.hardware.name}): change one of them."
        )
    for key in ("max_input_tokens", "max_target_tokens"):
        if getattr(t, key) <= 0:
            problems.append(f"train.{key}={getattr(t, key)} must be positive, e.g. train.{key}=512.")
    for key, example in (
        ("warmup_steps", 0),
        ("weight_decay", 0.0),
        ("max_grad_norm", 1.0),
        ("eval_steps", 0),
        ("save_steps", 0),
        ("pack_max_tokens", 0),
    ):
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
    if not 0 <= e.num_shots <= MAX_SHOTS:
        problems.append(
            f"exam_eval.num_shots={e.num_shots} must be between 0 and {MAX_SHOTS} (the worked examples bundled "
            "per language)."
        )
    fewshot = cfg.exam.fewshot_path
    if e.num_shots > 0 and fewshot and not Path(fewshot).is_file():
        problems.append(
            data_file_problem(fewshot, "exam.fewshot_path")
            or f"exam.fewshot_path={fewshot} does not exist (exam_eval.num_shots={e.num_shots} reads it): point it at "
            "a file of worked examples, or set exam.fewshot_path=null for the bundled ones."
        )
    if e.retention_max_questions is not None and e.retention_max_questions <= 0:
        problems.append(
            f"exam_eval.retention_max_questions={e.retention_max_questions} must be positive, or null for all."
        )
    return problems + check_retention_exams(cfg)


def check_retention_exams(cfg: TrainRunConfig) -> list[str]:
    """Each retention exam is a conf/exam option, named once, not the target exam, in the prompt's language."""
    names = list(cfg.exam_eval.retention)
    problems = []
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"exam_eval.retention names {', '.join(repeated)} more than once: name each exam once.")
    if cfg.exam.name in names:
        problems.append(
            f"exam_eval.retention holds exam={cfg.exam.name}, the target exam itself: it is asked already; "
            "name other exams (e.g. exam_eval.retention=[medqa_en])."
        )
    for name in dict.fromkeys(names):
        try:
            exam = exam_option(name, cfg.paths, "exam_eval.retention")
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        problems.extend(
            problem.replace(f"exam={exam.name}", f"exam_eval.retention's {exam.name}")
            for problem in check_prompt_language(SimpleNamespace(exam=exam, prompt=cfg.prompt, exam_eval=cfg.exam_eval))
        )
    return problems


def check_task(cfg: TrainRunConfig) -> list[str]:
    problems = []
    d, t = cfg.dataset, cfg.train
    if cfg.task == Task.pretrain and d.format != DatasetFormat.text and not d.mixture:
        problems.append(
            f"task=pretrain reads raw text, but dataset={d.name} has dataset.format={d.format.value}: "
            "use dataset=medical_text (or dataset.format=text with .txt files or JSONL with a text field)."
        )
    if cfg.task == Task.pretrain and d.mixture:
        problems.append("task=pretrain takes one text corpus (dataset.path); dataset.mixture is for instruction data.")
    if cfg.task == Task.train and d.format == DatasetFormat.text:
        problems.append(
            f"dataset={d.name} is raw text (dataset.format=text), which has no responses to learn: "
            "continue pretraining on it with task=pretrain, or pick an instruction dataset."
        )
    if cfg.task == Task.pretrain:
        limit = cfg.model.architecture.max_position_embeddings
        if not 2 <= cfg.pretrain.block_tokens <= limit:
            problems.append(
                f"pretrain.block_tokens={cfg.pretrain.block_tokens} must be between 2 and model={cfg.model.name}'s "
                f"{limit} positions."
            )
        if cfg.pretrain.eval_blocks < 0:
            problems.append(
                f"pretrain.eval_blocks={cfg.pretrain.eval_blocks} must be >= 0 (0 = dataset.eval_fraction)."
            )
    if d.mixture and d.path is not None:
        problems.append(
            f"dataset={d.name} sets both dataset.path={d.path} and dataset.mixture ({', '.join(d.mixture)}): "
            "a mixture replaces the path; set dataset.path=null or drop the mixture."
        )
    for name, source in d.mixture.items():
        if source.weight < 0:
            problems.append(f"dataset.mixture.{name}.weight={source.weight} must be >= 0 (0 leaves the source out).")
        if source.max_records is not None and source.max_records <= 0:
            problems.append(f"dataset.mixture.{name}.max_records={source.max_records} must be positive, or null.")
    if d.mixture and sum(s.weight for s in d.mixture.values()) <= 0:
        problems.append("dataset.mixture: every weight is 0, so nothing would train; give a source a weight > 0.")
    if t.epochs is not None and (not math.isfinite(t.epochs) or t.epochs <= 0):
        problems.append(f"train.epochs={t.epochs} must be positive and finite, or null to train for train.max_steps.")
    if t.max_total_tokens is not None and t.max_total_tokens < 2:
        problems.append(f"train.max_total_tokens={t.max_total_tokens} must be at least 2, or null for no cap.")
    return problems


def check_speed_options(cfg: TrainRunConfig) -> list[str]:
    """train.kernels=liger needs a CUDA device and a family liger patches; flash-attention needs CUDA too."""
    from medtune.modeling.kernels import liger_problem

    problems = []
    accelerator = cfg.hardware.accelerator.value
    if cfg.train.kernels == Kernels.liger:
        problem = liger_problem(cfg.model.architecture.model_type, accelerator)
        if problem:
            problems.append(f"{problem}.")
    if cfg.train.attention == AttentionKind.flash_attention_2 and accelerator != "cuda":
        problems.append(
            f"train.attention=flash_attention_2 needs a CUDA device (hardware={cfg.hardware.name}): use "
            "train.attention=auto, which slices padding-free rows per example with SDPA here."
        )
    return problems


# Rules that read the config alone (not the machine, the model's files or the data's): what a
# sweep checks for every cell before it starts.
PORTABLE_RULES = (
    check_adapter,
    check_prompt,
    check_schedule,
    check_exam_eval,
    check_task,
    check_speed_options,
    check_contamination_settings,
)
RULES = (
    check_seed,
    check_adapter,
    check_machine,
    check_weights,
    check_data,
    check_prompt,
    check_schedule,
    check_exam_eval,
    check_task,
    check_speed_options,
    check_contamination_settings,
    check_contamination_files,
)
