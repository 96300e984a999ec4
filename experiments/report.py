"""results/REPORT.md: each claim of the paper beside our numbers over seeds, with a verdict computed by a rule.

Rules used throughout:
  - "A is better than B" only when their ranges over seeds do not overlap (every seed of A beats every seed of B);
    with one seed this is a plain comparison, and the report says n = 1.
  - A claim made of several checks is "confirmed" when every check passes, "not confirmed" when none does,
    and "partly confirmed" otherwise. A claim with no runs yet is "no data".
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments.io import write_atomic
from experiments.reproduce import CONF, load_figure

CONFIRMED, PARTLY, NOT, NO_DATA = "confirmed", "partly confirmed", "not confirmed", "no data"


@dataclass
class Check:
    text: str        # what is checked, with the rule's numbers
    passed: bool


@dataclass
class Claim:
    title: str
    figures: list[str]
    paper: str
    checks: list[Check] = field(default_factory=list)
    measured: list[str] = field(default_factory=list)  # markdown lines

    @property
    def verdict(self) -> str:
        if not self.checks:
            return NO_DATA
        passed = sum(c.passed for c in self.checks)
        return CONFIRMED if passed == len(self.checks) else NOT if passed == 0 else PARTLY


def at(metrics: pd.DataFrame, arm: str, epoch: int, column: str, hidden=None) -> pd.Series:
    """Per-seed values of one column at one epoch (the last epoch an arm reached if it diverged earlier)."""
    part = metrics[metrics["arm"] == arm]
    if hidden is not None:
        part = part[part["hidden"] == hidden]
    part = part[part["epoch"] <= epoch].sort_values("epoch").groupby("seed").tail(1)
    return part.set_index("seed")[column]


def describe(values: pd.Series, percent: bool = False) -> str:
    scale, unit = (100, " %") if percent else (1, "")
    v = values.to_numpy(dtype=float) * scale
    if len(v) == 1:
        return f"{v[0]:.4g}{unit} (n = 1)"
    return f"{v.mean():.4g} ± {v.std(ddof=1):.2g}{unit} (min–max {v.min():.4g}–{v.max():.4g}, n = {len(v)})"


def apart(a: pd.Series, b: pd.Series, lower_is_better: bool) -> bool:
    """a better than b with non-overlapping seed ranges."""
    return bool(a.max() < b.min()) if lower_is_better else bool(a.min() > b.max())


def claim_polynomial(out: Path) -> Claim:
    claim = Claim(
        "Polynomial: AYLA escapes the saddle that traps SGD", ["fig01", "fig02", "fig03"],
        "SGD drifts to and stays near the saddle x = 0; AYLA passes it and reaches x ≈ 2.25 within about 30 steps, "
        "with small oscillations after (Figs. 1–3).")
    metrics = load_figure(out, "fig02")
    if metrics.empty:
        return claim
    first = metrics[metrics["seed"] == metrics["seed"].min()]
    sgd, ayla = first[first["arm"] == "SGD"], first[first["arm"] == "AYLA"]
    sgd_final = sgd["x"].iloc[-1] - sgd["signed_step"].iloc[-1]  # plain gradient descent: x ← x − lr·g
    near = (ayla["x"] - 2.25).abs() < 0.1
    reached = int(ayla["epoch"][near].iloc[0]) - 1 if near.any() else None  # rows hold x before each step
    after = (ayla["x"][ayla["epoch"] > (reached or 0)] - 2.25).abs().max() if reached is not None else np.inf
    claim.measured += [f"SGD: x after 50 steps = {sgd_final:.4f}",
                       f"AYLA: |x − 2.25| < 0.1 first after {reached} steps; largest |x − 2.25| after that = "
                       f"{after:.3f}; x after 50 steps = {ayla['x'].iloc[-1] - ayla['signed_step'].iloc[-1]:.4f}",
                       "(no randomness: every seed gives the same path)"]
    claim.checks += [Check("SGD ends within 0.1 of the saddle (|x₅₀| < 0.1)", abs(sgd_final) < 0.1),
                     Check("AYLA gets within 0.1 of 2.25 in at most 30 steps", reached is not None and reached <= 30),
                     Check("AYLA stays within 0.1 of 2.25 after that (small oscillations)", after < 0.1)]
    return claim


def claim_curvefit(out: Path) -> Claim:
    paper = {"AYLA N1=0.2": 0.103, "AYLA N1=0.4": 0.109, "AYLA N1=0.6": 0.113, "AYLA N1=0.8": 0.119}
    claim = Claim(
        "Curve fit: AYLA is ahead at 100 epochs, level at 300", ["fig04", "fig05"],
        "Training loss at 100 epochs: Adam 0.13; AYLA 0.103 / 0.109 / 0.113 / 0.119 for N1 = 0.2 / 0.4 / 0.6 / 0.8 "
        "(N2 = 1), all better than Adam. At 300 epochs both ≈ 0.03 (Figs. 4–5).")
    metrics = load_figure(out, "fig05")
    if metrics.empty:
        return claim
    adam = at(metrics, "Adam", 100, "train_loss")
    claim.measured.append("| arm | paper at 100 | ours at 100 | seed 42 at 100 | ours at 300 |")
    claim.measured.append("| --- | --- | --- | --- | --- |")
    for arm in ["Adam", *paper]:
        hundred, three = at(metrics, arm, 100, "train_loss"), at(metrics, arm, 300, "train_loss")
        seed42 = f"{hundred[42]:.4f}" if 42 in hundred.index else "–"
        claim.measured.append(f"| {arm} | {paper.get(arm, 0.13)} | {describe(hundred)} | {seed42} | "
                              f"{describe(three)} |")
        if arm != "Adam":
            claim.checks.append(Check(f"{arm} below Adam at 100 epochs (ranges apart)", apart(hundred, adam, True)))
    finals = {arm: at(metrics, arm, 300, "train_loss").mean() for arm in ["Adam", *paper]}
    claim.checks.append(Check("every arm's mean loss at 300 epochs within 0.01 of 0.03",
                              all(abs(v - 0.03) <= 0.01 for v in finals.values())))
    return claim


def classifier_rows(metrics: pd.DataFrame, figure: str) -> list[str]:
    """Final-epoch numbers of every arm and hidden size."""
    rows = []
    for hidden in sorted(metrics["hidden"].unique()):
        for arm in dict.fromkeys(metrics["arm"]):
            last = int(metrics["epoch"].max())
            part = metrics[(metrics["arm"] == arm) & (metrics["hidden"] == hidden)]
            diverged = int(part["diverged"].sum())
            rows.append(f"| {figure} | {hidden} | {arm} | {describe(at(metrics, arm, last, 'train_loss', hidden))} | "
                        f"{describe(at(metrics, arm, last, 'test_acc', hidden), True)} | {diverged} |")
    return rows


def gap(metrics, epoch, column, hidden) -> float:
    """Mean over seeds of AYLA minus Adam."""
    return float(at(metrics, "AYLA", epoch, column, hidden).mean() - at(metrics, "Adam", epoch, column, hidden).mean())


def claim_mnist_low_lr(out: Path) -> Claim:
    claim = Claim(
        "MNIST at lr 1e-4: AYLA ahead early, most for the small network", ["fig06"],
        "N1 = N2 = 0.1, lr = 1e-4: AYLA ahead of Adam in training loss and accuracy, most for H = 8, mostly in the "
        "early epochs (Fig. 6).")
    metrics = load_figure(out, "fig06")
    if metrics.empty:
        return claim
    small, large = sorted(metrics["hidden"].unique())
    early, last = 5, int(metrics["epoch"].max())
    for hidden in (small, large):
        for column, lower in (("train_loss", True), ("train_acc", False)):
            a, b = at(metrics, "AYLA", early, column, hidden), at(metrics, "Adam", early, column, hidden)
            claim.measured.append(f"H = {hidden}, epoch {early}, {column}: AYLA {describe(a, not lower)}, "
                                  f"Adam {describe(b, not lower)}")
            claim.checks.append(Check(f"H = {hidden}: AYLA's {column} better than Adam's at epoch {early} "
                                      "(ranges apart)", apart(a, b, lower)))
    small_gap, large_gap = gap(metrics, early, "train_acc", small), gap(metrics, early, "train_acc", large)
    late_gap = gap(metrics, last, "train_acc", small)
    claim.measured.append(f"AYLA − Adam train accuracy: H = {small}: {100 * small_gap:+.2f} points at epoch "
                          f"{early}, {100 * late_gap:+.2f} at epoch {last}; H = {large}: {100 * large_gap:+.2f} "
                          f"at epoch {early}")
    claim.checks += [Check(f"the accuracy gain at epoch {early} is larger for H = {small} than for H = {large}",
                           small_gap > large_gap),
                     Check(f"for H = {small} the gain is larger at epoch {early} than at epoch {last}",
                           small_gap > late_gap)]
    return claim


def claim_mnist_high_lr(out: Path) -> Claim:
    claim = Claim(
        "MNIST at lr 0.1: AYLA ≈ 90 % / 95 %, Adam stagnates", ["fig07"],
        "N1 = N2 = 1e-6, lr = 0.1: AYLA reaches about 90 % (H = 8) and 95 % (H = 256) accuracy; Adam shows signs "
        "of stagnation and fails to reach similar levels (Fig. 7).")
    metrics = load_figure(out, "fig07")
    if metrics.empty:
        return claim
    last = int(metrics["epoch"].max())
    for hidden, target in zip(sorted(metrics["hidden"].unique()), (0.90, 0.95)):
        ayla, adam = at(metrics, "AYLA", last, "test_acc", hidden), at(metrics, "Adam", last, "test_acc", hidden)
        claim.measured.append(f"H = {hidden}, epoch {last}, test accuracy: AYLA {describe(ayla, True)}, "
                              f"Adam {describe(adam, True)}")
        claim.checks += [Check(f"H = {hidden}: AYLA's mean test accuracy within 3 points of {target:.0%}",
                               abs(ayla.mean() - target) <= 0.03),
                         Check(f"H = {hidden}: Adam's test accuracy below AYLA's (ranges apart)",
                               apart(ayla, adam, False))]
    return claim


def claim_cifar(out: Path) -> Claim:
    claim = Claim("CIFAR-100: AYLA converges faster and ends better; Adam stuck at lr 0.1",
                  ["fig08", "fig09", "fig10"],
                  "Figs. 8–10 (N = 1.5, lr 1e-4; N = 1e-6, lr 0.01; N = 1e-7, lr 0.1): AYLA converges faster and "
                  "ends with better accuracy and loss than Adam; at lr 0.1 Adam gets stuck.")
    for figure in claim.figures:
        metrics = load_figure(out, figure)
        if metrics.empty:
            continue
        last, early = int(metrics["epoch"].max()), 10
        for hidden in sorted(metrics["hidden"].unique()):
            ayla, adam = at(metrics, "AYLA", last, "test_acc", hidden), at(metrics, "Adam", last, "test_acc", hidden)
            ayla_early = at(metrics, "AYLA", early, "train_loss", hidden)
            adam_early = at(metrics, "Adam", early, "train_loss", hidden)
            claim.measured.append(f"{figure}, H = {hidden}: final test accuracy AYLA {describe(ayla, True)}, Adam "
                                  f"{describe(adam, True)}; train loss at epoch {early}: AYLA "
                                  f"{describe(ayla_early)}, Adam {describe(adam_early)}")
            claim.checks += [Check(f"{figure} H = {hidden}: AYLA ends with the higher test accuracy (ranges apart)",
                                   apart(ayla, adam, False)),
                             Check(f"{figure} H = {hidden}: AYLA's train loss lower at epoch {early} (ranges apart)",
                                   apart(ayla_early, adam_early, True))]
            if figure == "fig10":
                stuck = at(metrics, "Adam", last, "train_acc", hidden)
                claim.checks.append(Check(f"fig10 H = {hidden}: Adam stuck (final train accuracy < 2 %, twice "
                                          "chance)", bool(stuck.mean() < 0.02)))
    return claim


def rule_lines() -> list[str]:
    """The rules of this module's docstring, as markdown bullets."""
    text = __doc__.split("Rules used throughout:")[1]
    return ["- " + " ".join(item.split()) for item in text.split("  - ") if item.strip()]


