"""What a result describes: the machine, the tools, the binary and the commit."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
from pathlib import Path

from . import REPO_ROOT
from . import procfs
from .loadgen import wrk_version


def run_text(cmd: list[str], timeout: float = 30) -> str:
    """What a command prints (stdout then stderr, stripped), run in the repository root; `unknown` if it cannot
    run."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO_ROOT))
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def git_commit() -> str | None:
    """HEAD's full hash, or None outside a git checkout."""
    try:
        r = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def binary_info(binary: str) -> dict:
    """Path, size, mtime and sha256 of a binary (path only when it cannot be read)."""
    try:
        data = Path(binary).read_bytes()
        st = os.stat(binary)
        return {"path": binary, "size": st.st_size,
                "mtime": _dt.datetime.fromtimestamp(st.st_mtime).isoformat(),
                "sha256": hashlib.sha256(data).hexdigest()}
    except OSError:
        return {"path": binary}


def node_version(node: str | None) -> str | None:
    if not node:
        return None
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_info(wrk: str, node: str | None, binary: str | None, c_build: dict | None = None,
                 new_sessions: bool = False) -> dict:
    """bench.py's and the fault suite's `machine` object."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": procfs.cpu_model(),
        "mem_total_kb": procfs.mem_total_kb(),
        "kernel": platform.release(),
        "uname": " ".join(platform.uname()),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "wrk": wrk_version(wrk),
        "node": node_version(node),
        "switchboard_binary": binary_info(binary) if binary else None,
        "c_subjects": c_build,
        "git_commit": git_commit(),
        "sched_autogroup_enabled": procfs.read_first_line("/proc/sys/kernel/sched_autogroup_enabled"),
        "new_sessions": new_sessions,
        "clk_tck": procfs.CLK_TCK,
    }
