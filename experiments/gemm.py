"""Which kernel runs the MLP's one large GEMM, relu(x W1 + b1), and its weight gradient xᵀ·dZ.

The first layer is where the image experiments spend their time (D = 784 or 3072 inputs against all arms'
hidden units at once). Which kernel is fastest depends on the CPU and on the shape: torch's `@` goes to MKL,
which on some CPUs (AMD EPYC with AVX-512, for one) runs fp32 at about half the rate oneDNN reaches there, and
which at a width of N = 8 columns (one arm at H = 8) takes a path 2.5× slower than at N = 16, while the same
product with the weight stored (N, D), K-contiguous, runs at full speed. So the kernel is a setting:
  gemm=aten     torch's own ops (baddbmm, relu, autograd): the committed runs were made this way;
  gemm=onednn   oneDNN's linear (torch.ops.mkldnn._linear_pointwise) with the ReLU fused into it, forward and
                weight gradient, through one small autograd Function;
  gemm=auto     per GEMM (forward, weight gradient) the fastest of aten, onednn and aten_nt (aten on a
                K-contiguous copy of the weight: x·(Wᵀ)ᵀ and dW = (dZᵀ·x)ᵀ) at the population's own shape and
                seed count (oneDNN runs one product per seed, aten one batched product),
                from a probe made once per machine and shape and cached, so that reruns take the same path
                and stay byte-identical.
aten is used wherever the others cannot be: a CUDA device, a dtype other than float32, a kernel whose probe
results differ from float64 by more than aten's own rounding does (oneDNN also where this torch build lacks its
op). Results of the kernels differ at float rounding only; every arm of a population shares one kernel.

On the CPU in float32, gemm=auto and gemm=onednn also take the training step's gradients in closed form
(mlp.classification_gradients: the MLP's backward written out, no autograd graph), whichever kernels the probe
picked: the same numbers to float rounding at about two thirds of autograd's fixed cost per step. There gemm=auto
also probes the second layer's two narrow products (logits and dW2, SECOND_KERNELS) at the population's shape.
gemm=aten keeps autograd, the committed runs' ops.
"""

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from experiments.errors import ConfigError
from experiments.io import cpu_name, write_atomic

CHOICES = ("auto", "aten", "onednn")
KERNELS = ("aten", "onednn", "aten_nt")


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
    closed_form: bool = False  # the trainer's step writes the MLP's backward out (mlp.classification_gradients)
    logits: str = "aten"       # the second layer's two narrow products in that step (SECOND_KERNELS)
    grad_w2: str = "aten"

    @property
    def label(self) -> str:
        """What a CSV row records: 'aten', 'onednn', or e.g. 'aten_nt+aten' (forward + weight gradient), and
        ', 2nd aten_t' (or 'aten_t+aten': logits + dW2) where the second layer's products are not aten's."""
        first = self.forward if self.forward == self.grad_weight else f"{self.forward}+{self.grad_weight}"
        if self.logits == self.grad_w2 == "aten":
            return first
        return first + ", 2nd " + (self.logits if self.logits == self.grad_w2 else f"{self.logits}+{self.grad_w2}")

    @property
    def uses_onednn(self) -> bool:
        return "onednn" in (self.forward, self.grad_weight)

    @property
    def is_aten(self) -> bool:
        """torch's plain ops for both GEMMs, with autograd's own backward (the committed runs' path)."""
        return self.forward == self.grad_weight == "aten"


ATEN = Plan()


def per_seed(results: list[Tensor]) -> Tensor:
    """Per-seed results stacked (S, ...); one seed's as a view, without stack's copy."""
    return results[0][None] if len(results) == 1 else torch.stack(results)


