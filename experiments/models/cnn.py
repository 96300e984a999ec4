"""A small convolutional network for 32×32 images: four conv–BN–ReLU blocks, the VGG pattern (Simonyan and
Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015) at a few percent of
its size, as in the fast CIFAR baselines (e.g. Page's ResNet-9 for DAWNBench and Jordan's airbench, without
their residual branches and tricks).

    conv3×3(C → w) BN ReLU
    conv3×3(w → 2w) BN ReLU maxpool2        32 → 16
    conv3×3(2w → 4w) BN ReLU maxpool2       16 → 8
    conv3×3(4w → 8w) BN ReLU maxpool2        8 → 4
    global average pool, linear(8w → classes)

Width 16: 0.11 M parameters; width 32: 0.41 M. Convolutions have no bias (BatchNorm follows). Initial weights:
PyTorch's defaults for each layer (Kaiming-uniform convolutions and linear layer, BatchNorm at weight 1, bias 0),
drawn on the CPU from the seed alone, so every device and every arm of a seed start alike.
"""

import torch
from torch import nn


class GlobalAveragePool(nn.Module):
    """The mean over the spatial dims: (…, C, H, W) → (…, C) (AdaptiveAvgPool2d(1) has no batching rule)."""

    def forward(self, x):
        return x.mean((-2, -1))


def block(inputs: int, outputs: int, pool: bool) -> list[nn.Module]:
    layers = [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]
    return layers + ([nn.MaxPool2d(2)] if pool else [])


def network(width: int, channels: int = 3, classes: int = 100) -> nn.Sequential:
    w = width
    return nn.Sequential(*block(channels, w, False), *block(w, 2 * w, True), *block(2 * w, 4 * w, True),
                         *block(4 * w, 8 * w, True), GlobalAveragePool(), nn.Linear(8 * w, classes))


def seeded(seed: int, width: int, channels: int = 3, classes: int = 100, dtype=torch.float32) -> nn.Sequential:
    """The network with the initial weights of `seed` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return network(width, channels, classes).to(dtype)


def parameter_count(width: int, channels: int = 3, classes: int = 100) -> int:
    return sum(p.numel() for p in network(width, channels, classes).parameters())


def training_flops(width: int, channels: int = 3, classes: int = 100, size: int = 32) -> int:
    """Matmul and convolution FLOPs of one training image: forward 2·(multiply-adds), backward twice that (the
    input's gradient and the weights'), less the first convolution's input gradient, which is never needed."""
    w, forward, first = width, 0, 0
    for inputs, outputs, side in ((channels, w, size), (w, 2 * w, size), (2 * w, 4 * w, size // 2),
                                  (4 * w, 8 * w, size // 4)):
        macs = side * side * inputs * outputs * 9
        forward += 2 * macs
        first = first or 2 * macs
    forward += 2 * 8 * w * classes
    return 3 * forward - first
