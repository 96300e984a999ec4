"""AYLA in Lightning: `Trainer(callbacks=[AYLACallback()])` with `configure_optimizers` returning `AYLA(...)`.

The callback hands each loss to AYLA right before Lightning's backward (`AYLA.attach`); the backward records the
share of it that reaches the gradients and the optimizer step applies the factor of their sum. So
`accumulate_grad_batches=k` (Lightning backpropagates loss / k) steps with the factor of the mean over the k
micro-batches, as one step on the whole batch would; `gradient_clip_val` clips the raw gradient and the factor
multiplies after it (AYLA's one semantics for clipping, docs/addon.md); the 16-mixed GradScaler's scale is undone
for the factor; logged losses stay the raw ones.

Manual optimization works without the callback too: `opt.step(loss=loss)` after `self.manual_backward(loss)`, or
`opt.attach(loss)` before it and `opt.step()`; with several optimizers (a GAN) that is the way, and the callback
refuses. With the callback, call `opt.step()` without the loss (AYLA refuses a loss handed over twice).
Without the callback, automatic optimization with accumulate_grad_batches > 1 is refused by AYLA: the closure
Lightning hands `step` returns the last micro-batch's loss, not the loss of the summed gradients.
"""

import lightning.pytorch as pl
from torch import Tensor

from ayla.wrapper import find_ayla


class AYLACallback(pl.Callback):
    """Attaches every training loss to the trainer's AYLA optimizer before backward."""

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        ayla = [find_ayla(opt) for opt in trainer.optimizers if _holds_ayla(opt)]
        if len(ayla) != 1 or (not pl_module.automatic_optimization and len(trainer.optimizers) > 1):
            raise ValueError(f"AYLACallback needs exactly one optimizer, an AYLA (found {len(trainer.optimizers)}, "
                             f"{len(ayla)} AYLA): with several it cannot tell whose loss a backward is; drop the "
                             "callback and call self.optimizers()[i].attach(loss) before manual_backward")
        scale = 1.0
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            scale = scaler.get_scale()
        ayla[0].attach(loss, scale=scale)


def _holds_ayla(optimizer) -> bool:
    try:
        find_ayla(optimizer)
    except TypeError:
        return False
    return True
