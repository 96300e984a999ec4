"""results/REPORT.md, assembled from small sections that each render one part from the CSVs: the study's answer
on its first screen (analysis/verdict.py), the definitions, the paper's claims beside our numbers with verdicts
computed by rules (analysis/claims.py), provenance, the final numbers, the lr grids (analysis/sensitivity.py), the
controls and variants (analysis/controls.py) and the fair comparisons in detail (analysis/fair.py).

What several sections read (make fair's Holm-corrected rows, the claims, the provenance, the controls' shares) is
computed once per report, in `Study`. The prose that belongs to an experiment or a figure lives in its YAML (a
figure's claim and title, an experiment's `about`, conf/reproduce.yaml's `variants`); the rules' definitions live
here, beside the code that applies them. build_report also writes `<out>/runs.csv`; write_outputs writes the
forest plot, REPORT.md, BENCH.md and, for the committed results, the README's marked block.
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from experiments import CONF, PROJECT
from experiments.analysis import stats, verdict
from experiments.analysis.claims import Check, Claim, at, build_claims, describe, figure_spec
from experiments.analysis.controls import controls_section, paper_controls, variants_section
from experiments.analysis.fair import comparison_figures, fair_section
from experiments.analysis.provenance import Provenance, provenance_summary, write_run_summary
from experiments.analysis.sensitivity import sensitivity_section
from experiments.analysis.speed import build_bench
from experiments.io import write_atomic
from experiments.presets import CONTROL_SETS, load_settings, source_of
from experiments.runs import load_figure

DEFINITIONS = [
    "**train loss, train accuracy**: running means over each epoch's mini-batches, taken while the weights change "
    "during the epoch (what the paper plots); **test** and **validation** (held-out) metrics: the whole set, scored "
    "at the end of each epoch.",
    "**± s**: the sample standard deviation over seeds (n given); **min–max**: the range over seeds. Both describe "
    "the spread and decide nothing.",
    "**Paired difference** A − B: every arm of one seed starts from the same weights and sees the same batches in the "
    "same order, so A and B are compared seed by seed; shown as the mean difference with its **95 % interval** "
    "[low, high] (paired t, scipy.stats.ttest_rel), the seeds A wins (k/n) and n. With one seed there is no interval "
    "and no verdict.",
    "**Primary comparisons** (make fair): each comparison's endpoint declared in conf/fair.yaml before any run, AYLA "
    "− each tuned baseline; their p-values are corrected together, within each family (the paper's experiments; "
    "beyond the paper, its own), by **Holm**'s step-down method (statsmodels' multipletests) at the family's α. "
    "\"AYLA better / worse\" only when Holm rejects; otherwise \"no difference shown\", with the smallest true "
    "difference the seeds would detect (**detectable**: two-sided paired t at α, power 0.8, statsmodels' "
    "TTestPower, times the observed standard deviation of the differences).",
    "**Secondary** comparisons (the controls at AYLA's setting, the area under the curve, the claims' checks, the lr "
    "grids, the controls of the paper figures) are uncorrected, each judged by its own 95 % interval (\"better\" when "
    "it excludes 0).",
    "**Collapsed**: a classifier run that ends at chance (final train loss within "
    f"{100 * stats.CHANCE_LOSS_TOL:g} % of ln C and final train accuracy within ±{100 * stats.CHANCE_ACC_TOL:g} % of "
    "1/C; C = 10 for MNIST, 100 for CIFAR-100) or whose final train loss is not below its first epoch's. **Stalled**: "
    f"not collapsed, but a final accuracy (test, else validation, else train) below {stats.STALL_FACTOR:g} / C. Both "
    "stay in the paired comparisons (a seed is a seed), are counted wherever an arm's seeds are, and are drawn as thin "
    "marked lines, never averaged into a band. **Diverged**: a non-finite loss; the run stops there.",
    "**AUC**: the area under the per-epoch test-accuracy curve divided by the epochs, i.e. its mean over epochs 1…E. "
    "**Time-to-target**: the first epoch whose value reaches the target; a seed that never does is counted (k/n "
    "reach it) and ranks after every epoch in the median (\"> E\" when fewer than half reach it).",
    "**Tuned** arms (make fair): each optimizer tuned over its own two knobs with the same number of trials on the "
    "tuning seed, never an evaluation seed; chosen on data training never sees (classifiers: held-out training rows, "
    "as many as each comparison's training set states; curve fit: a second noise draw at epoch 100; the polynomial "
    "has none: f(x)); retrained on the whole training set over the evaluation seeds.",
    "A claim made of several checks is \"confirmed\" when every check passes, \"not confirmed\" when none does and "
    "\"partly confirmed\" otherwise; \"no data\" without runs. Two verdicts per claim: against the paper's own "
    "baseline (its untuned Adam or SGD at the paper's settings) and against the tuned baseline of make fair.",
]

@dataclass
class Study:
    """What the sections read, computed once per report from the CSVs under `out`."""

    out: Path
    smoke: bool
    rows: list            # verdict.study_rows: make fair's comparisons, the primary family Holm-corrected
    claims: list[Claim]
    info: Provenance
    controls: list[str]   # the controls section (controls_section's lines)
    shares: dict          # the controls' shares of AYLA's gain at the paper's settings, per figure
    wall_seconds: float | None = None


def study(out: Path, smoke: bool = False, wall_seconds: float | None = None) -> Study:
    rows = verdict.study_rows(out)
    controls, shares = controls_section(out)
    return Study(Path(out), smoke, rows, build_claims(out, rows), provenance_summary(out), controls, shares,
                 wall_seconds)


def title(s: Study) -> list[str]:
    return ["# AYLA benchmark report" + (" (smoke test)" if s.smoke else ""), "",
            *([SMOKE_BANNER, ""] if s.smoke else [])]


def answer(s: Study) -> list[str]:
    """The first screen: per experiment AYLA against equally tuned baselines (withheld in a smoke test)."""
    if s.smoke:
        return [f"{WITHHELD}", ""]
    return verdict.first_screen(s.out, paper_controls=paper_controls(s.shares), rows=s.rows)


def origin(s: Study) -> list[str]:
    return [f"Generated by `make reproduce{'-quick' if s.smoke else ''}` / `make fair` from the CSVs under this folder "
            "(experiments/analysis/); runs.csv holds one row per run (final numbers, collapsed, stalled, diverged). "
            "Wall times: [BENCH.md](BENCH.md).", ""]


def definitions(s: Study) -> list[str]:
    return [] if s.smoke else ["## Definitions", "", *[f"- {line}" for line in DEFINITIONS], ""]


def claims_table(s: Study) -> list[str]:
    return ["## The paper's claims", "", *verdict_table(s.claims, s.smoke), ""]


def provenance(s: Study) -> list[str]:
    """How this was produced: run folders, code versions and fingerprints, machines, software, data."""
    info = s.info
    lines = ["## How this was produced", "",
             f"- {info.runs} run folders (one per figure, hidden size and seed), {info.populations} fused "
             f"training populations, {info.train_seconds / 60:.1f} minutes of training in all",
             f"- code: {info.code_line()}",
             "- commits that trained them: " + ", ".join(f"{c} ({n} run folders)"
                                                        for c, n in sorted(info.commits.items())),
             "- code fingerprints per experiment (experiments/fingerprint.py: the sources that turn a run config "
             "into numbers): " + ", ".join(f"{value} ({n} run folders)"
                                           for value, n in sorted(info.fingerprints.items())),
             f"- hardware: {'; '.join(info.devices)}",
             f"- software: Python {', '.join(info.python)}, torch {', '.join(info.torch)}",
             "- data: " + " ".join(data_notes())]
    if missing := figures_not_run(s.out):
        lines.append(f"- not run yet: {', '.join(missing)} (the run stopped before them; `make reproduce` resumes "
                     "and adds them)")
    if s.wall_seconds is not None:
        lines.append(f"- this invocation of `make reproduce` took {s.wall_seconds / 60:.1f} minutes of wall time "
                     "(runs already complete are skipped, so a resumed run takes less)")
    return lines + [""]


def data_notes() -> list[str]:
    """Each experiment preset's `about.data` (conf/experiment/), in file order."""
    notes = []
    for preset in sorted((CONF / "experiment").glob("*.yaml")):
        about = OmegaConf.select(OmegaConf.load(preset), "experiment.about.data")
        if about:
            notes.append(str(about))
    return notes