CLAIMS = (claim_polynomial, claim_curvefit, claim_mnist_low_lr, claim_mnist_high_lr, claim_cifar)


def provenance_summary(out: Path) -> dict:
    """Code versions, hardware and training time of every run folder under out (quick runs aside).

    Fused populations record their wall time once in each seed's config.yaml; a single run (a tuning trial)
    has only its epochs' seconds.
    """
    records = {p: OmegaConf.load(p) for p in sorted(Path(out).rglob("config.yaml")) if not any(
               part == "quick" or part.startswith(".") for part in p.relative_to(out).parts)}  # not Hydra's .hydra/
    populations, single = {}, 0.0
    for path, record in records.items():
        if "population" in record:
            populations[(path.parent.parent, tuple(record.population.seeds), path.parent.name.split("seed")[0])] = \
                record.population.wall_seconds
        elif (path.parent / "metrics.csv").exists():
            single += float(pd.read_csv(path.parent / "metrics.csv")["seconds"].sum())
    values = list(records.values())
    return {"runs": len(values),
            "commits": sorted({f"{r.provenance.commit}{' (dirty)' if r.provenance.dirty else ''}" for r in values}),
            "torch": sorted({r.provenance.torch for r in values}),
            "devices": sorted({r.provenance.device_name for r in values}),
            "python": sorted({r.provenance.python for r in values}),
            "train_seconds": sum(populations.values()) + single, "populations": len(populations)}


