"""How fast is an MNIST / CIFAR-100 epoch of the paper's MLP, four ways, measured in one process.

  (a) numpy    the authors' protocol written out in float64 NumPy (the yardstick; their scripts are NumPy)
  (b) loader   the conventional PyTorch loop: a map-style Dataset that returns one sample at a time through a
               per-sample ToTensor-style transform, a DataLoader, nn.Sequential, torch.optim.Adam (+ ayla.AYLA)
  (c) suite    this suite's trainer, one arm
  (d) fused    this suite's trainer, K arms trained together: Adam and AYLA × K/2 seeds (as make reproduce
               trains a figure), and K AYLA settings on one seed (as a sweep over N trains)

`step_timings` times the parts of a training step one by one (where a step's time goes beyond its GEMMs):
one arm's, and a fused population's.

Every epoch includes the test-set evaluation the protocol does after it. Reported per arm-epoch, with the ratio
to (a) and (b) and the fraction of the machine's real fp32 GEMM peak that the matmuls alone would need: the best
rate of a 2048² fp32 product among torch's own `@` (MKL on x86), oneDNN's linear and NumPy's OpenBLAS, measured
in the same run (each is a column; on some CPUs MKL runs at half the rate of the other two). The suite's rows
run on its one path, torch's own ops with autograd ("aten" in the `gemm` column), and again in the opt-in
dtype=bfloat16 ("bfloat16"). NumPy's BLAS is named from threadpoolctl; scripts/bench.py runs
with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so OpenBLAS picks its kernel for this CPU itself. Each fp32
suite row also has its ceiling: the matmuls of its training step timed bare at its shapes (`gemm_ceiling`,
against the same peak): the most the row could reach, the test-set evaluation aside, if everything else in a
step took no time.
"""

import time

import numpy as np
import pandas as pd
import torch

from ayla import AYLA
from ayla.transform import ayla_factor
from experiments.analysis.speed import sample_flops
from experiments.engine.config import AUTOCAST, arm_from_config
from experiments.engine.trainer import GradientScale, accumulate, grad_norms, population_update, train
from experiments.io import device_name
from experiments.models import mlp
from experiments.tasks import DATASETS, TASKS
from experiments.tasks.data import load_split, subset_indices

BATCH = 256
REPEATS = 7


def onednn_linear():
    """torch.ops.mkldnn._linear_pointwise (oneDNN's fp32 GEMM, one of the peak's candidates), or None where this
    torch build has no such op."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def best_seconds(fn, repeats: int = REPEATS, sync=lambda: None) -> float:
    """The fastest of `repeats` calls of `fn` after one warm-up call (oneDNN builds its primitive on the first);
    `sync` waits for the device (CUDA runs asynchronously)."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - tick)
    return best


def layer_operands(S: int, B: int, D: int, N: int) -> tuple[torch.Tensor, ...]:
    """Random x (S, B, D), W (S, D, N), b (S, 1, N) and dZ (S, B, N), the same on every machine."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(S, B, D, generator=g)
    W = torch.randn(S, D, N, generator=g) * 0.05
    b = torch.randn(S, 1, N, generator=g) * 0.05
    return x, W, b, torch.randn(S, B, N, generator=g)


def best_rate(product, flops: float, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of `product()`, best of `repeats` after one warm-up call."""
    return flops / best_seconds(product, repeats, lambda: sync(device))


def gemm_peaks(device: torch.device, n: int = 2048) -> dict[str, float]:
    """fp32 FLOP/s of an n×n product on every kernel this machine offers: torch's `@` (aten: MKL on x86 CPUs,
    cuBLAS on CUDA), oneDNN's linear and NumPy's BLAS (CPU only)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    flops = 2 * n**3
    peaks = {"aten": best_rate(lambda: a @ b, flops, device)}
    if device.type == "cpu":
        op = onednn_linear()
        if op is not None:
            bt = b.t().contiguous()
            peaks["onednn"] = best_rate(lambda: op(a, bt, None, "none", [], ""), flops, device)
        x, y = a.numpy(), b.numpy()
        peaks["openblas"] = best_rate(lambda: x @ y, flops, device)
    return peaks


def numpy_blas() -> str:
    """NumPy's BLAS as threadpoolctl reports it: 'openblas 0.3.31 SkylakeX, 2 threads'."""
    try:
        from threadpoolctl import threadpool_info
        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        return "unknown (threadpoolctl missing)"
    if not info:
        return "unknown"
    blas = info[0]
    return (f"{blas.get('internal_api')} {blas.get('version')} {blas.get('architecture', '')}".strip()
            + f", {blas.get('num_threads')} threads")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_gemm_flops(seeds: int, arms: int, sizes: tuple[int, int, int], batch: int = BATCH) -> float:
    """Matmul FLOPs of one training step of a population: forward 2(DH + HC), backward 2DH + 4HC per sample and
    arm (no input gradient)."""
    return seeds * arms * batch * sample_flops(*sizes)