def claims_detail(s: Study) -> list[str]:
    lines = ["## The claims in detail", ""]
    for claim in s.claims:
        lines += claim_section(claim, s.out, s.smoke)
    return lines


def final_numbers(s: Study) -> list[str]:
    return ["## Final numbers of the classifier figures", "", *final_table(s.out), ""]


def beyond(s: Study) -> list[str]:
    return [] if s.smoke else verdict.beyond_section(s.out, rows=s.rows)


SECTIONS = (title, answer, origin, definitions, claims_table, beyond, provenance, claims_detail, final_numbers,
            lambda s: sensitivity_section(s.out), lambda s: s.controls, lambda s: variants_section(s.out),
            lambda s: fair_section(s.out, s.rows))


def build_report(out: Path, wall_seconds: float | None = None, smoke: bool = False,
                 s: Study | None = None) -> str:
    """REPORT.md's text, SECTIONS in order (`s`: out's Study, when the caller has it; it then carries `smoke` and
    the wall time itself); also writes `<out>/runs.csv`, the per-run table its verdicts are computed from.
    `smoke` (make reproduce-quick): a banner says so and every verdict word and check mark is withheld."""
    s = s or study(out, smoke, wall_seconds)
    write_run_summary(out, s.info)
    return "\n".join(line for section in SECTIONS for line in section(s)) + "\n"


