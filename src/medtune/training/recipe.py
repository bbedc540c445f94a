"""Training as a recipe: the steps of one train.py run, in the order they happen.

    recipe = TrainingRecipe(cfg, job, tracker)
    recipe.setup_data()      # checkpoint, tokenizer, tokenized data, the schedule in steps, what to resume
    recipe.setup_model()     # distributed group, Trainer arguments, base model, kernels, adapter, speed path
    recipe.setup_trainer()   # callbacks (metrics, exam check, guards, preemption) and the Trainer
    recipe.train()           # the exam before, the training loop, the exam after
    return recipe.save()     # adapter, summary, exam check files, the console tables

The config the recipe holds is its own copy, settled once in setup_data (train.epochs becomes
train.max_steps there); nothing after that changes it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from transformers import set_seed

from medtune.config.job import JobContext
from medtune.config.schema import TrainRunConfig
from medtune.data.cache import cache_key, tokenized_datasets
from medtune.data.templates import require_chat_template
from medtune.data.training_data import training_data_for
from medtune.distributed import ensure_process_group, is_main_process
from medtune.errors import ConfigError
from medtune.finished import ResultsOfOtherSettings
from medtune.modeling.adapters import apply_adapter, parameter_counts
from medtune.modeling.description import describe_model, resolve_checkpoint
from medtune.modeling.load import load_base_model, load_tokenizer
from medtune.modeling.trained import save_run_config
from medtune.reporting.console import console
from medtune.reporting.train_console import print_summary
from medtune.run_dir import TrainRunDir
from medtune.training.arguments import training_arguments
from medtune.training.callbacks import MetricsCallback, drop_rows_to_relog
from medtune.training.checkpoints import remove_leftovers, step_of
from medtune.training.exam_report import exam_summary, write_exam_check
from medtune.training.guards import NonFiniteLossGuard
from medtune.training.preemption import PreemptionCallback
from medtune.training.progress import TrainingProgress
from medtune.training.result import TrainResult
from medtune.training.resume import CHECKPOINTS, FingerprintWriter, checkpoint_to_resume, fingerprint
from medtune.training.run_parts import (
    batch_summary,
    data_summary,
    exam_callback,
    flops_per_token,
    save_outputs,
    schedule_line,
    steps_for_epochs,
    zero3_sharding,
)
from medtune.training.speed import attach, choose_speed, detach, prepare_kernels
from medtune.training.trainer import MedtuneTrainer


class TrainingRecipe:
    def __init__(self, cfg: TrainRunConfig, job: JobContext, tracker):
        self.cfg = cfg
        self.job = job
        self.run_dir = job.run_dir
        self.tracker = tracker
        self.batch_plan = batch_summary(cfg)  # the micro batch (chosen by the resolve phase when auto) and its plan
        self.started = time.perf_counter()

    def run(self) -> TrainResult:
        with console.status("Preparing model and data"):
            self.setup_data()
            self.setup_model()
        self.report_setup()
        self.setup_trainer()
        self.train()
        return self.save()

    def setup_data(self) -> None:
        """Checkpoint and tokenizer, the tokenized data and how it feeds the Trainer, the schedule in
        steps, and the checkpoint to continue from (a changed setup is refused before weights load)."""
        cfg, run_dir = self.cfg, self.run_dir
        set_seed(cfg.seed)
        self.checkpoint = resolve_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
        self.tokenizer = load_tokenizer(self.checkpoint, cfg.model)
        require_chat_template(cfg.prompt, self.tokenizer, cfg.model.name)
        data = training_data_for(cfg)  # instruction tuning or continual pretraining, decided here once
        data_key = cache_key(data, self.checkpoint)  # hashes the data files once: cache and fingerprint
        self.train_set, self.eval_set, self.train_stats, eval_stats = tokenized_datasets(data, self.tokenizer, data_key)
        self.feed = data.trainer_feed(self.train_set, self.tokenizer)
        if cfg.train.epochs is not None:  # the one derived setting: the recipe's own copy of the config
            steps = steps_for_epochs(cfg.train.epochs, len(self.feed.rows), cfg.train.global_batch_size)
            self.cfg = cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=steps))
        self.data_stats = data_summary(cfg, self.train_stats, eval_stats, self.feed.packed_rows)
        self.fingerprint = fingerprint(cfg, data_key)
        if is_main_process():
            for leftover in remove_leftovers(run_dir / CHECKPOINTS):
                console.print(f"removed {leftover.name}, a checkpoint save that was cut short")
        try:
            self.resume_from = checkpoint_to_resume(run_dir / CHECKPOINTS, self.fingerprint, cfg.resume)
        except ConfigError as error:  # its checkpoints were made with other data: refused, config.yaml kept
            raise ResultsOfOtherSettings(run_dir, error.problems[0]) from None
        if is_main_process():  # the settings of the run this dir now holds (the same ones, when it continues)
            save_run_config(cfg, run_dir)

    def setup_model(self) -> None:
        """The Trainer's arguments, then the base model (under ZeRO-3 the arguments make it load sharded),
        kernels, the adapter (its initial weights depend on the seed alone) and the speed path."""
        cfg = self.cfg
        ensure_process_group(
            on_cpu=cfg.hardware.accelerator.value == "cpu", deepspeed=cfg.hardware.deepspeed.zero_stage > 0
        )
        self.args = training_arguments(
            cfg, self.run_dir, has_eval=bool(self.eval_set), padding_free=self.feed.padding_free
        )
        model = load_base_model(self.checkpoint, cfg.model, cfg.adapter, cfg.hardware)
        kernels = prepare_kernels(model, cfg)
        set_seed(cfg.seed)
        self.model = apply_adapter(model, cfg.adapter, cfg.hardware.gradient_checkpointing)
        self.speed = choose_speed(self.model, cfg, self.feed, kernels)
        self.trainable, self.total = parameter_counts(self.model)

    def report_setup(self) -> None:
        """What was prepared, to W&B and the console, before the first step."""
        cfg, stats = self.cfg, self.train_stats
        dropped = getattr(stats, "dropped_long_targets", 0) + getattr(stats, "dropped_long_inputs", 0)
        if (dropped or getattr(stats, "truncated_inputs", 0)) and is_main_process():
            console.print(
                f"[yellow]{dropped} of {stats.records} training examples dropped (over the length limits), "
                f"{getattr(stats, 'truncated_inputs', 0)} prompts truncated from the left; see data/* in the summary.[/yellow]"
            )
        described = describe_model(cfg.model, Path(cfg.paths.cache_dir))
        self.tracker.summarize(
            {
                **self.data_stats,
                "model/trainable_params": self.trainable,
                "model/total_params": self.total,
                **{f"model/{k}": v for k, v in described.summary().items()},
                **self.speed.summary(),
                **self.batch_plan,
            }
        )
        if not is_main_process():
            return
        console.print(
            f"model [bold]{cfg.model.name}[/bold] ({described.origin}; {described.model_type}, loaded from "
            f"{self.checkpoint}) + adapter [bold]{cfg.adapter.name}[/bold]: {self.trainable:,} trainable of "
            f"{self.total:,} parameters; {len(self.train_set)} train / {len(self.eval_set)} eval examples"
        )
        chosen = self.job.choices.get("schedule")
        named = f"schedule={chosen}" if chosen else "the paper's Table 4 schedule (train.yaml)"
        console.print(f"{named}: {schedule_line(cfg)}; change it with schedule=paper|cpu_small|tiny or train.*=...")
        for line in [self.feed.layout_line(), *self.speed.lines()]:
            console.print(line, soft_wrap=True)

    def setup_trainer(self) -> None:
        """The callbacks (metrics, the exam check, the non-finite loss guard, preemption, progress) and the Trainer."""
        cfg, run_dir = self.cfg, self.run_dir
        if is_main_process():
            if self.resume_from is None:
                (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a fresh start starts a new record
            else:
                console.print(f"[bold]resuming[/bold] from {self.resume_from} (same config and data)")
                drop_rows_to_relog(run_dir / "metrics.jsonl", step_of(self.resume_from))  # no step logged twice
        hw = cfg.hardware
        peak = hw.peak_tflops * 1e12 * hw.devices_per_node * hw.num_nodes if hw.peak_tflops else None
        per_token = flops_per_token(cfg, self.total, self.trainable)
        self.metrics = MetricsCallback(self.tracker, run_dir / "metrics.jsonl", per_token, peak)
        self.exam = exam_callback(cfg, self.tokenizer, self.tracker, run_dir)
        self.guard = NonFiniteLossGuard(cfg.train.learning_rate, cfg.train.max_grad_norm)
        self.preemption = PreemptionCallback()
        self.trainer = MedtuneTrainer(
            model=self.model,
            args=self.args,
            train_dataset=self.feed.rows,
            eval_dataset=self.eval_set or None,
            data_collator=self.feed.collator,
            callbacks=[
                self.metrics,
                *([self.exam] if self.exam else []),
                self.guard,
                self.preemption,
                TrainingProgress(),
            ],
        )
        self.trainer.length_sampler = self.feed.length_sampler
        self.trainer.stamp_checkpoint = FingerprintWriter(self.fingerprint, self.guard).write
        attach(self.trainer, self.speed, cfg)

    def train(self) -> None:
        """The exam before (not when continuing), the loop (it evaluates at the start and the last step),
        the exam after. A preemption signal ends the loop at a checkpoint and raises."""
        trainer, exam = self.trainer, self.exam
        if exam and self.resume_from is None:
            exam.measure(trainer.model, 0)
        self.preemption.install()
        try:
            trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
        finally:
            self.preemption.uninstall()
            detach(trainer, self.speed)
        if self.preemption.signum is not None:
            raise self.preemption.preempted(str(Path(self.args.output_dir) / f"checkpoint-{trainer.state.global_step}"))
        if exam:
            exam.measure(trainer.model, trainer.state.global_step)

    def save(self) -> TrainResult:
        """The adapter (or model) and tokenizer, train_summary.json, the exam check's files, W&B summary, console."""
        cfg, run_dir, trainer, metrics, exam = self.cfg, self.run_dir, self.trainer, self.metrics, self.exam
        saved = save_outputs(trainer, self.tokenizer, cfg, run_dir, self.checkpoint, self.tracker.group)
        losses, eval_losses = metrics.series("train/loss"), metrics.series("eval/loss")
        eval_before, eval_after = (eval_losses[0], eval_losses[-1]) if len(eval_losses) >= 2 else (None, None)
        tokens = int(trainer.state.num_input_tokens_seen)
        summary = {
            "train/loss_first": losses[0] if losses else None,
            "train/loss_last": losses[-1] if losses else None,
            "eval/loss_before": eval_before,
            "eval/loss_after": eval_after,
            "train/steps": trainer.state.global_step,
            "train/resumed_from": str(self.resume_from) if self.resume_from else None,
            "train/tokens_seen": tokens,
            "train/tokens_per_second": metrics.tokens_per_second(tokens),
            "train/peak_memory_mib": max(metrics.series("train/peak_memory_mib"), default=None),
            "train/seconds": metrics.train_seconds(),
            "train/step_seconds": metrics.step_seconds(),
            "run/seconds": time.perf_counter() - self.started,
            "model/trainable_params": self.trainable,
            "model/total_params": self.total,
            **self.data_stats,
            **self.speed.summary(),
            **self.batch_plan,
            **(exam_summary(exam.exams, exam.best) if exam else {}),
            **zero3_sharding(trainer.model),
            "saved": str(saved),
        }
        self.tracker.summarize({k: v for k, v in summary.items() if v is not None})
        if is_main_process():
            TrainRunDir(run_dir).write_summary(summary)
            if exam:
                write_exam_check(run_dir, exam.exams)
            # An earlier attempt in this run dir may have failed (run_claim.write_failure_record); this one did not.
            TrainRunDir(run_dir).clear_failure()
            print_summary(cfg, self.job, summary)
        return TrainResult(summary=summary, model=trainer.model, tokenizer=self.tokenizer, run_dir=run_dir)
