"""Checks of a composed run config (conf/config.yaml), each failure one ConfigError line naming the key."""

import math
from numbers import Integral, Real
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ayla.transform import check_exponents
from experiments import experiment_names
from experiments.engine import optimizers
from experiments.engine.trainer import Arm
from experiments.errors import ConfigError

TOP_LEVEL = {"experiment", "optimizer", "figure", "sweep", "lr", "N1", "N2", "epochs", "seed", "hidden",
             "batch_size", "loss", "device", "dtype", "init", "data"}
EXPERIMENT_SOURCES = {"experiment", "figure", "sweep"}  # config groups whose presets choose the experiment
IGNORED_BY = {"N1": lambda opt: not opt.ayla, "N2": lambda opt: not opt.ayla}  # read by AYLA arms only
LOSSES = ("ce", "mse")
# dtype → the dtype of the weights, optimizer state and AYLA factor; bfloat16 is an opt-in for speed: fp32 master
# weights and optimizer state, the forward and backward GEMMs under autocast in bfloat16 (AUTOCAST)
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.float32}
AUTOCAST = {"bfloat16": torch.bfloat16}
INITS = ("authors", "pytorch")
# optimizer keys that only follow a top-level setting (conf/optimizer/*.yaml: lr: ${lr}): set them there, once
MIRRORS = {"optimizer.lr": "lr", "optimizer.N1": "N1", "optimizer.N2": "N2"}


def number(cfg, key: str, low: float, *, low_ok: bool = False, integer: bool = False, high: float = math.inf):
    """cfg[key] as a number in (low, high) (or [low, high) with low_ok); else a ConfigError naming key."""
    value = OmegaConf.select(cfg, key)
    kind = "an integer" if integer else "a finite number"
    bound = f"{'>=' if low_ok else '>'} {low:g}" + (f" and < {high:g}" if high < math.inf else "")
    good_type = isinstance(value, Integral if integer else Real) and not isinstance(value, bool)
    if not good_type or not math.isfinite(value) or not (value >= low if low_ok else value > low) or value >= high:
        raise ConfigError(f"{key} must be {kind} {bound}, got {value!r}")
    return value


def choice(cfg, key: str, allowed) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def check_cli_overrides(argv: list[str], conf_dir: Path) -> None:
    """The command-line slips Hydra reports over several lines, said in one: an option of a config group that
    does not exist, a misspelled top-level key, and a key the chosen optimizer's YAML does not have. What this
    cannot parse is left to Hydra."""
    try:
        from hydra._internal.utils import get_args_parser
        from hydra.core.override_parser.overrides_parser import OverridesParser
        args, _ = get_args_parser().parse_known_args(argv)
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except Exception:  # noqa: BLE001 - Hydra gives its own message for anything it cannot parse
        return
    groups = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in conf_dir.iterdir()
              if p.is_dir() and p.name != "hydra"}
    asks_hydra_only = args.help or args.hydra_help or args.info or args.shell_completion
    if not asks_hydra_only and not {o.key_or_group for o in overrides} & EXPERIMENT_SOURCES:
        raise ConfigError(f"choose an experiment: experiment=NAME with NAME one of {', '.join(groups['experiment'])} "
                          "(e.g. python run.py experiment=mnist optimizer=ayla N1=0.1; figure=... and sweep=... "
                          "presets choose their own)")
    chosen = next((o.get_value_element_as_str() for o in overrides if o.key_or_group == "optimizer"
                   and not o.is_sweep_override()), None)  # the optimizer YAML named on the command line, if one
    for override in overrides:
        name = override.key_or_group
        if override.is_delete() or override.is_add() or override.is_force_add() or name.startswith("hydra"):
            continue
        if name in MIRRORS:
            value = "..." if override.is_sweep_override() else override.get_value_element_as_str()
            raise ConfigError(f"set {MIRRORS[name]}={value}, not {name}: {name} follows the top-level "
                              f"{MIRRORS[name]} (one setting, one key)")
        if name.startswith("optimizer.") and chosen in groups["optimizer"] and not override.is_sweep_override():
            keys = OmegaConf.load(conf_dir / "optimizer" / f"{chosen}.yaml")
            key = name.split(".", 1)[1].split(".")[0]
            if key not in keys:
                value = (override.input_line or "").partition("=")[2] or override.get_value_element_as_str()
                if key in optimizers.SUITE_KEYS or "_target_" not in keys:  # the suite's own, or AYLA's base's
                    raise ConfigError(f"{name} is not a key of conf/optimizer/{chosen}.yaml; add it with "
                                      f"+{name}={value}" + ("" if key in optimizers.SUITE_KEYS else
                                                             " (AYLA's base runs with its own YAML's settings; "
                                                             "this one replaces that YAML's value)"))
                raise ConfigError(f"{name} is not a key of conf/optimizer/{chosen}.yaml: the keyword arguments the "
                                  f"suite passes to {keys._target_} are that YAML's keys; add {key} there to set it")
        if name in groups:
            try:
                values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                          else [override.get_value_element_as_str()])
            except Exception:  # noqa: BLE001 - glob() and the like: Hydra expands them
                continue
            for value in values:
                if value not in groups[name] and value != "null":
                    raise ConfigError(f"{name}={value} does not exist; choose one of {', '.join(groups[name])}")
        elif "." not in name and name not in TOP_LEVEL:
            raise ConfigError(f"unknown key {name!r}; the top-level keys are {', '.join(sorted(TOP_LEVEL))} "
                              f"(nested ones as group.key=value, new ones as +{name}=...)")


