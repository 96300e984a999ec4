"""Which kernel runs the MLP's one large GEMM, relu(x W1 + b1), and its weight gradient xᵀ·dZ.

The first layer is where the image experiments spend their time (D = 784 or 3072 inputs against all arms'
hidden units at once). torch's `@` goes to MKL, which on some CPUs (AMD EPYC with AVX-512, for one) runs fp32
at about half the rate oneDNN reaches there; on others it is the faster. So the kernel is a setting:
  gemm=aten     torch's own ops (baddbmm, relu, autograd): the committed runs were made this way;
  gemm=onednn   oneDNN's linear (torch.ops.mkldnn._linear_pointwise) with the ReLU fused into it, forward and
                weight gradient, through one small autograd Function;
  gemm=auto     per GEMM (forward, weight gradient) the faster of the two on this machine, from a probe made
                once per machine and cached, so that reruns take the same path and stay byte-identical.
aten is used wherever oneDNN cannot be: the op is missing (another torch build), a CUDA device, a dtype other
than float32, or a probe whose results differ from float64 by more than aten's own rounding does.
Results of the two kernels differ at float rounding only; a comparison keeps one kernel for all its arms.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from experiments.errors import ConfigError
from experiments.io import cpu_name, write_atomic

CHOICES = ("auto", "aten", "onednn")
KERNELS = ("aten", "onednn")


def onednn_linear():
    """torch.ops.mkldnn._linear_pointwise, or None where this torch build has no such op."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


@dataclass(frozen=True)
class Plan:
    """The kernel of each of the two GEMMs, and why (for the run's provenance)."""

    forward: str = "aten"
    grad_weight: str = "aten"
    reason: str = "gemm=aten"

    @property
    def label(self) -> str:
        """What a CSV row records: 'aten', 'onednn', or 'onednn+aten' (forward + weight gradient)."""
        return self.forward if self.forward == self.grad_weight else f"{self.forward}+{self.grad_weight}"

    @property
    def uses_onednn(self) -> bool:
        return "onednn" in (self.forward, self.grad_weight)


ATEN = Plan()