def bench_section(out: Path) -> list[str]:
    """The benchmark table (make bench), if it has been run, with each target and the ratio it reached."""
    path = Path(out) / "bench.csv"
    if not path.exists():
        return []
    bench = pd.read_csv(path)
    lines = ["## Speed (make bench)", "",
             f"One process, {bench['device'].iloc[0]}, fp32 GEMM peak {bench['peak_gflops'].iloc[0]:.0f} GFLOP/s, "
             f"code {bench['commit'].iloc[0][:10]}. Seconds per arm-epoch (MNIST 60,000 / CIFAR-100 50,000 "
             "training images, batch 256, test set evaluated each epoch); speed-ups are per arm-epoch; the GEMM "
             "fraction is the matmul FLOPs of an epoch ÷ its time ÷ the peak.", "",
             "| data | H | variant | optimizer | s / arm-epoch | × vs numpy | × vs DataLoader | GEMM peak |",
             "|" + " --- |" * 8]
    for r in bench.itertuples():
        lines.append(f"| {r.dataset} | {r.hidden} | {r.variant} | {r.optimizer} | {r.seconds_per_arm_epoch:.3f} | "
                     f"{r.speedup_vs_numpy:.2f} | {r.speedup_vs_loader:.2f} | {r.gemm_fraction:.0%} |")
    return lines + [""]


