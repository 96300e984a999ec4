"""Does a rerun agree with the committed results? (`make compare OUT=<rerun folder>`)

For every run set present in both folders (a figure, its ablation, the fair comparison's tuned arms), every
hidden size and arm, the final epoch's metrics are compared:
  - seed by seed where both have the seed: "same" when every metric agrees to SAME_RTOL (relative) or
    SAME_ATOL (absolute). The same code, seed and software on the same kind of CPU repeat byte for byte (a
    test checks it); another CPU or BLAS build computes its GEMMs in another order, and the ~1e-7 differences
    grow over thousands of steps, so a rerun elsewhere lands near, not on, our numbers;
  - "within spread" when not the same but the rerun's mean lies inside the 99 % prediction interval that our
    seeds give for the mean of that many new seeds (Student t: our mean ± t(0.995, n−1)·sd·√(1/m + 1/n)), i.e.
    the rerun is as far from our mean as new seeds of the same training would be. A 1-seed rerun of a figure we
    trained 5 seeds at once is such a case: its stacked GEMMs have other shapes, so it matches to rounding only
    where training does not amplify rounding (lr 0.1 on MNIST does);
  - "differs" otherwise. An arm present in only one folder is "missing" and counts as a disagreement only when
    the rerun lacks it.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import yaml

from experiments.runs import aside, load_figure

METRICS = ("train_loss", "test_acc", "test_loss", "x")  # whichever a run set has
SAME_RTOL, SAME_ATOL = 1e-4, 1e-6
AGREEING = ("same", "within spread")


@dataclass
class Row:
    run_set: str
    hidden: str
    arm: str
    seeds: str
    status: str
    detail: str


def run_sets(folder: Path) -> list[str]:
    """Folders holding runs (`<set>/<run>/metrics.csv`), as paths relative to `folder`."""
    found = {f.parent.parent.relative_to(folder) for f in Path(folder).glob("**/*seed*/metrics.csv")}
    return sorted(s.as_posix() for s in found if not aside(s))


def finals(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last epoch of each (hidden, arm, seed), with the metrics this run set has."""
    metrics = metrics.assign(hidden=metrics["hidden"].fillna(-1) if "hidden" in metrics else -1)
    last = metrics.sort_values("epoch").groupby(["hidden", "arm", "seed"], dropna=False).tail(1)
    return last.set_index(["hidden", "arm", "seed"])[[m for m in METRICS if m in last.columns]].sort_index()


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(np.isclose(a, b, rtol=SAME_RTOL, atol=SAME_ATOL, equal_nan=True)))


