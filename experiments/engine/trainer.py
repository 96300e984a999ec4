"""The one trainer: any experiment, S seeds × A optimizer arms, trained together in stacked tensors.

A `Task` (see experiments/) owns the data and the model; its parameters stack every seed and arm, so that one
batched matmul serves them all. The update is elementwise, so each arm keeps its own state: one fused
torch.optim SGD or Adam over the stacked tensors where the arms share lr, betas, eps and momentum, else the same
formula with those settings per arm (StackedUpdate: an lr grid or an eps ablation is still one population).
What multiplies each arm's gradient (the AYLA factor of its own loss, or a constant) is applied by weighting
each arm's loss in the backward pass.

The trainer owns everything an optimizer benchmark must get right the same way for every experiment:
  - same seed ⇒ same initial weights and same batch order, whatever the arm, so arms compare step for step;
  - the AYLA factor of each arm comes from that arm's own mini-batch loss, with no host sync per step;
  - per epoch: train loss/accuracy (mean over the epoch's batches), test (and validation) loss/accuracy on
    the full sets, mean AYLA factor, mean effective step lr·factor·‖g‖, wall seconds;
  - an arm whose loss turns NaN/inf is recorded as diverged and drops out; the others go on.
Training the S·A arms one by one gives the same numbers (to float rounding): tests/test_fused.py.
"""

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ayla.transform import ayla_factor, check_exponents
from experiments.engine import optimizers
from experiments.errors import ConfigError

# shared by every arm: one torch.optim step (fused kernel) serves the population
UPDATE_FIELDS = ("base", "lr", "beta1", "beta2", "eps", "momentum", "weight_decay", "options")
SHUFFLE_STREAM, SPLIT_STREAM = 1, 2


