"""`prm experiment search`: Best-of-N, majority vote, beam search and DVTS at matched budgets N.

    prm experiment search --config configs/search_simulated.yaml
    prm experiment search --config configs/search_tiny.yaml search.budgets=[4,8]

The same problems, policy and PRM (section `prm_search:`, as `prm search` reads it) run at every budget N of
`search.budgets`: `bon` (PRM argmax), `weighted` (PRM-weighted vote) and `majority` (plain vote) all read one
Best-of-N run, `beam` and `dvts` run their own. Each run is a `prm search` output under
`search.run_dir`/runs/ (resumed after a kill: problems already written are skipped). The report, under
`search.run_dir`/report/: report.md, search.png (accuracy against generated tokens, log x; and against N) and
report.json, whose `rows` hold one row per (method, N): method, n, accuracy with a bootstrap interval,
generated_tokens, scored_tokens, seconds (wall time of the run), and in the simulated mode `error_free` and the
closed-form `expected` accuracy (bon and beam, aggregation last, answer argmax).
Problems: `search.problems_file` (Problem JSONL), else made from the config's `problems:` section.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from prm.app.sections import SearchExperimentConfig
from prm.config import load_section


def _problems(exp: SearchExperimentConfig, config: str, overrides: list[str], rd: Path) -> str:
    if exp.problems_file:
        return exp.problems_file
    from prm.data_synthesis.problems import ProblemsConfig, load_problems
    from prm.jsonl import write_atomic

    path = rd / "problems.jsonl"
    if not path.exists():
        write_atomic(path, load_problems(load_section(ProblemsConfig, "problems", config, overrides)))
    return str(path)


def _majority(cands: list[dict[str, Any]], rng: random.Random) -> dict[str, Any] | None:
    from prm.eval.search_algo import answer_key

    counts = Counter(k for c in cands if (k := answer_key(c["final_answer"])) is not None)
    if not counts:
        return cands[0] if cands else None
    best = max(counts.values())
    key = sorted(k for k, v in counts.items() if v == best)[rng.randrange(sum(v == best for v in counts.values()))]
    return next(c for c in cands if answer_key(c["final_answer"]) == key)


def _outcomes(records: list[dict[str, Any]], method: str, seed: int) -> list[dict[str, Any] | None]:
    """The chosen candidate of each record under `method` (bon records re-read for weighted and majority)."""
    from prm.eval.search_algo import choose

    out = []
    for r in records:
        rng = random.Random(f"{seed}|{method}|{r['id']}")
        if method == "weighted":
            out.append(choose(r["candidates"], "vote", rng))
        elif method == "majority":
            out.append(_majority(r["candidates"], rng))
        else:
            out.append(r["chosen"])
    return out


def run_search_experiment(config: str, overrides: list[str]) -> Path:
    """Run (or continue) every (method, N) and write the report; returns the report folder."""
    from prm.app.stages import validate_sections
    from prm.eval.search import SECTION, SearchConfig, build, run_search
    from prm.eval.search_algo import check_spec
    from prm.jsonl import load_records
    from prm.records import Problem

    validate_sections(config, overrides)
    exp = load_section(SearchExperimentConfig, "search", config, overrides)
    base = load_section(SearchConfig, SECTION, config, [o for o in overrides if not o.startswith("search.")])
    runs = sorted({"bon" if m in ("bon", "weighted", "majority") else m for m in exp.methods})
    for n in exp.budgets:  # every budget is checked before any work
        for m in runs:
            check_spec(m, n, base.beam_width, base.aggregation, "argmax", f"search.budgets N={n}, {SECTION}.")
    rd = Path(exp.run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    problems_path = _problems(exp, config, overrides, rd)
    problems = load_records(problems_path, Problem, require_records=True)
    built = None
    timing_path = rd / "runs" / "seconds.json"
    seconds: dict[str, float] = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    for n in exp.budgets:
        for m in runs:
            name = f"{m}_n{n}"
            out = rd / "runs" / f"{name}.jsonl"
            cfg = dataclasses.replace(base, method=m, n=n, answer="argmax", input=problems_path, output=str(out))
            if name in seconds and out.exists():
                continue
            if built is None:
                built = build(base, problems, problems_path)
            if hasattr(built[1], "cache"):
                built[1].cache.clear()  # each run pays for its own PRM tokens
            print(f"[prm experiment] search {m} N={n}: {len(problems)} problems -> {out}", flush=True)
            start = time.perf_counter()
            run_search(cfg, built=built)
            seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            timing_path.write_text(json.dumps(seconds, indent=1))
            print(f"[prm experiment] search {m} N={n}: finished in {time.perf_counter() - start:.0f} s", flush=True)
    rows = _rows(exp, base, problems, rd, seconds)
    from prm.app.search_report import write_report

    return write_report(rd / "report", rows, exp, base)


def _rows(exp: SearchExperimentConfig, base: Any, problems: list[Any], rd: Path,
          seconds: dict[str, float]) -> list[dict[str, Any]]:
    import numpy as np

    from prm.eval.bootstrap import group_rng, percentile_interval, resample_counts
    from prm.eval.search_theory import expected_accuracy

    rows = []
    for n in exp.budgets:
        for m in exp.methods:
            run = "bon" if m in ("bon", "weighted", "majority") else m
            path = rd / "runs" / f"{run}_n{n}.jsonl"
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            chosen = _outcomes(records, m, exp.seed)
            correct = np.array([bool(c and c["correct"]) for c in chosen], dtype=float)
            counts = resample_counts(len(correct), exp.bootstrap, group_rng(exp.seed, f"{m}{n}"))
            low, high = percentile_interval((counts @ correct / max(len(correct), 1))[:, None], exp.confidence)
            row: dict[str, Any] = {
                "method": m, "n": n, "problems": len(records), "accuracy": float(correct.mean()),
                "ci_low": float(low[0]), "ci_high": float(high[0]),
                "generated_tokens": sum(r["generated_tokens"] for r in records),
                "scored_tokens": sum(r["scored_tokens"] for r in records),
                "seconds": seconds.get(f"{run}_n{n}"),
            }
            if chosen and all(c is not None and "first_error" in c for c in chosen):
                row["error_free"] = float(np.mean([c["first_error"] is None for c in chosen]))
                if m in ("bon", "beam") and base.aggregation == "last":
                    acc = base.simulated.accuracy if base.simulated.prm == "noisy" else 1.0
                    row["expected"] = expected_accuracy(problems, m, base.simulated.p, n, base.beam_width, acc)
            rows.append(row)
    return rows