def compare_arm(ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[str, str]:
    """ours / theirs: one arm's final metrics by seed (committed / rerun)."""
    common = ours.index.intersection(theirs.index)
    if len(common) and close(ours.loc[common].to_numpy(float), theirs.loc[common].to_numpy(float)):
        return "same", f"{len(common)} seed(s) equal to rounding"
    worst = []
    for metric in ours.columns:
        low, high = prediction_interval(ours[metric].to_numpy(float), len(theirs))
        mean = theirs[metric].mean()
        if not (low - SAME_ATOL <= mean <= high + SAME_ATOL) and not (np.isnan(mean) and ours[metric].isna().all()):
            worst.append(f"{metric} {mean:.4g} outside {low:.4g}–{high:.4g}")
    if not worst:
        gap = max(abs(theirs[m].mean() - ours[m].mean()) for m in ours.columns)
        return "within spread", f"largest gap of means {gap:.3g}, inside the 99 % prediction interval"
    return "differs", "; ".join(worst)


def prediction_interval(values: np.ndarray, m: int) -> tuple[float, float]:
    """Where the mean of m new seeds falls with 99 % probability, from our n seeds (Student t); with one seed of
    ours there is no spread to go by, so only the value itself."""
    values = values[np.isfinite(values)]
    n = len(values)
    if n < 2:
        return (values[0], values[0]) if n else (np.nan, np.nan)
    half = scipy.stats.t.ppf(0.995, n - 1) * values.std(ddof=1) * np.sqrt(1 / m + 1 / n)
    return values.mean() - half, values.mean() + half


def compare(reference: Path, rerun: Path) -> list[Row]:
    rows = []
    for run_set in sorted(set(run_sets(reference)) | set(run_sets(rerun))):
        ours, theirs = load_figure(reference, run_set), load_figure(rerun, run_set)
        if theirs.empty or ours.empty:
            status = "missing in the rerun" if theirs.empty else "not in the committed results"
            rows.append(Row(run_set, "", "", "", status, ""))
            continue
        ours, theirs = finals(ours), finals(theirs)
        mine = {key: frame.droplevel([0, 1]) for key, frame in ours.groupby(level=["hidden", "arm"], sort=False)}
        other = {key: frame.droplevel([0, 1]) for key, frame in theirs.groupby(level=["hidden", "arm"], sort=False)}
        for hidden, arm in dict.fromkeys([*mine, *other]):
            label = "" if hidden == -1 else str(int(hidden))
            if (hidden, arm) not in mine or (hidden, arm) not in other:
                status = "missing in the rerun" if (hidden, arm) not in other else "not in the committed results"
                rows.append(Row(run_set, label, arm, "", status, ""))
                continue
            status, detail = compare_arm(mine[hidden, arm], other[hidden, arm])
            rows.append(Row(run_set, label, arm, ",".join(map(str, other[hidden, arm].index)), status, detail))
    return rows


def agrees(rows: list[Row]) -> bool:
    """Every arm found in both agrees, and there is at least one; arms only one side has are not compared (a
    partial rerun, or runs we have not committed yet)."""
    compared = [r for r in rows if r.status in (*AGREEING, "differs")]
    return bool(compared) and all(r.status in AGREEING for r in compared)


def render(rows: list[Row], reference: Path, rerun: Path) -> str:
    lines = [f"rerun {rerun} against {reference}", "",
             "| run set | H | arm | rerun seeds | status | detail |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.run_set} | {r.hidden} | {r.arm} | {r.seeds} | {r.status} | {r.detail} |" for r in rows]
    counts = pd.Series([r.status for r in rows]).value_counts()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    verdict = "AGREES" if agrees(rows) else "DISAGREES"
    lines += ["", f"{verdict}: {summary} (same: seed by seed to {SAME_RTOL:g} relative; within spread: the rerun's "
              "mean inside the 99 % prediction interval of our seeds)"]
    return "\n".join(lines)


# --- wall time: how long the committed runs took against a rerun ---------------------------------------------

TIME_COLUMNS = ["run_set", "hidden", "seeds", "before_seconds", "before_gemm", "before_commits", "after_seconds",
                "after_gemm", "after_commits", "after_seeds", "before_machines", "after_machines"]


def run_configs(folder: Path) -> dict[Path, dict]:
    """Every run folder's config.yaml under `folder` as plain dicts, those `aside` left out."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return {path: yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
            for path in sorted(Path(folder).rglob("config.yaml")) if not aside(path.relative_to(folder))}


PROTOCOL_KEYS = ("epochs", "batch_size", "data.train_subset", "data.test_subset", "data.val_size")


def protocol(arm: dict) -> dict:
    """The settings of one arm that decide how much it trained on what (not its optimizer or the machine)."""
    out = {}
    for key in PROTOCOL_KEYS:
        value = arm
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = value
    return out


def other_protocols(reference: Path, rerun: Path) -> list[str]:
    """For every run folder both hold, the arms trained for other epochs or on other data subsets, as
    "fig06/H8_seed42 AYLA: epochs 3 vs 100, data.train_subset 2048 vs 0" (a quick run against full results)."""
    ours = {path.relative_to(reference): config for path, config in run_configs(reference).items()}
    found = []
    for path, config in run_configs(rerun).items():
        relative = path.relative_to(rerun)
        for arm, settings in (config.get("arms") or {}).items():
            mine = ((ours.get(relative) or {}).get("arms") or {}).get(arm)
            if mine is None:
                continue
            changes = [f"{key} {protocol(settings)[key]} vs {protocol(mine)[key]}" for key in PROTOCOL_KEYS
                       if protocol(settings)[key] != protocol(mine)[key]]
            if changes:
                found.append(f"{relative.parent} {arm}: {', '.join(changes)}")
    return found


def populations(folder: Path, configs: dict[Path, dict] | None = None) -> dict[tuple, tuple[float, dict]]:
    """Each fused training population under `folder` once, though every one of its seed folders records it (the
    seeds trained together and their wall seconds): (run_set, hidden, seeds) → (wall seconds, provenance)."""
    found = {}
    for path, run in (run_configs(folder) if configs is None else configs).items():
        population = run.get("population") or {}
        if population.get("wall_seconds") is None or path.parent == Path(folder):  # populations live in seed folders
            continue
        run_set, name = path.parent.parent.relative_to(folder).as_posix(), path.parent.name
        hidden = name.partition("_seed")[0][1:] if "_seed" in name else ""
        found[run_set, hidden, tuple(population["seeds"])] = (float(population["wall_seconds"]),
                                                              run.get("provenance") or {})
    return found


def wall_times(folder: Path) -> pd.DataFrame:
    """Wall seconds of every run set and hidden size trained into `folder`, summed over its populations (a set
    trained in several calls has several). Columns: run_set, hidden, seeds, seconds, gemm, commits, machines."""
    rows = {}
    for (run_set, hidden, seeds), (seconds, provenance) in sorted(populations(folder).items()):
        row = rows.setdefault((run_set, hidden), dict(run_set=run_set, hidden=hidden, seeds=0, seconds=0.0,
                                                      gemm=set(), commits=set(), machines=set()))
        row["seeds"] += len(seeds)
        row["seconds"] += seconds
        row["gemm"].add(str(provenance.get("gemm", "aten")))
        row["commits"].add(str(provenance.get("commit"))[:7])
        row["machines"].add(str(provenance.get("device_name")))
    frame = pd.DataFrame(list(rows.values()),
                         columns=["run_set", "hidden", "seeds", "seconds", "gemm", "commits", "machines"])
    for column in ("gemm", "commits", "machines"):
        frame[column] = frame[column].map(lambda values: "/".join(sorted(values)))
    return frame


def time_table(reference: Path, rerun: Path) -> pd.DataFrame:
    """The wall seconds of each run set and hidden size of the reference (e.g. the committed results): before
    (the reference) and after (the rerun, where it holds the same run set for as many seeds; else empty)."""
    before, after = wall_times(reference), wall_times(rerun)
    both = before.merge(after, on=["run_set", "hidden"], how="left", suffixes=("_before", "_after"))
    partial = both["seeds_after"].notna() & (both["seeds_after"] != both["seeds_before"])
    both = both.rename(columns={f"{c}_{when}": f"{when}_{c}" for c in ("seconds", "gemm", "commits", "machines")
                                for when in ("before", "after")}).rename(columns={"seeds_before": "seeds"})
    both.loc[partial, ["after_seconds", "after_gemm", "after_commits", "after_machines"]] = np.nan  # other seeds
    both["after_seeds"] = both["seeds_after"].astype("Int64")
    return both[TIME_COLUMNS]


def time_summary(times: pd.DataFrame) -> str:
    """`36 of 44 run sets and sizes rerun for as many seeds (their wall times compared); rerun for other seeds, not
    timed here: fig06; not in the rerun: fair/tuned: 290.1 min before, 150.2 min after, 1.93× faster`: the totals
    over the run sets both have for the same seeds, naming those the rerun holds for other seeds (a 1-seed rerun:
    its arms are still compared, its wall time is not) and those it lacks (e.g. make fair's, which make reproduce
    does not train), so that a partial rerun is not mistaken for a complete one or the reverse."""
    done = times[times["after_seconds"].notna()]
    before, after = done["before_seconds"].sum(), done["after_seconds"].sum()
    seeds = times["after_seeds"] if "after_seeds" in times else pd.Series(pd.NA, index=times.index)
    fewer = sorted(set(times.loc[times["after_seconds"].isna() & seeds.notna(), "run_set"]))
    missing = sorted(set(times.loc[times["after_seconds"].isna() & seeds.isna(), "run_set"]))
    machines = {when: "/".join(sorted(set("/".join(done[f"{when}_machines"].dropna().astype(str)).split("/")) - {""}))
                for when in ("before", "after") if f"{when}_machines" in done}
    other = len(machines) == 2 and machines["before"] != machines["after"]
    return (f"{len(done)} of {len(times)} run sets and sizes rerun for as many seeds (their wall times compared)"
            + (f"; rerun for other seeds, not timed here: {', '.join(fewer)}" if fewer else "")
            + (f"; not in the rerun: {', '.join(missing)}" if missing else "")
            + f": {before / 60:.1f} min before, {after / 60:.1f} min after"
            + (f", {before / after:.2f}× faster" if after else "")
            + (f" (before on {machines['before']}, after on {machines['after']}: the ratio mixes code and machine)"
               if other else ""))


def render_times(times: pd.DataFrame) -> list[str]:
    """Per run set and size: before, after and the speed-up (blank where the rerun has not got there), then the
    totals over the run sets both have."""
    lines = ["| run set | H | seeds | before (s) | kernel | after (s) | kernel | speed-up |", "|" + " --- |" * 8]
    for r in times.itertuples():
        rerun = pd.notna(r.after_seconds)
        lines.append(f"| {r.run_set} | {r.hidden} | {r.seeds} | {r.before_seconds:.0f} | {r.before_gemm} | "
                     + (f"{r.after_seconds:.0f} | {r.after_gemm} | {r.before_seconds / r.after_seconds:.2f}× |"
                        if rerun else "– | | |"))
    return lines + ["", time_summary(times)]
