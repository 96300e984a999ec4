"""The paper's Figs. 1-10 drawn from the tidy CSVs.

Seeds are a mean line with a min-max band, except: a deterministic figure (every seed the same path, Figs. 1-3)
draws that one path and says so; a collapsed run (analysis/stats.py) is never folded into a band but drawn as
a thin line of its own, marked × at its end; an ablation figure draws each arm's median over its seeds that did not
collapse with a thin line per seed, and only the metrics its report section uses (train loss, test accuracy).
Figures are written byte for byte the same from the same CSVs (no timestamps, no software version in the files).
"""

import io
import itertools
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ayla.transform import ayla_loss  # noqa: E402
from experiments.analysis import stats  # noqa: E402
from experiments.io import write_atomic  # noqa: E402
from experiments.presets import matched_arms  # noqa: E402
from experiments.runs import load_figure  # noqa: E402
from experiments.tasks import curvefit, polynomial  # noqa: E402

FIXED_COLORS = {"SGD": "black", "Adam": "black", "AYLA": "tab:blue"}
OTHER_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                "tab:cyan", "tab:red", "tab:gray"]


def colors_for(arms: list[str]) -> dict[str, str]:
    """Adam/SGD black and AYLA blue, as the authors drew them; any other arm (or a second black one) a colour of its
    own."""
    colors, taken = {}, set()
    for arm in arms:  # a fixed colour once (Adam and SGD side by side: the second gets a colour of its own)
        if arm in FIXED_COLORS and FIXED_COLORS[arm] not in taken:
            colors[arm] = FIXED_COLORS[arm]
            taken.add(colors[arm])
    spare = itertools.cycle([color for color in OTHER_COLORS if color not in taken])  # many arms: colours repeat
    return {arm: colors.get(arm) or next(spare) for arm in arms}


def band(ax, frame: pd.DataFrame, x: str, y: str, label: str, color: str, style: str = "-") -> None:
    """Mean over seeds as a line, the min-max over seeds as a shaded band (none where the seeds agree)."""
    spread = frame.groupby(x)[y].agg(["mean", "min", "max", "count"])
    ax.plot(spread.index, spread["mean"], style, color=color, label=label, lw=1.4)
    if spread["count"].max() > 1 and not np.allclose(spread["min"], spread["max"], rtol=0, atol=0, equal_nan=True):
        ax.fill_between(spread.index, spread["min"], spread["max"], color=color, alpha=0.18, lw=0)


def arms_in_order(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["arm"]))


PATH_COLUMNS = ("x", "signed_step", "train_loss", "train_acc", "test_loss", "test_acc")


def deterministic(frame: pd.DataFrame) -> bool:
    """Several seeds, and every one gives the same path: each arm's values agree across seeds at every epoch."""
    if "seed" not in frame.columns or frame["seed"].nunique() < 2:
        return False
    keys = [k for k in ("arm", "hidden", "epoch") if k in frame.columns]
    values = [c for c in PATH_COLUMNS if c in frame.columns]
    return bool(values) and bool((frame.groupby(keys, dropna=False)[values].nunique(dropna=False) <= 1).all().all())


def collapsed_runs(frame: pd.DataFrame) -> set[tuple]:
    """(hidden, arm, seed) of every collapsed run in a classifier frame."""
    if not {"train_loss", "epoch", "seed", "arm"} <= set(frame.columns):
        return set()
    runs = stats.run_summary(frame)
    runs = runs[runs["collapsed"]]
    return {(r.get("hidden"), r["arm"], r["seed"]) for _, r in runs.iterrows()}


