"""The paper's network, a one-hidden-layer ReLU MLP, for S seeds × A arms at once.

Parameters carry the seeds and arms in their leading dims, so one batched matmul trains every arm:
  W1 (S, D, A, H)   so that, per seed, all arms' first layers form one (D, A·H) matrix: one GEMM per seed
  b1 (S, A, 1, H),  W2 (S, A, H, C),  b2 (S, A, 1, C)
Arm (s, a) is exactly the network x ↦ relu(x W1[s,:,a] + b1[s,a]) W2[s,a] + b2[s,a].
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def stack_mlp(first: list[Tensor], second: list[Tensor], arms: int) -> tuple[list[Tensor], list[tuple]]:
    """Parameters for S seeds × `arms` from each seed's initial W1 (D, H) and W2 (H, C); biases start at 0.

    Every arm of a seed starts from that seed's weights, so arms differ only by their optimizer.
    Returns the parameters and, for each, the shape a per-arm (S, A) value takes to broadcast against it.
    """
    S, A = len(first), arms
    W1 = torch.stack(first)[:, :, None, :].repeat(1, 1, A, 1)
    W2 = torch.stack(second)[:, None].repeat(1, A, 1, 1)
    b1 = W1.new_zeros(S, A, 1, W1.shape[-1])
    b2 = W2.new_zeros(S, A, 1, W2.shape[-1])
    params = [p.contiguous().requires_grad_() for p in (W1, b1, W2, b2)]
    arm_shapes = [(S, 1, A, 1), (S, A, 1, 1), (S, A, 1, 1), (S, A, 1, 1)]
    return params, arm_shapes


def arm_weights(params: list[Tensor], seed_index: int, arm_index: int) -> tuple[Tensor, ...]:
    """The plain network of one arm: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)."""
    W1, b1, W2, b2 = params
    s, a = seed_index, arm_index
    return W1[s, :, a], b1[s, a, 0], W2[s, a], b2[s, a, 0]


def init_weights(seeds: list[int], sizes: tuple[int, int, int], scheme: str, std: float, dtype, device):
    """Each seed's (W1, W2) of a D-H-C network, drawn on the CPU so every device starts alike.

    authors: randn · std for weights, as the authors' scripts; pytorch: nn.Linear's U(±1/√fan_in).
    """
    D, H, C = sizes
    first, second = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        if scheme == "authors":
            w1, w2 = torch.randn(D, H, generator=g) * std, torch.randn(H, C, generator=g) * std
        else:
            w1 = (torch.rand(D, H, generator=g) * 2 - 1) / np.sqrt(D)
            w2 = (torch.rand(H, C, generator=g) * 2 - 1) / np.sqrt(H)
        first.append(w1.to(device, dtype))
        second.append(w2.to(device, dtype))
    return first, second


def forward(params: list[Tensor], x: Tensor) -> Tensor:
    """Outputs (S, A, B, C) for inputs x of shape (S, B, D) (one batch per seed) or (B, D) (shared)."""
    W1, b1, W2, b2 = params
    S, D, A, H = W1.shape
    if x.dim() == 3:  # per seed, every arm at once: (B, D) @ (D, A·H), the bias added inside the GEMM
        h = torch.relu(torch.baddbmm(b1.view(S, 1, A * H), x, W1.view(S, D, A * H)))
        h = h.view(S, -1, A, H).transpose(1, 2)
    else:  # one GEMM for every seed and arm: (B, D) @ (D, S·A·H)
        W, b = W1.permute(1, 0, 2, 3).reshape(D, S * A * H), b1.view(1, S * A * H)
        h = torch.relu(torch.addmm(b, x, W))
        h = h.view(-1, S, A, H).permute(1, 2, 0, 3)
    # ReLU ran on a contiguous block; now each arm's (B, H) slice meets its own W2.
    return torch.matmul(h, W2) + b2


def classification_loss(logits: Tensor, y: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Per-arm mean loss (S, A) and number correct (S, A) for labels y of shape (S, B) or (B,).

    ce: softmax cross-entropy (the authors' scripts); mse: mean squared error of the softmax against one-hot.
    """
    S, A, B, C = logits.shape
    y = y.view(-1, 1, B).expand(S, A, B)
    if kind == "ce":
        loss = F.cross_entropy(logits.reshape(-1, C), y.reshape(-1), reduction="none").view(S, A, B).mean(-1)
    else:
        loss = (logits.softmax(-1) - F.one_hot(y, C).to(logits.dtype)).square().mean((-1, -2))
    correct = (logits.argmax(-1) == y).sum(-1)
    return loss, correct


def regression_loss(outputs: Tensor, y: Tensor) -> Tensor:
    """Per-arm mean squared error (S, A) against targets y of shape (B, 1)."""
    return (outputs - y).square().mean((-1, -2))
