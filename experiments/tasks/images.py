"""Image classification with the paper's MLP (MNIST, CIFAR-100): the data on the device, batched by index.

The whole set is decoded once, kept on the device as uint8 (N, H·W·C) and converted per batch (pixels / 255):
no per-sample Dataset or DataLoader. Test (and validation) metrics are computed in large chunks.
"""

import torch

from experiments.engine.trainer import SPLIT_STREAM, stream_seed
from experiments.errors import ConfigError
from experiments.models import mlp
from experiments.tasks.data import DatasetSpec, load_split, subset_indices

EVAL_FLOATS = 2**25  # activations per evaluation chunk (~128 MB in float32)


class ImageClassification:
    gemm = "aten"  # metrics.csv's gemm column: the GEMMs are torch's own (autograd), the one path every run takes

    def __init__(self, spec: DatasetSpec, cfg, device, dtype):
        for key in ("hidden", "batch_size", "loss"):
            if cfg[key] is None:
                raise ConfigError(f"{key} must be set for experiment={cfg.experiment.name}")
        data = cfg.data
        train = self.load(spec, data, "train", data.train_subset)
        test = self.load(spec, data, "test", data.test_subset)
        self.x, self.y = (torch.from_numpy(a).to(device) for a in train)
        self.test_x, self.test_y = (torch.from_numpy(a).to(device) for a in test)
        self.val_size = int(data.val_size)
        if self.val_size >= len(self.y):
            raise ConfigError(f"data.val_size={self.val_size} leaves no training rows of {len(self.y)}")
        self.n_train = len(self.y) - self.val_size
        self.batch_size = int(cfg.batch_size)
        self.sizes = (self.x.shape[1], int(cfg.hidden), spec.num_classes)
        self.loss_kind, self.scheme, self.std = cfg.loss, cfg.init, float(cfg.experiment.init_std)
        self.device, self.dtype = device, dtype
        self.val_rows = None

    @staticmethod
    def load(spec, data, split, size):
        x, y = load_split(spec, data.root, split, download=data.download, cache_dir=data.cache_dir)
        rows = subset_indices(len(y), int(size))
        return x[rows].reshape(len(rows), -1), y[rows]

    def inputs(self, x_uint8):
        return x_uint8.to(self.dtype).div_(255)

    def init_params(self, seeds, arms):
        first, second = mlp.init_weights(seeds, self.sizes, self.scheme, self.std, self.dtype, self.device)
        return mlp.stack_mlp(first, second, arms)

    def train_pool(self, seeds):
        """All training rows, or per seed a fixed random hold-out of val_size rows kept for validation."""
        n = len(self.y)
        if not self.val_size:
            return torch.arange(n, device=self.device).expand(len(seeds), -1)
        splits = [torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed(seed, SPLIT_STREAM)))
                  for seed in seeds]
        self.val_rows = torch.stack([s[:self.val_size].sort().values for s in splits]).to(self.device)
        return torch.stack([s[self.val_size:].sort().values for s in splits]).to(self.device)

    def rows_of(self, rows):
        """Images and labels of rows (S, B); index_select is far quicker than x[rows] on the CPU."""
        flat = rows.reshape(-1)
        return self.x.index_select(0, flat).view(*rows.shape, -1), self.y.index_select(0, flat).view(rows.shape)

    def train_losses(self, params, rows):
        x, y = self.rows_of(rows)
        return mlp.classification_loss(mlp.forward(params, self.inputs(x)), y, self.loss_kind)

    def evaluate(self, params):
        metrics = self.score(params, self.test_x, self.test_y, "test")
        if self.val_rows is not None:
            metrics |= self.score(params, *self.rows_of(self.val_rows), "val")
        return metrics

    def score(self, params, x, y, prefix):
        """Mean loss and accuracy over x: (N, D) shared by all seeds, or (S, N, D) one set per seed."""
        W1 = params[0]
        S, _, A, H = W1.shape
        chunk = max(256, EVAL_FLOATS // (S * A * max(H, self.sizes[2])))
        n = x.shape[-2]
        loss_sum = correct = 0
        for start in range(0, n, chunk):
            xs, ys = x[..., start:start + chunk, :], y[..., start:start + chunk]
            loss, right = mlp.classification_loss(mlp.forward(params, self.inputs(xs)), ys,
                                                  self.loss_kind)
            loss_sum = loss_sum + loss * ys.shape[-1]
            correct = correct + right
        return {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": correct.double() / n}

    def trace(self, params, lr):
        return {}

    def snapshot(self, params, epoch):
        return None


def build(spec: DatasetSpec, cfg, device, dtype) -> ImageClassification:
    return ImageClassification(spec, cfg, device, dtype)