def epoch_flops(n_train: int, n_test: int, sizes: tuple[int, int, int]) -> float:
    """Matmul FLOPs of one arm-epoch: its full training batches' steps, and the forward pass per test sample."""
    D, H, C = sizes
    return (n_train // BATCH) * step_gemm_flops(1, 1, sizes) + n_test * 2 * (D * H + H * C)


def load(name: str, root, train_rows: int, test_rows: int):
    spec = DATASETS[name]
    arrays = []
    for split, rows in (("train", train_rows), ("test", test_rows)):
        x, y = load_split(spec, root, split)
        keep = subset_indices(len(y), rows)
        arrays += [x[keep], y[keep]]
    return arrays


def numpy_epochs(data, hidden: int, ayla: bool, lr: float, N: float, epochs: int) -> list[float]:
    """(a) The authors' protocol in float64 NumPy: randn·0.01 init, softmax cross-entropy, Adam, AYLA factor."""
    x_train, y_train, x_test, y_test = data
    x_train = x_train.reshape(len(x_train), -1) / 255.0
    x_test = x_test.reshape(len(x_test), -1) / 255.0
    classes = int(max(y_train.max(), y_test.max())) + 1
    rng = np.random.RandomState(0)
    params = [rng.randn(x_train.shape[1], hidden) * 0.01, np.zeros((1, hidden)),
              rng.randn(hidden, classes) * 0.01, np.zeros((1, classes))]
    moments = [np.zeros_like(p) for p in params] + [np.zeros_like(p) for p in params]
    one_hot = np.eye(classes)[y_train]
    times, t = [], 0
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x_train))
        for i in range(len(order) // BATCH):
            rows = order[i * BATCH:(i + 1) * BATCH]
            xb, yb = x_train[rows], one_hot[rows]
            W1, b1, W2, b2 = params
            z = xb @ W1 + b1
            a = np.maximum(z, 0)
            logits = a @ W2 + b2
            e = np.exp(logits - logits.max(1, keepdims=True))
            p = e / e.sum(1, keepdims=True)
            loss = -np.sum(yb * np.log(np.clip(p, 1e-12, 1))) / BATCH
            factor = float(ayla_factor(torch.tensor(loss), N, N, validate=False)) if ayla else 1.0  # ayla's own
            dl = factor * (p - yb) / BATCH
            da = (dl @ W2.T) * (z > 0)
            grads = [xb.T @ da, da.sum(0, keepdims=True), a.T @ dl, dl.sum(0, keepdims=True)]
            t += 1
            for k, (param, grad) in enumerate(zip(params, grads)):
                m, v = moments[k], moments[4 + k]
                m *= 0.9
                m += 0.1 * grad
                v *= 0.999
                v += 0.001 * grad * grad
                param -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        W1, b1, W2, b2 = params
        logits = np.maximum(x_test @ W1 + b1, 0) @ W2 + b2
        (logits.argmax(1) == y_test).mean()
        times.append(time.perf_counter() - start)
    return times


class PerSampleDataset(torch.utils.data.Dataset):
    """What torchvision's datasets do: one image at a time, through a ToTensor-style transform."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        image = torch.from_numpy(self.x[i]).permute(2, 0, 1).float().div(255)  # ToTensor: HWC uint8 → CHW float
        return image, int(self.y[i])


def loader_epochs(data, hidden: int, ayla: bool, lr: float, N: float, epochs: int, device) -> list[float]:
    """(b) The conventional loop: Dataset + DataLoader + nn.Sequential + torch.optim.Adam (wrapped in AYLA)."""
    x_train, y_train, x_test, y_test = data
    classes = int(max(y_train.max(), y_test.max())) + 1
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(x_train.shape[1:])), hidden),
                                torch.nn.ReLU(), torch.nn.Linear(hidden, classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if ayla:
        optimizer = AYLA(optimizer, N1=N, N2=N)
    train_loader = torch.utils.data.DataLoader(PerSampleDataset(x_train, y_train), batch_size=BATCH, shuffle=True,
                                               drop_last=True)
    test_loader = torch.utils.data.DataLoader(PerSampleDataset(x_test, y_test), batch_size=1000)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(loss=loss) if ayla else optimizer.step()
        with torch.inference_mode():
            sum((model(xb.to(device)).argmax(1) == yb.to(device)).sum().item() for xb, yb in test_loader)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def seconds_per_call(fn, device, calls: int = 200, rounds: int = 3) -> float:
    """Mean seconds of one call of `fn` over `calls` calls in a row, the best of `rounds` such runs."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        sync(device)
        tick = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - tick) / calls)
    return best


