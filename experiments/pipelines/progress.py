"""Progress of a long command (make reproduce, make fair): populations done / running / left, elapsed time and
an ETA. Populations trained as jobs (experiments/launch.py) are shown as running from submission to their end.

On a terminal, one tqdm bar redrawn in place, with the messages printed above it; anywhere else (CI, a file)
the bar is off and only the messages remain: a line per population started and finished, not one per batch.
Each population's per-epoch lines go to its own log file, <out>/logs/<figure>[_H<hidden>].log, in both cases.
"""

import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from experiments.errors import OutputError


class Progress:
    def __init__(self, populations: int, out: Path, log=None, stream=None):
        self.stream = stream or sys.stderr
        self.bar = tqdm(total=populations, unit="population", desc="training", file=self.stream,
                        disable=not (populations and self.stream.isatty()),
                        ncols=shutil.get_terminal_size((100, 24)).columns,  # a pty may report 0 columns
                        bar_format="{desc} {n_fmt}/{total_fmt} populations |{bar}| {elapsed} elapsed, ETA "
                                   "{remaining} {postfix}")
        self.logs = Path(out) / "logs"
        self.log = log or self.message
        self.running: list[str] = []

    def message(self, line: str) -> None:
        """A line above the bar (plain print where there is no bar)."""
        if self.bar.disable:
            print(line, flush=True)
        else:
            self.bar.write(line, file=self.stream)

    def log_path(self, name: str) -> Path:
        """<out>/logs/<name>.log, its folder made (an unwritable one is one OutputError line)."""
        path = self.logs / f"{name.replace(' ', '_').replace('=', '').replace('/', '_')}.log"
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
        return path

    def unit_log(self, name: str):
        """A log function appending to this population's log file; the running population in the bar."""
        path = self.log_path(name)
        self.bar.set_postfix_str(f"running: {name}")

        def write(line: str) -> None:
            with open(path, "a") as f:
                f.write(line + "\n")
        return write

    def done(self) -> None:
        self.bar.update(1)

    def started(self, name: str, job_id: str) -> None:
        """A population submitted as a job."""
        self.running.append(name)
        self.log(f"{name}: job {job_id} started")
        self.bar.set_postfix_str(f"running: {', '.join(self.running)}")

    def finished(self, name: str) -> None:
        self.running.remove(name)
        self.log(f"{name}: job finished")
        self.bar.set_postfix_str(f"running: {', '.join(self.running)}" if self.running else "")
        self.done()

    def failed(self, line: str) -> None:
        """A job that failed: one line naming it and its log; the bar does not advance."""
        self.running = [name for name in self.running if not line.startswith(f"{name}:")]
        self.log(line)

    def close(self) -> None:
        self.bar.close()
