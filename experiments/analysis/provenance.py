"""Where a results folder's numbers come from: every run folder's config.yaml read once (its code fingerprint,
commit, machine and training time), and `<out>/runs.csv`, one row per run with its final numbers, whether it
collapsed, stalled or diverged, and its fingerprint."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from experiments import CONF
from experiments.analysis import stats
from experiments.analysis.compare import populations, run_configs
from experiments.fingerprint import experiment_of, stamped
from experiments.io import write_csv
from experiments.presets import source_of
from experiments.runs import load_figure

UNKNOWN = "unknown"  # a run recorded at a commit this clone does not have


@dataclass
class Provenance:
    """What the report's "How this was produced" states, from every run folder's config.yaml (quick runs aside)."""

    runs: int = 0
    populations: int = 0
    train_seconds: float = 0.0
    commits: Counter = field(default_factory=Counter)  # short commit (" (dirty)") → run folders trained there
    torch: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    python: list[str] = field(default_factory=list)
    prints: dict[Path, str | None] = field(default_factory=dict)  # run folder → its fingerprint (None: dirty)
    experiments: dict[Path, str | None] = field(default_factory=dict)  # run folder → its experiment

    @property
    def versions(self) -> dict[str, set[str | None]]:
        """Each experiment's fingerprints over its run folders (None: a dirty tree's run)."""
        found: dict[str, set[str | None]] = {}
        for run, value in self.prints.items():
            found.setdefault(str(self.experiments.get(run)), set()).add(value)
        return found

    def code_line(self) -> str:
        """One line: each experiment at one code version, or the experiments whose runs mix several."""
        versions = self.versions
        mixed = sorted(e for e, v in versions.items() if len(v) > 1 or None in v or UNKNOWN in v)
        if not versions:
            return "no runs yet"
        if not mixed:
            return ("one code version per experiment: " + ", ".join(f"{e} {next(iter(v))}"
                                                                    for e, v in sorted(versions.items()))
                    + " (each experiment's runs carry one fingerprint, whichever commit trained them)")
        return f"several code versions mixed in {', '.join(mixed)} (their runs carry the fingerprints below)"

    @property
    def fingerprints(self) -> Counter:
        """How many run folders carry each fingerprint, as "<experiment> <fingerprint>", named for the report."""
        return Counter(f"{self.experiments.get(run)} " + ("none (a dirty tree)" if p is None else
                                                          "unknown (commit not in this clone)" if p == UNKNOWN else p)
                       for run, p in self.prints.items())


def fingerprint_of_record(record: dict) -> str | None:
    """A run's fingerprint (experiments/fingerprint.stamped), UNKNOWN when its commit is not in this clone."""
    try:
        return stamped(record)
    except ValueError:
        return UNKNOWN


def provenance_summary(out: Path) -> Provenance:
    """Code versions, hardware and training time of every run folder under out (quick runs aside).

    Fused populations record their wall time once in each seed's config.yaml (compare.populations counts each
    once); a tuning trial has only its epochs' seconds, shared with the trials fused beside it.
    """
    records = run_configs(out)
    single = 0.0
    for path, record in records.items():
        if "population" not in record and (path.parent / "metrics.csv").exists():  # a tuning trial
            trial = pd.read_csv(path.parent / "metrics.csv")
            single += float((trial["seconds"] / trial.get("arms_fused", 1)).sum())
    fused = populations(out, records)
    provenance = [record.get("provenance") or {} for record in records.values()]
    return Provenance(
        runs=len(records), populations=len(fused),
        train_seconds=sum(seconds for seconds, _ in fused.values()) + single,
        commits=Counter(f"{str(p.get('commit'))[:7]}{' (dirty)' if p.get('dirty') else ''}" for p in provenance),
        torch=sorted({str(p.get("torch")) for p in provenance}),
        devices=sorted({str(p.get("device_name")) for p in provenance}),
        python=sorted({str(p.get("python")) for p in provenance}),
        prints={path.parent: fingerprint_of_record(dict(record)) for path, record in records.items()},
        experiments={path.parent: experiment_of(record) for path, record in records.items()})


def with_fingerprints(summary: pd.DataFrame, folder: Path, prints: dict[Path, str | None]) -> pd.DataFrame:
    """The run summary with each run's code fingerprint ("none" for a dirty tree's run), matched by hidden size
    and seed from the run folder's name (H<h>_seed<s>); `prints`: Provenance.prints."""
    if summary.empty:
        return summary
    found = {}
    for run, value in prints.items():
        if run.parent == Path(folder) and "seed" in run.name:
            hidden, _, seed = run.name.rpartition("seed")
            found[(hidden.strip("H_") or None, int(seed))] = value or "none"
    keys = zip(summary["hidden"] if "hidden" in summary else [None] * len(summary), summary["seed"])
    return summary.assign(fingerprint=[found.get((None if pd.isna(h) else str(int(h)), int(s)), "none")
                                       for h, s in keys])


def run_sets() -> list[str]:
    """The run sets runs.csv covers: every figure that trains runs of its own and its ablation, then every
    comparison of conf/fair.yaml and its controls."""
    names = []
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        if source_of(figure) == figure:  # a figure drawn from another's runs adds no runs of its own
            names += [figure, f"{figure}_ablation"]
    return names + [name for c in OmegaConf.load(CONF / "fair.yaml").comparisons.values()
                    for name in (c.runs, f"{c.runs}_controls")]


def write_run_summary(out: Path, info: Provenance | None = None) -> Path | None:
    """`<out>/runs.csv`: one row per run of every figure, ablation and tuned arm, with its final numbers, whether
    it collapsed, stalled or diverged, and its fingerprint (written whole)."""
    prints = (info or provenance_summary(out)).prints
    frames = [with_fingerprints(stats.run_summary(load_figure(out, name), name), Path(out) / name, prints)
              for name in run_sets()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    order = ["figure", "experiment", "hidden", "arm", "seed", "epochs", "steps", *stats.SUMMARY_METRICS,
             "first_train_loss", "classes", "collapsed", "stalled", "diverged", "fingerprint"]
    table = table[[c for c in order if c in table.columns]]
    for column in ("hidden", "steps", "classes"):
        if column in table.columns:
            table[column] = table[column].astype("Int64")
    path = Path(out) / "runs.csv"
    write_csv(table, path)
    return path