def step_gemms(seeds: int, arms: int, sizes: tuple[int, int, int], device, batch: int = BATCH) -> dict:
    """The matmuls of one training step of `seeds` × `arms` MLPs of `sizes` (D, H, C), each a call on operands of
    the step's shapes, as autograd runs them: the first layer's forward (bias and ReLU inside) and weight
    gradient, and the second layer's three narrow products."""
    D, H, C = sizes
    x, W1, b1, dz = (t.to(device) for t in layer_operands(seeds, batch, D, arms * H))
    h, W2, b2, dout = (t.to(device) for t in layer_operands(seeds * arms, batch, H, C))
    return {"first layer: x·W1 + b1, ReLU": lambda: torch.relu(torch.baddbmm(b1, x, W1)),
            "first layer: dW1 = xᵀ·dZ": lambda: torch.bmm(x.transpose(1, 2), dz),
            "second layer: h·W2, dh = dout·W2ᵀ, dW2 = hᵀ·dout": lambda: (
                torch.baddbmm(b2, h, W2), torch.bmm(dout, W2.transpose(1, 2)), torch.bmm(h.transpose(1, 2), dout))}


def step_gemm_seconds(gemms: dict, device, budget: float = 0.05) -> dict[str, float]:
    """seconds_per_call of each of step_gemms, with as many calls per run as fit in about `budget` seconds (3 to
    200): a 5-seed population's GEMM takes milliseconds, one arm's at H = 8 tens of microseconds."""
    def calls(fn):
        fn()  # warm: oneDNN builds its primitive on the first call
        sync(device)
        tick = time.perf_counter()
        fn()
        sync(device)
        return int(min(200, max(3, budget / max(time.perf_counter() - tick, 1e-6))))
    return {part: seconds_per_call(fn, device, calls(fn)) for part, fn in gemms.items()}


def suite_epochs(cfg_of, name: str, hidden: int, arms: dict, seeds: int, epochs: int, device,
                 bare: bool = True) -> tuple[list[float], str, float]:
    """(c)/(d) The suite's trainer on arms {label: optimizer overrides}: seconds of each population epoch, its
    kernel label ("aten", or "bfloat16" under the opt-in autocast), and (with `bare`) the FLOP/s its training
    step's matmuls reach timed bare at its shapes, else NaN (also under bfloat16 autocast, whose GEMMs run on
    another peak): the most the row could reach, the test-set evaluation aside, if everything else in a step
    took no time."""
    cfgs = [cfg_of(name, hidden, list(overrides)) for overrides in arms.values()]
    task = TASKS[name](cfgs[0], device, torch.float32)
    autocast = AUTOCAST.get(cfgs[0].dtype)
    trained = train(task, [arm_from_config(c, label) for c, label in zip(cfgs, arms)], list(range(seeds)), epochs,
                    log=lambda line: None, autocast=autocast)  # as runner.run_population does
    rate = float("nan")
    if bare and autocast is None:
        with torch.no_grad():
            gemms = step_gemms(seeds, len(arms), task.sizes, device, task.batch_size)
            rate = step_gemm_flops(seeds, len(arms), task.sizes, task.batch_size) / sum(
                step_gemm_seconds(gemms, device).values())
    return trained.metrics.groupby("epoch")["seconds"].first().tolist(), kernel_label(cfgs[0]), rate


def kernel_label(cfg) -> str:
    """The `gemm` column of a suite row: "aten" (torch's own ops, autograd: the one path) or "bfloat16"."""
    return "bfloat16" if cfg.dtype == "bfloat16" else "aten"


