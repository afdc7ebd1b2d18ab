"""Report directories: every `prm eval ...` writes `metrics.json`, `report.md` (Markdown tables, images linked
by relative path) and its PNG plots beside them. Each file is written to a temporary name and renamed into
place, so a killed run never leaves a half-written report.

Plots (matplotlib, Agg backend): Best-of-N curves with confidence bands, a step-score heatmap for a few
solutions, and histograms (first-error positions, where the lowest step score lands).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prm.jsonl import write_text_atomic


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> None:
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(path, text + "\n")


def write_text(path: str | Path, text: str) -> None:
    write_text_atomic(path, text)


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def pct_ci(value: float | None, ci: Sequence[float] | None) -> str:
    """A percentage with its interval: `66.7 [50.0, 83.3]` (no brackets without an interval)."""
    if ci is None or value is None:
        return pct(value)
    return f"{pct(value)} [{pct(ci[0])}, {pct(ci[1])}]"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(fmt(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def image_link(alt: str, filename: str) -> str:
    return f"![{alt}]({filename})\n"


class Report:
    """Collects Markdown sections and figures, then writes the directory."""

    def __init__(self, out_dir: str | Path, title: str):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.parts: list[str] = [f"# {title}\n"]

    def add(self, markdown: str) -> None:
        self.parts.append(markdown.rstrip("\n") + "\n")

    def heading(self, text: str, level: int = 2) -> None:
        self.add(f"{'#' * level} {text}")

    def figure(self, fig: Any, filename: str, alt: str) -> None:
        """Save a matplotlib figure as PNG beside report.md and link it relatively."""
        import io

        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        write_text_atomic(self.out_dir / filename, buf.getvalue())
        self.add(image_link(alt, filename))

    def write(self, metrics: dict[str, Any]) -> Path:
        write_json(self.out_dir / "metrics.json", metrics)
        write_text(self.out_dir / "report.md", "\n".join(self.parts))
        return self.out_dir / "report.md"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bon_curves_figure(ns: Sequence[int], curves: dict[str, dict[str, Sequence[float | None]]], title: str) -> Any:
    """`curves[name] = {"mean": [...], "low": [...], "high": [...]}` over `ns` (log2 x axis)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        mean = [math.nan if v is None else 100 * v for v in c["mean"]]
        (line,) = ax.plot(ns, mean, marker="o", ms=3, label=name)
        if c.get("low") is not None and c.get("high") is not None:
            low = [math.nan if v is None else 100 * v for v in c["low"]]
            high = [math.nan if v is None else 100 * v for v in c["high"]]
            ax.fill_between(ns, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    if len(ns) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(list(ns))
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_xlabel("N (solutions per problem)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def distinct_labels(ids: Sequence[str], width: int = 24) -> list[str]:
    """Short row labels that still tell the ids apart: the prefix they all share is dropped (up to a separator),
    a label still over `width` characters keeps its end (where ids differ: `...-17-tb1`), and a label that
    remains the same as an earlier one gets `#k`."""
    import os

    common = os.path.commonprefix(list(ids)) if len(ids) > 1 else ""
    cut = max(common.rfind(c) for c in "-_:/.") + 1 if common else 0
    labels, seen = [], set()
    for i, full in enumerate(ids):
        label = full[cut:] or full
        if len(label) > width:
            label = "…" + label[-(width - 1):]
        if label in seen:
            label = f"{label}#{i}"
        seen.add(label)
        labels.append(label)
    return labels


def heatmap_figure(rows: Sequence[Sequence[float]], labels: Sequence[str], marks: Sequence[int | None],
                   title: str) -> Any:
    """Step scores of a few solutions (one row each, steps left to right); `marks[i]` outlines one step
    (the gold first error, or the lowest score)."""
    import numpy as np

    plt = _plt()
    width = max((len(r) for r in rows), default=1)
    grid = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        grid[i, : len(r)] = r
    fig, ax = plt.subplots(figsize=(min(2 + 0.45 * width, 16), 1 + 0.4 * max(len(rows), 1)))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, m in enumerate(marks):
        if m is not None and m >= 0:
            ax.add_patch(plt.Rectangle((m - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xticks(range(width))
    ax.set_xticklabels([str(k) for k in range(width)], fontsize=7)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="step score")
    return fig


def histogram_figure(values: Sequence[float], bins: Any, title: str, xlabel: str,
                     groups: dict[str, Sequence[float]] | None = None) -> Any:
    """A histogram of `values`, or of several named groups side by side."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    if groups:
        names = list(groups)
        ax.hist([list(groups[n]) for n in names], bins=bins, label=names)
        ax.legend(fontsize=8)
    else:
        ax.hist(list(values), bins=bins, color="#4c72b0")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.grid(alpha=0.3)
    return fig


def scatter_figure(points: dict[str, list[tuple[float, float, str]]], ylabel: str) -> Any:
    """One panel per benchmark metric: (metric value, BoN value, run name) per checkpoint."""
    plt = _plt()
    names = list(points)
    cols = min(3, max(len(names), 1))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        xs = [p[0] for p in points[name]]
        ys = [p[1] for p in points[name]]
        ax.scatter(xs, ys)
        for x, y, label in points[name]:
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