def seeds_note(frame: pd.DataFrame, kind: str = "") -> str:
    n = frame["seed"].nunique()
    if kind == "sensitivity":
        finals = final_values(frame, "x" if "x" in frame else "test_acc")
        same = (finals.groupby(["hidden", "optimizer", "lr"], dropna=False)["value"].nunique(dropna=False) <= 1).all()
        return ("deterministic: every seed gives the same path; no point = diverged" if same or n < 2 else
                f"{n} seeds: median, band = min–max; no point = diverged")
    if deterministic(frame):
        return "deterministic: every seed gives the same path"
    if n < 2:
        return "1 seed"
    if kind.endswith("_ablation"):
        return (f"{n} seeds: median of the seeds that did not collapse, a thin line per seed"
                + (", × = a collapsed seed" if collapsed_runs(frame) else ""))
    if kind == "classifier" and collapsed_runs(frame):
        return (f"{n} seeds: mean, band = min–max of the seeds that did not collapse; thin lines ending in × = "
                "collapsed seeds")
    return f"{n} seeds: mean, band = min–max"


def positions(path: pd.DataFrame) -> pd.DataFrame:
    """x_t at step t = 0 … T of one seed's polynomial run: a row of epoch e holds x_{e-1}, the position before
    step e, and that step's lr·g, so x_T = x_{T-1} − lr·g of the last row."""
    path = path.sort_values("epoch")
    t, x = (path["epoch"] - 1).to_numpy(), path["x"].to_numpy(dtype=float)
    last = x[-1] - float(path["signed_step"].iloc[-1]) if len(x) else np.nan
    if np.isfinite(last):
        t, x = np.append(t, t[-1] + 1), np.append(x, last)
    return pd.DataFrame({"step": t, "x": x})


def seed_paths(metrics: pd.DataFrame, arm: str, make) -> pd.DataFrame:
    """`make(one seed's rows)` for every seed of an arm (only the first when every seed gives the same path)."""
    part = metrics[metrics["arm"] == arm]
    seeds = sorted(part["seed"].unique())[:1] if deterministic(metrics) else sorted(part["seed"].unique())
    return pd.concat([make(part[part["seed"] == seed]).assign(seed=seed) for seed in seeds], ignore_index=True)


def polynomial_landscape(ax_list, metrics, predictions):
    (ax,) = ax_list
    xs = np.linspace(-1, 3, 600)
    fx = polynomial.f(np.asarray(xs))
    ayla_arm = metrics[metrics["ayla"]]
    N1, N2 = ayla_arm["N1"].iloc[0], ayla_arm["N2"].iloc[0]

    def transformed(values):
        return ayla_loss(torch.tensor(np.array(values, dtype=float)), N1, N2).numpy()

    ax.plot(xs, fx, color="black", lw=1, label="Loss f(x) (SGD)")
    ax.plot(xs, transformed(fx), color="tab:blue", lw=1, label=f"Loss L(x) (AYLA, N1 = {N1:g}, N2 = {N2:g})")
    for arm, marker in (("SGD", "o"), ("AYLA", "s")):
        path = positions(metrics[(metrics["arm"] == arm) & (metrics["seed"] == metrics["seed"].min())])
        values = polynomial.f(path["x"].to_numpy())
        values = values if arm == "SGD" else transformed(values)
        ax.scatter(path["x"], values, marker=marker, s=22, facecolors="none",
                   edgecolors=FIXED_COLORS[arm], lw=1, label=f"x_0 … x_{int(path['step'].max())} ({arm})")
    ax.set(xlabel="x", ylabel="loss")


def polynomial_path(ax_list, metrics, predictions):
    (ax,) = ax_list
    ax.axhline(polynomial.MINIMUM, color="black", lw=1, label="global minimum x = 2.25")
    ax.axhline(polynomial.SADDLE, color="black", lw=1, ls="--", label="saddle point x = 0")
    for arm, color in colors_for(arms_in_order(metrics)).items():
        band(ax, seed_paths(metrics, arm, positions), "step", "x", arm, color)
    ax.set(xlabel="step t (t = 0: the start x_0)", ylabel="x_t")


