"""The paper's Figs. 1-10 drawn from the tidy CSVs: seeds as a mean line with a min-max band."""

import io
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from ayla.transform import ayla_loss  # noqa: E402
from experiments import curvefit, polynomial  # noqa: E402
from experiments.io import write_atomic  # noqa: E402

FIXED_COLORS = {"SGD": "black", "Adam": "black", "AYLA": "tab:blue"}
OTHER_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                "tab:cyan", "tab:red", "tab:gray"]


def colors_for(arms: list[str]) -> dict[str, str]:
    """Adam/SGD black and AYLA blue, as the authors drew them; any other arm a colour of its own."""
    used = {FIXED_COLORS[arm] for arm in arms if arm in FIXED_COLORS}
    spare = iter(color for color in OTHER_COLORS if color not in used)
    return {arm: FIXED_COLORS.get(arm) or next(spare) for arm in arms}


def band(ax, frame: pd.DataFrame, x: str, y: str, label: str, color: str, style: str = "-") -> None:
    """Mean over seeds as a line, the min-max over seeds as a shaded band."""
    stats = frame.groupby(x)[y].agg(["mean", "min", "max", "count"])
    ax.plot(stats.index, stats["mean"], style, color=color, label=label, lw=1.4)
    if stats["count"].max() > 1:
        ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.18, lw=0)


def arms_in_order(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["arm"]))


def seeds_note(frame: pd.DataFrame) -> str:
    n = frame["seed"].nunique()
    return f"{n} seed{'s' if n > 1 else ''}: mean, band = min–max" if n > 1 else "1 seed"


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
        path = metrics[(metrics["arm"] == arm) & (metrics["seed"] == metrics["seed"].min())]
        values = path["train_loss"] if arm == "SGD" else transformed(path["train_loss"].to_numpy())
        ax.scatter(path["x"], values, marker=marker, s=22, facecolors="none",
                   edgecolors=FIXED_COLORS[arm], lw=1, label=f"Steps ({arm})")
    ax.set(xlabel="x", ylabel="loss")


def polynomial_path(ax_list, metrics, predictions):
    (ax,) = ax_list
    ax.axhline(polynomial.MINIMUM, color="black", lw=1, label="global minimum x = 2.25")
    ax.axhline(polynomial.SADDLE, color="black", lw=1, ls="--", label="saddle point x = 0")
    for arm, color in colors_for(arms_in_order(metrics)).items():
        band(ax, metrics[metrics["arm"] == arm], "epoch", "x", arm, color)
    ax.set(xlabel="step (epoch)", ylabel="x")


def polynomial_steps(ax_list, metrics, predictions):
    (ax,) = ax_list
    for arm, color in colors_for(arms_in_order(metrics)).items():
        band(ax, metrics[metrics["arm"] == arm], "epoch", "signed_step", arm, color)
    ax.set(xlabel="step (epoch)", ylabel="effective step  lr · gradient")


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


def classifier(ax_list, metrics, predictions):
    colors = colors_for(arms_in_order(metrics))
    hiddens = sorted(metrics["hidden"].unique())
    for row, hidden in enumerate(hiddens):
        part = metrics[metrics["hidden"] == hidden]
        for col, (what, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
            ax = ax_list[2 * row + col]
            for arm, color in colors.items():
                for split, style in (("train", "-"), ("test", "--")):
                    band(ax, part[part["arm"] == arm], "epoch", f"{split}_{what}", f"{arm} {split}", color, style)
            ax.set(xlabel="epoch", ylabel=label, title=f"({'abcd'[2 * row + col]}) {label}, H = {hidden}")


KINDS = {  # kind: (drawing, number of panels)
    "polynomial_landscape": (polynomial_landscape, 1), "polynomial_path": (polynomial_path, 1),
    "polynomial_steps": (polynomial_steps, 1), "curvefit_fit": (curvefit_fit, 2),
    "curvefit_loss": (curvefit_loss, 2), "classifier": (classifier, 4),
}


def draw(spec, metrics: pd.DataFrame, predictions: pd.DataFrame | None = None) -> plt.Figure:
    """One figure from its preset's `figure` node and its tidy CSVs."""
    drawing, panels = KINDS[spec.kind]
    rows, cols = (2, 2) if panels == 4 else (1, panels)
    size = (7.5, 5.2) if panels == 1 else (5.2 * cols, 3.9 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    extra = {"panels": list(spec.panels)} if "panels" in spec else {}
    drawing(list(axes.flat), metrics, predictions, **extra)
    for ax in axes.flat:
        ax.grid(True, ls=":", color="grey", alpha=0.6)
    fig.suptitle("\n".join(textwrap.wrap(f"{spec.title}  ({seeds_note(metrics)})", 90)), fontsize=10)
    if panels == 1:
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        return fig
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(labels) - 1) // 4), 1, 1))
    return fig


def save(fig: plt.Figure, folder: Path, name: str) -> list[Path]:
    """PNG and a vector PDF, each written whole."""
    paths = []
    for ext, kw in (("png", {"dpi": 150}), ("pdf", {})):
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
    from experiments.reproduce import load_figure
    written = []
    for name in figures:
        metrics = load_figure(out, name)
        if metrics.empty:
            continue
        spec = spec_of(name)
        written += save(draw(spec, metrics, load_figure(out, name, "predictions")), Path(out) / "figures", name)
        ablation = load_figure(out, f"{name}_ablation")
        if not ablation.empty:
            spec.title = f"{spec.title}, with the eps and constant-scale ablation"
            both = pd.concat([metrics, ablation], ignore_index=True)
            written += save(draw(spec, both), Path(out) / "figures", f"{name}_ablation")
    return written
