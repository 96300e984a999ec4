"""AYLA in the Hugging Face Trainer: `AYLATrainer(..., optimizers=(AYLA(torch.optim.AdamW(...), N1, N2), None))`.

accelerate calls `optimizer.step()` with no loss, so AYLATrainer attaches each training loss to AYLA before
backward (`AYLA.attach`). Its backward pass records how much of that loss reaches the gradients, whatever the
Trainer divides it by: 1/k under `gradient_accumulation_steps=k`, or the micro-batch's share of the label tokens
when the model divides its summed loss by `num_items_in_batch` (padding: micro-batches with unequal token
counts). At the optimizer step the factor is that of the sum of those shares, the full batch's loss, as one
step on the whole batch would take it. The Trainer's `max_grad_norm` clip acts on the raw gradient and the factor
after it (AYLA's one semantics for clipping, docs/addon.md), and the logged and evaluated losses stay the raw
ones.
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
            scaler = getattr(self.accelerator, "scaler", None)  # fp16: accelerate backpropagates scale × loss
            scale = scaler.get_scale() if scaler is not None and scaler.is_enabled() else 1.0
            find_ayla(self.optimizer).attach(loss, scale=scale)
        return result
