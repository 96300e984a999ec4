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

from experiments.gemm import ATEN, FORWARD, GRAD_W2, GRAD_WEIGHT, LOGITS, Plan, linear_relu


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


def forward(params: list[Tensor], x: Tensor, gemm: Plan = ATEN) -> Tensor:
    """Outputs (S, A, B, C) for inputs x of shape (S, B, D) (one batch per seed) or (B, D) (shared); the first
    layer's GEMM on the kernels `gemm` names (experiments/gemm.py)."""
    W1, b1, W2, b2 = params
    S, D, A, H = W1.shape
    if x.dim() == 3:  # per seed, every arm at once: (B, D) @ (D, A·H), the bias added inside the GEMM
        h = linear_relu(x, W1.view(S, D, A * H), b1.view(S, 1, A * H), gemm)
        h = h.view(S, -1, A, H).transpose(1, 2)
    else:  # one GEMM for every seed and arm: (B, D) @ (D, S·A·H)
        W, b = W1.permute(1, 0, 2, 3).reshape(D, S * A * H), b1.view(1, S * A * H)
        if gemm.forward != "aten" and not torch.is_grad_enabled():  # evaluation on a shared set, on its kernel
            h = FORWARD[gemm.forward](x[None], W[None], b[None])[0]  # (aten_nt at MNIST H = 8: 5.1 → 3.2 ms)
        else:
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


def classification_gradients(params: list[Tensor], x: Tensor, y: Tensor, kind: str, scale_of, gemm: Plan
                             ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """One training step's forward and backward pass written out, without autograd: for inputs x (S, B, D) and
    labels y (S, B), the per-arm loss (S, A), number correct (S, A), gradient scale c = scale_of(loss) (S, A),
    and the gradients of Σ c·loss with respect to (W1, b1, W2, b2), in their stacked shapes.

    With z = x W1 + b1, h = relu(z), o = h W2 + b2 and G = ∂(c·loss)/∂o:
        ce:  G = c/B · (softmax(o) − onehot(y))
        mse: G = p ⊙ (g − Σ_k g_k p_k) with p = softmax(o), g = 2c/(B·C) · (p − onehot(y))
        dW2 = hᵀ G,  db2 = Σ_batch G,  dZ = G W2ᵀ where z > 0 (else 0),  dW1 = xᵀ dZ,  db1 = Σ_batch dZ.
    The same numbers as autograd's backward to float rounding (tests/test_gemm.py), at about two thirds of its
    per-step cost beyond the GEMMs, which one arm at a small width spends most of its step on (make bench). Both
    first-layer GEMMs, the logits and dW2 run on the kernels `gemm` names."""
    W1, b1, W2, b2 = params
    S, D, A, H = W1.shape
    B, C = x.shape[1], W2.shape[-1]
    h = FORWARD[gemm.forward](x, W1.view(S, D, A * H), b1.view(S, 1, A * H))        # (S, B, A·H)
    h_arms = h.view(S, B, A, H).transpose(1, 2).reshape(S * A, B, H)               # each arm's (B, H)
    logits = LOGITS[gemm.logits](h_arms, W2.view(S * A, H, C), b2.view(S * A, 1, C)).view(S, A, B, C)
    labels = y.view(S, 1, B, 1).expand(S, A, B, 1)
    correct = (logits.argmax(-1) == y.view(S, 1, B)).sum(-1)
    minus_one = logits.new_full((1, 1, 1, 1), -1.0).expand(S, A, B, 1)
    if kind == "ce":
        log_p = logits.log_softmax(-1)
        loss = log_p.gather(-1, labels).squeeze(-1).mean(-1).neg_()
        scale = scale_of(loss)
        grad = log_p.exp_().scatter_add_(-1, labels, minus_one).mul_((scale / B).view(S, A, 1, 1))
    else:
        p = logits.softmax(-1)
        residual = p.clone().scatter_add_(-1, labels, minus_one)
        loss = residual.square().mean((-1, -2))
        scale = scale_of(loss)
        g = residual.mul_((2 * scale / (B * C)).view(S, A, 1, 1))
        grad = (g - (g * p).sum(-1, keepdim=True)).mul_(p)
    grad = grad.view(S * A, B, C)
    dW2 = GRAD_W2[gemm.grad_w2](h_arms, grad).view(S, A, H, C)
    db2 = grad.sum(1).view(S, A, 1, C)
    dh = torch.bmm(grad, W2.view(S * A, H, C).transpose(1, 2))                      # (S·A, B, H)
    dz = torch.ops.aten.threshold_backward(dh.view(S, A, B, H).transpose(1, 2).reshape(S, B, A * H), h, 0)
    dW1 = GRAD_WEIGHT[gemm.grad_weight](x, dz).view(S, D, A, H)
    db1 = dz.sum(1).view(S, A, 1, H)
    return loss, correct, scale, [dW1, db1, dW2, db2]


def regression_loss(outputs: Tensor, y: Tensor) -> Tensor:
    """Per-arm mean squared error (S, A) against targets y of shape (B, 1)."""
    return (outputs - y).square().mean((-1, -2))