def linear_relu_onednn(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """relu(x[s] @ W[s] + b[s]) per seed s through oneDNN: x (S, B, D), W (S, D, N), b (S, 1, N)."""
    op = onednn_linear()
    # oneDNN's linear takes the weight as (out, in): W[s].t() is a view, no copy
    return per_seed([op(x[s], W[s].t(), b[s, 0], "relu", [None], "") for s in range(x.shape[0])])


def grad_weight_onednn(x: Tensor, dz: Tensor) -> Tensor:
    """x[s]ᵀ @ dz[s] per seed through oneDNN: (S, D, N).

    oneDNN needs its input contiguous: handed the strided view x[s].t(), torch's op copies it itself with a 2-D
    transposed copy per seed, here 2-3× slower than one batched copy of the whole (S, D, B) (one arm at MNIST:
    102 vs 46 µs; 5 seeds: 570 vs 212 µs). So xᵀ is copied once here; oneDNN sees the same bytes, and the products
    are bit for bit the same (tests/test_gemm.py)."""
    op = onednn_linear()
    xT = x.transpose(1, 2).contiguous()
    return per_seed([op(xT[s], dz[s].t(), None, "none", [], "") for s in range(x.shape[0])])


def linear_relu_aten_nt(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """relu(x[s] @ W[s] + b[s]) with W[s] copied to (N, D) first: MKL's NT path, fast where N is narrow."""
    return torch.relu(torch.baddbmm(b, x, W.transpose(1, 2).contiguous().transpose(1, 2)))


def grad_weight_aten_nt(x: Tensor, dz: Tensor) -> Tensor:
    """x[s]ᵀ @ dz[s] as (dz[s]ᵀ @ x[s])ᵀ: the product with the wide operand K-contiguous."""
    return torch.bmm(dz.transpose(1, 2), x).transpose(1, 2).contiguous()


# Each GEMM of the first layer on each kernel: relu(x W + b) for x (S, B, D), W (S, D, N), b (S, 1, N), and
# xᵀ·dZ for dZ (S, B, N).
FORWARD = {"aten": lambda x, W, b: torch.relu(torch.baddbmm(b, x, W)), "onednn": linear_relu_onednn,
           "aten_nt": linear_relu_aten_nt}
GRAD_WEIGHT = {"aten": lambda x, dz: torch.bmm(x.transpose(1, 2), dz), "onednn": grad_weight_onednn,
               "aten_nt": grad_weight_aten_nt}


# The second layer's products in the closed-form step, per arm: logits = h W2 + b2 and dW2 = hᵀ G, for
# h (S·A, B, H), W2 (S·A, H, C), b2 (S·A, 1, C), G (S·A, B, C). With few classes (C = 10) both outputs are narrow
# (C columns), a shape MKL runs several times slower than the same product transposed, (W2ᵀ hᵀ)ᵀ and (Gᵀ h)ᵀ,
# whose output rows are wide: aten_t. Which is faster depends on H, C and S·A (make bench), so auto probes it.
SECOND_KERNELS = ("aten", "aten_t")
LOGITS = {"aten": lambda h, W2, b2: torch.baddbmm(b2, h, W2),
          "aten_t": lambda h, W2, b2: torch.baddbmm(b2.transpose(1, 2), W2.transpose(1, 2),
                                                    h.transpose(1, 2)).transpose(1, 2).contiguous()}
GRAD_W2 = {"aten": lambda h, G: torch.bmm(h.transpose(1, 2), G),
           "aten_t": lambda h, G: torch.bmm(G.transpose(1, 2), h).transpose(1, 2).contiguous()}


class LinearReLU(torch.autograd.Function):
    """relu(x W + b) batched over seeds, each GEMM on the kernel the plan names. x carries no gradient (it is
    data), so the backward pass needs only dW = xᵀ·dZ and db = Σ_batch dZ, with dZ = dH where the output > 0."""

    @staticmethod
    def forward(ctx, x: Tensor, W: Tensor, b: Tensor, plan: Plan) -> Tensor:
        h = FORWARD[plan.forward](x, W, b)
        ctx.save_for_backward(x, h)
        ctx.plan = plan
        return h

    @staticmethod
    def backward(ctx, dh: Tensor):
        x, h = ctx.saved_tensors
        dz = dh.masked_fill(h <= 0, 0)
        return None, GRAD_WEIGHT[ctx.plan.grad_weight](x, dz), dz.sum(1, keepdim=True), None


def linear_relu(x: Tensor, W: Tensor, b: Tensor, plan: Plan = ATEN) -> Tensor:
    """relu(x[s] W[s] + b[s]) for x (S, B, D), W (S, D, N), b (S, 1, N). The aten plan is exactly the ops the
    committed runs used (autograd's own backward), so its results are unchanged byte for byte."""
    if plan.is_aten:
        return torch.relu(torch.baddbmm(b, x, W))
    if not torch.is_grad_enabled() or not W.requires_grad:  # evaluation: the forward kernel alone
        return FORWARD[plan.forward](x, W, b)
    return LinearReLU.apply(x, W, b, plan)


# --- the probe: which kernel is faster here, and does it agree with aten to float rounding -------------------

PROBE_REPEATS = 7


def best_seconds(fn, repeats: int = PROBE_REPEATS, sync=lambda: None) -> float:
    """The fastest of `repeats` calls of `fn` after one warm-up call (oneDNN builds its primitive on the first);
    `sync` waits for the device (CUDA runs asynchronously)."""
    return fastest_of({"fn": fn}, repeats, sync)["fn"]


def fastest_of(fns: dict, repeats: int = PROBE_REPEATS, sync=lambda: None) -> dict:
    """best_seconds of each of `fns`, their calls interleaved (one of each per round, every other round in reverse
    order): a shared machine's speed drifts up to 2× within seconds, and timing one kernel's calls after another's
    would let that drift pick the kernel."""
    for fn in fns.values():
        fn()
    sync()
    times = {name: float("inf") for name in fns}
    for r in range(repeats):
        for name, fn in (fns.items() if r % 2 == 0 else reversed(fns.items())):
            tick = time.perf_counter()
            fn()
            sync()
            times[name] = min(times[name], time.perf_counter() - tick)
    return times


def agrees(candidate: Tensor, aten: Tensor, exact: Tensor) -> bool:
    """The candidate's error against float64 is no more than a few times aten's own (plus a tiny floor)."""
    scale = exact.abs().max().item() or 1.0
    aten_error = (aten.double() - exact).abs().max().item()
    return (candidate.double() - exact).abs().max().item() <= 4 * aten_error + 1e-6 * scale


def layer_operands(S: int, B: int, D: int, N: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random x (S, B, D), W (S, D, N), b (S, 1, N) and dZ (S, B, N) for a probe, the same on every machine."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(S, B, D, generator=g)
    W = torch.randn(S, D, N, generator=g) * 0.05
    b = torch.randn(S, 1, N, generator=g) * 0.05
    return x, W, b, torch.randn(S, B, N, generator=g)


def time_and_check(calls: dict, exact: dict[str, Tensor], kernels) -> dict:
    """Seconds of each role's call (`calls[role](kernel)`) on each kernel, and whether each kernel's results agree
    with float64 (`exact[role]`) as closely as aten's do, in every role."""
    found = {role: fastest_of({k: functools.partial(call, k) for k in kernels}) for role, call in calls.items()}
    found["agrees"] = {k: all(agrees(call(k), call("aten"), exact[role]) for role, call in calls.items())
                       for k in kernels}
    return found


def probe(shape: tuple[int, ...], kernels=KERNELS) -> dict:
    """At one shape (B, D) @ (D, N), or (S, B, D, N) for S seeds' products at once: seconds of each GEMM on each
    kernel, and whether each agrees with float64 as closely as aten does. With S seeds aten runs one batched
    product and oneDNN one per seed, whose results are then stacked (8 MB of dW1 at 5 seeds × 512 columns): the
    probe times what the population will run."""
    x, W, b, dz = layer_operands(*(shape if len(shape) == 4 else (1, *shape)))
    calls = {"forward": lambda k: FORWARD[k](x, W, b), "grad_weight": lambda k: GRAD_WEIGHT[k](x, dz)}
    exact = {"forward": torch.relu(torch.baddbmm(b.double(), x.double(), W.double())),
             "grad_weight": torch.bmm(x.double().transpose(1, 2), dz.double())}
    return time_and_check(calls, exact, kernels)


def probe_second(shape: tuple[int, int, int, int], kernels=SECOND_KERNELS) -> dict:
    """At one second-layer shape (S·A, B, H, C): seconds of logits = h W2 + b2 and of dW2 = hᵀ G on each kernel,
    and whether each agrees with float64 as closely as aten does."""
    h, W2, b2, G = layer_operands(*shape)
    calls = {"logits": lambda k: LOGITS[k](h, W2, b2), "grad_w2": lambda k: GRAD_W2[k](h, G)}
    exact = {"logits": torch.baddbmm(b2.double(), h.double(), W2.double()),
             "grad_w2": torch.bmm(h.double().transpose(1, 2), G.double())}
    return time_and_check(calls, exact, kernels)


def cache_file(cache_dir: str | None) -> Path:
    root = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "ayla"
    return root / "gemm-probe.json"


def shape_names(shape: tuple[int, ...], layer: str = "first") -> str:
    return "(S·A, B, H, C)" if layer == "second" else "(S, B, D, N)" if len(shape) == 4 else "(B, D, N)"


# Raised whenever a kernel above or the probe's method changes, so that caches made before are probed again:
# 2 = the probe's kernels interleaved over 7 rounds, oneDNN's weight gradient on one batched copy of xᵀ;
# 3 = every other round in reverse order.
KERNELS_VERSION = 3


def probe_key(shape: tuple[int, ...], layer: str = "first") -> str:
    """One probe per machine (the CPU and the torch build), version of the kernels, layer and GEMM shape. Not the
    thread count: jobs that split the cores between them (a parallel launcher) must take the same kernels as one
    job with all of them."""
    return (f"{cpu_name()} | torch {torch.__version__} | kernels v{KERNELS_VERSION} | "
            f"{shape_names(shape, layer)} = {tuple(shape)}"
            + ("" if layer == "first" else " | second layer"))


def cached_probe(shape: tuple[int, ...], kernels=KERNELS, cache_dir: str | None = None, layer: str = "first"
                 ) -> dict:
    """This machine's probe at this shape: read from the cache, or made now and added to it, so that every
    population of this shape trained here takes the same kernels. layer="second": the second layer's products
    at (S·A, B, H, C) (probe_second)."""
    path, key = cache_file(cache_dir), probe_key(shape, layer)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known or set(known[key]["agrees"]) != set(kernels):
        known[key] = probe(shape, kernels) if layer == "first" else probe_second(shape, kernels)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(known, indent=1, sort_keys=True))
        except Exception:  # an unwritable cache costs a probe per run, nothing else
            pass
    return known[key]


def choose(request: str, device: torch.device, dtype: torch.dtype, cache_dir: str | None = None,
           shape: tuple[int, ...] = (256, 784, 256), second: tuple[int, int, int, int] | None = None) -> Plan:
    """The kernels of the first layer's GEMMs for a population on `device` in `dtype` whose per-seed product is
    (B, D) @ (D, N): `shape` = (B, D, N), or (S, B, D, N) for S > 1 seeds; and with gemm=auto, where `second`
    gives its second layer's (S·A, B, H, C), the kernels of that layer's products in the closed-form step."""
    if request not in CHOICES:
        raise ConfigError(f"gemm={request} is not a GEMM kernel choice; use one of {', '.join(CHOICES)}")
    if request == "aten":
        return ATEN
    unusable = "a CUDA device" if device.type != "cpu" else "a dtype other than float32" if dtype != torch.float32 \
        else None
    if unusable:
        return Plan(reason=f"gemm={request}: aten ({unusable})")
    no_op = "no oneDNN linear op in this torch build" if onednn_linear() is None else None
    if request == "onednn":
        return Plan(reason=f"gemm=onednn: aten ({no_op})", closed_form=True) if no_op else Plan(
            "onednn", "onednn", "gemm=onednn", closed_form=True)
    kernels = tuple(k for k in KERNELS if not (k == "onednn" and no_op))
    pick, refused, timing = fastest_agreeing(cached_probe(tuple(shape), kernels, cache_dir), kernels,
                                             ("forward", "grad_weight"))
    notes = [no_op] if no_op else []
    notes += [f"{', '.join(refused)} refused: results differ beyond float rounding"] if refused else []
    reason = (f"gemm=auto (probe at {shape_names(shape)} = {tuple(shape)}: {timing})"
              + "".join(f"; {n}" for n in notes))
    late = {"logits": "aten", "grad_w2": "aten"}
    if second is not None:
        late, _, timing = fastest_agreeing(cached_probe(tuple(second), SECOND_KERNELS, cache_dir, layer="second"),
                                           SECOND_KERNELS, tuple(late))
        reason += f"; second layer (probe at {shape_names(second, 'second')} = {tuple(second)}: {timing})"
    return Plan(pick["forward"], pick["grad_weight"], reason, closed_form=True, **late)


def fastest_agreeing(found: dict, kernels, roles) -> tuple[dict, list, str]:
    """From a probe: each role's fastest kernel among those whose results agree, the kernels refused for
    disagreeing, and the timings as the plan's reason states them ('forward aten 503, onednn 491 µs; ...')."""
    usable = [k for k in kernels if found["agrees"][k]]
    pick = {role: min(usable, key=lambda k: found[role][k]) for role in roles}
    timing = "; ".join(f"{role} " + ", ".join(f"{k} {found[role][k] * 1e6:.0f}" for k in kernels) + " µs"
                       for role in roles)
    return pick, [k for k in kernels if k not in usable], timing
