"""Time an MNIST and a CIFAR-100 epoch four ways (experiments/perf/bench.py) and write results/bench.csv, and one arm's
training step taken apart into results/bench_steps.csv.

    python scripts/bench.py                # conf/bench.yaml: full data sets, every variant
    python scripts/bench.py --tiny         # small subsets, one epoch: checks that every row runs
"""

import argparse
import os
import sys
from pathlib import Path

# OpenBLAS reads these when NumPy loads it: an environment set up for old OpenBLAS builds (e.g.
# OPENBLAS_CORETYPE=Haswell) would make the NumPy yardstick slower than this CPU allows. This command alone runs
# with both unset (re-executing itself before anything loads OpenBLAS); the kernel it ran is in the CSV.
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(name in os.environ for name in OPENBLAS_VARIABLES):
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARIABLES}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout

from omegaconf import OmegaConf  # noqa: E402

from experiments import CONF  # noqa: E402
from experiments.analysis.speed import build_bench  # noqa: E402
from experiments.engine.config import resolve_device  # noqa: E402
from experiments.errors import AylaError  # noqa: E402
from experiments.io import git_state, write_atomic, write_csv  # noqa: E402
from experiments.perf.bench import run, step_profiles  # noqa: E402
from experiments.presets import compose_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="small subsets and one epoch (CI)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--out", help="CSV path (default: conf/bench.yaml)")
    args = parser.parse_args()
    settings = OmegaConf.load(CONF / "bench.yaml")
    if args.tiny:
        for spec in settings.datasets.values():
            spec.train_rows, spec.test_rows = settings.tiny.train_rows, settings.tiny.test_rows
        for key in ("epochs", "rounds", "fused_seeds", "fused_arms", "lr_sweep", "out"):
            settings[key] = settings.tiny[key]
        settings.step_profile.calls = settings.tiny.step_calls
    try:
        device = resolve_device(args.device)
        root = compose_run(["experiment=mnist"]).data.root

        def cfg_of(name, hidden, arm_overrides):
            spec = settings.datasets[name]
            return compose_run([f"experiment={name}", f"hidden={hidden}", f"lr={spec.lr}", f"N1={spec.N}",
                                f"N2={spec.N}", f"device={device}", f"data.train_subset={spec.train_rows}",
                                f"data.test_subset={spec.test_rows}", *arm_overrides])

        frame = run(cfg_of, settings, root, device)
        steps = step_profiles(cfg_of, settings, device)
    except AylaError as error:
        sys.exit(f"error: {error}")
    commit = git_state()["commit"]
    frame, steps = frame.assign(commit=commit), steps.assign(device=frame["device"].iloc[0], commit=commit)
    out = Path(args.out or settings.out)
    write_csv(frame, out)
    write_csv(steps, out.with_name(f"{out.stem}_steps.csv"))
    write_atomic(out.with_name("BENCH.md"), build_bench(out.parent, out))
    columns = ["dataset", "hidden", "variant", "optimizer", "gemm", "seconds_per_arm_epoch", "speedup_vs_numpy",
               "speedup_vs_loader", "gemm_fraction", "gemm_ceiling"]
    print(frame[columns].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    parts = steps[["optimizer", "gemm", "part", "microseconds"]]
    print(parts.to_string(index=False, float_format=lambda v: f"{v:.0f}"))
    print(f"wrote {out}, {out.with_name(f'{out.stem}_steps.csv')} and {out.with_name('BENCH.md')}")


if __name__ == "__main__":
    main()
