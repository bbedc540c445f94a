"""The transformers Trainer with medtune's target-only loss, one correction for multi-process evaluation, and
checkpoints saved whole."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from medtune.quiet import quiet_prints

with quiet_prints():  # importing the Trainer imports transformers' W&B integration, which prints a line
    from transformers import Trainer
from transformers.trainer import DEFAULT_PROGRESS_CALLBACK
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import rotate_checkpoints

from medtune.training.checkpoints import (
    DiskFullError,
    checkpoint_name,
    disk_full_message,
    free_bytes,
    is_disk_full,
    publish,
    space_needed,
    staging_root,
    sync_tree,
)
from medtune.training.target_loss import TargetOnlyHead


class MedtuneTrainer(Trainer):
    """`length_sampler`, when set, orders training batches (train.sampling=group_by_length).

    `stamp_checkpoint(folder, step)`, when set, writes medtune's own files into each checkpoint
    before it is renamed into place (the resume fingerprint)."""

    length_sampler = None
    stamp_checkpoint: Callable[[Path, int], None] | None = None
    target_loss: TargetOnlyHead | None = None  # set: the loss comes from the target positions only
    _staging: str | None = None  # while a checkpoint is being written: the folder it is written under

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # transformers' own display prints every log dict ({'loss': ...}) and nests evaluation bars
        # in the training bar; medtune's TrainingProgress (in the callbacks) shows the run instead.
        for own in (PrinterCallback, ProgressCallback, DEFAULT_PROGRESS_CALLBACK):
            self.remove_callback(own)

    def _get_train_sampler(self, train_dataset=None):
        # transformers' own group_by_length sorts megabatches of min(n / (4 x batch), 50) batches:
        # on a small set that is one batch, so it never lowers padding. medtune's sampler groups
        # across up to 50 batches whatever the set's size.
        if self.length_sampler is not None:
            return self.length_sampler
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # In evaluation, transformers 5 divides each process's summed loss by the token count of
        # *all* processes but never multiplies it back, so a 2-rank eval loss came out ~25% low.
        # Each process's own token mean is what the evaluation loop expects to average.
        if not model.training:
            num_items_in_batch = None
        if self.target_loss is None or "labels" not in inputs:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        # The target-only loss, divided as transformers' ForCausalLMLoss divides: by the accumulated
        # batch's target count when the Trainer gives it, else by this batch's own (a mean).
        features = {key: value for key, value in inputs.items() if key != "labels"}
        with self.target_loss.armed(inputs["labels"]) as result:
            outputs = model(**features)
        scaled = num_items_in_batch is not None and self.model_accepts_loss_kwargs
        loss = result.total / (num_items_in_batch if scaled else result.count)
        if scaled and self.args.average_tokens_across_devices:
            loss = loss * (
                self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1 else self.args.n_gpu
            )
        return (loss, outputs) if return_outputs else loss

    def _get_output_dir(self, trial) -> str:
        return self._staging if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """transformers' save, pointed at `.tmp-checkpoint-<step>/`, then renamed to `checkpoint-<step>`.

        Every rank writes its part (DeepSpeed shards, RNG state) under the temporary folder; once all
        are done the main process stamps, syncs and renames it, then rotates old checkpoints as the
        Trainer would. A failed save removes the temporary folder; a full disk becomes `DiskFullError`."""
        if trial is not None or self.hp_search_backend is not None:
            return super()._save_checkpoint(model, trial)  # hyperparameter search: transformers' own layout
        output_dir = Path(self.args.output_dir)
        step = self.state.global_step
        root, final = staging_root(output_dir, step), output_dir / checkpoint_name(step)
        writer = self.args.should_save
        if writer:
            shutil.rmtree(root, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging = str(root)
        try:
            super()._save_checkpoint(model, trial)  # its rotation sees only this one checkpoint: a no-op
            self.accelerator.wait_for_everyone()
            if writer:
                staged = root / checkpoint_name(step)
                if self.stamp_checkpoint is not None:
                    self.stamp_checkpoint(staged, step)
                sync_tree(staged)
                publish(staged, final)
                shutil.rmtree(root, ignore_errors=True)  # empty now
        except Exception as error:
            if writer:
                shutil.rmtree(root, ignore_errors=True)
            disk_full = self._disk_full(error, output_dir, step)
            if disk_full is None:
                raise
            raise disk_full from error
        finally:
            self._staging = None
        if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(str(root)):
            self.state.best_model_checkpoint = str(final)
        if writer:
            rotate_checkpoints(
                output_dir=str(output_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def _disk_full(self, error: Exception, output_dir: Path, step: int) -> DiskFullError | None:
        """A `DiskFullError` with sizes and the fix when the disk is full (measured after the partial
        save was removed); None for any other failure."""
        try:
            needed = space_needed(output_dir, step, self.model, self.optimizer)
            free = free_bytes(output_dir)
        except Exception:  # the original error matters more than the sizes
            return None
        if not is_disk_full(error, free, needed[0]):
            return None
        return DiskFullError(disk_full_message(output_dir, step, needed, free, self.args.save_total_limit, error))
