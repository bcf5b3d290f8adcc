"""bench.py's PNG charts. matplotlib is not installed at run time: `bash Scripts/bootstrap.sh chart` installs
Debian's python3-matplotlib. When the running interpreter cannot import it but Debian's /usr/bin/python3 can (a
pyenv or venv python3 first on PATH), the chart is drawn by that interpreter: `python3 -m benchlib.chart KIND
DATA.json OUT.png` with Scripts/ on PYTHONPATH. Without matplotlib anywhere, render() returns the one line that says
how to install it, and the caller skips the chart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import SCRIPTS
from .stats import mean_of_sorted

SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's python3-matplotlib is importable
APT_PACKAGE = "python3-matplotlib"


def install_command() -> str:
    return ("" if os.geteuid() == 0 else "sudo ") + f"apt-get install -y {APT_PACKAGE}"


def _importable_here() -> bool:
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def _other_interpreter() -> str | None:
    """Debian's python3, when it is not this interpreter and can import matplotlib."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return None
    try:
        if os.path.samefile(SYSTEM_PYTHON, sys.executable):
            return None
        r = subprocess.run([SYSTEM_PYTHON, "-c", "import matplotlib"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return SYSTEM_PYTHON if r.returncode == 0 else None


def render(kind: str, data: dict, path: Path) -> str | None:
    """Draws chart `kind` (a key of DRAW) of `data` into `path`. Returns None when it is drawn, else why not, as
    one line that names the install command."""
    path = Path(path)
    if _importable_here():
        DRAW[kind](data, path)
        return None
    interpreter = _other_interpreter()
    if interpreter is None:
        return f"matplotlib not available; install it with: {install_command()}"
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="switchboard-chart-") as f:
        json.dump(data, f)
        f.flush()
        env = dict(os.environ, PYTHONPATH=str(SCRIPTS), PYTHONDONTWRITEBYTECODE="1")
        r = subprocess.run([interpreter, "-m", "benchlib.chart", kind, f.name, str(path.resolve())],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"{interpreter} could not draw it: {tail}"
    return None


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, plt, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The two loads' colours, in the throughput and the latency panels alike.
LOAD_COLORS = {"keepalive": "#4c72b0", "close": "#dd8452"}
# The latency panel's percentiles (bench.py's key figures `<load>_<suffix>`), drawn from the back (the tallest, lightest
# bar) to the front (the median, in the load's full colour).
LATENCY_PERCENTILES = (("p99_9_ms", "p99.9", 0.3), ("p99_ms", "p99", 0.6), ("p50_ms", "p50", 1.0))
LOG_SCALE_SPAN = 10.0  # the latency panel goes to a log scale when its largest figure is this many times its smallest


def draw_comparison(data: dict, path: Path) -> None:
    """data: subjects (bench.json's), workers, title. Throughput bars with min–max whiskers and the latency
    percentiles of each load (top row), each subject's per-worker share (busiest first, averaged over rounds) and
    server CPU per connection (master + workers) (bottom row)."""
    subjects, workers = data["subjects"], data["workers"]
    plt = _pyplot()
    names = list(subjects)
    x = list(range(len(names)))
    fig, ((ax1, ax4), (ax2, ax3)) = plt.subplots(2, 2, figsize=(max(13, 2.4 * len(names) + 5), 10.4))

    width = 0.38
    for offset, key, label, color in ((-width / 2, "keepalive_req_per_s", "keep-alive req/s", LOAD_COLORS["keepalive"]),
                                      (width / 2, "close_conn_per_s", "close conn/s", LOAD_COLORS["close"])):
        meds = [subjects[n]["median"][key] or 0 for n in names]
        lo = [max(0, m - (subjects[n]["spread"][key] or [m, m])[0]) for n, m in zip(names, meds)]
        hi = [max(0, (subjects[n]["spread"][key] or [m, m])[1] - m) for n, m in zip(names, meds)]
        bars = ax1.bar([i + offset for i in x], meds, width, label=label, color=color, yerr=[lo, hi], capsize=3)
        for b, m in zip(bars, meds):
            ax1.annotate(f"{m:,.0f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                         fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, rotation=20, ha="right")
    ax1.set_ylabel("per second (median over rounds, bars = min–max)")
    ax1.set_title("Throughput")
    ax1.legend(fontsize=8)

    # Per-worker share: workers sorted by share (busiest first) in every round, averaged over rounds; one stacked
    # bar per load.
    cmap = plt.get_cmap("tab10")
    for offset, load, hatch in ((-width / 2, "keepalive", ""), (width / 2, "close", "//")):
        for i, n in enumerate(names):
            shares = mean_of_sorted([list(r[load]["shares"].values()) for r in subjects[n]["rounds"]])
            bottom = 0.0
            for w, share in enumerate(shares):
                ax2.bar(i + offset, share, width, bottom=bottom, color=cmap(w % 10), hatch=hatch,
                        edgecolor="white", linewidth=0.5)
                bottom += share
    if workers > 1:
        for k in range(1, workers):
            ax2.axhline(k / workers, color="grey", linestyle=":", linewidth=0.8)
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=20, ha="right")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("share of responses")
    ax2.set_title("Per-worker share (left: keep-alive, right/hatched: close;\n"
                  "workers ordered busiest first; dotted = even split)", fontsize=9)

    # Server CPU per connection of the close load: master and workers stacked.
    master = [subjects[n]["median"]["master_us_per_conn"] or 0 for n in names]
    workers_cpu = [subjects[n]["median"]["workers_us_per_conn"] or 0 for n in names]
    ax3.bar(x, master, 0.6, label="master", color="#c44e52")
    bars = ax3.bar(x, workers_cpu, 0.6, bottom=master, label="workers", color="#55a868")
    for b, m_, w_ in zip(bars, master, workers_cpu):
        ax3.annotate(f"{m_ + w_:.1f}" + (f"\n(m {m_:.1f})" if m_ >= 0.5 else ""),
                     (b.get_x() + b.get_width() / 2, m_ + w_), ha="center", va="bottom", fontsize=7,
                     xytext=(0, 2), textcoords="offset points")
    ax3.set_xticks(x)
    ax3.set_xticklabels(names, rotation=20, ha="right")
    ax3.set_ylabel("CPU µs per connection (close load, median)")
    ax3.set_title("Server CPU per connection (master + workers)", fontsize=9)
    ax3.legend(fontsize=8)

    draw_latency(ax4, subjects, names, width)
    _save(fig, plt, path, data["title"])


def draw_latency(ax, subjects: dict, names: list[str], width: float) -> None:
    """Per subject, one bar per load (keep-alive left, close right, the throughput panel's colours): p99.9, p99 and
    p50 (medians over rounds) overlaid from the back, each a shade darker, with the p99.9 figure on top. Log scale
    when the figures span LOG_SCALE_SPAN or more. Figures a run did not record (p99.9 before issue 23) are left out."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    x = list(range(len(names)))
    shown = []
    for offset, load, label in ((-width / 2, "keepalive", "keep-alive"), (width / 2, "close", "close")):
        for suffix, pct, alpha in LATENCY_PERCENTILES:
            meds = [subjects[n]["median"].get(f"{load}_{suffix}") for n in names]
            xs = [i + offset for i, m in zip(x, meds) if m]
            ys = [m for m in meds if m]
            shown += ys
            bars = ax.bar(xs, ys, width, color=LOAD_COLORS[load], alpha=alpha, edgecolor=LOAD_COLORS[load],
                          linewidth=0.6)
            if suffix == "p99_9_ms":
                for b, m in zip(bars, ys):
                    ax.annotate(f"{m:.2f}", (b.get_x() + b.get_width() / 2, m), ha="center", va="bottom", fontsize=7,
                                xytext=(0, 2), textcoords="offset points")
    if shown and max(shown) >= LOG_SCALE_SPAN * min(shown):
        ax.set_yscale("log")
        ax.set_ylim(min(shown) / 2, max(shown) * 2.5)  # room below the medians and above the p99.9 labels
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 2, 5, not 10^0
        ax.yaxis.set_minor_formatter(NullFormatter())
        scale = "log scale"
    else:
        ax.set_ylim(0, (max(shown) if shown else 1) * 1.15)
        scale = "linear"
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_ylabel(f"latency ms (median over rounds, {scale})")
    ax.set_title("Latency: p50 / p99 / p99.9 (figure on top = p99.9)", fontsize=9)
    handles = [Patch(facecolor=LOAD_COLORS[load], alpha=alpha, edgecolor=LOAD_COLORS[load],
                     label=f"{label} {pct}")
               for load, label in (("keepalive", "keep-alive"), ("close", "close"))
               for _, pct, alpha in LATENCY_PERCENTILES]
    ax.legend(handles=handles, fontsize=7, ncol=2)


def draw_sweep(data: dict, path: Path) -> None:
    """data: sweep (sweep.json's), figures ([key, label] of the three to draw), title. Each figure against the
    worker count (log scale), one line per subject, min–max whiskers."""
    sweep = data["sweep"]
    plt = _pyplot()
    counts = sweep["counts"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (key, label) in zip(axes, data["figures"]):
        for mode, sub in sweep["subjects"].items():
            meds = [sub["points"][str(w)]["median"][key] for w in counts]
            lo = [m - (sub["points"][str(w)]["spread"][key] or [m, m])[0] if m is not None else 0
                  for w, m in zip(counts, meds)]
            hi = [(sub["points"][str(w)]["spread"][key] or [m, m])[1] - m if m is not None else 0
                  for w, m in zip(counts, meds)]
            ys = [m if m is not None else float("nan") for m in meds]
            ax.errorbar(counts, ys, yerr=[lo, hi], marker="o", capsize=3, label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts)
        ax.set_xticklabels([str(w) for w in counts])
        ax.set_xlabel("workers")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.set_title(label + " (close load)", fontsize=9)
        ax.legend(fontsize=8)
    _save(fig, plt, path, data["title"])


DRAW = {"comparison": draw_comparison, "sweep": draw_sweep}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in DRAW:
        print(f"usage: python3 -m benchlib.chart {{{','.join(DRAW)}}} DATA.json OUT.png", file=sys.stderr)
        return 64
    kind, data_path, out = argv
    with open(data_path) as f:
        data = json.load(f)
    DRAW[kind](data, Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