def write_outputs(out: Path, wall_seconds: float | None = None, smoke: bool = False) -> list[Path]:
    """From the CSVs under `out`: the forest plot, BENCH.md (when there is anything to time), REPORT.md and, for the
    committed results, the README's marked block. Returns the figure files drawn."""
    out = Path(out)
    s = study(out, smoke, wall_seconds)
    drawn = verdict.forest_plot(out, rows=s.rows)  # the fair comparisons' paired differences, when make fair ran
    drawn += comparison_figures(out)  # and their curves
    if bench := build_bench(out):  # speed apart from the results
        write_atomic(out / "BENCH.md", bench)
    write_atomic(out / "REPORT.md", build_report(out, s=s))
    if out.resolve() == (PROJECT / "results").resolve() and not smoke:  # a smoke test's numbers never go there
        update_readme(PROJECT / "README.md", out, s)
    return drawn


def diverged_runs(out: Path, figures: list[str]) -> list[str]:
    """`AYLA seed 42 at epoch 3 (fig02)` for every arm that diverged in these figures' runs."""
    found = []
    for figure in dict.fromkeys(map(source_of, figures)):  # figures drawn from the same runs, once
        metrics = load_figure(out, figure)
        if not metrics.empty:
            rows = metrics[metrics["diverged"]]
            found += [f"{r.arm} seed {r.seed} at epoch {r.epoch}"
                      + (f", H = {r.hidden:g}" if pd.notna(r.hidden) else "") + f" ({figure})"
                      for r in rows.itertuples()]
    return found


SMOKE_BANNER = ("> **Smoke test, not a result.** `make reproduce-quick` trains a few epochs on data subsets with "
                "one seed, only to check that the pipeline runs end to end. Its numbers say nothing about AYLA, so "
                "this report gives no verdicts; `make reproduce` (5 seeds, full data) writes the real one.")
WITHHELD = "– (smoke test)"


def mark(check: Check, smoke: bool) -> str:
    return "–" if smoke else "✅" if check.passed else "❌"


def check_table(checks: list[Check], smoke: bool) -> list[str]:
    """One row per check: its mark and its text with the rule's numbers."""
    return ["| | check |", "| --- | --- |", *[f"| {mark(c, smoke)} | {c.text} |" for c in checks], ""]


def claim_section(claim: Claim, out: Path, smoke: bool = False) -> list[str]:
    heading = (f"### {claim.title}" if smoke else f"### {claim.title} — **{claim.verdict}** against the paper's "
               f"baseline; **{claim.tuned_verdict}** against a tuned one")
    lines = [heading, "",
             f"*Paper ({', '.join(claim.figures)}):* {claim.paper}", ""]
    diverged = diverged_runs(out, claim.figures)
    if diverged:
        lines += [f"*Diverged: {'; '.join(diverged)}.* Such an arm stops at that epoch; its curve ends there.", ""]
    if claim.measured:
        lines += ["*Measured:*", ""] + [line if line.startswith("|") or not line else f"- {line}"
                                        for line in claim.measured]
        lines.append("")
    if claim.checks:
        lines += [f"*Checks against the paper's baseline ({claim.baseline}):*", ""] + check_table(claim.checks, smoke)
    if claim.tuned_measured:
        lines += ["*Measured against a tuned baseline:*", ""] + [f"- {line}" for line in claim.tuned_measured] + [""]
    if claim.tuned_checks:
        lines += ["*Checks against a tuned baseline (make fair: AYLA and the baseline each tuned over its own knobs "
                  "with the same budget on the tuning seed, chosen on held-out data as the fair comparisons below "
                  "state, evaluated on other seeds):*", ""] + check_table(claim.tuned_checks, smoke)
    else:
        lines += [f"*Against a tuned baseline:* {claim.tuned_missing}.", ""]
    lines += [f"![{f}](figures/{f}.png)" for f in claim.figures] + [""]
    return lines


