"""Results written whole (temp file, then rename) and stamped with what produced them."""

import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from experiments.errors import OutputError
from experiments.fingerprint import fingerprints

PROJECT = Path(__file__).resolve().parent.parent
UMASK = os.umask(0)
os.umask(UMASK)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temp file beside `path` and rename it over: readers see the old file or the new, never half.

    An unwritable folder or a full disk becomes an OutputError; the temp file is removed and `path` untouched.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror or error}; free space or choose another "
                          "output folder (hydra.run.dir=... / OUT=...)") from None


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, frame.to_csv(index=False, float_format="%.9g"))


def git_state() -> dict:
    """Commit of the code and whether it differs from it: a tracked file outside results/ changed, or an untracked
    file that a fingerprint could hash (a new task, model or preset: its code is in no commit)."""
    from experiments.fingerprint import selected

    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10)
    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results")
        untracked = git("ls-files", "--others", "--exclude-standard", "--", ".", ":!results")
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    if commit.returncode != 0:
        return {"commit": "unknown", "dirty": None}
    new_sources = [p for p in untracked.stdout.splitlines() if selected(p)]
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip() or new_sources)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def provenance(device: torch.device) -> dict:
    """What produced a result: code version and this code's fingerprint of every experiment
    (experiments/fingerprint.py; a run's own is its experiment's), library versions, hardware, time and command
    line."""
    import numpy
    return {**git_state(), "fingerprints": fingerprints(), "python": sys.version.split()[0],
            "torch": str(torch.__version__), "numpy": numpy.__version__, "pandas": pd.__version__,
            "platform": platform.platform(),
            "device": str(device), "device_name": device_name(device),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": " ".join(sys.argv)}