def diverged_runs(out: Path, figures: list[str]) -> list[str]:
    """`AYLA seed 42 at epoch 3 (fig02)` for every arm that diverged in these figures' runs."""
    found = []
    for figure in figures:
        metrics = load_figure(out, figure)
        if not metrics.empty:
            rows = metrics[metrics["diverged"]]
            found += [f"{r.arm} seed {r.seed} at epoch {r.epoch}"
                      + (f", H = {r.hidden:g}" if pd.notna(r.hidden) else "") + f" ({figure})"
                      for r in rows.itertuples()]
    return found


def claim_section(claim: Claim, out: Path) -> list[str]:
    lines = [f"### {claim.title} — **{claim.verdict}**", "", f"*Paper ({', '.join(claim.figures)}):* {claim.paper}",
             ""]
    diverged = diverged_runs(out, claim.figures)
    if diverged:
        lines += [f"*Diverged: {'; '.join(diverged)}.* Such an arm stops at that epoch; its curve ends there.", ""]
    if claim.measured:
        lines += ["*Measured:*", ""] + [line if line.startswith("|") else f"- {line}" for line in claim.measured]
        lines.append("")
    if claim.checks:
        lines += ["*Checks:*", ""] + [f"- {'✅' if c.passed else '❌'} {c.text}" for c in claim.checks] + [""]
    lines += [f"![{f}](figures/{f}.png)" for f in claim.figures] + [""]
    return lines


def final_table(out: Path) -> list[str]:
    lines = ["| figure | H | arm | final train loss | final test accuracy | diverged seeds |",
             "| --- | --- | --- | --- | --- | --- |"]
    for figure in ("fig06", "fig07", "fig08", "fig09", "fig10"):
        metrics = load_figure(out, figure)
        if not metrics.empty:
            lines += classifier_rows(metrics, figure)
    return lines


def figures_not_run(out: Path) -> list[str]:
    """The figures of conf/reproduce.yaml, and their ablations, that have no complete run under `out` yet."""
    names = []
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        preset = OmegaConf.load(CONF / "figure" / f"{figure}.yaml").figure
        names += [figure, f"{figure}_ablation"] if "ablation" in preset else [figure]
    return [name for name in names if not any((Path(out) / name).glob("*/metrics.csv"))]