def linear_relu_onednn(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """relu(x[s] @ W[s] + b[s]) per seed s through oneDNN: x (S, B, D), W (S, D, N), b (S, 1, N)."""
    op = onednn_linear()
    # oneDNN's linear takes the weight as (out, in): W[s].t() is a view, no copy
    return torch.stack([op(x[s], W[s].t(), b[s, 0], "relu", [None], "") for s in range(x.shape[0])])


def grad_weight_onednn(x: Tensor, dz: Tensor) -> Tensor:
    """x[s]ᵀ @ dz[s] per seed through oneDNN: (S, D, N)."""
    op = onednn_linear()
    return torch.stack([op(x[s].t(), dz[s].t(), None, "none", [], "") for s in range(x.shape[0])])


class LinearReLU(torch.autograd.Function):
    """relu(x W + b) batched over seeds, each GEMM on the kernel the plan names. x carries no gradient (it is
    data), so the backward pass needs only dW = xᵀ·dZ and db = Σ_batch dZ, with dZ = dH where the output > 0."""

    @staticmethod
    def forward(ctx, x: Tensor, W: Tensor, b: Tensor, plan: Plan) -> Tensor:
        if plan.forward == "onednn":
            h = linear_relu_onednn(x, W, b)
        else:
            h = torch.relu(torch.baddbmm(b, x, W))
        ctx.save_for_backward(x, h)
        ctx.plan = plan
        return h

    @staticmethod
    def backward(ctx, dh: Tensor):
        x, h = ctx.saved_tensors
        dz = dh.masked_fill(h <= 0, 0)
        if ctx.plan.grad_weight == "onednn":
            dW = grad_weight_onednn(x, dz)
        else:
            dW = torch.bmm(x.transpose(1, 2), dz)
        return None, dW, dz.sum(1, keepdim=True), None


def linear_relu(x: Tensor, W: Tensor, b: Tensor, plan: Plan = ATEN) -> Tensor:
    """relu(x[s] W[s] + b[s]) for x (S, B, D), W (S, D, N), b (S, 1, N). The aten plan is exactly the ops the
    committed runs used (autograd's own backward), so its results are unchanged byte for byte."""
    if not plan.uses_onednn:
        return torch.relu(torch.baddbmm(b, x, W))
    if not torch.is_grad_enabled() or not W.requires_grad:  # evaluation: the forward kernel alone
        return linear_relu_onednn(x, W, b) if plan.forward == "onednn" else torch.relu(torch.baddbmm(b, x, W))
    return LinearReLU.apply(x, W, b, plan)


# --- the probe: which kernel is faster here, and does it agree with aten to float rounding -------------------

PROBE_REPEATS = 5


def best_seconds(fn, repeats: int = PROBE_REPEATS, sync=lambda: None) -> float:
    """The fastest of `repeats` calls of `fn` after one warm-up call (oneDNN builds its primitive on the first);
    `sync` waits for the device (CUDA runs asynchronously)."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - tick)
    return min(times)


def agrees(candidate: Tensor, aten: Tensor, exact: Tensor) -> bool:
    """The candidate's error against float64 is no more than a few times aten's own (plus a tiny floor)."""
    scale = exact.abs().max().item() or 1.0
    aten_error = (aten.double() - exact).abs().max().item()
    return (candidate.double() - exact).abs().max().item() <= 4 * aten_error + 1e-6 * scale


# Shapes S × (B, D) @ (D, N) of the populations the suite trains: one MNIST arm at H = 256 and at H = 8, Fig. 7's
# 5 seeds × 2 arms at H = 256, Fig. 9's 5 seeds × 2 arms at H = 128 on CIFAR-100's 3072 inputs.
PROBE_SHAPES = ((1, 256, 784, 256), (1, 256, 784, 8), (5, 256, 784, 512), (5, 256, 3072, 256))


def probe_shape(S: int, B: int, D: int, N: int) -> tuple[dict, bool]:
    """Seconds of each GEMM on each kernel at one shape, and whether oneDNN agrees with float64 as aten does."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(S, B, D, generator=g)
    W = torch.randn(S, D, N, generator=g) * 0.05
    b = torch.randn(S, 1, N, generator=g) * 0.05
    dz = torch.randn(S, B, N, generator=g)
    kernels = {"forward": {"aten": lambda: torch.relu(torch.baddbmm(b, x, W)),
                           "onednn": lambda: linear_relu_onednn(x, W, b)},
               "grad_weight": {"aten": lambda: torch.bmm(x.transpose(1, 2), dz),
                               "onednn": lambda: grad_weight_onednn(x, dz)}}
    seconds = {role: {k: best_seconds(fn) for k, fn in fns.items()} for role, fns in kernels.items()}
    exact = {"forward": torch.relu(torch.baddbmm(b.double(), x.double(), W.double())),
             "grad_weight": torch.bmm(x.double().transpose(1, 2), dz.double())}
    ok = all(agrees(fns["onednn"](), fns["aten"](), exact[role]) for role, fns in kernels.items())
    return seconds, ok


def probe(shapes=PROBE_SHAPES) -> dict:
    """Seconds of each GEMM on both kernels, summed over the shapes, and whether oneDNN agrees with float64
    as closely as aten does on every one."""
    seconds = {role: dict.fromkeys(KERNELS, 0.0) for role in ("forward", "grad_weight")}
    agree = True
    for shape in shapes:
        found, ok = probe_shape(*shape)
        for role in seconds:
            for kernel in KERNELS:
                seconds[role][kernel] += found[role][kernel]
        agree &= ok
    return seconds | {"agrees": bool(agree)}


def cache_file(cache_dir: str | None) -> Path:
    root = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "ayla"
    return root / "gemm-probe.json"


def probe_key() -> str:
    """One probe per machine: the CPU and the torch build. Not the thread count: jobs that split the cores
    between them (a parallel launcher) must take the same kernels as one job with all of them."""
    return f"{cpu_name()} | torch {torch.__version__}"


def cached_probe(cache_dir: str | None = None) -> dict:
    """This machine's probe: read from the cache, or made now and added to it. One choice per machine, not per
    shape, so that every population of a comparison trained here takes the same kernels."""
    path, key = cache_file(cache_dir), probe_key()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = probe()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(known, indent=1, sort_keys=True))
        except Exception:  # an unwritable cache costs a probe per run, nothing else
            pass
    return known[key]


def choose(request: str, device: torch.device, dtype: torch.dtype, cache_dir: str | None = None) -> Plan:
    """The kernels of the first layer's GEMMs for a run on `device` in `dtype`."""
    if request not in CHOICES:
        raise ConfigError(f"gemm={request} is not a GEMM kernel choice; use one of {', '.join(CHOICES)}")
    if request == "aten":
        return ATEN
    unusable = ("a CUDA device" if device.type != "cpu" else "a dtype other than float32"
                if dtype != torch.float32 else "no oneDNN linear op in this torch build"
                if onednn_linear() is None else None)
    if unusable:
        return Plan(reason=f"gemm={request}: aten ({unusable})")
    if request == "onednn":
        return Plan("onednn", "onednn", "gemm=onednn")
    found = cached_probe(cache_dir)
    if not found["agrees"]:
        return Plan(reason="gemm=auto: aten (oneDNN's results differ beyond float rounding on this machine)")
    pick = {role: min(KERNELS, key=lambda k: found[role][k]) for role in ("forward", "grad_weight")}
    timing = ", ".join(f"{role} {found[role]['aten'] * 1e3:.1f} vs {found[role]['onednn'] * 1e3:.1f} ms"
                       for role in ("forward", "grad_weight"))
    return Plan(pick["forward"], pick["grad_weight"], f"gemm=auto (probe, aten vs onednn: {timing})")