def both_kernels(cfg_of, name, hidden, variant, optimizer, arms, overrides, seeds, epochs, device) -> list[tuple]:
    """A suite row on the one path (fp32), and the same in the opt-in dtype=bfloat16 (GEMMs under autocast)."""
    times, label, rate = suite_epochs(cfg_of, name, hidden, overrides, seeds, epochs, device)
    rows = [(variant, optimizer, arms, times, label, rate)]
    bf16 = {arm: [*o, "dtype=bfloat16"] for arm, o in overrides.items()}
    times, _, rate = suite_epochs(cfg_of, name, hidden, bf16, seeds, epochs, device)
    rows.append((variant, optimizer, arms, times, "bfloat16", rate))
    return rows


def steady(times: list[float]) -> float:
    """Seconds of a steady-state epoch: the best one after the first (warm-up), or the only one."""
    return min(times[1:]) if len(times) > 1 else times[0]


def in_rounds(items: list, rounds: int) -> list:
    """`items` `rounds` times, every other time in reverse order: as the machine drifts, two items compared are
    then measured close in time at least once."""
    return [item for r in range(rounds) for item in (items if r % 2 == 0 else items[::-1])]


def run(cfg_of, settings, root, device, log=print) -> pd.DataFrame:
    """Every row of the benchmark; `cfg_of(name, hidden, optimizer)` composes the suite's run config.

    This machine's speed drifts (up to 2× between runs minutes apart, with nothing else running), so each data
    set and width is measured in `settings.rounds` rounds, every other one in reverse order, and each row keeps its
    fastest steady epoch over the rounds: two variants compared are then measured close in time at least once."""
    first_peaks = gemm_peaks(device)
    blas = numpy_blas()
    rows = []
    for name, spec in settings.datasets.items():
        data = load(name, root, spec.train_rows, spec.test_rows)
        sizes = (int(np.prod(data[0].shape[1:])), None, DATASETS[name].num_classes)
        for hidden in spec.hidden:
            flops = epoch_flops(len(data[1]), len(data[3]), (sizes[0], hidden, sizes[2]))
            best, bare = {}, {}  # (variant, optimizer, arms, gemm) -> fastest steady seconds, fastest bare GEMMs
            jobs = block_jobs(cfg_of, settings, name, hidden, spec, data, blas, device)
            for job in in_rounds(jobs, int(settings.get("rounds", 1))):
                for variant, optimizer, arms, times, gemm, rate in job():
                    key = (variant, optimizer, arms, gemm)
                    best[key] = min(best.get(key, float("inf")), steady(times))
                    bare[key] = np.fmax(bare.get(key, np.nan), rate)  # NaN where no bare rate is timed
            for (variant, optimizer, arms, gemm), seconds in best.items():
                per_arm = seconds / arms
                rows.append(dict(dataset=name, hidden=hidden, variant=variant, optimizer=optimizer, gemm=gemm,
                                 arms=arms, train_rows=len(data[1]), seconds_per_arm_epoch=per_arm,
                                 gflops_per_arm_epoch=flops / 1e9,
                                 step_gemm_gflops=bare[(variant, optimizer, arms, gemm)] / 1e9))
                log(f"{name} H={hidden:<4} {variant:<26} {optimizer:<9} {gemm:<12} {per_arm:8.4f} s/arm-epoch")
    # the peaks once more at the end, each kernel's best of both: a slow phase at the start must not lower them
    peaks = {k: max(v, first_peaks[k]) for k, v in gemm_peaks(device).items()}
    kernel, peak = max(peaks.items(), key=lambda item: item[1])
    log(f"fp32 GEMM peak on {device}: " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peaks.items())
        + f" GFLOP/s (best of the start and the end); the real peak: {kernel}")
    frame = pd.DataFrame(rows)
    frame["gemm_fraction"] = frame["gflops_per_arm_epoch"] * 1e9 / frame["seconds_per_arm_epoch"] / peak
    # the row's ceiling: its step's matmuls timed bare, against the same peak
    frame["gemm_ceiling"] = frame["step_gemm_gflops"] * 1e9 / peak
    frame = frame.assign(peak_gflops=peak / 1e9, peak_kernel=kernel,
                         **{f"peak_{k}_gflops": v / 1e9 for k, v in peaks.items()})
    key = ["dataset", "hidden"]
    for variant, column in (("a numpy float64", "speedup_vs_numpy"), ("b per-sample DataLoader", "speedup_vs_loader")):
        reference = frame[frame["variant"] == variant].groupby(key)["seconds_per_arm_epoch"].mean()
        frame[column] = [reference[k] / s for k, s in zip(zip(frame["dataset"], frame["hidden"]),
                                                           frame["seconds_per_arm_epoch"])]
    return frame.assign(device=device_name(device))


