"""An independent plain-PyTorch implementation of the MNIST 784-8-10 ReLU MLP with Adam (lr 1e-3, 40 epochs,
batch 256), with switches that move one protocol choice at a time toward the suite's: does any of them explain a
reviewer's ~0.7 points above the suite's tuned Adam at H = 8? (docs/independent-mnist.md; issue 30). Runs one
process at a time, one thread; records go to docs/independent_mnist.jsonl, `--summary` prints its table.

    python scripts/independent_mnist.py --seeds 42 43 --label indep_standard
    python scripts/independent_mnist.py --seeds 42 43 --drop-last --suite-init --suite-shuffle --label all_suite
    python scripts/independent_mnist.py --summary

Default (all switches off) = "standard" implementation:
  - data: the same uint8 arrays the suite reads (/work/shared/data/mnist/{train,test}.npz), all 60,000 rows
  - pixels / 255 (float32)
  - model: nn.Linear(784, 8) -> ReLU -> nn.Linear(8, 10); torch.manual_seed(seed) before building,
    then weights re-initialised nn.init.normal_(std=0.01) in module order (fc1.weight then fc2.weight), biases 0
  - shuffling: torch.utils.data RandomSampler(generator=torch.Generator().manual_seed(seed)) wrapped in
    BatchSampler(256, drop_last=False) -- exactly DataLoader(shuffle=True, generator=g)'s order
  - loss: F.cross_entropy (mean over the batch); torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
  - evaluation on the full test set after every epoch; "final" = after epoch 40

Switches (toward the suite):
  --drop-last            drop the last partial batch (suite: 234 batches/epoch, 96 rows unused per epoch)
  --suite-init           W1 = randn(784, 8, generator=Generator(seed)) * 0.01, then W2 = randn(8, 10, same gen)*0.01
                         (suite's mlp.init_weights), used as x @ W1 (i.e. fc1.weight = W1.T)
  --suite-shuffle        per-epoch torch.randperm(60000, generator=Generator(stream_seed(seed, 1)))
                         (suite's trainer: SeedSequence([seed, 1]) derived seed)
Other ablations (away from both, to test what a reviewer might have done):
  --init {normal,default} default: keep nn.Linear's own kaiming-uniform init (weights and biases)
  --init-std X           std of the normal init (default 0.01)
  --features {div255,meanstd}  meanstd: (x/255 - 0.1307) / 0.3081
  --dtype {float32,float64}
  --reduction {mean,sum}
  --val-size N           hold out N random training rows (not trained on)
"""

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import BatchSampler, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout
from experiments import default_data_root

torch.set_num_threads(1)
RECORDS = Path(__file__).resolve().parent.parent / "docs" / "independent_mnist.jsonl"


def stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def load(split):
    with np.load(Path(default_data_root()) / "mnist" / f"{split}.npz") as a:
        return torch.from_numpy(a["x"].reshape(len(a["x"]), -1).copy()), torch.from_numpy(a["y"].astype(np.int64))