def resolve_device(name) -> torch.device:
    """auto: the GPU when there is one, else the CPU; cuda without a GPU is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not (name == "cpu" or name.split(":")[0] == "cuda"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is visible to torch here; use device=cpu or device=auto")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device={name} but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def ignored_settings(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The settings given on the command line that the chosen optimizer does not read."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    ignored = [key for key, ignored in IGNORED_BY.items() if key in given and ignored(cfg.optimizer)]
    if cfg.optimizer.base in optimizers.names():  # a base hyperparameter the base's YAML does not pass
        uses = optimizers.SUITE_KEYS | set(optimizers.load(cfg.optimizer.base).defaults)
        ignored += sorted(key for key in given if key.startswith("optimizer.")
                          and key.split(".")[1] not in uses)
    return ignored


def check_run_config(cfg: DictConfig) -> None:
    """Every value a run reads, in range; raises ConfigError on the first bad one."""
    if OmegaConf.select(cfg, "experiment.name") is None:
        raise ConfigError(f"choose an experiment: experiment=NAME with NAME one of {', '.join(experiment_names())}")
    unknown = sorted(set(cfg.keys()) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_LEVEL))}")
    number(cfg, "lr", 0)
    for key in ("N1", "N2"):  # refused whatever the optimizer: a bad value is a slip even where it is not read
        number(cfg, key, 0, low_ok=True)
    number(cfg, "epochs", 1, low_ok=True, integer=True)
    number(cfg, "seed", 0, low_ok=True, integer=True)
    for key in ("hidden", "batch_size"):
        if cfg[key] is not None:
            number(cfg, key, 1, low_ok=True, integer=True)
    if cfg.loss is not None:
        choice(cfg, "loss", LOSSES)
    choice(cfg, "dtype", tuple(DTYPES))
    choice(cfg, "init", INITS)
    resolve_device(cfg.device)
    for key in ("data.train_subset", "data.test_subset", "data.val_size"):
        number(cfg, key, 0, low_ok=True, integer=True)
    check_optimizer(cfg)


def check_optimizer(cfg: DictConfig) -> None:
    opt = cfg.optimizer
    number(cfg, "optimizer.lr", 0)
    number(cfg, "optimizer.grad_scale", 0)
    # the base (one of conf/optimizer/, able to train fused populations) and its own hyperparameters (where the
    # config sets them, else its YAML's defaults): types from the YAML, ranges by name and from the class itself
    optimizers.check_settings(opt.base, float(opt.lr), OmegaConf.to_container(opt, resolve=True))
    if "dynamic_eps" in opt and not isinstance(opt.dynamic_eps, bool):
        raise ConfigError(f"optimizer.dynamic_eps must be true or false, got {opt.dynamic_eps!r}")
    if opt.get("dynamic_eps") and (opt.ayla or optimizers.load(opt.base).rule() != "adam"):
        raise ConfigError("optimizer.dynamic_eps is a control for optimizer=adam (Adam with eps / the AYLA "
                          "factor of its own loss); drop it or use optimizer=adam")
    if opt.ayla:
        try:
            check_exponents(opt.N1, opt.N2)
        except ValueError as error:
            raise ConfigError(f"{error} (top-level N1 / N2, read by optimizer=ayla)") from None


def arm_from_config(cfg: DictConfig, name: str | None = None) -> Arm:
    """The trainer's Arm for a checked run config; `name` labels it (default: the optimizer's name)."""
    opt = cfg.optimizer
    settings = dict(name=name or opt.name, base=opt.base, lr=float(opt.lr), grad_scale=float(opt.grad_scale))
    if opt.ayla:
        settings |= dict(ayla=True, N1=float(opt.N1), N2=float(opt.N2))
    if opt.get("dynamic_eps"):  # +optimizer.dynamic_eps=true: Adam with eps / the AYLA factor of N1, N2
        settings |= dict(dynamic_eps=True, N1=float(cfg.N1), N2=float(cfg.N2))
    plain = OmegaConf.to_container(opt, resolve=True)
    values = {key: plain.get(key, default) for key, default in optimizers.spec_of(opt.base).defaults.items()}
    if len(values.get("betas", ())) == 2:  # Adam's pair; any other length stays among the options
        beta1, beta2 = values.pop("betas")
        settings |= dict(beta1=float(beta1), beta2=float(beta2))
    settings |= {key: float(values.pop(key)) for key in ("eps", "momentum", "weight_decay") if key in values}
    # the rest: RMSprop's alpha and centered, and so on (lists as tuples: an Arm is hashable)
    settings["options"] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))
    return Arm(**settings)