def polynomial_steps(ax_list, metrics, predictions):
    (ax,) = ax_list
    def steps(path):  # the row of epoch e holds the step taken from x_{e-1}: drawn at t = e − 1
        return pd.DataFrame({"step": path["epoch"].to_numpy() - 1, "signed_step": path["signed_step"].to_numpy()})

    for arm, color in colors_for(arms_in_order(metrics)).items():
        band(ax, seed_paths(metrics, arm, steps), "step", "signed_step", arm, color)
    ax.set(xlabel="step t (the step taken from x_t to x_t+1; t = 0: the first)", ylabel="effective step  lr · gradient")


def curvefit_fit(ax_list, metrics, predictions, panels):
    colors = colors_for(arms_in_order(metrics))
    x = np.linspace(-1, 3, 200)
    for ax, epoch, letter in zip(ax_list, panels, "abcdef"):
        first = predictions[(predictions["epoch"] == epoch) & (predictions["seed"] == predictions["seed"].min())]
        data = first[first["arm"] == first["arm"].iloc[0]]
        ax.scatter(data["x"], data["y"], s=10, color="grey", alpha=0.6, label="data")
        ax.plot(x, curvefit.truth(x), ":", color="grey", lw=1, label="noise-free curve")
        for arm, color in colors.items():
            band(ax, predictions[(predictions["arm"] == arm) & (predictions["epoch"] == epoch)], "x", "y_pred",
                 arm, color)
        ax.set(xlabel="x", ylabel="y", title=f"({letter}) after {epoch} epochs")


def curvefit_loss(ax_list, metrics, predictions, panels):
    colors = colors_for(arms_in_order(metrics))
    for ax, epochs, letter in zip(ax_list, panels, "abcdef"):
        for arm, color in colors.items():
            band(ax, metrics[(metrics["arm"] == arm) & (metrics["epoch"] <= epochs)], "epoch", "train_loss", arm,
                 color)
        ax.set(xlabel="epoch", ylabel="training loss (MSE)", yscale="log", title=f"({letter}) {epochs} epochs")


def collapsed_line(ax, run: pd.DataFrame, column: str, color: str, style: str, label: str) -> None:
    """One collapsed seed: a thin line of its own, an × at its last epoch."""
    run = run.sort_values("epoch")
    ax.plot(run["epoch"], run[column], style, color=color, lw=0.7, alpha=0.9, label=label)
    ax.plot(run["epoch"].iloc[-1:], run[column].iloc[-1:], "x", color=color, ms=6, mew=1.4)


def split_collapsed(part: pd.DataFrame, collapsed: set, hidden, arm: str) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """An arm's rows at one hidden size: the seeds that learned, and each collapsed seed's rows apart."""
    bad = [seed for (h, a, seed) in collapsed if a == arm and (h == hidden or (pd.isna(h) and pd.isna(hidden)))]
    return part[~part["seed"].isin(bad)], [part[part["seed"] == seed] for seed in sorted(bad)]


def collapsed_title(part: pd.DataFrame, collapsed: set, hidden) -> str:
    """'\nAdam collapsed on 1/5 seeds' for a panel's title, '' when no arm collapsed there; arms that collapsed on
    the same share of seeds share one line, wrapped ('\ncollapsed on 5/5 seeds: Adam, Adam eps=1e-4, ...')."""
    by_share: dict[str, list[str]] = {}
    for arm in arms_in_order(part):
        _, bad = split_collapsed(part[part["arm"] == arm], collapsed, hidden, arm)
        if bad:
            by_share.setdefault(f"{len(bad)}/{part[part['arm'] == arm]['seed'].nunique()}", []).append(arm)
    lines = []
    for share, arms in by_share.items():
        lines += (textwrap.wrap(f"collapsed on {share} seeds: {', '.join(arms)}", 44) if len(arms) > 1
                  else [f"{arms[0]} collapsed on {share} seeds"])
    return "".join(f"\n{line}" for line in lines)