def stream_seed(seed: int, stream: int) -> int:
    """An independent seed for one use (shuffling, splitting) of a run seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


@dataclass(frozen=True)
class Arm:
    """One optimizer setting. Every arm of a population is trained once per seed."""

    name: str                 # label in CSVs and figures
    base: str                 # update rule: an optimizer YAML of conf/optimizer/ ("sgd", "adam", "adamw", ...)
    lr: float
    ayla: bool = False        # scale the gradient by the AYLA factor of the mini-batch loss
    N1: float = math.nan
    N2: float = math.nan
    grad_scale: float = 1.0   # constant gradient multiplier (the "Adam × c" ablation)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    dynamic_eps: bool = False  # Adam on the raw gradient with eps / (the AYLA factor of its loss, N1, N2) per step
    weight_decay: float = 0.0
    options: tuple = ()       # the base's other hyperparameters, as sorted (key, value) pairs (RMSprop's alpha, ...)

    def settings(self) -> dict:
        """The base optimizer's hyperparameters beyond lr, by their config names."""
        return {"betas": (self.beta1, self.beta2), "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay, **dict(self.options)}


@dataclass
class Trained:
    metrics: pd.DataFrame            # one row per seed, arm and epoch
    snapshots: pd.DataFrame | None   # the task's snapshots (e.g. the curve fit's predictions), labelled
    params: list[Tensor]             # the final stacked parameters


class Task(Protocol):
    """What an experiment provides to the trainer. (S, A) means one value per seed and arm."""

    n_train: int              # training rows per seed (1 for the data-free polynomial)
    batch_size: int | None    # None: one full batch per epoch

    def init_params(self, seeds: list[int], arms: int) -> tuple[list[Tensor], list[tuple]]:
        """Stacked parameters and, per parameter, the broadcast shape of a per-arm (S, A) value."""

    def train_pool(self, seeds: list[int]) -> Tensor:
        """(S, n_train) row indices each seed trains on (a seed's validation rows are left out)."""

    def train_losses(self, params: list[Tensor], rows: Tensor) -> tuple[Tensor, Tensor | None]:
        """Loss (S, A) of a batch of rows (S, B), and the number correct (S, A) or None."""

    def evaluate(self, params: list[Tensor]) -> dict[str, Tensor]:
        """End-of-epoch metrics, e.g. test_loss, test_acc, val_loss, val_acc, each (S, A)."""

    def trace(self, params: list[Tensor], lr) -> dict[str, Tensor]:
        """Extra per-step columns (S, A), read after backward and before the update; usually empty."""

    def snapshot(self, params: list[Tensor], epoch: int) -> pd.DataFrame | None:
        """Rows to keep at this epoch (e.g. the curve fit's predictions), with seed_index and arm_index."""


def make_optimizer(arm: Arm, params: list[Tensor]):
    """The arm's base torch.optim optimizer over the stacked parameters: its fused kernel (one per step) where it
    has one, else its multi-tensor one; Adam and AdamW called without their Python overhead, to the same numbers
    (experiments/engine/optimizers.py)."""
    return optimizers.build(arm.base, params, arm.lr, arm.settings())


def shares_update(arms: list[Arm]) -> bool:
    """Whether one torch.optim optimizer serves every arm: same update settings, no per-step eps."""
    return all(len({getattr(arm, f) for arm in arms}) == 1 for f in UPDATE_FIELDS) and not any(
        arm.dynamic_eps for arm in arms)


def stacked_rule(arm: Arm) -> str | None:
    """sgd, adam or adamw where StackedUpdate takes this arm's settings per arm (experiments/engine/optimizers.py
    STACKED); None for any other base."""
    return optimizers.load(arm.base).rule()


def population_key(arm: Arm) -> tuple:
    """Arms with the same key train as one population: those of a base whose settings may differ per arm share
    their base, the others also their settings."""
    if stacked_rule(arm):
        return (arm.base,)
    return tuple(getattr(arm, f) for f in UPDATE_FIELDS if f != "lr") + (arm.lr,)


class StackedUpdate:
    """torch.optim's SGD (momentum, no dampening), Adam or AdamW update, written out with lr, betas, eps,
    momentum and weight decay per arm: each an (S, A) table viewed to broadcast against every stacked parameter.
    Used when the arms of a population differ in those settings (an lr sweep, an eps ablation) or when eps
    changes per step (the dynamic-eps control); arms that share them keep torch.optim's fused kernel
    (make_optimizer), so the committed runs are unchanged. Bias corrections are computed in float64, as
    torch.optim does in Python. Weight decay: L2 (added to the gradient) for SGD and Adam, decoupled (the
    weights shrink by lr·wd before the step) for AdamW."""

    def __init__(self, arms: list[Arm], params: list[Tensor], arm_shapes: list[tuple], seeds: int):
        self.rule, self.params, self.shapes, self.t = stacked_rule(arms[0]), params, arm_shapes, 0
        def table(field, dtype=params[0].dtype):
            values = torch.tensor([getattr(arm, field) for arm in arms], dtype=dtype, device=params[0].device)
            return values.expand(seeds, len(arms)).contiguous()
        if self.rule is None:
            raise ValueError(f"per-arm settings are written out for torch.optim's SGD, Adam and AdamW with the keys "
                             f"StackedUpdate implements only, not {arms[0].base}")
        self.lr = table("lr")
        self.decay = table("weight_decay") if any(arm.weight_decay for arm in arms) else None
        if self.rule == "sgd":
            self.momentum = table("momentum")
            self.buffers = [None] * len(params)
        else:
            self.beta1, self.beta2, self.eps = table("beta1"), table("beta2"), table("eps")
            self.beta1_64, self.beta2_64 = table("beta1", torch.float64), table("beta2", torch.float64)
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, eps: Tensor | None = None) -> None:
        """One update; `eps` (S, A) replaces the arms' eps for this step (the dynamic-eps control)."""
        self.t += 1
        if self.rule == "sgd":
            for k, (p, shape) in enumerate(zip(self.params, self.shapes)):
                g = self.gradient(p, shape)
                if self.buffers[k] is None:
                    self.buffers[k] = g.clone()
                else:
                    self.buffers[k].mul_(self.momentum.view(shape)).add_(g)
                p.sub_(self.lr.view(shape) * self.buffers[k])
            return
        eps = self.eps if eps is None else eps
        dtype = self.params[0].dtype
        step_size = (self.lr.double() / (1 - self.beta1_64 ** self.t)).to(dtype)
        correction2_sqrt = (1 - self.beta2_64 ** self.t).sqrt().to(dtype)
        for p, m, v, shape in zip(self.params, self.m, self.v, self.shapes):
            if self.rule == "adamw" and self.decay is not None:
                p.mul_(1 - self.lr.view(shape) * self.decay.view(shape))
            g = p.grad if self.rule == "adamw" else self.gradient(p, shape)
            m.lerp_(g, 1 - self.beta1.view(shape))
            v.mul_(self.beta2.view(shape)).add_(g * g * (1 - self.beta2.view(shape)))
            denom = (v.sqrt() / correction2_sqrt.view(shape)).add_(eps.view(shape))
            p.sub_(step_size.view(shape) * m / denom)

    def gradient(self, p: Tensor, shape: tuple) -> Tensor:
        """The gradient with L2 weight decay added (SGD, Adam), per arm."""
        return p.grad if self.decay is None else p.grad + self.decay.view(shape) * p

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def population_update(arms: list[Arm], params: list[Tensor], arm_shapes: list[tuple], seeds: int):
    """The population's update: one torch.optim optimizer where the arms share their settings, else StackedUpdate;
    and the lr of each arm for the step-size metric and traces: the Python float where the arms share it (as the
    committed runs computed it, byte for byte), else the (S, A) table."""
    if shares_update(arms):
        return make_optimizer(arms[0], params), arms[0].lr
    update = StackedUpdate(arms, params, arm_shapes, seeds)
    return update, update.lr


