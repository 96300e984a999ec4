"""results/BENCH.md: how fast the suite trains (`make bench`'s CSVs) and how long a whole reproduction took, kept
apart from REPORT.md, whose numbers do not depend on speed."""

from pathlib import Path

import pandas as pd

from experiments.analysis.compare import render_times, wall_times
from experiments.presets import load_settings
from experiments.sweeps import sweeps_of, tuning_folder


def bench_section(path: Path) -> list[str]:
    """The benchmark table of `path` (make bench's CSV), if it has been run, with each target and the ratio it
    reached, and where a step goes (the `<name>_steps.csv` beside it)."""
    path = Path(path)
    if not path.exists():
        return []
    bench = pd.read_csv(path)
    if "gemm" not in bench:  # a benchmark from before the GEMM kernel choice: everything ran on aten
        bench = bench.assign(gemm="aten", peak_kernel="aten (torch's @ only)")
    first = bench.iloc[0]
    kernels = [c[5:-7] for c in bench.columns if c.startswith("peak_") and c.endswith("_gflops")
               and c != "peak_gflops"]
    rates = ", ".join(f"{k} {first[f'peak_{k}_gflops']:.0f}" for k in kernels)
    lines = ["## Speed (make bench)", "",
             f"One process, {first['device']}, code {first['commit'][:10]}. The real fp32 GEMM peak is the best "
             f"2048² product among the kernels measured in the same run, at its start and end ({rates} GFLOP/s"
             f"{'' if kernels else ', torch only'}): {first['peak_gflops']:.0f} GFLOP/s ({first['peak_kernel']}). "
             "Seconds per arm-epoch (MNIST 60,000 / CIFAR-100 50,000 training images, batch 256, test set "
             "evaluated each epoch; each row the fastest steady epoch over the rounds of conf/bench.yaml, as this "
             "machine's speed drifts); speed-ups are per arm-epoch; the GEMM fraction is the matmul FLOPs of an "
             "epoch ÷ its time ÷ the real peak. The kernel column says which GEMM kernel the row ran on (numpy: "
             "its BLAS, from threadpoolctl). Bare GEMMs: the matmuls of the row's training step alone, timed on its "
             "kernels at its shapes, against the same peak: the most that row could reach (the test-set evaluation "
             "aside) if everything else in a step took no time (fp32 rows of the suite).", "",
             "| data | H | variant | optimizer | kernel | s / arm-epoch | × vs numpy | × vs DataLoader | GEMM peak "
             "| bare GEMMs |", "|" + " --- |" * 10]
    if "gemm_ceiling" not in bench:  # a benchmark from before the bare GEMMs were timed per row
        bench = bench.assign(gemm_ceiling=float("nan"))
    for r in bench.itertuples():
        lines.append(f"| {r.dataset} | {r.hidden} | {r.variant} | {r.optimizer} | {r.gemm} | "
                     f"{r.seconds_per_arm_epoch:.3f} | {r.speedup_vs_numpy:.2f} | {r.speedup_vs_loader:.2f} | "
                     f"{r.gemm_fraction:.0%} | {percent(r.gemm_ceiling)} |")
    return lines + [""] + bench_targets(bench) + step_lines(path.with_name(f"{path.stem}_steps.csv"))


def step_lines(path: Path) -> list[str]:
    """A training step taken apart (make bench writes bench_steps.csv beside bench.csv), per width: one arm's per
    optimizer, and a fused population's where a column names its seeds; with the rate its bare GEMMs reach, the
    most that cutting everything else could give."""
    if not path.exists():
        return []
    lines = []
    for (dataset, hidden), steps in pd.read_csv(path).groupby(["dataset", "hidden"], sort=False):
        table = steps.pivot_table(index="part", columns="optimizer", values="microseconds", sort=False)
        kernels = ", ".join(f"{o}: {k}" for o, k in steps.groupby("optimizer", sort=False)["gemm"].first().items())
        fused = [o for o in table.columns if "seeds" in o]
        whose = "one arm's step" + (f"; {', '.join(fused)}: that population's whole step, every arm and seed at once"
                                    if fused else "")
        lines += [f"Where a step goes ({dataset}, H = {hidden}, batch 256; {whose}; kernels {kernels}): each part "
                  "timed alone on one batch, the GEMMs among them timed bare, and the step as the trainer ran it (an "
                  "epoch less its evaluation, per batch), in microseconds.", "",
                  "| part | " + " | ".join(table.columns) + " |", "|" + " --- |" * (1 + len(table.columns))]
        lines += [f"| {part} | " + " | ".join(f"{v:.0f}" for v in row) + " |" for part, row in table.iterrows()]
        gap = table.loc["step in the trainer (epoch less evaluation, per batch)"] - table.loc["sum of the parts"]
        lines.append("| the trainer's loop beyond its parts timed alone (step − sum of the parts) | "
                     + " | ".join(f"{v:.0f}" for v in gap) + " |")
        if "step_gflop" in steps and (bench := path.with_name(path.name.replace("_steps.csv", ".csv"))).exists():
            gflop = steps.groupby("optimizer", sort=False)["step_gflop"].first()
            lines += ["", gemm_ceiling(pd.read_csv(bench)["peak_gflops"].iloc[0], gflop, table.loc["GEMMs of a step"])]
        lines.append("")
    return lines