def classifier(ax_list, metrics, predictions):
    colors = colors_for(arms_in_order(metrics))
    hiddens = sorted(metrics["hidden"].unique())
    collapsed = collapsed_runs(metrics)
    for row, hidden in enumerate(hiddens):
        part = metrics[metrics["hidden"] == hidden]
        for col, (what, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
            ax = ax_list[2 * row + col]
            for arm, color in colors.items():
                learned, bad = split_collapsed(part[part["arm"] == arm], collapsed, hidden, arm)
                for split, style in (("train", "-"), ("test", "--")):
                    if not learned.empty:
                        band(ax, learned, "epoch", f"{split}_{what}", f"{arm} {split}", color, style)
                    for run in bad:
                        collapsed_line(ax, run, f"{split}_{what}", color, style, f"{arm} {split}, a collapsed seed")
            ax.set(xlabel="epoch", ylabel=label,
                   title=f"({'abcd'[2 * row + col]}) {label}, H = {hidden}{collapsed_title(part, collapsed, hidden)}")


def medians_and_seeds(ax, rows: pd.DataFrame, bad: list[pd.DataFrame], column: str, color: str, label: str,
                      main: bool = False, style: str = "-") -> None:
    """An arm on one panel: every seed a thin line, a collapsed seed's end marked ×, and the median of the seeds
    that did not collapse as the arm's line (thicker and on top for the arm the panel is about)."""
    for _, run in rows.groupby("seed"):
        run = run.sort_values("epoch")
        ax.plot(run["epoch"], run[column], "-", color=color, lw=0.5, alpha=0.35)
    for run in bad:
        ax.plot(run["epoch"].iloc[-1:], run[column].iloc[-1:], "x", color=color, ms=6, mew=1.4)
    learned = rows[~rows["seed"].isin([run["seed"].iloc[0] for run in bad])]
    if learned.empty:
        ax.plot([], [], style, color=color, lw=1.3, label=label)
        return
    median = learned.groupby("epoch")[column].median()
    ax.plot(median.index, median.to_numpy(), style, color=color, lw=1.8 if main else 1.3, zorder=3 if main else 2,
            label=label)


def classifier_ablation(ax_list, metrics, predictions, panels=(("train_loss", "train loss"),
                                                                 ("test_acc", "test accuracy"))):
    """Ablation arms beside Adam and AYLA: train loss and test accuracy (or the two `panels`: column, label) per
    hidden size, each arm's median over its seeds that did not collapse as a line, every seed as a thin line, a
    collapsed seed's end marked ×."""
    colors = colors_for(arms_in_order(metrics))
    collapsed = collapsed_runs(metrics)
    for row, hidden in enumerate(sorted(metrics["hidden"].unique())):
        part = metrics[metrics["hidden"] == hidden]
        for col, (column, label) in enumerate(panels):
            ax = ax_list[2 * row + col]
            for arm, color in colors.items():
                rows = part[part["arm"] == arm]
                _, bad = split_collapsed(rows, collapsed, hidden, arm)
                medians_and_seeds(ax, rows, bad, column, color, arm, arm == "AYLA")
            ax.set(xlabel="epoch", ylabel=label,
                   title=f"({'abcd'[2 * row + col]}) {label}, H = {hidden}{collapsed_title(part, collapsed, hidden)}")


def curvefit_ablation(ax_list, metrics, predictions, matched):
    """One panel per AYLA setting: Adam, that AYLA arm and the controls matched to it (`matched`: control arm →
    AYLA arm), training loss by epoch, each arm's median over seeds as a line and every seed as a thin line. A
    control keeps one colour and legend entry across panels: its name without the setting ("Adam × c (N1=0.2)"
    is "Adam × c" in the panel of AYLA N1=0.2)."""
    controls: dict[str, list[str]] = {}
    for control, ayla in matched.items():
        controls.setdefault(ayla, []).append(control)
    role = {arm: arm.split(" (")[0] for arm in matched} | {"Adam": "Adam"} | {a: "AYLA (the panel's)" for a in controls}
    colors = colors_for(["Adam", "AYLA", *dict.fromkeys(role[c] for c in matched)])
    colors["AYLA (the panel's)"] = colors.pop("AYLA")
    # the controls dashed and dotted, so that one lying on Adam's curve leaves it visible
    styles = {"Adam": "-", "AYLA (the panel's)": "-"} | dict(zip(dict.fromkeys(role[c] for c in matched),
                                                                  itertools.cycle(["--", ":", "-."])))
    for ax, (ayla, arms), letter in zip(ax_list, controls.items(), "abcdef"):
        for arm in ("Adam", ayla, *arms):
            medians_and_seeds(ax, metrics[metrics["arm"] == arm], [], "train_loss", colors[role[arm]], role[arm],
                              arm == ayla, styles[role[arm]])
        ax.set(xlabel="epoch", ylabel="training loss (MSE)", yscale="log", title=f"({letter}) {ayla} and its controls")


def final_values(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per arm, seed and hidden size: its optimizer label, lr and `metric` after the last step (the
    polynomial's x after its last step is x − lr·g of the last row; its hidden size is NaN)."""
    metrics = metrics if "hidden" in metrics else metrics.assign(hidden=np.nan)
    order = {arm: k for k, arm in enumerate(dict.fromkeys(metrics["arm"]))}  # the preset's order of the arms
    last = metrics.sort_values("epoch", kind="stable").groupby(["hidden", "arm", "seed"], dropna=False).tail(1)
    last = last.assign(_order=last["arm"].map(order)).sort_values(["hidden", "_order", "seed"], kind="stable")
    value = last["x"] - last["signed_step"] if metric == "x" else last[metric]
    return pd.DataFrame({"optimizer": last["arm"].str.rsplit(" lr=", n=1).str[0], "lr": last["lr"],
                         "seed": last["seed"], "hidden": last["hidden"], "value": value.to_numpy()})


def works_reference(values: pd.DataFrame, works) -> tuple[float, str]:
    """The level an lr must reach to "work", for the values of one hidden size: a fixed point (`near`) or
    `within_of_best` below the best median of the grid (a classifier's accuracy); and its label."""
    if "near" in works:
        return float(works.near), works.label
    best = values.groupby(["optimizer", "lr"])["value"].median().max()
    return best - float(works.within_of_best), f"best median {best:.4g} − {works.within_of_best}"


def lr_works(values: pd.DataFrame, works) -> pd.Series:
    """Per row (arm, seed, hidden size): whether its final value meets the preset's criterion, judged against
    its own hidden size's grid."""
    def meets(part: pd.DataFrame) -> pd.Series:
        level, _ = works_reference(part, works)
        if "near" in works:
            return (part["value"] - level).abs() < works.within
        return part["value"] >= level
    return pd.concat([meets(part) for _, part in values.groupby("hidden", dropna=False)]).reindex(values.index)


def sensitivity(ax_list, metrics, predictions, works=None):
    """Final `metric` against lr (log axis) per optimizer, one panel per hidden size: the median over seeds,
    min–max as a band, and the level an lr must reach to work."""
    metric = works.metric
    values = final_values(metrics, metric)
    colors = colors_for(list(dict.fromkeys(values["optimizer"])))
    for ax, (hidden, grid) in zip(ax_list, values.groupby("hidden", dropna=False)):
        level, label = works_reference(grid, works)
        target = {level: label}
        for optimizer, part in grid.groupby("optimizer", sort=False):
            stats_ = part.groupby("lr")["value"].agg(["median", "min", "max"]).reset_index()
            ax.plot(stats_["lr"], stats_["median"], "o-", color=colors[optimizer], label=optimizer)
            if part["seed"].nunique() > 1:
                ax.fill_between(stats_["lr"], stats_["min"], stats_["max"], color=colors[optimizer], alpha=0.2)
        for level, text in target.items():  # the dotted line, in the legend (its level differs per panel)
            works_label = works.label if "near" in works else (f"an lr works from here: best median − "
                                                                f"{works.within_of_best}")
            ax.axhline(level, ls=":", color="grey", label=works_label)
            ax.annotate(text, (0.01, level), xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
        ax.set(xscale="log", xlabel="learning rate", ylabel=f"{metric} after the last step")
        if pd.notna(hidden):
            ax.set_title(f"H = {hidden:g}", fontsize=9)


KINDS = {  # kind: (drawing, number of panels)
    "sensitivity": (sensitivity, 1),
    "polynomial_landscape": (polynomial_landscape, 1), "polynomial_path": (polynomial_path, 1),
    "polynomial_steps": (polynomial_steps, 1), "curvefit_fit": (curvefit_fit, 2),
    "curvefit_loss": (curvefit_loss, 2), "classifier": (classifier, 4),
    "classifier_ablation": (classifier_ablation, 4), "curvefit_ablation": (curvefit_ablation, 4),
}


def draw(spec, metrics: pd.DataFrame, predictions: pd.DataFrame | None = None) -> plt.Figure:
    """One figure from its preset's `figure` node and its tidy CSVs."""
    drawing, panels = KINDS[spec.kind]
    if spec.kind == "sensitivity":  # a panel per hidden size
        panels = max(1, len(spec.hidden))
    rows, cols = (2, 2) if panels == 4 else (1, panels)
    size = (7.5, 5.2) if panels == 1 else (5.2 * cols, 3.9 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    extra = {"panels": list(spec.panels)} if "panels" in spec else {}
    if spec.kind == "sensitivity":
        extra = {"works": spec.works}
    if spec.kind == "curvefit_ablation":
        extra = {"matched": matched_arms(spec)}
    drawing(list(axes.flat), metrics, predictions, **extra)
    for ax in axes.flat:
        ax.grid(True, ls=":", color="grey", alpha=0.6)
        if ax.get_xlabel().startswith(("epoch", "step")):  # whole epochs and steps: no tick at 1.25
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("\n".join(textwrap.wrap(f"{spec.title}  ({seeds_note(metrics, spec.kind)})", 90)), fontsize=10)
    if panels == 1:
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        return fig
    legend = {}  # every panel's entries, once each (a collapsed seed may show in one panel only)
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(labels) - 1) // 4), 1, 1))
    return fig


def save(fig: plt.Figure, folder: Path, name: str) -> list[Path]:
    """PNG and a vector PDF, each written whole, without a creation date or software version, so that the same
    CSVs give the same bytes."""
    paths = []
    options = {"png": {"dpi": 150, "metadata": {"Software": None}}, "pdf": {"metadata": {"CreationDate": None}}}
    for ext, kw in options.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, **kw)
        write_atomic(Path(folder) / f"{name}.{ext}", buffer.getvalue())
        paths.append(Path(folder) / f"{name}.{ext}")
    plt.close(fig)
    return paths


def draw_figures(out: Path, figures: list[str], spec_of) -> list[Path]:
    """Every figure whose runs are there, into <out>/figures/; `spec_of(name)` gives its preset's figure node.

    A figure with ablation runs is drawn a second time, as <name>_ablation, with those arms added.
    """
    written = []
    for name in figures:
        metrics = load_figure(out, name)
        if metrics.empty:
            continue
        spec = spec_of(name)
        written += save(draw(spec, metrics, load_figure(out, name, "predictions")), Path(out) / "figures", name)
        ablation = load_figure(out, f"{name}_ablation")
        if not ablation.empty:
            spec.title = f"{spec.title}, with its controls"
            spec.kind = spec.ablation.get("kind", "classifier_ablation")
            both = pd.concat([metrics, ablation, load_figure(out, f"{name}_dynamic_eps")], ignore_index=True)
            written += save(draw(spec, both), Path(out) / "figures", f"{name}_ablation")
    return written
