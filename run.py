"""One run of one experiment with one optimizer (Hydra entry point).

    python run.py experiment=mnist optimizer=ayla N1=0.1
    python run.py -m experiment=mnist optimizer=adam,ayla seed=0,1,2
"""

import shutil
import sys
from pathlib import Path

try:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from experiments import share_project_path
    from experiments.engine.config import check_cli_overrides, check_run_config, ignored_settings
    from experiments.errors import AylaError, ConfigError
    from experiments.pipelines.runner import run_population, write_run
except ModuleNotFoundError as missing:  # e.g. the system Python instead of the project's .venv
    sys.exit(f"error: {missing.name} is not installed for {sys.executable}: run `make install` once, then "
             "`make run ARGS=\"...\"` or `.venv/bin/python run.py ...`")

CONF = Path(__file__).resolve().parent / "conf"
share_project_path()  # Hydra's launchers start jobs that unpickle this run's function: they must find experiments/


def discard_if_empty(folder: Path) -> None:
    """Remove a run folder that holds nothing but Hydra's own files: a failed run leaves no half-made folder."""
    if folder.is_dir() and all(p.name in (".hydra", "run.log") for p in folder.iterdir()):
        shutil.rmtree(folder)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Returns the last epoch's validation accuracy (with data.val_size > 0): the objective of a tuning sweep."""
    folder = Path(HydraConfig.get().runtime.output_dir)
    try:
        check_run_config(cfg)
        ignored = ignored_settings(cfg, list(HydraConfig.get().overrides.task))
        if ignored:
            print(f"warning: optimizer={cfg.optimizer.name} (base {cfg.optimizer.base}) does not read "
                  f"{', '.join(ignored)}, so {'it has' if len(ignored) == 1 else 'they have'} no effect on this run"
                  + (" (add optimizer=ayla to use N1/N2)" if {"N1", "N2"} & set(ignored) else ""), file=sys.stderr)
        metrics, snapshots = run_population([cfg], [cfg.seed])
        csv = write_run(folder, metrics, snapshots, [cfg])
    except KeyboardInterrupt:
        discard_if_empty(folder)
        print("interrupted: the run had not finished, so nothing of it was kept; rerun the command to train it",
              file=sys.stderr)
        sys.exit(130)
    except AylaError as error:
        discard_if_empty(folder)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if metrics["diverged"].any():
        print(f"diverged: the loss became NaN/inf at epoch {metrics['epoch'].iloc[-1]}; the CSV stops there")
    print(f"wrote {csv}")
    if "val_acc" in metrics:
        return float(metrics.loc[metrics["epoch"] == metrics["epoch"].max(), "val_acc"].mean())
    return None


def cli(argv: list[str] | None = None) -> None:
    """`python run.py <argv>`: the one-line checks of the command line, then Hydra."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        check_cli_overrides(argv, CONF)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]  # hydra.main parses sys.argv
    main()


if __name__ == "__main__":
    cli()