def check_population(arms: list[Arm]) -> None:
    if not shares_update(arms) and not stacked_rule(arms[0]):
        raise ValueError(f"{arms[0].base} arms trained together share their settings (only SGD, Adam and AdamW "
                         "take them per arm); experiments.pipelines.runner.run_population splits them into such groups")
    bases = {arm.base for arm in arms}
    if len(bases) > 1:
        raise ValueError(f"arms trained together share their update rule; got {sorted(bases)} "
                         "(experiments.pipelines.runner.run_population splits arms into such groups)")
    if any(arm.dynamic_eps and stacked_rule(arm) != "adam" for arm in arms):
        raise ConfigError("dynamic_eps is an Adam setting (eps / the AYLA factor); use it with optimizer=adam")


class GradientScale:
    """What multiplies each arm's gradient: its AYLA factor (AYLA arms) or 1, times a constant, as (S, A)."""

    def __init__(self, arms: list[Arm], seeds: list[int], device, dtype):
        def table(values):
            return torch.tensor(values, device=device, dtype=dtype).expand(len(seeds), len(arms))
        self.uses_ayla = any(arm.ayla for arm in arms)
        for arm in arms:  # checked once here, so that the per-step factor needs no host read of the exponents
            if arm.ayla:
                check_exponents(arm.N1, arm.N2)
        self.ayla = table([arm.ayla for arm in arms]).bool()
        self.N1, self.N2 = table([arm.N1 for arm in arms]), table([arm.N2 for arm in arms])
        self.constant = table([arm.grad_scale for arm in arms])

    def __call__(self, loss: Tensor) -> Tensor:
        if not self.uses_ayla:
            return self.constant
        return torch.where(self.ayla, ayla_factor(loss, self.N1, self.N2, validate=False), 1.0) * self.constant


class DynamicEps:
    """eps / (the AYLA factor of each dynamic-eps arm's own loss), (S, A): Adam fed factor·g with eps steps as
    Adam fed g with eps / factor when the factor is constant; with this per-step eps the arm keeps Adam's
    moments of the raw gradient, so it separates "AYLA is a loss-dependent eps" from what the factor does to
    the moment averages."""

    def __init__(self, arms: list[Arm], seeds: list[int], device, dtype):
        def table(values):
            return torch.tensor(values, device=device, dtype=dtype).expand(len(seeds), len(arms))
        for arm in arms:
            if arm.dynamic_eps:
                check_exponents(arm.N1, arm.N2)
        self.dynamic = table([arm.dynamic_eps for arm in arms]).bool()
        self.eps = table([arm.eps for arm in arms])
        self.N1 = table([arm.N1 if arm.dynamic_eps else 1.0 for arm in arms])
        self.N2 = table([arm.N2 if arm.dynamic_eps else 1.0 for arm in arms])

    def __call__(self, loss: Tensor) -> Tensor:
        factor = ayla_factor(loss, self.N1, self.N2, validate=False)
        return torch.where(self.dynamic, self.eps / factor, self.eps)


def grad_norms(params: list[Tensor], arm_shapes: list[tuple]) -> Tensor:
    """‖g‖ of each arm's whole gradient, (S, A), without leaving the device."""
    total = 0
    for p, shape in zip(params, arm_shapes):
        dims = [i for i, n in enumerate(shape) if n == 1]
        if dims and dims[-1] == p.dim() - 1:  # the contiguous last dim first: 10× quicker than one strided sum
            squares = torch.linalg.vector_norm(p.grad, dim=-1, keepdim=True).square_()
        else:
            squares = p.grad.square()
        total = total + (squares.sum(dims) if dims else squares).reshape(shape[0], -1)
    return total.sqrt()


