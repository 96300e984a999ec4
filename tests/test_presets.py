"""Every preset under conf/, found by globbing (a new preset is tested without editing a list): it composes, its
values pass the run checks, and it names things that exist."""

from pathlib import Path

import pytest
from conftest import CONF, make_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments import presets as conf_presets
from experiments.engine.config import arm_from_config, check_run_config
from experiments.pipelines import launch
from experiments.pipelines.units import figure_units
from experiments.tasks import TASKS


def presets(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_group_has_presets():
    for group in ("experiment", "optimizer", "figure", "sweep", "launcher"):
        assert presets(group), group


@pytest.mark.parametrize("name", presets("experiment"))
def test_experiment_preset_composes_and_has_a_task(name):
    cfg = make_config(f"experiment={name}", "hidden=8")
    assert cfg.experiment.name == name and name in TASKS
    check_run_config(cfg)


@pytest.mark.parametrize("name", presets("optimizer"))
def test_optimizer_preset_composes_into_an_arm(name):
    cfg = make_config("experiment=mnist", f"optimizer={name}")
    check_run_config(cfg)
    arm = arm_from_config(cfg)
    assert arm.name == cfg.optimizer.name == name and arm.lr > 0


@pytest.mark.parametrize("name", presets("figure"))
@pytest.mark.slow
def test_figure_preset_composes_every_arm_and_control(name):
    preset = conf_presets.compose_run([f"figure={name}"])
    assert preset.figure.name == name and preset.figure.kind
    if preset.figure.get("runs"):  # drawn from another figure's runs: that preset's settings are this one's
        source = conf_presets.compose_run([f"figure={preset.figure.runs}"])
        assert figure_units(name) == [] and not source.figure.get("runs")
        assert {k: v for k, v in source.items() if k != "figure"} == {k: v for k, v in preset.items() if k != "figure"}
        assert source.figure.arms == preset.figure.arms and source.figure.hidden == preset.figure.hidden
        return
    units = figure_units(name)
    assert [u.hidden for u in units] == list(preset.figure.hidden)
    for unit in units:
        assert unit.names and len(unit.names) == len(unit.cfgs)
        for cfg, arm in zip(unit.cfgs, unit.names):
            check_run_config(cfg)
            assert arm_from_config(cfg, arm).name == arm
    for control in conf_presets.control_sets(preset):  # composed without their figure's runs where they need none
        arms = preset.figure[control].arms
        assert arms, control
        if control != "ablation":
            for unit in figure_units(name, arms_key=f"{control}.arms"):
                for cfg in unit.cfgs:
                    check_run_config(cfg)
    # each control is matched to an AYLA arm of the figure (its scale, its exponents, its share's denominator)
    controls = {arm for control in ("ablation", "dynamic_eps") if control in preset.figure
                for arm in preset.figure[control].arms}
    matched = conf_presets.matched_arms(preset.figure)
    assert set(matched) == controls
    arms = conf_presets.figure_arms(preset.figure)
    assert all(arms[arm][0] == "optimizer=ayla" for arm in matched.values())
    assert set(preset.figure.get("ablation", {}).get("scaled", {})) <= controls


@pytest.mark.parametrize("name", presets("sweep"))
def test_sweep_preset_composes_and_its_grid_is_its_budget(name):
    cfg = conf_presets.compose_run([f"sweep={name}", "hidden=8"])
    check_run_config(cfg)
    assert cfg.sweep.name == name and cfg.sweep.method
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        params = compose("config", overrides=[f"sweep={name}"], return_hydra_config=True).hydra.sweeper.params
    grid = 1
    for values in params.values():
        grid *= len(str(values).split(","))
    assert grid == cfg.sweep.trials
    for key in params:  # each swept key exists in the run config
        assert OmegaConf.select(cfg, key) is not None, key


@pytest.mark.parametrize("name", presets("launcher"))
def test_launcher_preset_loads(name):
    settings = launch.load_launcher(name)
    assert settings.executor in ("inprocess", "local", "slurm")
    if settings.executor != "inprocess":
        assert "parameters" in settings


def test_every_figure_and_sweep_is_reachable():
    """The reproduction runs every figure preset, and the fair comparisons every sweep preset."""
    assert set(conf_presets.load_settings().figures) == set(presets("figure"))
    fair = OmegaConf.load(Path(CONF) / "fair.yaml")
    assert {s for c in fair.comparisons.values() for s in (c.ayla, *c.baselines)} == set(presets("sweep"))
