"""The train task: data -> tokens -> model + adapter -> Trainer -> saved adapter, metrics and W&B run."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.config.job import JobContext, Workspace
from medtune.config.schema import AdapterKind, Quantization, TrainRunConfig
from medtune.distributed import ensure_process_group, is_main_process, leaving_process_group
from medtune.quiet import quiet_third_party
from medtune.reporting.console import console, print_plan
from medtune.reporting.exam_check_console import print_contamination
from medtune.reporting.train_console import print_summary
from medtune.run_dir import TrainRunDir
from medtune.training.exam_report import exam_summary, write_exam_check


@dataclass
class TrainResult:
    summary: dict[str, Any]
    model: Any  # the trained model, still in memory (a PeftModel for LoRA)
    tokenizer: Any
    run_dir: Path


def workspace(cfg: TrainRunConfig, job: JobContext) -> tuple[TrainRunConfig, Workspace | None]:
    """A training run holds its run dir (rank 0 locks it) and one W&B run; a dry run writes nothing."""
    if cfg.dry_run:
        return cfg, None
    return cfg, Workspace(job.run_dir, setting="hydra.run.dir", activity="training", job_type="train")


def check_existing(cfg: TrainRunConfig, job: JobContext, directory: Path) -> TrainRunConfig:
    """Before train.py writes into its run dir: a finished run there made with other settings (or an
    unfinished one whose checkpoints were) is refused, or deleted with overwrite=true
    (`medtune.training.existing`). Only the main process looks: it alone writes and deletes."""
    if not is_main_process():
        return cfg
    from medtune.training.existing import check_existing as check

    return check(cfg, Path(directory))


def run(cfg: TrainRunConfig, job: JobContext, tracker) -> TrainResult | None:
    """The train.py task: the memory plan of a dry run, else a training run in the locked run dir."""
    auto_batch = settle_micro_batch(cfg)
    if cfg.dry_run:
        from medtune.modeling.description import describe_model
        from medtune.modeling.planner import format_plan, plan

        quiet_third_party(cpu_only=True)  # the plan only builds meta-device models
        print_plan(cfg, job, describe_model(cfg.model, cfg.paths.cache_dir, materialize=False))
        with console.status("Counting parameters on the meta device"):
            memory = plan(cfg)
        console.print(format_plan(memory))
        return None
    quiet_third_party(cpu_only=cfg.hardware.accelerator.value == "cpu")
    from medtune.modeling.trained import save_run_config

    if is_main_process() and not TrainRunDir(job.run_dir).has_config:
        save_run_config(cfg, job.run_dir)  # a new run dir: its config from the start (a continued one: below)
    with leaving_process_group():  # every rank ends in order, also on an error: each exits by itself
        return _train(cfg, job, tracker, auto_batch.summary() if auto_batch is not None else {})


def settle_micro_batch(cfg: TrainRunConfig):
    """train.micro_batch_size=auto: pick it (and gradient checkpointing) from the memory plan, and say so."""
    from medtune.errors import ConfigError
    from medtune.modeling.planner.auto_batch import resolve_micro_batch

    if cfg.train.micro_batch_size != "auto":
        return None
    try:
        with console.status("Planning the micro batch (train.micro_batch_size=auto)"):
            choice = resolve_micro_batch(cfg)
    except ValueError as error:
        raise ConfigError([str(error)]) from error
    if choice is not None and is_main_process():
        color = "yellow" if choice.fits is False else "bold"
        console.print(f"[{color}]{choice.line()}[/{color}]")
    return choice


def metrics(result: TrainResult | None) -> dict[str, Any]:
    """train_summary.json's numbers (what `optimized_metric` names, e.g. eval/loss_after); none for a dry run."""
    return {} if result is None else result.summary


