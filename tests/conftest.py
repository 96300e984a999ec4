"""Shared test helpers: config composition, the real data in ../shared/data, running run.py.

tests/ayla/ holds the add-on's tests (torch and pytest alone, plus the stacks of its integrations); the rest test
the suite, one module per concern."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # run.py, the command line, is imported by the CLI tests
CONF = PROJECT / "conf"
DATA = Path(os.environ.get("AYLA_DATA") or PROJECT.parent / "shared" / "data").resolve()


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Decoded-data caches of the tests live in a temp folder, never in ~/.cache or the data root."""
    os.environ["AYLA_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["AYLA_DATA"] = str(DATA)


SLOW_MODULES = {"test_integrations.py"}  # every test marked slow, and their imports alone take ~10 s


def pytest_ignore_collect(collection_path, config):
    """The quick loop (`-m "not slow"`) does not even import the modules whose every test is slow."""
    if config.getoption("markexpr", "") == "not slow" and collection_path.name in SLOW_MODULES:
        return True
    return None


def real_data(name: str) -> Path:
    """The real data set in the array format; outside CI a missing copy skips the test, in CI it fails."""
    if not (DATA / name / "train.npz").exists():
        message = f"real {name} not found under {DATA} (set AYLA_DATA to ../shared/data)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return DATA


def make_config(*overrides: str):
    """The composed run config, as `python run.py <overrides>` would see it."""
    from hydra import compose, initialize_config_dir  # here: the add-on's tests (tests/ayla/) need torch alone
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_cli(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python run.py args` with outputs under cwd."""
    return subprocess.run([sys.executable, str(PROJECT / "run.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_same_across_thread_counts(a, b):
    """Two runs of the same float32 training with other torch thread counts (a process of all cores against jobs
    sharing them): MKL and oneDNN promise no bit-equality across thread counts, and other CPUs split their sums
    otherwise (measured under other kernels: 7.8e-6 relative on a test loss). Non-float columns are equal; float
    columns within 1e-4 relative; accuracies within one flipped prediction in a thousand."""
    import pandas as pd
    accuracy = [c for c in a.columns if "acc" in c]
    pd.testing.assert_frame_equal(a.drop(columns=accuracy), b.drop(columns=accuracy), check_exact=False, rtol=1e-4,
                                  atol=1e-7)
    for column in accuracy:
        pd.testing.assert_series_equal(a[column], b[column], check_exact=False, rtol=0, atol=1e-3)


def suite_with_plugin(tmp_path: Path, module: str, code: str) -> tuple[Path, dict]:
    """A copy of the suite (ayla, experiments, conf, run.py) under tmp_path/suite, and a third-party module of the
    given code on a PYTHONPATH outside it: what a user who adds a plugin by YAML alone has. Returns the copy and the
    environment that sees the plugin."""
    import shutil
    suite = tmp_path / "suite"
    for name in ("ayla", "experiments", "conf"):
        shutil.copytree(PROJECT / name, suite / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "run.py", suite / "run.py")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"{module}.py").write_text(code)
    return suite, {**os.environ, "PYTHONPATH": str(tmp_path / "plugins")}


def adam_and_ayla_trained(experiment: str, overrides: list[str], seed: int = 7):
    """Two arms of one seed through the suite's trainer in float64, Adam and AYLA on Adam (lr 0.003, N1 0.1, N2
    1.5: both branches of the factor), for a plain loop with AYLA(torch.optim.Adam) to be compared with. Returns
    the AYLA arm's config, the task and what the trainer trained."""
    import torch

    from experiments.engine.config import DTYPES, arm_from_config
    from experiments.engine.trainer import train
    from experiments.tasks import TASKS
    overrides = [*overrides, "dtype=float64", "epochs=2", "lr=0.003", "N1=0.1", "N2=1.5"]
    cfg = make_config(f"experiment={experiment}", "optimizer=ayla", *overrides)
    adam = arm_from_config(make_config(f"experiment={experiment}", "optimizer=adam", *overrides), "Adam")
    task = TASKS[experiment](cfg, torch.device("cpu"), DTYPES[cfg.dtype])
    trained = train(task, [adam, arm_from_config(cfg, "AYLA")], [seed], cfg.epochs, log=lambda line: None)
    return cfg, task, trained


def plain_ayla_loop(task, seed: int, epochs: int, parameters, loss_of, lr: float = 0.003) -> list[float]:
    """The plain loop the trainer must equal: AYLA(torch.optim.Adam(parameters), N1 0.1, N2 1.5) stepping on
    `loss_of(rows)` for the seed's batches in the trainer's order (its shuffling stream, its last partial batch
    dropped). Returns the losses."""
    import torch

    from ayla import AYLA
    from experiments.engine.trainer import SHUFFLE_STREAM, stream_seed
    optimizer = AYLA(torch.optim.Adam(parameters, lr=lr), N1=0.1, N2=1.5)
    shuffler = torch.Generator().manual_seed(stream_seed(seed, SHUFFLE_STREAM))
    pool, losses = task.train_pool([seed])[0], []
    for _ in range(epochs):
        order = torch.randperm(task.n_train, generator=shuffler)
        for start in range(0, task.n_train - task.batch_size + 1, task.batch_size):
            loss = loss_of(pool[order[start:start + task.batch_size]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(loss=loss)
            losses.append(loss.item())
    return losses
