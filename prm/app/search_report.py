"""The report of `prm experiment search`: report.json (rows), report.md (table) and search.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.jsonl import write_text_atomic


def _fmt(row: dict[str, Any]) -> str:
    extra = ""
    if "error_free" in row:
        exp = f"{row['expected']:.3f}" if "expected" in row else "-"
        extra = f" | {row['error_free']:.3f} | {exp}"
    secs = f"{row['seconds']:.1f}" if row.get("seconds") is not None else "-"
    return (f"| {row['method']} | {row['n']} | {row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] | "
            f"{row['generated_tokens']} | {row['scored_tokens']} | {secs}{extra} |")


def markdown(rows: list[dict[str, Any]], exp: Any, base: Any) -> str:
    sim = any("error_free" in r for r in rows)
    head = "| method | N | accuracy [CI] | generated tokens | PRM tokens | wall s |"
    rule = "|---|---|---|---|---|---|"
    if sim:
        head += " error-free | closed form |"
        rule += "---|---|"
    what = (f"simulated policy p={base.simulated.p}, {base.simulated.prm} PRM"
            + (f" (accuracy {base.simulated.accuracy})" if base.simulated.prm == "noisy" else "")
            if base.mode == "simulated" else f"policy {base.generator.model}, PRM {base.prm.model}")
    lines = ["# PRM-guided search at matched budgets", "",
             f"{what}; beam width M={base.beam_width}, aggregation {base.aggregation}; "
             f"{rows[0]['problems'] if rows else 0} problems; {int(exp.confidence * 100)}% bootstrap intervals "
             f"({exp.bootstrap} resamples). bon/weighted/majority share one Best-of-N run (same tokens, one wall time).",
             "", head, rule, *(_fmt(r) for r in rows), ""]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["n"])
        acc = [r["accuracy"] for r in mine]
        err = [[r["accuracy"] - r["ci_low"] for r in mine], [r["ci_high"] - r["accuracy"] for r in mine]]
        ax1.errorbar([max(r["generated_tokens"], 1) for r in mine], acc, yerr=err, marker="o", capsize=3,
                     label=method)
        ax2.plot([r["n"] for r in mine], acc, marker="o", label=method)
    ax1.set_xscale("log")
    ax1.set_xlabel("generated tokens (all problems)")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("budget N")
    for ax in (ax1, ax2):
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    ax1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(folder: Path, rows: list[dict[str, Any]], exp: Any, base: Any) -> Path:
    import dataclasses
    import json

    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "report.json", json.dumps(
        {"rows": rows, "search": dataclasses.asdict(exp), "prm_search": dataclasses.asdict(base)}, indent=1))
    write_text_atomic(folder / "report.md", markdown(rows, exp, base))
    plot(rows, folder / "search.png")
    print(markdown(rows, exp, base))
    print(f"report -> {folder}")
    return folder
