"""Image classification with any torch module: the task of every experiment preset that names a model
(`experiment.task: vision`, `experiment.model` with its `_target_`, `experiment.dataset`), e.g. the CNN on
CIFAR-100 beyond the paper (conf/experiment/cifar100_cnn.yaml, models/cnn.py). A new model is then one module and
one YAML: nothing here names it.

The images are kept on the device as uint8 (N, H, W, C), normalized per channel by the preset's mean and standard
deviation, and, in training only, augmented the usual way when the preset asks for it: a random H×W crop of the
image padded by `pad` zero pixels on each side, and a horizontal flip with probability 1/2. The crops and flips of
a seed are drawn on the CPU from that seed alone (its own stream), batch after batch, so every arm of a seed sees
the same augmented batches in the same order, on any device. Each seed's model is built with the global RNG
seeded by that seed (its layers' own initializations), stacked over seeds × arms generically (models/stack.py);
BatchNorm keeps running statistics per arm, and evaluation uses them.
"""

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from experiments.engine.trainer import stream_seed
from experiments.errors import ConfigError
from experiments.models import mlp, stack
from experiments.tasks import DATASETS, images
from experiments.tasks.data import load_split, subset_indices

AUGMENT_STREAM = 3  # a seed's stream of crops and flips (the trainer's shuffling and splitting use 1 and 2)
EVAL_IMAGES = 2048  # images per evaluation chunk


def model(cfg, seed: int, dtype=torch.float32, **given) -> torch.nn.Module:
    """The preset's model with the initial weights of `seed`, built on the CPU (the global RNGs, CUDA's too since
    manual_seed seeds them all, are left as they were); `given`: arguments the task knows and the preset does not
    (a language model's alphabet size)."""
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        return instantiate(cfg.experiment.model, **given).to(dtype)


def training_flops(cfg) -> int:
    """FLOPs of one training image, forward and backward, counted by torch's FlopCounterMode on the model."""
    spec = DATASETS[cfg.experiment.dataset]
    H, W, C = spec.image_shape
    net = model(cfg, 0).train()
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(2, C, H, W)).sum().backward()
    return counter.get_total_flops() // 2


class ModelClassification(images.ImageClassification):
    """The MLP task's data handling (validation split, evaluation by chunks, metrics), with images kept whole."""

    def __init__(self, cfg, device, dtype):
        spec = DATASETS[cfg.experiment.dataset]
        for key in ("hidden", "batch_size", "loss"):
            if cfg[key] is None:
                raise ConfigError(f"{key} must be set for experiment={cfg.experiment.name}")
        data, about = cfg.data, cfg.experiment
        train = self.load(spec, data, "train", data.train_subset)
        test = self.load(spec, data, "test", data.test_subset)
        self.x, self.y = (torch.from_numpy(a).to(device) for a in train)
        self.test_x, self.test_y = (torch.from_numpy(a).to(device) for a in test)
        self.val_size = int(data.val_size)
        if self.val_size >= len(self.y):
            raise ConfigError(f"data.val_size={self.val_size} leaves no training rows of {len(self.y)}")
        self.n_train = len(self.y) - self.val_size
        self.batch_size = int(cfg.batch_size)
        self.cfg = cfg
        channels = spec.image_shape[-1]
        self.mean = torch.tensor(list(about.get("mean") or [0.0] * channels), device=device, dtype=dtype)
        self.std = torch.tensor(list(about.get("std") or [1.0] * channels), device=device, dtype=dtype)
        augment = about.get("augment") or {}
        self.pad, self.flip = int(augment.get("pad", 0)), bool(augment.get("flip", False))
        self.loss_kind, self.device, self.dtype = cfg.loss, device, dtype
        self.val_rows, self.stacked, self.draws = None, None, []

    @staticmethod
    def load(spec, data, split, size):
        x, y = load_split(spec, data.root, split, download=data.download, cache_dir=data.cache_dir)
        rows = subset_indices(len(y), int(size))
        return x[rows], y[rows]

    def init_params(self, seeds, arms):
        modules = [model(self.cfg, seed, self.dtype).to(self.device) for seed in seeds]
        self.stacked, params, arm_shapes = stack.stack(modules, arms)
        return params, arm_shapes

    def train_pool(self, seeds):
        """As the MLP's (all rows, or a per-seed validation hold-out); and each seed's stream of augmentations,
        started anew for every population trained."""
        self.draws = [torch.Generator().manual_seed(stream_seed(seed, AUGMENT_STREAM)) for seed in seeds]
        return super().train_pool(seeds)

    def rows_of(self, rows):
        flat = rows.reshape(-1)
        return (self.x.index_select(0, flat).view(*rows.shape, *self.x.shape[1:]),
                self.y.index_select(0, flat).view(rows.shape))

    def augmented(self, x):
        """Each seed's images (S, B, H, W, C) cropped from their padded copies and flipped, by that seed's draws."""
        S, B, H, W, _ = x.shape
        if not self.pad and not self.flip:
            return x
        shifts, flips = [], []
        for g in self.draws:  # per seed, in a fixed order: the shifts, then the flips
            shifts.append(torch.randint(0, 2 * self.pad + 1, (2, B), generator=g))
            flips.append(torch.rand(B, generator=g) < 0.5 if self.flip else torch.zeros(B, dtype=torch.bool))
        shifts, flips = (self.on_device(torch.stack(t)) for t in (shifts, flips))
        rows = shifts[:, 0, :, None] + torch.arange(H, device=self.device)                  # (S, B, H)
        columns = torch.where(flips[..., None], torch.arange(W - 1, -1, -1, device=self.device),
                              torch.arange(W, device=self.device)) + shifts[:, 1, :, None]  # (S, B, W)
        padded = F.pad(x, (0, 0, self.pad, self.pad, self.pad, self.pad))
        seed_index = torch.arange(S, device=self.device).view(S, 1, 1, 1)
        image_index = torch.arange(B, device=self.device).view(1, B, 1, 1)
        return padded[seed_index, image_index, rows[..., :, None], columns[..., None, :]]

    def on_device(self, t):
        """A CPU tensor on the task's device; to a GPU from pinned memory without waiting (no host sync per step)."""
        if self.device.type != "cuda":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    def inputs(self, x_uint8):
        """(…, H, W, C) bytes → (…, C, H, W) normalized floats."""
        x = (x_uint8.to(self.dtype).div_(255) - self.mean) / self.std
        return x.movedim(-1, -3)

    def logits(self, params, x, train: bool):
        return stack.forward(self.stacked, params, self.inputs(x), train)

    def train_losses(self, params, rows):
        x, y = self.rows_of(rows)
        return mlp.classification_loss(self.logits(params, self.augmented(x), True), y, self.loss_kind)

    def score(self, params, x, y, prefix):
        """Mean loss and accuracy over x: (N, H, W, C) shared by all seeds, or (S, N, H, W, C) one set per seed."""
        S = params[0].shape[0]
        n = y.shape[-1]
        loss_sum = correct = 0
        for start in range(0, n, EVAL_IMAGES):
            xs, ys = x[..., start:start + EVAL_IMAGES, :, :, :], y[..., start:start + EVAL_IMAGES]
            if xs.dim() == 4:
                xs = xs.expand(S, *xs.shape)
            loss, right = mlp.classification_loss(self.logits(params, xs, False), ys, self.loss_kind)
            loss_sum = loss_sum + loss * ys.shape[-1]
            correct = correct + right
        return {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": correct.double() / n}


def build(cfg, device, dtype) -> ModelClassification:
    return ModelClassification(cfg, device, dtype)
