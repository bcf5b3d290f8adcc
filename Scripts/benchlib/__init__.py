"""What Switchboard's measuring scripts share: Scripts/bench/bench.py, Scripts/bench/tls.py and the fault suite
(Scripts/faults with Scripts/faults_lib/). Standard library only; the chart also needs matplotlib.

procfs   -- /proc readers (CPU ticks, RSS, descriptors, children, CPU affinity) and their parsers
servers  -- a subject's master and workers: start, wait for the ready line and its port, stop by pid; the registry
            that kills everything a run started, on any exit
loadgen  -- wrk and h2load: command lines, runs (with the generator's own CPU time) and output parsers
stats    -- medians, spreads, ratios, nearest-rank percentiles, Jain's index, max/min, flatness
report   -- number formats, Markdown tables, the JSON file, paths as printed
machine  -- what the results describe: CPU, memory, kernel, tool versions, the binary, the commit
chart    -- the PNG charts (matplotlib; without it one line says how to install it)

A script puts Scripts/ on sys.path and imports `benchlib`. Tests: `python3 -m unittest discover -s
Scripts/benchlib/tests` from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

SCRIPTS = Path(__file__).resolve().parent.parent
REPO_ROOT = SCRIPTS.parent
HOST = "127.0.0.1"  # every subject listens here, every load goes here, and nowhere else


class BenchError(Exception):
    """A fatal, user-facing error: printed as one line, non-zero exit."""


class Terminated(BaseException):
    """Raised from the SIGTERM/SIGHUP handler (see servers.install_signal_handlers) so that every finally runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


Log = Callable[[str], None]


def make_log(prefix: str) -> Log:
    """A progress logger: `[prefix] message` on stderr, flushed at once."""

    def log(msg: str) -> None:
        print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)

    return log