def accumulate(sums: list[Tensor], step: list[Tensor]) -> list[Tensor]:
    """Add this step's per-arm metrics to the epoch's sums, in place: one multi-tensor add (no stack), the same
    float additions as summing the stacked metrics; the sums start at zero."""
    if not sums:
        sums = [torch.zeros_like(value) for value in step]
    torch._foreach_add_(sums, step)
    return sums


def epoch_batches(order: Tensor, batch_size: int | None) -> list[Tensor]:
    """Positions of each batch: the whole shuffled order, or B-sized chunks with the last partial one dropped."""
    if batch_size is None:
        return [order]
    return [order[:, i:i + batch_size] for i in range(0, order.shape[1] - batch_size + 1, batch_size)]


@contextlib.contextmanager
def no_host_syncs(active: bool):
    """Make a CUDA host sync inside the block an error (a test's way to prove the batch loop never waits)."""
    if not active:
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def train(task: Task, arms: list[Arm], seeds: list[int], epochs: int, log: Callable[[str], None] = print,
          forbid_syncs: bool = False, autocast: torch.dtype | None = None) -> Trained:
    """Train every arm for every seed, all at once. With forbid_syncs on CUDA, any host sync inside an epoch's
    batch loop raises (torch.cuda.set_sync_debug_mode("error")); the one sync per epoch comes after it.
    `autocast` (bfloat16, the opt-in dtype=bfloat16) runs the task's forward passes, training and evaluation,
    under torch.autocast: the GEMMs in that dtype, the weights, their gradients, the optimizer state, the losses
    (autocast keeps cross-entropy and softmax in fp32) and so the AYLA factors in fp32."""
    check_population(arms)
    params, arm_shapes = task.init_params(seeds, len(arms))
    device, dtype = params[0].device, params[0].dtype
    optimizer, lr = population_update(arms, params, arm_shapes, len(seeds))
    dynamic_eps = DynamicEps(arms, seeds, device, dtype) if any(arm.dynamic_eps for arm in arms) else None
    scale_of = GradientScale(arms, seeds, device, dtype)
    shufflers = [torch.Generator().manual_seed(stream_seed(seed, SHUFFLE_STREAM)) for seed in seeds]
    pool = task.train_pool(seeds)
    if task.batch_size is not None and task.batch_size > pool.shape[1]:
        raise ConfigError(f"batch_size={task.batch_size} is larger than the {pool.shape[1]} training rows")
    alive = np.ones((len(seeds), len(arms)), dtype=bool)
    frames, snapshots, started = [], [], time.perf_counter()

    def mixed():
        return torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext()
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        # The order is drawn on the CPU (same on every device) and sent over once per epoch.
        order = torch.stack([torch.randperm(task.n_train, generator=g) for g in shufflers]).to(device)
        batches = epoch_batches(order, task.batch_size)
        sums, traced = [], {}
        with no_host_syncs(forbid_syncs and device.type == "cuda"):
            for positions in batches:
                rows = pool.gather(1, positions)
                with mixed():
                    loss, correct = task.train_losses(params, rows)
                loss = loss.float() if autocast else loss  # the factor from an fp32 loss
                with torch.no_grad():
                    scale = scale_of(loss.detach())
                (loss * scale).sum().backward()
                loss = loss.detach()
                with torch.no_grad():  # accumulated on the device: no host sync inside the epoch
                    step = [loss, scale, lr * grad_norms(params, arm_shapes)]
                    if correct is not None:
                        step.append(correct.to(dtype))
                    sums = accumulate(sums, step)
                    for key, value in task.trace(params, lr).items():
                        traced[key] = traced[key] + value if key in traced else value.clone()
                if dynamic_eps is None:
                    optimizer.step()
                else:
                    optimizer.step(eps=dynamic_eps(loss))
                optimizer.zero_grad()
        with torch.inference_mode():
            means = torch.stack(sums) / len(batches)
            metrics = {"train_loss": means[0], "factor": means[1], "step_size": means[2]}
            if len(means) > 3:
                metrics["train_acc"] = means[3].double() / batches[0].shape[1]
            with mixed():
                evaluated = task.evaluate(params)
            metrics |= {key: value / len(batches) for key, value in traced.items()} | evaluated
        metrics = {key: value.double().cpu().numpy() for key, value in metrics.items()}  # one sync per epoch
        seconds = time.perf_counter() - tick
        diverged = alive & ~np.isfinite(metrics["train_loss"])
        frames.append(epoch_frame(metrics, arms, seeds, alive, diverged, epoch, epoch * len(batches), seconds))
        with torch.inference_mode():
            snap = task.snapshot(params, epoch)
        if snap is not None:
            snapshots.append(snap.assign(epoch=epoch))
        if logged_epoch(epoch, epochs) or diverged.any():
            log(progress_line(epoch, epochs, seconds, arms, metrics, alive))
        for s, a in zip(*np.nonzero(diverged)):
            log(f"arm {arms[a].name} (seed {seeds[s]}) diverged at epoch {epoch}: loss "
                f"{metrics['train_loss'][s, a]}; it stops here (try a smaller lr)")
        alive &= ~diverged
        if not alive.any():
            break
    log(f"trained {len(seeds)} seed(s) × {len(arms)} arm(s) in {time.perf_counter() - started:.1f} s")
    snapshot_frame = label_rows(pd.concat(snapshots), arms, seeds) if snapshots else None
    return Trained(pd.concat(frames, ignore_index=True), snapshot_frame, [p.detach() for p in params])