def block_jobs(cfg_of, settings, name, hidden, spec, data, blas, device) -> list:
    """The measurements of one data set and width, in their order: each a call returning timing rows
    (variant, optimizer, arms, epoch seconds, kernel, FLOP/s of the step's bare GEMMs or NaN)."""
    epochs = settings.epochs

    def suite(variant, optimizer, arms, overrides, seeds):
        return lambda: both_kernels(cfg_of, name, hidden, variant, optimizer, arms, overrides, seeds, epochs, device)

    jobs = []
    for optimizer in ("adam", "ayla"):
        ayla = optimizer == "ayla"
        jobs += [lambda ayla=ayla, optimizer=optimizer: [
                     ("a numpy float64", optimizer, 1,
                      numpy_epochs(data, hidden, ayla, spec.lr, spec.N, epochs), blas, np.nan)],
                 lambda ayla=ayla, optimizer=optimizer: [
                     ("b per-sample DataLoader", optimizer, 1,
                      loader_epochs(data, hidden, ayla, spec.lr, spec.N, epochs, device), "aten", np.nan)],
                 suite("c suite, one arm", optimizer, 1, {optimizer: [f"optimizer={optimizer}"]}, 1)]
    seeds, k = settings.fused_seeds, settings.fused_arms
    jobs.append(suite(f"d suite, 2 arms × {seeds} seeds", "adam+ayla", 2 * seeds,
                      {"adam": ["optimizer=adam"], "ayla": ["optimizer=ayla"]}, seeds))
    sweep = {f"N={n:.2g}": ["optimizer=ayla", f"N1={n}", f"N2={n}"] for n in np.logspace(-6, 0, k)}

    def fused_sweep():
        return [(f"d suite, {k} arms × 1 seed", "ayla", k, *suite_epochs(cfg_of, name, hidden, sweep, 1, epochs,
                                                                          device))]
    jobs.append(fused_sweep)
    if hidden == min(spec.hidden):  # an lr sweep: one population with per-arm lrs, or one per lr
        lrs = {f"lr={lr:g}": ["optimizer=adam", f"lr={lr}"] for lr in settings.lr_sweep}

        def lr_sweep():
            together = suite_epochs(cfg_of, name, hidden, lrs, 1, epochs, device)
            apart = [suite_epochs(cfg_of, name, hidden, {lr: o}, 1, epochs, device, bare=i == 0)  # one shape
                     for i, (lr, o) in enumerate(lrs.items())]
            return [(f"e {len(lrs)}-lr sweep, one population", "adam", len(lrs), *together),
                    (f"e {len(lrs)}-lr sweep, {len(lrs)} populations", "adam", len(lrs),
                     [sum(epoch) for epoch in zip(*(times for times, _, _ in apart))], *apart[0][1:])]
        jobs.append(lr_sweep)
    return jobs