class MLP(nn.Module):
    def __init__(self, d=784, h=8, c=10):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, c)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def run(seed, epochs=40, batch=256, lr=1e-3, drop_last=False, suite_init=False, suite_shuffle=False,
        init="normal", init_std=0.01, features="div255", dtype="float32", reduction="mean", val_size=0,
        verbose=False):
    dt = getattr(torch, dtype)
    xtr, ytr = load("train")
    xte, yte = load("test")

    def feats(x):
        x = x.to(dt) / 255
        if features == "meanstd":
            x = (x - 0.1307) / 0.3081
        return x

    Xtr, Xte = feats(xtr), feats(xte)
    if val_size:
        perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(stream_seed(seed, 2)))
        keep = perm[val_size:].sort().values
        Xtr, ytr = Xtr[keep], ytr[keep]
    n = len(ytr)

    torch.manual_seed(seed)
    model = MLP()
    if suite_init:
        g = torch.Generator().manual_seed(seed)
        w1 = torch.randn(784, 8, generator=g) * init_std
        w2 = torch.randn(8, 10, generator=g) * init_std
        with torch.no_grad():
            model.fc1.weight.copy_(w1.T)
            model.fc2.weight.copy_(w2.T)
            model.fc1.bias.zero_()
            model.fc2.bias.zero_()
    elif init == "normal":
        for m in (model.fc1, model.fc2):
            nn.init.normal_(m.weight, 0.0, init_std)
            nn.init.zeros_(m.bias)
    model = model.to(dt)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)

    if suite_shuffle:
        sg = torch.Generator().manual_seed(stream_seed(seed, 1))

        def epoch_batches():
            order = torch.randperm(n, generator=sg)
            stop = n - batch + 1 if drop_last else n
            return [order[i:i + batch] for i in range(0, stop, batch)]
    else:
        sg = torch.Generator().manual_seed(seed)
        sampler = BatchSampler(RandomSampler(range(n), generator=sg), batch, drop_last=drop_last)

        def epoch_batches():
            return [torch.tensor(b) for b in sampler]

    hist = []
    for ep in range(1, epochs + 1):
        model.train()
        tl = tc = nb = 0
        for idx in epoch_batches():
            xb, yb = Xtr[idx], ytr[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb, reduction=reduction)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tl += loss.item() / (len(yb) if reduction == "sum" else 1)
            tc += (out.argmax(1) == yb).sum().item()
            nb += 1
        model.eval()
        with torch.no_grad():
            out = model(Xte)
            te_loss = F.cross_entropy(out, yte).item()
            te_acc = (out.argmax(1) == yte).double().mean().item()
        hist.append(dict(epoch=ep, train_loss=tl / nb, test_loss=te_loss, test_acc=te_acc, batches=nb))
        if verbose and (ep % 10 == 0 or ep == 1):
            print(f"  ep {ep} train {tl / nb:.4f} test {te_loss:.4f} {100 * te_acc:.2f}%", flush=True)
    return hist


def summary(path: Path) -> None:
    """Per variant and seed range: mean and standard deviation of the final test accuracy (%)."""
    by = defaultdict(dict)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        by[record["label"]][record["seed"]] = 100 * record["final_test_acc"]
    print("| variant | seeds | final test accuracy (%) per seed | mean ± sd |")
    print("| --- | --- | --- | --- |")
    for label, seeds in by.items():
        values = [seeds[s] for s in sorted(seeds)]
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        print(f"| {label} | {', '.join(map(str, sorted(seeds)))} | {', '.join(f'{v:.2f}' for v in values)} | "
              f"{statistics.mean(values):.2f}{spread} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--drop-last", action="store_true")
    p.add_argument("--suite-init", action="store_true")
    p.add_argument("--suite-shuffle", action="store_true")
    p.add_argument("--init", default="normal", choices=["normal", "default"])
    p.add_argument("--init-std", type=float, default=0.01)
    p.add_argument("--features", default="div255", choices=["div255", "meanstd"])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--reduction", default="mean")
    p.add_argument("--val-size", type=int, default=0)
    p.add_argument("--label", default="indep")
    p.add_argument("--out", default=str(RECORDS))
    p.add_argument("--summary", action="store_true", help="print the mean final test accuracy per variant")
    a = p.parse_args()
    if a.summary:
        summary(Path(a.out))
        sys.exit(0)
    for s in a.seeds:
        t = time.time()
        h = run(s, a.epochs, drop_last=a.drop_last, suite_init=a.suite_init, suite_shuffle=a.suite_shuffle,
                init=a.init, init_std=a.init_std, features=a.features, dtype=a.dtype, reduction=a.reduction,
                val_size=a.val_size)
        rec = dict(label=a.label, seed=s, final_test_acc=h[-1]["test_acc"], final_test_loss=h[-1]["test_loss"],
                   final_train_loss=h[-1]["train_loss"], max_test_acc=max(r["test_acc"] for r in h),
                   batches_per_epoch=h[-1]["batches"], seconds=round(time.time() - t, 1), args=vars(a))
        print(json.dumps({k: v for k, v in rec.items() if k != "args"}), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