def gemm_ceiling(peak_gflops: float, step_gflop: pd.Series, gemm_microseconds: pd.Series) -> str:
    """`The bare GEMMs of one such step run at adam 80 %, ayla 79 % of the real peak ...`: each column's matmul
    FLOPs per step over its bare GEMMs' time, against the benchmark's real peak."""
    rates = ", ".join(f"{o} {step_gflop[o] / (us * 1e-6) / peak_gflops:.0%}" for o, us in gemm_microseconds.items())
    return (f"The bare GEMMs of one such step run at {rates} of the real peak: the most a run of that column at "
            "this width could reach (the test-set evaluation aside) if everything else in a step took no time.")


def percent(fraction: float) -> str:
    """`57%`, or `–` where nothing was measured."""
    return "–" if pd.isna(fraction) else f"{fraction:.0%}"


def bench_targets(bench: pd.DataFrame) -> list[str]:
    """The speed targets (issue: the real CPU limit), each with the ratio this benchmark reached (fastest kernel)
    and, where the benchmark timed it, the ceiling that row's bare GEMMs set."""
    fp32 = bench[bench["gemm"] != "bfloat16"]  # the targets are fp32's; bf16's GEMMs run on another peak
    if "gemm_ceiling" not in fp32:
        fp32 = fp32.assign(gemm_ceiling=float("nan"))

    def best(dataset, hidden, prefix, column="gemm_fraction"):
        rows = fp32[(fp32["dataset"] == dataset) & (fp32["hidden"] == hidden)
                    & fp32["variant"].str.startswith(prefix) & (fp32["variant"] != "d suite, 10 arms × 1 seed")]
        return rows.loc[rows[column].idxmax()] if rows[column].notna().any() else None

    def reached(row, speedup=False) -> str:
        """`57% (its bare GEMMs: 86%)`; as a speed-up, the bare GEMMs' time in place of the epoch's: the ratios
        scale as the rates do."""
        if row is None:
            return "nan"
        value, limit = row["gemm_fraction"], row["gemm_ceiling"]
        if speedup:
            value, limit = row["speedup_vs_numpy"], row["speedup_vs_numpy"] * limit / value
        text = f"{value:.2f}×" if speedup else f"{value:.0%}"
        return text + ("" if pd.isna(limit) else f" (its bare GEMMs alone: {limit:.2f}×)" if speedup
                       else f" (its bare GEMMs: {limit:.0%})")
    fused = fp32[fp32["variant"].str.startswith("d suite") & (fp32["hidden"] >= 128)]
    lines = ["| target | reached |", "| --- | --- |",
             f"| one arm, MNIST H = 256: ≥ 60 % of the real fp32 peak | {reached(best('mnist', 256, 'c suite'))} |",
             "| fused populations at H ≥ 128: ≥ 80 % of the real peak | "
             + ", ".join(f"{r['dataset']} H = {r['hidden']} {r['variant'][8:]} ({r['gemm']}): {reached(r)}"
                         for _, r in fused.iterrows()) + " |",
             f"| one arm, MNIST H = 8: ≥ 1.5× the NumPy yardstick | "
             f"{reached(best('mnist', 8, 'c suite', 'speedup_vs_numpy'), speedup=True)} |"]
    bf16 = bench[(bench["gemm"] == "bfloat16") & bench["variant"].str.startswith("d suite") & (bench["hidden"] >= 128)]
    if len(bf16):  # no target: the opt-in, its matmul FLOPs against the fp32 peak
        lines.append("| (no target) opt-in bfloat16, fused populations at H ≥ 128, against the fp32 peak | "
                     + ", ".join(f"{r.dataset} H = {r.hidden} {r.variant[8:]}: {r.gemm_fraction:.0%}"
                                 for r in bf16.itertuples()) + " |")
    return lines + [""]


