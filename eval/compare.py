"""Several checkpoints side by side: benchmark scores beside Best-of-N results, and how well each benchmark
metric predicts BoN accuracy across checkpoints (Spearman, Kendall, Pearson; scipy).

    prm eval compare --runs ckpt100=reports/ckpt100 ckpt200=reports/ckpt200 ckpt300=reports/ckpt300 -o reports/cmp

Each REPORT_DIR holds a `metrics.json` written by `prm eval ...`, or sub-folders that do (`bon/`, `steps/`,
...); the same NAME may be given several times to merge folders. Every metrics.json contributes its
`headline` values as `<kind>.<key>` (`bon.prm_product@64`, `steps.prm.f1`, `rewardmath.min.accuracy`, ...).
The BoN target is `eval.target` (default `bon.prm_product`, the paper's aggregation: the largest N
present). Correlations need at least three
runs and a non-constant metric; otherwise they are null.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from prm.errors import PrmError
from prm.jsonl import read_json


def parse_runs(specs: list[str]) -> list[tuple[str, list[Path]]]:
    """['a=dir1', 'b=dir2', 'a=dir3'] -> [('a', [dir1, dir3]), ('b', [dir2])] in first-seen order."""
    runs: dict[str, list[Path]] = {}
    for spec in specs:
        if "=" not in spec:
            raise PrmError(f"--runs: expected NAME=REPORT_DIR, got '{spec}'")
        name, folder = spec.split("=", 1)
        if not name or not folder:
            raise PrmError(f"--runs: expected NAME=REPORT_DIR, got '{spec}'")
        runs.setdefault(name, []).append(Path(folder))
    return list(runs.items())


def _metric_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise PrmError(f"{folder}: no such report folder")
    if (folder / "metrics.json").is_file():
        return [folder / "metrics.json"]
    found = sorted(p for p in folder.glob("*/metrics.json") if p.is_file())
    if not found:
        raise PrmError(f"{folder}: no metrics.json in it or in its sub-folders")
    return found


def load_run(name: str, folders: list[Path]) -> dict[str, float | None]:
    """Flattened headline metrics of one run."""
    out: dict[str, float | None] = {}
    seen: dict[str, Path] = {}
    for folder in folders:
        for path in _metric_files(folder):
            try:
                data = read_json(path)
            except OSError as exc:
                raise PrmError(f"{path}: cannot read metrics ({exc})") from None
            kind = data.get("kind") if isinstance(data, dict) else None
            headline = data.get("headline") if isinstance(data, dict) else None
            if not isinstance(kind, str) or not isinstance(headline, dict):
                raise PrmError(f"{path}: not a `prm eval` metrics file (no kind/headline)")
            if kind == "compare":
                continue
            if kind in seen:
                raise PrmError(f"run '{name}': two '{kind}' reports ({seen[kind]} and {path})")
            seen[kind] = path
            for key, value in headline.items():
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                out[f"{kind}.{key}"] = float(value) if ok else None
    return out


def resolve_target(target: str, runs: dict[str, dict[str, float | None]]) -> str:
    keys = set.intersection(*(set(m) for m in runs.values()))
    if target in keys:
        return target
    pattern = re.compile(re.escape(target) + r"@(\d+)$")
    matches = [(int(m.group(1)), k) for k in keys if (m := pattern.match(k))]
    if not matches:
        bon = sorted(k for k in keys if k.startswith("bon."))
        raise PrmError(f"target '{target}' is not in every run's metrics (BoN metrics shared by all runs: "
                       f"{', '.join(bon) or 'none'})")
    return max(matches)[1]


def correlations(xs: list[float], ys: list[float]) -> dict[str, Any]:
    """Spearman, Kendall and Pearson coefficients with p-values; None where undefined (n < 3, constant)."""
    from scipy import stats

    empty = {"r": None, "p": None}
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return {"n": len(xs), "spearman": dict(empty), "kendall": dict(empty), "pearson": dict(empty)}
    out: dict[str, Any] = {"n": len(xs)}
    for name, fn in (("spearman", stats.spearmanr), ("kendall", stats.kendalltau), ("pearson", stats.pearsonr)):
        res = fn(xs, ys)
        r, p = float(res[0]), float(res[1])
        out[name] = {"r": r if math.isfinite(r) else None, "p": p if math.isfinite(p) else None}
    return out


def compare_runs(specs: list[str], target: str) -> dict[str, Any]:
    runs = {name: load_run(name, folders) for name, folders in parse_runs(specs)}
    if not runs:
        raise PrmError("--runs: give at least one NAME=REPORT_DIR")
    target_key = resolve_target(target, runs)
    all_keys = sorted(set().union(*(set(m) for m in runs.values())))
    names = list(runs)
    ys = [runs[n][target_key] for n in names]
    table = {k: {n: runs[n].get(k) for n in names} for k in all_keys}
    corr: dict[str, Any] = {}
    for key in all_keys:
        if key.startswith("bon."):
            continue
        pairs = [(runs[n].get(key), y) for n, y in zip(names, ys, strict=True)]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        corr[key] = correlations([x for x, _ in pairs], [y for _, y in pairs])
    return {
        "kind": "compare",
        "runs": names,
        "target": target_key,
        "metrics": table,
        "correlations": corr,
        "headline": {},
    }


def write_compare_report(metrics: dict[str, Any], out_dir: str | Path) -> Path:
    from prm.eval.report import Report, fmt, md_table, scatter_figure

    names = metrics["runs"]
    target = metrics["target"]
    report = Report(out_dir, "Checkpoint comparison")
    report.add(f"Runs: {', '.join(f'`{n}`' for n in names)}. BoN target: `{target}`.")
    report.heading("Best-of-N")
    bon_rows = [[k, *[v.get(n) for n in names]] for k, v in metrics["metrics"].items() if k.startswith("bon.")]
    report.add(md_table(["metric", *names], bon_rows))
    report.heading("Benchmarks")
    rows = [[k, *[v.get(n) for n in names]] for k, v in metrics["metrics"].items() if not k.startswith("bon.")]
    report.add(md_table(["metric", *names], rows) if rows else "No benchmark metrics besides BoN.")
    report.heading(f"Correlation with {target} across runs")
    crow = []
    for key, c in metrics["correlations"].items():
        crow.append([key, c["n"], *[fmt(c[m]["r"], 3) + (f" (p={c[m]['p']:.3g})" if c[m]["p"] is not None else "")
                                   for m in ("spearman", "kendall", "pearson")]])
    report.add(md_table(["metric", "runs", "Spearman", "Kendall", "Pearson"], crow) if crow else
               "Nothing to correlate.")
    points: dict[str, list[tuple[float, float, str]]] = {}
    # at most 12 panels: the metrics with the strongest rank correlation first
    ranked = sorted(metrics["correlations"], key=lambda k: -abs(metrics["correlations"][k]["spearman"]["r"] or 0))
    for key in ranked[:12]:
        pts = [(metrics["metrics"][key][n], metrics["metrics"][target][n], n) for n in names]
        pts = [(x, y, n) for x, y, n in pts if x is not None and y is not None]
        if pts:
            points[key] = pts  # type: ignore[assignment]
    if points:
        report.figure(scatter_figure(points, target), "correlations.png", "Benchmark metrics against BoN")
    return report.write(metrics)
