"""AYLA in the Hugging Face Trainer: `AYLATrainer(..., optimizers=(AYLA(torch.optim.AdamW(...), N1, N2), None))`.

accelerate calls `optimizer.step()` with no loss, so AYLATrainer attaches each training loss to AYLA before
backward (`AYLA.attach`). The backward pass then produces the AYLA gradient: the Trainer's `max_grad_norm`
clipping acts on it, as with the functional form, while the logged and evaluated losses stay the raw ones
(overriding `compute_loss` with `ayla_loss` would log and evaluate the transformed loss instead).

With gradient accumulation the Trainer may hand over a loss already divided by the accumulation steps (when the
model takes `num_items_in_batch`); that division is undone for the factor, so each micro-batch gets the factor
of its own loss (exact when the micro-batches hold equally many items).
"""

import torch
from transformers import Trainer

from ayla.wrapper import find_ayla


class AYLATrainer(Trainer):
    """A transformers.Trainer whose optimizer is an AYLA: training losses are handed to it before backward."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None, **kwargs):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch, **kwargs)
        loss = result[0] if return_outputs else result
        if model.training and torch.is_grad_enabled():  # not evaluation or prediction
            steps = self.current_gradient_accumulation_steps
            scaled_for_accumulation = (
                self.loss_is_scaled_for_ga if getattr(self, "loss_is_scaled_for_ga", None) is not None
                else (self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                or self.compute_loss_func is not None)
            find_ayla(self.optimizer).attach(loss, scale=1.0 / steps if scaled_for_accumulation else 1.0)
        return result