def final_table(out: Path) -> list[str]:
    lines = ["| figure | H | arm | final train loss | final test accuracy | collapsed seeds | stalled seeds | "
             "diverged seeds |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for figure in classifier_figures():
        metrics = load_figure(out, figure)
        if not metrics.empty:
            lines += classifier_rows(metrics, figure)
    return lines


def figures_not_run(out: Path) -> list[str]:
    """The figures of conf/reproduce.yaml, and their control sets, with a hidden size that has no run under `out`
    yet (named with that hidden size when only some are missing)."""
    missing = []
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        preset = figure_spec(figure)
        for name in [figure] + [f"{figure}_{c}" for c in CONTROL_SETS if c in preset]:
            absent = [h for h in preset.hidden
                      if not any((Path(out) / source_of(name)).glob(f"{f'H{h}_' if h else ''}seed*/metrics.csv"))]
            if len(absent) == len(preset.hidden):
                missing.append(name)
            elif absent:
                missing.append(f"{name} at H = {', '.join(map(str, absent))}")
    return missing


def classifier_figures(experiment: str | None = None) -> list[str]:
    """The classifier figures of conf/reproduce.yaml (of one experiment: its preset's `override /experiment`)."""
    found = []
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        preset = OmegaConf.load(CONF / "figure" / f"{figure}.yaml")
        uses = [next(iter(d.values())) for d in preset.get("defaults", []) if "override /experiment" in d]
        if preset.figure.kind == "classifier" and experiment in (None, *uses):
            found.append(figure)
    return found


def classifier_rows(metrics: pd.DataFrame, figure: str) -> list[str]:
    """Final-epoch numbers of every arm and hidden size, with its collapsed and diverged seeds."""
    rows = []
    runs = stats.run_summary(metrics, figure)
    last = int(metrics["epoch"].max())
    for hidden in sorted(metrics["hidden"].unique()):
        for arm in dict.fromkeys(metrics["arm"]):
            flags = stats.collapsed_seeds(runs, arm, hidden)
            stalled = stats.collapsed_seeds(runs, arm, hidden, "stalled")
            part = runs[(runs["arm"] == arm) & (runs["hidden"] == hidden)]
            rows.append(f"| {figure} | {hidden} | {arm} | {describe(at(metrics, arm, last, 'train_loss', hidden))} | "
                        f"{describe(at(metrics, arm, last, 'test_acc', hidden), True)} | "
                        f"{int(flags.sum())}/{len(flags)} | {int(stalled.sum())}/{len(stalled)} | "
                        f"{int(part['diverged'].sum())} |")
    return rows


def verdict_table(claims: list[Claim], smoke: bool = False) -> list[str]:
    return ["| claim | against the paper's baseline | against a tuned baseline |", "| --- | --- | --- |",
            *[f"| {c.title} | {WITHHELD if smoke else c.paper_cell()} | {WITHHELD if smoke else c.tuned_cell()} |"
              for c in claims]]


README_START, README_END = "<!-- results: generated by `make figures` from results/ -->", "<!-- /results -->"


def readme_results(s: Study) -> list[str]:
    """The README's results block: the primary comparisons of make fair, the forest plot, the paper's claims."""
    info, rows = s.info, s.rows
    lines = [f"From {info.runs} run folders under `results/` ({info.train_seconds / 60:.0f} minutes of "
             f"training on {'; '.join(info.devices) or 'no machine yet'}). AYLA against Adam and SGD, each tuned "
             "with the same budget over its own knobs on a tuning seed, evaluated on other seeds; AYLA − baseline "
             f"paired by seed, Holm-corrected over {verdict.family_text(rows, load_settings('fair'))}. The answer in "
             "a sentence per experiment, the definitions and every number: [results/REPORT.md](results/REPORT.md).",
             "", *verdict.primary_table(rows), ""]
    settings = load_settings("fair")
    beyond = [(name, c) for name, c in settings.comparisons.items() if verdict.family_of(c) != "paper"]
    if beyond:
        lines += ["Beyond the paper (its own Holm family): "
                  + " ".join(verdict.experiment_sentence(name, c, rows, s.out)[2:] for name, c in beyond), ""]
    if (s.out / "figures" / "forest.png").exists():
        lines += ["![The paired differences](results/figures/forest.png)", ""]
    lines += ["The paper's own claims, against its baselines and against the tuned ones:", "",
              *verdict_table(s.claims)]
    return lines


def update_readme(readme: Path, out: Path, s: Study | None = None) -> bool:
    """Replace the README's generated results block (between its markers) from out's CSVs (`s`: their Study,
    when the caller has it); False if the README has no such block."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = "\n".join([README_START, *readme_results(s or study(out)), README_END])
    write_atomic(readme, head + block + tail)
    return True