def _train(cfg: TrainRunConfig, job: JobContext, tracker, auto_batch: dict[str, Any]) -> TrainResult:
    from transformers import set_seed

    from medtune.data.cache import cache_key, tokenized_datasets
    from medtune.data.templates import require_chat_template
    from medtune.data.training_data import training_data_for
    from medtune.errors import ConfigError
    from medtune.finished import ResultsOfOtherSettings
    from medtune.modeling.adapters import apply_adapter, parameter_counts
    from medtune.modeling.description import describe_model, resolve_checkpoint
    from medtune.modeling.load import (
        load_base_model,
        load_tokenizer,
    )
    from medtune.training.arguments import training_arguments
    from medtune.training.callbacks import MetricsCallback, drop_rows_to_relog
    from medtune.training.checkpoints import remove_leftovers, step_of
    from medtune.training.guards import NonFiniteLossGuard
    from medtune.training.preemption import PreemptionCallback
    from medtune.training.progress import TrainingProgress
    from medtune.training.resume import CHECKPOINTS, FingerprintWriter, checkpoint_to_resume, fingerprint
    from medtune.training.speed import attach, choose_speed, detach, prepare_kernels
    from medtune.training.trainer import MedtuneTrainer

    started = time.perf_counter()
    run_dir = job.run_dir
    set_seed(cfg.seed)

    with console.status("Preparing model and data"):
        checkpoint = resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
        tokenizer = load_tokenizer(checkpoint, cfg.model)
        require_chat_template(cfg.prompt, tokenizer, cfg.model.name)
        data = training_data_for(cfg)  # instruction tuning or continual pretraining, decided here once
        data_key = cache_key(data, checkpoint)  # hashes the data files once: tokenization cache and fingerprint
        train_set, eval_set, train_stats, eval_stats = tokenized_datasets(data, tokenizer, data_key)
        feed = data.trainer_feed(train_set, tokenizer)
        train_rows, collator, length_sampler, packed_rows = (
            feed.rows,
            feed.collator,
            feed.length_sampler,
            feed.packed_rows,
        )
        if cfg.train.epochs is not None:
            cfg.train.max_steps = steps_for_epochs(cfg.train.epochs, len(train_rows), cfg.train.global_batch_size)
        # Refuse a changed setup before any weights load: a 70B base takes minutes to load.
        current = fingerprint(cfg, data_key)
        if is_main_process():
            for leftover in remove_leftovers(run_dir / CHECKPOINTS):
                console.print(f"removed {leftover.name}, a checkpoint save that was cut short")
        try:
            resume_from = checkpoint_to_resume(run_dir / CHECKPOINTS, current, cfg.resume)
        except ConfigError as error:  # its checkpoints were made with other data: refused, config.yaml kept
            raise ResultsOfOtherSettings(run_dir, error.problems[0]) from None
        if is_main_process():  # the settings of the run this dir now holds (the same ones, when it continues)
            from medtune.modeling.trained import save_run_config

            save_run_config(cfg, run_dir)
        # The arguments come before the model: under ZeRO-3 they make from_pretrained load it sharded.
        ensure_process_group(
            on_cpu=cfg.hardware.accelerator.value == "cpu", deepspeed=cfg.hardware.deepspeed.zero_stage > 0
        )
        args = training_arguments(cfg, run_dir, has_eval=bool(eval_set), padding_free=feed.padding_free)
        model = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware)
        kernels = prepare_kernels(model, cfg)
        set_seed(cfg.seed)  # the adapter's initial weights depend on the seed alone
        model = apply_adapter(model, cfg.adapter, cfg.hardware.gradient_checkpointing)
        speed = choose_speed(model, cfg, feed, kernels)
    trainable, total = parameter_counts(model)
    data_stats = {f"data/train_{k}": v for k, v in train_stats.as_dict().items()}
    if eval_stats is not None:
        data_stats.update({f"data/eval_{k}": v for k, v in eval_stats.as_dict().items()})
    if packed_rows is not None:
        data_stats["data/train_packed_rows"] = packed_rows
    for source, count in (getattr(train_stats, "mixture", None) or {}).items():
        data_stats[f"data/mixture/{source}"] = count
    if cfg.train.epochs is not None:
        data_stats["train/planned_steps"] = cfg.train.max_steps
    dropped = getattr(train_stats, "dropped_long_targets", 0) + getattr(train_stats, "dropped_long_inputs", 0)
    if (dropped or getattr(train_stats, "truncated_inputs", 0)) and is_main_process():
        console.print(
            f"[yellow]{dropped} of {train_stats.records} training examples dropped (over the length limits), "
            f"{getattr(train_stats, 'truncated_inputs', 0)} prompts truncated from the left; see data/* in the summary.[/yellow]"
        )
    described = describe_model(cfg.model, Path(cfg.paths.cache_dir))
    tracker.summarize(
        {
            **data_stats,
            "model/trainable_params": trainable,
            "model/total_params": total,
            **{f"model/{k}": v for k, v in described.summary().items()},
            **speed.summary(),
            **auto_batch,
        }
    )
    if is_main_process():
        console.print(
            f"model [bold]{cfg.model.name}[/bold] ({described.origin}; {described.model_type}, loaded from {checkpoint}) "
            f"+ adapter [bold]{cfg.adapter.name}[/bold]: {trainable:,} trainable of {total:,} parameters; "
            f"{len(train_set)} train / {len(eval_set)} eval examples"
        )
        chosen = job.choices.get("schedule")
        named = f"schedule={chosen}" if chosen else "the paper's Table 4 schedule (train.yaml)"
        console.print(f"{named}: {schedule_line(cfg)}; change it with schedule=paper|cpu_small|tiny or train.*=...")
        for line in [feed.layout_line(), *speed.lines()]:
            console.print(line, soft_wrap=True)

    if is_main_process():
        if resume_from is None:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a fresh start in the same dir starts a new record
        else:
            console.print(f"[bold]resuming[/bold] from {resume_from} (same config and data)")
            drop_rows_to_relog(run_dir / "metrics.jsonl", step_of(resume_from))  # no step logged twice
    hw = cfg.hardware
    peak = hw.peak_tflops * 1e12 * hw.devices_per_node * hw.num_nodes if hw.peak_tflops else None
    callback = MetricsCallback(tracker, run_dir / "metrics.jsonl", flops_per_token(cfg, total, trainable), peak)
    exam = exam_callback(cfg, tokenizer, tracker, run_dir)
    guard = NonFiniteLossGuard(cfg.train.learning_rate, cfg.train.max_grad_norm)
    preemption = PreemptionCallback()
    trainer = MedtuneTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_set or None,
        data_collator=collator,
        callbacks=[callback, *([exam] if exam else []), guard, preemption, TrainingProgress()],
    )
    trainer.length_sampler = length_sampler
    trainer.stamp_checkpoint = FingerprintWriter(current, guard).write
    attach(trainer, speed, cfg)
    if exam and resume_from is None:
        exam.measure(trainer.model, 0)
    preemption.install()
    try:
        # evaluates at the start (eval_on_start) and at the last step, DeepSpeed or not
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        preemption.uninstall()
        detach(trainer, speed)
    if preemption.signum is not None:
        raise preemption.preempted(str(Path(args.output_dir) / f"checkpoint-{trainer.state.global_step}"))
    eval_losses = callback.series("eval/loss")
    eval_before, eval_after = (eval_losses[0], eval_losses[-1]) if len(eval_losses) >= 2 else (None, None)
    if exam:
        exam.measure(trainer.model, trainer.state.global_step)

    saved = save_outputs(trainer, tokenizer, cfg, run_dir, checkpoint, tracker.group)
    losses = callback.series("train/loss")
    summary = {
        "train/loss_first": losses[0] if losses else None,
        "train/loss_last": losses[-1] if losses else None,
        "eval/loss_before": eval_before,
        "eval/loss_after": eval_after,
        "train/steps": trainer.state.global_step,
        "train/resumed_from": str(resume_from) if resume_from else None,
        "train/tokens_seen": int(trainer.state.num_input_tokens_seen),
        "train/tokens_per_second": callback.tokens_per_second(int(trainer.state.num_input_tokens_seen)),
        "train/peak_memory_mib": max(callback.series("train/peak_memory_mib"), default=None),
        "train/seconds": callback.train_seconds(),
        "train/step_seconds": callback.step_seconds(),
        "run/seconds": time.perf_counter() - started,
        "model/trainable_params": trainable,
        "model/total_params": total,
        **data_stats,
        **speed.summary(),
        **auto_batch,
        **(exam_summary(exam.exams, exam.best) if exam else {}),
        **zero3_sharding(trainer.model),
        "saved": str(saved),
    }
    tracker.summarize({k: v for k, v in summary.items() if v is not None})
    if is_main_process():
        TrainRunDir(run_dir).write_summary(summary)
        if exam:
            write_exam_check(run_dir, exam.exams)
        # An earlier attempt in this run dir may have failed (run_claim.write_failure_record); this one did not.
        TrainRunDir(run_dir).clear_failure()
        print_summary(cfg, job, summary)
    return TrainResult(summary=summary, model=trainer.model, tokenizer=tokenizer, run_dir=run_dir)


