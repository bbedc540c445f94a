"""The transformers Trainer with one correction for multi-process evaluation."""

from __future__ import annotations

from transformers import Trainer


class MedtuneTrainer(Trainer):
    """`length_sampler`, when set, orders training batches (train.sampling=group_by_length)."""

    length_sampler = None

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
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