def reproduce_time_section(out: Path) -> list[str]:
    """`make reproduce`'s wall time before and after (scripts/compare.py --times), where it has been measured."""
    path = Path(out) / "reproduce_times.csv"
    if not path.exists():
        return []
    times = pd.read_csv(path, dtype={"hidden": str}, keep_default_na=False,
                        na_values={"after_seconds": [""], "after_seeds": [""]})
    return ["## Reproduction wall time (before and after)", "",
            "Wall seconds of each run set's populations as recorded in its runs' config.yaml: before, the committed "
            "runs (trained on aten with autograd, the one path today, at the commits named); after, a rerun of "
            "`make reproduce` with `GEMM=auto` (timing-picked kernels and a hand-written backward pass, a path "
            "removed since: docs/performance.md), compared by "
            "`python scripts/compare.py --out <rerun> --times results/reproduce_times.csv`. Both on the machine "
            "named above; its speed drifts by up to 2× from one hour to the next, so single rows are rough.", "",
            *render_times(times), ""]


def tuning_seconds(folder: Path) -> tuple[float, int]:
    """The wall seconds of a tuning folder's populations (each trial's epochs' seconds ÷ the trials fused with it,
    summed over its trials) and its trial count."""
    seconds, trials = 0.0, 0
    for csv in Path(folder).glob("*/metrics.csv"):
        trial = pd.read_csv(csv, usecols=lambda c: c in ("seconds", "arms_fused"))
        seconds += float((trial["seconds"] / trial.get("arms_fused", 1)).sum())
        trials += 1
    return seconds, trials


def fair_time_section(out: Path) -> list[str]:
    """`make fair`'s wall time per comparison and hidden size: its tuning (every sweep's trials), its evaluation
    populations and its controls, from the seconds the runs recorded; and the whole protocol's total."""
    settings = load_settings("fair")
    times = wall_times(out)
    rows, total = [], 0.0
    for comparison in settings.comparisons.values():
        for hidden in comparison.hidden:
            tuned = [tuning_seconds(tuning_folder(out, sweep, hidden)) for sweep in sweeps_of(comparison)]
            key = "" if hidden is None else str(hidden)
            evaluation, controls = (float(times[(times["run_set"] == name) & (times["hidden"] == key)]["seconds"].sum())
                                    for name in (comparison.runs, f"{comparison.runs}_controls"))
            tuning = sum(seconds for seconds, _ in tuned)
            if not tuning and not evaluation:
                continue
            total += tuning + evaluation + controls
            parts = (tuning, evaluation, controls, tuning + evaluation + controls)
            minutes = " | ".join(f"{m / 60:.1f}" for m in parts)
            rows.append(f"| {comparison.title} | {hidden if hidden is not None else '–'} | "
                        f"{sum(n for _, n in tuned)} | {minutes} |")
    if not rows:
        return []
    return ["## The fair comparison's wall time (make fair)", "",
            "Minutes of training as the runs recorded them (tuning: each trial's epoch seconds ÷ the trials fused "
            "with it; evaluation and controls: each population's wall seconds), on the machine REPORT.md names; "
            "loading data and writing files come on top.", "",
            "| comparison | H | tuning trials | tuning | evaluation | controls | total |",
            "| --- | --- | --- | --- | --- | --- | --- |", *rows,
            f"| all | | | | | | {total / 60:.1f} |", ""]


def build_bench(out: Path, bench: Path | None = None) -> str | None:
    """BENCH.md's text from `bench` (default `<out>/bench.csv`, with its `_steps.csv`) and
    `<out>/reproduce_times.csv`; None when neither has been measured."""
    sections = (bench_section(bench or Path(out) / "bench.csv") + fair_time_section(out)
                + reproduce_time_section(out))
    if not sections:
        return None
    return "\n".join(["# Speed of the suite", "",
                      "Measured by `make bench` (scripts/bench.py) and, for whole reproductions, by "
                      "`scripts/compare.py --times`; see docs/performance.md for what each row means. Speed never "
                      "changes a result: REPORT.md's numbers come from the CSVs alone.", "", *sections]) + "\n"