def step_timings(cfgs: list, device, seeds: int = 1, epochs: int = 3, calls: int = 200) -> dict:
    """A training step (experiments/engine/trainer.py's batch loop) of one population, the arms `cfgs` × `seeds` seeds,
    taken apart: each part timed alone on the same batch, the matmuls among them timed as bare GEMMs, and the step
    as the trainer runs it (an epoch's seconds less its evaluation, per batch), in seconds; step_rows makes the
    rows of one or more such rounds."""
    cfg = cfgs[0]
    task = TASKS[cfg.experiment.name](cfg, device, torch.float32)
    arms = [arm_from_config(c, c.optimizer.name) for c in cfgs]
    seed_list = list(range(seeds))
    trained = train(task, arms, seed_list, epochs, log=lambda line: None)
    params, shapes = task.init_params(seed_list, len(arms))
    optimizer, lr = population_update(arms, params, shapes, seeds)
    scale_of = GradientScale(arms, seed_list, device, torch.float32)
    rows = task.train_pool(seed_list)[:, :task.batch_size]
    x, y = task.rows_of(rows)
    inputs = task.inputs(x)
    S, A = seeds, len(arms)

    def losses():
        return mlp.classification_loss(mlp.forward(params, inputs), y, task.loss_kind)

    def backward():
        loss, _ = losses()
        (loss * scale_of(loss.detach())).sum().backward()

    backward()
    loss, correct = losses()

    def step_metrics():  # as the trainer takes them
        return [loss.detach(), scale_of(loss.detach()), lr * grad_norms(params, shapes), correct.to(loss.dtype)]

    with torch.no_grad():
        sums = accumulate([], step_metrics())

    def metrics():
        with torch.no_grad():
            return accumulate(sums, step_metrics())

    with torch.no_grad():  # the step's GEMMs, bare
        gemm_seconds = {part: seconds_per_call(fn, device, calls)
                        for part, fn in step_gemms(S, A, task.sizes, device, task.batch_size).items()}
    batch = seconds_per_call(lambda: task.inputs(task.rows_of(rows)[0]), device, calls)
    parts = {"batch: gather rows, uint8 → float": batch}
    forward = seconds_per_call(lambda: mlp.forward(params, inputs), device, calls)
    loss_and_forward = seconds_per_call(losses, device, calls)
    parts |= {"forward (both layers)": forward,
              "loss and correct count": loss_and_forward - forward,
              "backward (autograd, with the gradient scale)":
                  seconds_per_call(backward, device, calls) - loss_and_forward}
    parts |= {"per-step metrics: ‖g‖ per arm, factor, sums": seconds_per_call(metrics, device, calls),
             "optimizer step": seconds_per_call(optimizer.step, device, calls),
             "zero_grad": seconds_per_call(optimizer.zero_grad, device, calls)}
    batches = task.n_train // task.batch_size
    evaluation = seconds_per_call(lambda: task.evaluate(params), device, calls=3)
    step = (steady(trained.metrics.groupby("epoch")["seconds"].first().tolist()) - evaluation) / batches
    step_gflop = step_gemm_flops(S, A, task.sizes, task.batch_size) / 1e9
    population = "+".join(c.optimizer.name for c in cfgs) + (f" × {seeds} seeds" if seeds > 1 else "")
    return dict(gemms=gemm_seconds, parts=parts, step=step,
                labels=dict(optimizer=population, gemm=kernel_label(cfg), step_gflop=step_gflop))


def step_profiles(cfg_of, settings, device) -> pd.DataFrame:
    """conf/bench.yaml's step_profile: one arm per optimizer at each width, and those optimizers × fused_seeds seeds
    as one population at each fused width, each in `rounds` rounds (in_rounds), then taken apart (step_rows)."""
    where = settings.step_profile

    def cfgs(hidden, optimizers):
        return [cfg_of(where.dataset, hidden, [f"optimizer={o}"]) for o in optimizers]
    profiles = [(hidden, cfgs(hidden, [optimizer]), 1) for hidden in where.hidden for optimizer in where.optimizers]
    profiles += [(hidden, cfgs(hidden, where.optimizers), settings.fused_seeds) for hidden in where.fused_hidden]
    timings = [[] for _ in profiles]
    for k in in_rounds(list(range(len(profiles))), int(settings.get("rounds", 1))):
        _, arms, seeds = profiles[k]
        timings[k].append(step_timings(arms, device, seeds, calls=int(where.get("calls", 200))))
    return pd.DataFrame([dict(dataset=where.dataset, hidden=hidden) | row
                         for (hidden, _, _), rounds in zip(profiles, timings) for row in step_rows(rounds)])


def step_rows(rounds: list[dict]) -> list[dict]:
    """One population's step taken apart (rows: part, microseconds per step, and its labels) from one or more
    rounds of step_timings: each timing the fastest of its rounds (the machine drifts up to 2× within minutes),
    the sums and differences taken after."""
    def fastest(key):
        return {part: min(r[key][part] for r in rounds) for part in rounds[0][key]}
    gemm_seconds, parts, step = fastest("gemms"), fastest("parts"), min(r["step"] for r in rounds)
    rows = [dict(part=f"GEMM, {part}", microseconds=1e6 * t) for part, t in gemm_seconds.items()]
    rows += [dict(part=part, microseconds=1e6 * t) for part, t in parts.items()]
    rows += [dict(part="sum of the parts", microseconds=1e6 * sum(parts.values())),
             dict(part="GEMMs of a step", microseconds=1e6 * sum(gemm_seconds.values())),
             dict(part="step in the trainer (epoch less evaluation, per batch)", microseconds=1e6 * step),
             dict(part="beyond the GEMMs (step − GEMMs)", microseconds=1e6 * (step - sum(gemm_seconds.values())))]
    return [row | rounds[0]["labels"] for row in rows]