def steps_for_epochs(epochs: float, rows: int, global_batch: int) -> int:
    """Optimizer steps that show every training row `epochs` times (the last batch may be partial)."""
    return max(1, math.ceil(epochs * rows / global_batch))


def flops_per_token(cfg: TrainRunConfig, total: int, trainable: int) -> float | None:
    """Training FLOPs per token for MFU: 2N forward, 2N backward through activations, and 2 x the
    trainable parameters for their weight gradients (6N for full fine-tuning, ~4N for LoRA)."""
    if not cfg.hardware.peak_tflops:
        return None
    return 4.0 * total + 2.0 * trainable


def zero3_sharding(model) -> dict[str, Any]:
    """Under ZeRO-3, what share of the weights this rank holds (1/world when sharded), 4-bit ones apart."""
    local = full = local_4bit = full_4bit = 0
    for param in model.parameters():
        if not hasattr(param, "ds_numel"):
            return {}
        local += param.ds_tensor.numel()
        full += param.ds_numel
        if param.__class__.__name__ == "Params4bit" or getattr(param, "quant_state", None) is not None:
            local_4bit += param.ds_tensor.numel()
            full_4bit += param.ds_numel
    summary = {"zero3/local_fraction": local / full if full else None}
    if full_4bit:
        summary["zero3/local_fraction_4bit"] = local_4bit / full_4bit
    return summary