def label_rows(frame: pd.DataFrame, arms: list[Arm], seeds: list[int]) -> pd.DataFrame:
    """Replace seed_index / arm_index by the seed and the arm's settings."""
    settings = arm_table(tuple(arms))
    frame = frame.assign(seed=np.asarray(seeds)[frame.pop("seed_index").to_numpy()])
    arm_index = frame.pop("arm_index").to_numpy()
    return pd.concat([settings.iloc[arm_index].reset_index(drop=True), frame.reset_index(drop=True)], axis=1)


@lru_cache(maxsize=16)
def arm_table(arms: tuple[Arm, ...]) -> pd.DataFrame:
    """One row of settings per arm, as metrics.csv labels them (made once per population, not per epoch)."""
    settings = pd.DataFrame([asdict(arm) | dict(arm.options) for arm in arms]).rename(columns={"name": "arm"})
    settings = settings.drop(columns="options")
    if not settings["dynamic_eps"].any():  # a column only where the control is in the population
        settings = settings.drop(columns="dynamic_eps")
    if not settings["weight_decay"].any():  # likewise weight decay, so that runs without it keep their columns
        settings = settings.drop(columns="weight_decay")
    for k, arm in enumerate(arms):  # blank what the arm's update rule does not use
        uses = set(optimizers.load(arm.base).defaults) - {key for key, _ in arm.options}  # betas of 3: an option
        unused = [c for c, key in (("beta1", "betas"), ("beta2", "betas"), ("eps", "eps"), ("momentum", "momentum"))
                  if key not in uses]
        settings.loc[k, unused] = np.nan
    return settings


def epoch_frame(metrics: dict[str, np.ndarray], arms: list[Arm], seeds: list[int], alive: np.ndarray,
                diverged: np.ndarray, epoch: int, steps: int, seconds: float) -> pd.DataFrame:
    """One row per (seed, arm) still training: its metrics at this epoch."""
    s, a = np.nonzero(alive)
    columns = {"seed_index": s, "arm_index": a, "epoch": epoch, "step": steps}
    columns |= {key: value[s, a] for key, value in metrics.items()}
    columns |= {"seconds": seconds, "arms_fused": alive.size, "diverged": diverged[s, a]}
    return label_rows(pd.DataFrame(columns), arms, seeds)


LOG_LINES = 20  # a long run (the curve fit's 300 full-batch epochs) prints about this many epoch lines


def logged_epoch(epoch: int, epochs: int) -> bool:
    """Every epoch of a short run; of a long one the first, the last and every (epochs / LOG_LINES)-th."""
    every = max(1, -(-epochs // LOG_LINES))
    return epoch == 1 or epoch == epochs or epoch % every == 0


def progress_line(epoch: int, epochs: int, seconds: float, arms: list[Arm], metrics: dict, alive) -> str:
    """`epoch  3/40   1.2s | train loss, test acc (seed mean) | adam 0.412 88.1% | ayla 0.398 88.9%`."""
    has_acc = "test_acc" in metrics
    parts = [f"epoch {epoch:>{len(str(epochs))}}/{epochs} {seconds:6.2f}s",
             "train loss, test acc (seed mean)" if has_acc else "train loss (seed mean)"]
    for a, arm in enumerate(arms):
        live = alive[:, a]
        if not live.any():
            continue
        text = f"{arm.name} {np.mean(metrics['train_loss'][live, a]):.4g}"
        if has_acc:
            text += f" {100 * np.mean(metrics['test_acc'][live, a]):.1f}%"
        parts.append(text)
    return " | ".join(parts)
