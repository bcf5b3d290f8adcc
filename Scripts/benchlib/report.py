"""What the scripts print and write: number formats, Markdown tables, the JSON file, paths as shown."""

from __future__ import annotations

import json
from pathlib import Path


def rel(p) -> str:
    """A path relative to the working directory when it lies below it, else as given."""
    try:
        return str(Path(p).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def fmt_num(v, digits=0) -> str:
    """Thousands separators and `digits` decimals; None is `–`. digits=-1 is for max/min: 2 decimals, None is `∞`."""
    if v is None:
        return "∞" if digits == -1 else "–"
    if digits == -1:
        digits = 2
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_spread(med, sp, digits, show_spread) -> str:
    """A median, then ` (min–max)` when asked and the spread is not a single value."""
    s = fmt_num(med, digits)
    if show_spread and sp is not None and sp[0] != sp[1]:
        s += f" ({fmt_num(sp[0], digits)}–{fmt_num(sp[1], digits)})"
    return s


def fmt_ratio(v) -> str:
    """Two decimals, or two significant digits below 0.1; None is `–`."""
    if v is None:
        return "–"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def fmt_fixed(v, digits=0, spread=None) -> str:
    """Like fmt_num with a fixed number of decimals, and ` (min–max)` after it when `spread` holds two values that
    differ (tls.py's format)."""
    if v is None:
        return "–"
    s = f"{v:,.{digits}f}"
    if spread and spread[0] != spread[1]:
        s += f" ({spread[0]:,.{digits}f}–{spread[1]:,.{digits}f})"
    return s


def markdown_table(head: list[str], aligns: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: `aligns` holds each column's separator cell (`---` left, `---:` right)."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def first_left(n: int, left: int = 1) -> list[str]:
    """Separator cells: the first `left` columns left-aligned, the other n - left right-aligned (figures)."""
    return ["---"] * left + ["---:"] * (n - left)


def write_json(path: Path, doc: dict, newline: bool = True, default=None) -> None:
    """The document, indented by 2, with no NaN or infinity (they are not JSON); the folder is made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False, default=default)
        if newline:
            f.write("\n")
