"""The transformers Trainer with one correction for multi-process evaluation."""

from __future__ import annotations

from transformers import Trainer


class MedtuneTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # In evaluation, transformers 5 divides each process's summed loss by the token count of
        # *all* processes but never multiplies it back, so a 2-rank eval loss came out ~25% low.
        # Each process's own token mean is what the evaluation loop expects to average.
        if not model.training:
            num_items_in_batch = None
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
