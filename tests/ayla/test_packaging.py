"""The add-on installs with torch alone: the wheel `pip install .` builds requires torch and nothing else, holds
`ayla` and not the suite, and the README's add-on snippet runs in a bare venv where torch (with what torch itself
needs) is the only package besides the wheel."""

import importlib.metadata
import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow


def requirement_closure(name: str) -> set[str]:
    """`name` and every distribution it requires (no extras), as installed here."""
    seen, todo = set(), [name]
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def top_level_entries(name: str) -> set[str]:
    """The site-packages entries (packages, modules, .dist-info) one installed distribution owns."""
    entries = set()
    for file in importlib.metadata.distribution(name).files or []:
        first = file.parts[0]
        if first not in ("..", "__pycache__") and not first.endswith(".pth"):
            entries.add(first)
    return entries


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(PROJECT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return next(out.glob("ayla-*.whl"))


def test_the_wheel_requires_torch_alone_and_holds_the_addon_only(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    required = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    unconditional = [r for r in required if "extra ==" not in r]
    assert [Requirement(r).name for r in unconditional] == ["torch"], unconditional
    assert any("hydra-core" in r and 'extra == "suite"' in r for r in required)  # the suite's packages: an extra
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"ayla"}, packages  # no top-level `experiments` (or scripts, tests) in site-packages
    assert "ayla/integrations/lightning.py" in names


def readme_addon_snippet() -> str:
    readme = (PROJECT / "README.md").read_text()
    section = readme[readme.index("## AYLA in your own training loop"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def clean_env() -> dict:
    """This process's environment without PYTHONPATH: nothing of the checkout leaks into the bare venv."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def bare_python(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel, with torch and pytest (and what each requires) made visible through one
    .pth (no download): nothing else of this venv."""
    root = tmp_path_factory.mktemp("bare")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    visible = root / "torch_and_pytest"
    visible.mkdir()
    site = next(p for p in map(Path, sys.path) if (p / "torch" / "__init__.py").exists())
    for dist in requirement_closure("torch") | requirement_closure("pytest"):
        for entry in top_level_entries(dist):
            if (site / entry).exists() and not (visible / entry).exists():
                (visible / entry).symlink_to(site / entry)
    bare_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=clean_env()).stdout.strip()
    (Path(bare_site) / "torch_and_pytest.pth").write_text(str(visible) + "\n")
    # the venv's own setuptools (ensurepip's, older than torch allows) gives way to the one torch requires
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True, timeout=120,
                   env=clean_env())
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
                             capture_output=True, text=True, timeout=300, env=clean_env())
    assert install.returncode == 0, install.stderr[-2000:]
    return python


def test_the_readme_snippet_runs_with_torch_alone(bare_python, tmp_path):
    check = subprocess.run([str(bare_python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120,
                           env=clean_env())
    assert check.returncode == 0, check.stdout + check.stderr  # every requirement of ayla (torch) is met
    absent = subprocess.run([str(bare_python), "-c", "import importlib.util as u; print([m for m in ('hydra', "
                             "'pandas', 'matplotlib', 'scipy', 'torchvision', 'experiments') if u.find_spec(m)])"],
                            capture_output=True, text=True, cwd=tmp_path, check=True, env=clean_env())
    assert absent.stdout.strip() == "[]"
    script = tmp_path / "snippet.py"
    script.write_text(readme_addon_snippet())
    result = subprocess.run([str(bare_python), str(script)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300, env=clean_env())
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_addons_own_tests_pass_with_torch_and_pytest_alone(bare_python, tmp_path):
    """tests/ayla/test_transform.py and test_wrapper.py, run by the bare venv's python against the installed wheel
    (a copy of the two files outside the checkout, so that nothing of the suite is on the path)."""
    for name in ("test_transform.py", "test_wrapper.py"):
        (tmp_path / name).write_text((PROJECT / "tests" / "ayla" / name).read_text())
    result = subprocess.run([str(bare_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_transform.py",
                             "test_wrapper.py"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env=clean_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1] and " failed" not in result.stdout.splitlines()[-1]
