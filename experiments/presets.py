"""The presets in conf/ as the suite reads them: a run config composed as `python run.py <overrides>` would get
it, conf/reproduce.yaml's settings, and what a figure preset (conf/figure/) names: its arms, its control sets and
the run set it draws from. Pipelines and analysis both read presets through this module; it trains nothing."""

import copy
from functools import cache

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from experiments import CONF

# Run sets a figure preset may add beside its own arms, each stored as <figure>_<set>: the eps / constant-scale
# ablation, the dynamic-eps control (Adam with eps / the AYLA factor of its own loss), the curve fit with a
# noise draw per seed, and the figure's arms again in the opt-in dtype=bfloat16.
CONTROL_SETS = ("ablation", "dynamic_eps", "noise_seeds", "bfloat16")


def control_sets(preset: DictConfig) -> list[str]:
    return [name for name in CONTROL_SETS if name in preset.figure]


def source_of(figure: str) -> str:
    """The run set whose runs a name stands for: a preset with `figure.runs: <other>` draws the same runs as
    <other> differently (Figs. 1–3 one polynomial run, Figs. 4–5 one curve fit), so they are trained once."""
    path = CONF / "figure" / f"{figure}.yaml"
    return (OmegaConf.load(path).figure.get("runs") if path.exists() else None) or figure


def matched_arms(spec: DictConfig) -> dict[str, str]:
    """Each control arm of a figure preset (its `figure` node) and the AYLA arm it is matched to: the one whose
    mean factor scales it (ablation.scaled), whose exponents its eps follows (dynamic_eps.matched), else AYLA."""
    found = {arm: "AYLA" for name in ("ablation", "dynamic_eps") if name in spec for arm in spec[name].arms}
    return found | dict(spec.get("ablation", {}).get("scaled", {})) | dict(spec.get("dynamic_eps", {}).get(
        "matched", {}))


def load_settings(name: str = "reproduce") -> DictConfig:
    return OmegaConf.load(CONF / f"{name}.yaml")


def compose_run(overrides: list[str]) -> DictConfig:
    """The run config `python run.py <overrides>` would get: a copy of its own, composed once per process (Hydra
    takes ~0.35 s a composition; a reproduction composes the same presets hundreds of times). Interpolations
    (${lr}, $AYLA_DATA) stay unresolved until read, as Hydra returns them."""
    return copy.deepcopy(composed(tuple(overrides)))


@cache
def composed(overrides: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def figure_arms(spec: DictConfig) -> dict:
    """A preset's arms: listed under `arms`, or for an lr-sensitivity figure every optimizer of `optimizers` at
    every lr of `lrs` (labelled "<optimizer> lr=<lr>"), trained as one population per update rule."""
    if "lrs" not in spec:
        return spec.arms
    return {f"{name} lr={lr:g}": [*overrides, f"lr={lr}"] for name, overrides in spec.optimizers.items()
            for lr in spec.lrs}
