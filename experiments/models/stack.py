"""Any torch.nn.Module as S seeds × A arms of one population, without writing its stacking by hand.

Each seed's module is built once (its initial weights drawn from that seed); `stack` copies it to every arm and
stacks the parameters and buffers with two leading dims, (S, A, ...), as torch.func.stack_module_state does for
one dim. `forward` runs the module's own code for each arm in turn, with torch.func.functional_call on views of
the stacked tensors (one unbind per tensor and step, so the backward pass writes every arm's gradient into the
stacked gradient at once), each seed's batch in channels-last layout. Buffers (BatchNorm's running statistics)
are stacked alike and updated in place per arm in training mode, as the module itself would update them;
evaluation uses them (module.eval()).

Why a loop over arms and not torch.func.vmap: for the CNN (models/cnn.py, width 16, batch 256, fp32) on this
2-core CPU, a step of 2 seeds × 3 arms took 1.5× one plain channels-last module's step per arm under vmap (its
batched convolutions are grouped, in the default layout), and about 1.0× as a loop.

Arm (s, a) is exactly the module with parameters params[k][s, a] and buffers buffers[name][s, a]
(tests/test_cnn.py). The parameters are plain tensors, so the trainer's optimizers (torch.optim over the stacked
tensors, StackedUpdate per arm) update every arm elementwise, as for the hand-stacked MLP (models/mlp.py, kept for
its speed: measured 1.2–3.4× faster than this generic path at the paper's widths, docs/design.md).
"""

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state


@dataclass
class Stacked:
    """The architecture (on the meta device: no data of its own), its parameter names in the order of the
    stacked parameter list, and every arm's buffers (S, A, ...)."""

    module: nn.Module
    names: list[str]
    buffers: dict[str, Tensor]


def stack(modules: list[nn.Module], arms: int) -> tuple[Stacked, list[Tensor], list[tuple]]:
    """Stack one module per seed over `arms` arms: every arm of a seed starts from that seed's parameters and
    buffers. Returns the stacked module, the parameters (S, A, ...) requiring grad and, per parameter, the shape
    a per-arm (S, A) value takes to broadcast against it."""
    params, buffers = stack_module_state(modules)
    S, A = len(modules), arms

    def over_arms(t: Tensor) -> Tensor:
        return t.detach()[:, None].expand(S, A, *t.shape[1:]).contiguous()
    names = list(params)
    stacked = [over_arms(params[n]).requires_grad_() for n in names]
    arm_shapes = [(S, A) + (1,) * (p.dim() - 2) for p in stacked]
    base = copy.deepcopy(modules[0]).to("meta")
    return Stacked(base, names, {n: over_arms(b) for n, b in buffers.items()}), stacked, arm_shapes


def forward(stacked: Stacked, params: list[Tensor], x: Tensor, train: bool) -> Tensor:
    """Outputs (S, A, B, ...) for inputs x (S, B, ...), one batch per seed shared by its arms. In training mode
    BatchNorm normalizes by each arm's batch statistics and updates that arm's running statistics in place;
    otherwise it uses them."""
    stacked.module.train(train)
    S, A = params[0].shape[:2]
    arms = [p.flatten(0, 1).unbind(0) for p in params]
    buffers = {n: b.flatten(0, 1).unbind(0) for n, b in stacked.buffers.items()}
    outputs = []
    for s in range(S):
        batch = x[s].contiguous(memory_format=torch.channels_last) if x.dim() == 5 else x[s]
        for a in range(A):
            k = s * A + a
            state = ({n: p[k] for n, p in zip(stacked.names, arms)}, {n: b[k] for n, b in buffers.items()})
            outputs.append(functional_call(stacked.module, state, (batch,)))
    return torch.stack(outputs).view(S, A, *outputs[0].shape)


def arm_module(stacked: Stacked, params: list[Tensor], seed_index: int, arm_index: int) -> nn.Module:
    """The plain module of one arm, with copies of its parameters and buffers (for checks and for users)."""
    module = copy.deepcopy(stacked.module).to_empty(device=params[0].device)
    state = {n: p[seed_index, arm_index].detach().clone() for n, p in zip(stacked.names, params)}
    state |= {n: b[seed_index, arm_index].clone() for n, b in stacked.buffers.items()}
    module.load_state_dict(state)
    return module