def build_report(out: Path, wall_seconds: float | None = None, extra_sections: list[str] = ()) -> str:
    claims = [make(out) for make in CLAIMS]
    info = provenance_summary(out)
    lines = ["# AYLA reproduction report", "",
             "Generated by `make reproduce` (scripts/reproduce.py) from the CSVs under this folder; every number "
             "below is computed from them by experiments/report.py.", "",
             "## Verdicts", "", "| claim | verdict |", "| --- | --- |"]
    lines += [f"| {c.title} | {c.verdict} |" for c in claims]
    lines += ["", "Rules:", "", *rule_lines(), "",
              "## How this was produced", "",
              f"- {info['runs']} run folders (one per figure, hidden size and seed), {info['populations']} fused "
              f"training populations, {info['train_seconds'] / 60:.1f} minutes of training in all",
              f"- code: commit {', '.join(info['commits'])}",
              f"- hardware: {'; '.join(info['devices'])}",
              f"- software: Python {', '.join(info['python'])}, torch {', '.join(info['torch'])}",
              "- data: real MNIST and CIFAR-100 from the suite's array format. The CIFAR-100 copy (see its "
              "README) was rebuilt from lossless public copies (pixels from zeruishao/FedLoRE, split and file "
              "names from SemicolonStruggles/CIFAR-100-JPG), sorted by label, matching the published channel "
              "statistics; it is not byte-identical to the official pickles."]
    if missing := figures_not_run(out):
        lines.append(f"- not run yet: {', '.join(missing)} (the run stopped before them; `make reproduce` resumes "
                     "and adds them)")
    if wall_seconds is not None:
        lines.append(f"- this invocation of `make reproduce` took {wall_seconds / 60:.1f} minutes of wall time "
                     "(runs already complete are skipped, so a resumed run takes less)")
    lines += ["", "## The claims", ""]
    for claim in claims:
        lines += claim_section(claim, out)
    lines += ["## Final numbers of the classifier figures", ""] + final_table(out) + [""]
    lines += list(extra_sections) + bench_section(out)
    return "\n".join(lines) + "\n"


README_START, README_END = "<!-- results: generated by `make figures` from results/ -->", "<!-- /results -->"


def readme_results(out: Path, fair_lines: list[str] = ()) -> list[str]:
    """The README's results block: verdicts, the fair comparison's conclusions, speed, the figures."""
    claims = [make(out) for make in CLAIMS]
    info = provenance_summary(out)
    lines = [f"From {info['runs']} run folders under `results/` ({info['train_seconds'] / 60:.0f} minutes of "
             f"training on {'; '.join(info['devices']) or 'no machine yet'}); details, rules and every number in "
             "[results/REPORT.md](results/REPORT.md).", "", "| the paper's claim | our verdict |", "| --- | --- |"]
    lines += [f"| {c.title} | {c.verdict} |" for c in claims] + [""]
    lines += [line for line in fair_lines if line.startswith(("### ", "- "))]
    lines += [""] + bench_section(out)[3:]
    figures = sorted(p.name for p in (Path(out) / "figures").glob("fig*.png"))
    lines += [f"![{name[:-4]}](results/figures/{name})" for name in figures]
    return lines


def update_readme(readme: Path, out: Path, fair_lines: list[str] = ()) -> bool:
    """Replace the README's generated results block (between its markers); False if it has none."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = "\n".join([README_START, *readme_results(out, fair_lines), README_END])
    write_atomic(readme, head + block + tail)
    return True


SETTING_COLUMNS = ("experiment", "arm", "optimizer", "base", "ayla", "N1", "N2", "lr", "eps", "momentum", "grad_scale",
                   "hidden", "batch_size", "loss", "epoch")
METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "factor", "step_size")


def summarize_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per setting and epoch: mean, std, min and max over seeds of every metric, and the seed count."""
    keys = [c for c in SETTING_COLUMNS if c in frame.columns]
    values = [c for c in METRIC_COLUMNS if c in frame.columns]
    grouped = frame.groupby(keys, dropna=False, sort=True)
    summary = grouped[values].agg(["mean", "std", "min", "max"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary.assign(seeds=grouped["seed"].nunique()).reset_index()
