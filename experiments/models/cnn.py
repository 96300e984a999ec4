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
drawn from the seed by the task that builds it (tasks/vision.py). conf/experiment/cifar100_cnn.yaml names it.
"""

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


def parameter_count(width: int, channels: int = 3, classes: int = 100) -> int:
    return sum(p.numel() for p in network(width, channels, classes).parameters())

