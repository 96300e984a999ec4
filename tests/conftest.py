"""Shared test helpers: config composition, the real data in ../shared/data, running run.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # run.py, the command line, is imported by the CLI tests
CONF = PROJECT / "conf"
DATA = Path(os.environ.get("AYLA_DATA") or PROJECT.parent / "shared" / "data").resolve()


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Decoded-data caches of the tests live in a temp folder, never in ~/.cache or the data root."""
    os.environ["AYLA_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["AYLA_DATA"] = str(DATA)


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
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_cli(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python run.py args` with outputs under cwd."""
    return subprocess.run([sys.executable, str(PROJECT / "run.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
