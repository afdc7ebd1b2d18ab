"""Step scoring throughput: `prm score --backend vllm` (vLLM's pooling runner) against the transformers scorer.

    VLLM_CPU_KVCACHE_SPACE=1 python bench/scoring_vllm.py --out bench/results/scoring_vllm.json
    python bench/scoring_vllm.py --models ours-smollm2 --solutions 256 --repeats 3   # on a quiet machine

Models: `ours-smollm2`, the embedded SmolLM2-135M-Instruct made into our PRM (`prm.prm_model.build_prm`, random
head: speed only), and tiny random head_dim-32 checkpoints `ours-tiny` and `qwen_prm-tiny` (2 layers, hidden 64:
per-request overhead dominates). Workload: the synthetic testbed's gsm_symbolic solutions (the same for both
backends). Each backend is timed end to end (encoding included) after one warm-up call, best of `--repeats`,
in wall-clock seconds; load time (model load, or vLLM engine start with enforce_eager) is reported apart.
Both backends use every core of the machine (torch threads = cores; vLLM's CPU worker binds its own OpenMP
threads); the machine's load average before and after is in the table and the JSON, because on a shared
machine the others' processes take turns on the same cores. Scores are compared too (max |difference|).
Writes one table to stdout and JSON to --out.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prm.data_synthesis.problems import gsm_symbolic_problems  # noqa: E402
from prm.data_synthesis.testbed import make_solutions  # noqa: E402

from bench.results_file import write_bench_json  # noqa: E402
from prm.scoring import load_scorer  # noqa: E402
from testkit.tiny_checkpoints import make_tiny_checkpoint  # noqa: E402

MODELS = ("ours-smollm2", "ours-tiny", "qwen_prm-tiny")


def workload(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    problems = gsm_symbolic_problems(max(n, 8), seed=seed)
    sols = [s for p in problems for s in make_solutions(p, 0.5, seed)][:n]
    return [s.problem for s in sols], [list(s.steps) for s in sols]


def checkpoint(name: str, root: Path) -> str:
    path = root / name
    if name == "ours-smollm2":
        from prm.prm_model import build_prm

        model, tokenizer = build_prm("smollm2-135m-instruct")
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        return str(path)
    return make_tiny_checkpoint(name.removesuffix("-tiny"), path, head_dim=32)


def timed(scorer: Any, problems: list[str], steps: list[list[str]], batch_size: int,
          repeats: int) -> tuple[float, list[list[float]], int]:
    scorer.score(problems[:2], steps[:2], batch_size=batch_size)  # warm-up (first-call allocations)
    best, scores = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = scorer.score(problems, steps, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return best, scores, scorer.stats.tokens


def run_model(name: str, root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    problems, steps = workload(args.solutions, args.seed)
    path = checkpoint(name, root)
    rows, reference = [], None
    for backend in ("transformers", "vllm"):
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        scorer = load_scorer(path, device="cpu", dtype=args.dtype, backend=backend)
        load_s = time.perf_counter() - start
        seconds, scores, tokens = timed(scorer, problems, steps, args.batch_size, args.repeats)
        scorer.close()
        del scorer
        gc.collect()
        diff = None if reference is None else max(
            abs(a - b) for x, y in zip(scores, reference, strict=True) for a, b in zip(x, y, strict=True))
        reference = reference or scores
        rows.append({"model": name, "backend": backend, "solutions": len(problems),
                     "steps": sum(map(len, steps)), "tokens": tokens, "load_s": round(load_s, 1),
                     "score_s": round(seconds, 2), "solutions_per_s": round(len(problems) / seconds, 1),
                     "tokens_per_s": round(tokens / seconds), "max_abs_diff_vs_transformers": diff,
                     "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
    rows[1]["speedup_vs_transformers"] = round(rows[0]["score_s"] / rows[1]["score_s"], 2)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--solutions", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16, help="transformers scorer's batch (vLLM batches itself)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dtype", default="fp32", help="fp32 (CPU default of both backends) or bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/scoring_vllm.json")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows += run_model(name, Path(tmp), args)
    print(f"\n{'model':<14} {'backend':<13} {'sols':>5} {'tokens':>7} {'load s':>7} {'score s':>8} "
          f"{'sol/s':>7} {'tok/s':>7} {'speed-up':>8} {'max|diff|':>10} {'load avg':>11}")
    for r in rows:
        diff = "" if r["max_abs_diff_vs_transformers"] is None else f"{r['max_abs_diff_vs_transformers']:.1e}"
        print(f"{r['model']:<14} {r['backend']:<13} {r['solutions']:>5} {r['tokens']:>7} {r['load_s']:>7} "
              f"{r['score_s']:>8} {r['solutions_per_s']:>7} {r['tokens_per_s']:>7} "
              f"{r.get('speedup_vs_transformers', ''):>8} {diff:>10} "
              f"{r['load_avg_1min'][0]:>5}->{r['load_avg_1min'][1]:<5}")
    write_bench_json(args.out, torch.get_num_threads(), vars(args), rows)


if __name__ == "__main__":
    main()