def schedule_line(cfg: TrainRunConfig) -> str:
    t = cfg.train
    from medtune.data.training_data import training_data_for

    return (
        f"{t.max_steps} steps, lr {t.learning_rate:g} ({t.lr_scheduler.value}, warmup {t.warmup_steps}), "
        f"global batch {t.global_batch_size} (micro {t.micro_batch_size}), {training_data_for(cfg).lengths_line()}"
    )


def exam_callback(cfg: TrainRunConfig, tokenizer, tracker, run_dir: Path):
    if not cfg.exam_eval.enabled:
        return None
    if cfg.hardware.deepspeed.zero_stage == 3:
        if is_main_process():
            console.print(
                "exam accuracy during training is off under ZeRO-3 (weights are sharded); "
                "run evaluate.py run=<this run dir> afterwards."
            )
        return None
    from medtune.training.exam_callback import ExamAccuracyCallback
    from medtune.training.exam_check import checked_exams

    exams = checked_exams(cfg)
    if is_main_process():
        print_contamination(exams)
    return ExamAccuracyCallback(cfg, exams, tokenizer, tracker, run_dir)


def save_outputs(trainer, tokenizer, cfg: TrainRunConfig, run_dir: Path, checkpoint: str, group: str | None) -> Path:
    """Adapter (or full model) and tokenizer into the run dir, with where the base came from."""
    target = TrainRunDir(run_dir).saved_dir(cfg.adapter.kind == AdapterKind.full)
    trainer.save_model(str(target))
    if is_main_process():
        tokenizer.save_pretrained(str(target))
        base = str(Path(checkpoint).resolve()) if Path(checkpoint).exists() else checkpoint
        TrainRunDir(run_dir).write_run_info(
            {
                "checkpoint": base,
                "adapter_dir": str(target),
                "quantization": cfg.adapter.quantization.method.value,
                "quantized_base": cfg.adapter.quantization.method != Quantization.none,
                "wandb_group": group,  # evaluations of this run join it
            },
        )
    return target
