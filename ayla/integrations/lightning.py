"""AYLA in Lightning: `Trainer(callbacks=[AYLACallback()])` with `configure_optimizers` returning `AYLA(...)`.

The callback hands each loss to AYLA right before Lightning's backward (`AYLA.attach`), so the backward pass
produces the AYLA gradient and everything Lightning does after it (gradient clipping, the 16-mixed GradScaler,
skipping non-finite steps, accumulation) acts on that gradient, as with the functional form; logged losses stay
the raw ones. Lightning hands the hook the loss already divided by `accumulate_grad_batches` (automatic
optimization) and multiplied by the GradScaler's scale (16-mixed): both are undone for the factor.

Manual optimization works without the callback too: `opt.step(loss=loss)` after `self.manual_backward(loss)`.
With the callback, call `opt.step()` without the loss (AYLA refuses a loss handed over twice).
"""

import lightning.pytorch as pl
from torch import Tensor

from ayla.wrapper import find_ayla


class AYLACallback(pl.Callback):
    """Attaches every training loss to the trainer's AYLA optimizer before backward."""

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        ayla = [find_ayla(opt) for opt in trainer.optimizers if _holds_ayla(opt)]
        if len(ayla) != 1:
            raise ValueError(f"AYLACallback needs exactly one AYLA optimizer, found {len(ayla)}; with several, "
                             "call opt.attach(loss) for the right one before manual_backward")
        scale = 1.0
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            scale = scaler.get_scale()
        if pl_module.automatic_optimization:
            scale /= trainer.accumulate_grad_batches
        ayla[0].attach(loss, scale=scale)


def _holds_ayla(optimizer) -> bool:
    try:
        find_ayla(optimizer)
    except TypeError:
        return False
    return True
