"""The add-on installs with torch alone: the wheel `pip install .` builds requires torch and nothing else, holds
`ayla` and not the suite, and the README's add-on snippet runs in a bare venv where torch (with what torch itself
needs) is the only package besides the wheel."""

import importlib.metadata
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


def test_the_readme_snippet_runs_with_torch_alone(wheel, tmp_path):
    env_dir = tmp_path / "bare"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # torch and what torch requires, made visible through one .pth (no download): nothing else of this venv
    visible = tmp_path / "torch_only"
    visible.mkdir()
    site = next(p for p in map(Path, sys.path) if (p / "torch" / "__init__.py").exists())
    for dist in requirement_closure("torch"):
        for entry in top_level_entries(dist):
            if (site / entry).exists() and not (visible / entry).exists():
                (visible / entry).symlink_to(site / entry)
    bare_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    (Path(bare_site) / "torch_only.pth").write_text(str(visible) + "\n")
    # the venv's own setuptools (ensurepip's, older than torch allows) gives way to the one torch requires
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True, timeout=120)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr  # every requirement of ayla (torch) is met
    absent = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in ('hydra', 'pandas', "
                             "'matplotlib', 'scipy', 'torchvision', 'experiments') if u.find_spec(m)])"],
                            capture_output=True, text=True, cwd=tmp_path, check=True)
    assert absent.stdout.strip() == "[]"
    script = tmp_path / "snippet.py"
    script.write_text(readme_addon_snippet())
    result = subprocess.run([str(python), str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
