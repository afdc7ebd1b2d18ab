"""Step scoring speed: one pass per solution (batched) vs one pass per step prefix vs the bare backbone.

    python bench/scoring.py --out bench/results/scoring.json
    python bench/scoring.py --solutions 64 --embedded-solutions 24 --batch-size 8 --repeats 3
    python bench/scoring.py --skip-embedded          # tiny models only (a minute)

Workloads (the same solutions for every method):
- `testbed`: the synthetic testbed's gsm_symbolic solutions as they are (half carry an injected error);
- `long`: 6-10 steps of 20-40 tokens each: a testbed problem followed by testbed steps of that length
  (its own first, then steps of other problems), to match the step counts of MATH-style solutions.
Models: a tiny random checkpoint in each format (2 layers, hidden 64) and the embedded model
(SmolLM2-135M-Instruct) made into our PRM with `prm.prm_model.build_prm` (random head: speed only).
Methods, each timed end to end (tokenization included) after a small warm-up, best of `--repeats`
(`--embedded-repeats` for the embedded model, whose per-step runs take minutes on a CPU):
- `one_pass`: `Scorer.score`, every step read from one forward pass per solution, batched by length;
- `per_step_batched`: every step prefix scored as its own sequence, batched the same way;
- `per_step`: the format's reference procedure, one unbatched forward pass per step prefix (RLHFlow's
  prm_evaluate.py and reward_hub's per-step loop score this way);
- `bare_forward`: the backbone alone over the one-pass batches (already tokenized, no head): the limit.
Timings use one torch thread by default (`--threads`): on a shared 2-core machine more threads make
timings swing by 10x with the other processes' load. Rates are per CPU second of this process
(`time.process_time`, one torch thread): on a shared machine the wall clock also counts the other
processes' turns, and it swings with their load; wall-clock rates are kept in the JSON too (`wall_solutions_per_s`). On a GPU (`--device cuda`) use the wall-clock numbers.
Reported per method: solutions/s, tokens/s (tokens of the one-pass sequences, so rates compare), and
one-pass's speed-up over per-step and its time relative to the bare forward, both as ratios of tokens/s
(per-step is timed on the first `--unbatched-limit` solutions only). Targets: speed-up at least
(mean steps)/2, one-pass within 1.3x of the bare forward. One table is printed; JSON goes to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prm.data_synthesis.problems import gsm_symbolic_problems  # noqa: E402
from prm.data_synthesis.testbed import make_solutions  # noqa: E402

from prm.scoring import Scorer, load_scorer, plan_batches  # noqa: E402
from testkit.tiny_checkpoints import FORMATS, make_tiny_checkpoint  # noqa: E402


def workloads(n: int, seed: int, tokenizer: Any) -> dict[str, tuple[list[str], list[list[str]]]]:
    problems = gsm_symbolic_problems(max(n, 8), seed=seed)
    sols = [s for p in problems for s in make_solutions(p, 0.5, seed)][:n]
    testbed = ([s.problem for s in sols], [list(s.steps) for s in sols])
    rng = random.Random(seed)
    pool = [step for s in sols for step in s.steps if 20 <= len(tokenizer.encode(step)) <= 40]
    long_steps = []
    for s in sols:
        own = [step for step in s.steps if 20 <= len(tokenizer.encode(step)) <= 40]
        k = rng.randint(6, 10)
        long_steps.append((own + rng.sample(pool, k))[:k])
    return {"testbed": testbed, "long": ([s.problem for s in sols], long_steps)}


def _timed(fn: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call (GPU work waited for)."""
    import torch

    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def _bare_forward(scorer: Scorer, encoded: list, batch_size: int) -> None:
    import torch

    with torch.inference_mode():
        for batch in plan_batches([len(e.input_ids) for e in encoded], batch_size):
            ids, mask = scorer.pad_batch([encoded[i] for i in batch])
            scorer.hidden_states(ids, mask)


def _per_step_batched(scorer: Scorer, problems: list[str], steps: list[list[str]], batch_size: int) -> list:
    flat_p = [p for p, s in zip(problems, steps, strict=True) for _ in s]
    flat_s = [s[: k + 1] for s in steps for k in range(len(s))]
    return [row[-1] for row in scorer.score(flat_p, flat_s, batch_size)]


def bench_one(scorer: Scorer, problems: list[str], steps: list[list[str]], batch_size: int, repeats: int,
              unbatched_limit: int, cpu_clock: bool = True) -> dict[str, Any]:
    n = len(problems)
    scorer.score(problems[:2], steps[:2], batch_size)  # warm-up (first-call allocations, kernels)
    scorer.reference_scores(problems[:1], [steps[0][:1]])
    encoded = scorer.encode_all(problems, steps)
    tokens = sum(len(e.input_ids) for e in encoded)
    n_steps = sum(len(s) for s in steps)
    fast = scorer.score(problems, steps, batch_size)
    padded = scorer.stats.padded_tokens
    # The unbatched per-step procedure is slow: timed on the first `unbatched_limit` solutions.
    m = min(n, unbatched_limit)
    ref = scorer.reference_scores(problems[:m], steps[:m])
    max_diff = max(abs(a - b) for x, y in zip(fast[:m], ref, strict=True) for a, b in zip(x, y, strict=True))
    m_tokens = sum(len(e.input_ids) for e in encoded[:m])
    methods = {
        "one_pass": (lambda: scorer.score(problems, steps, batch_size), n, tokens),
        "per_step_batched": (lambda: _per_step_batched(scorer, problems, steps, batch_size), n, tokens),
        "per_step": (lambda: scorer.reference_scores(problems[:m], steps[:m]), m, m_tokens),
        "bare_forward": (lambda: _bare_forward(scorer, encoded, batch_size), n, tokens),
    }
    best = {k: (float("inf"), float("inf")) for k in methods}
    for _ in range(repeats):  # interleaved, so a change in the machine's load hits every method alike
        for k, (fn, _, _) in methods.items():
            wall, cpu = _timed(fn)
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
    rates = {}
    for k, (_, sols, tok) in methods.items():
        wall, cpu = best[k]
        t = cpu if cpu_clock else wall
        rates[k] = {"wall_s": wall, "cpu_s": cpu, "solutions": sols, "solutions_per_s": sols / t,
                    "tokens_per_s": tok / t, "wall_solutions_per_s": sols / wall}
    return derive({"solutions": n, "mean_steps": n_steps / n, "tokens": tokens, "padded_tokens": padded,
                   "mean_tokens": tokens / n, "max_abs_diff_vs_per_step": max_diff, "methods": rates})


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """Speed-ups from the measured rates. They compare tokens/s (the one-pass tokens of the solutions each
    method scored), since the slow per-step method runs on a subset whose lengths differ from the mean."""
    m = row["methods"]
    one = m["one_pass"]["tokens_per_s"]
    row["speedup_vs_per_step"] = one / m["per_step"]["tokens_per_s"]
    row["speedup_vs_per_step_batched"] = one / m["per_step_batched"]["tokens_per_s"]
    row["time_vs_bare_forward"] = m["bare_forward"]["tokens_per_s"] / one
    row["target_speedup"] = row["mean_steps"] / 2
    row["meets_speedup_target"] = row["speedup_vs_per_step"] >= row["target_speedup"]
    row["meets_bare_forward_target"] = row["time_vs_bare_forward"] <= 1.3
    return row


def print_table(results: list[dict[str, Any]]) -> dict[str, float]:
    header = (f"{'model':<20} {'workload':<8} {'steps':>5} {'tok':>5} {'one-pass sol/s':>14} {'tok/s':>8} "
              f"{'per-step sol/s':>14} {'per-step-b sol/s':>16} {'bare sol/s':>10} {'speed-up':>8} "
              f"{'target':>6} {'vs bare':>7} {'max|d|':>8}")
    print(header)
    for r in results:
        m = r["methods"]
        print(f"{r['model']:<20} {r['workload']:<8} {r['mean_steps']:>5.1f} {r['mean_tokens']:>5.0f} "
              f"{m['one_pass']['solutions_per_s']:>14.1f} {m['one_pass']['tokens_per_s']:>8.0f} "
              f"{m['per_step']['solutions_per_s']:>14.2f} {m['per_step_batched']['solutions_per_s']:>16.1f} "
              f"{m['bare_forward']['solutions_per_s']:>10.1f} {r['speedup_vs_per_step']:>7.1f}x "
              f"{r['target_speedup']:>5.1f}x {r['time_vs_bare_forward']:>6.2f}x {r['max_abs_diff_vs_per_step']:>8.1e}")
    return {"min_speedup_over_target": min(r["speedup_vs_per_step"] / r["target_speedup"] for r in results),
            "max_time_vs_bare_forward": max(r["time_vs_bare_forward"] for r in results),
            "median_time_vs_bare_forward": statistics.median(r["time_vs_bare_forward"] for r in results)}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--solutions", type=int, default=64, help="solutions per workload, tiny models")
    parser.add_argument("--embedded-solutions", type=int, default=8, help="solutions per workload, embedded")
    parser.add_argument("--unbatched-limit", type=int, default=16, help="solutions timed with per_step (slow)")
    parser.add_argument("--embedded-unbatched-limit", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (best kept), tiny models")
    parser.add_argument("--embedded-repeats", type=int, default=1)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: stable timings on a shared machine; 0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/scoring.json")
    parser.add_argument("--rederive", metavar="JSON", help="recompute speed-ups and the table of a results file")
    args = parser.parse_args(argv)
    if args.rederive:
        data = json.loads(Path(args.rederive).read_text())
        data["results"] = [derive(r) for r in data["results"]]
        data["summary"] = print_table(data["results"])
        Path(args.rederive).write_text(json.dumps(data, indent=2) + "\n")
        print(f"summary: {data['summary']}\nrewrote {args.rederive}")
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        models: list[tuple[str, str, int, int, int]] = []
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            models.append((f"tiny-{fmt}", make_tiny_checkpoint(fmt, Path(tmp) / fmt), args.solutions,
                           args.unbatched_limit, args.repeats))
        if not args.skip_embedded:
            from prm.prm_model import build_prm

            model, tok = build_prm("smollm2-135m-instruct")
            model.save_pretrained(Path(tmp) / "embedded")
            tok.save_pretrained(Path(tmp) / "embedded")
            del model
            models.append(("smollm2-135m-ours", str(Path(tmp) / "embedded"), args.embedded_solutions,
                           args.embedded_unbatched_limit, args.embedded_repeats))
        for name, path, n, limit, repeats in models:
            scorer = load_scorer(path, device=args.device)
            for wname, (problems, steps) in workloads(n, args.seed, scorer.tokenizer).items():
                row = bench_one(scorer, problems, steps, args.batch_size, repeats, limit, args.device == "cpu")
                row.update(model=name, format=scorer.format, workload=wname, repeats=repeats)
                results.append(row)
                print(f"  done {name} / {wname}", file=sys.stderr, flush=True)

    summary = print_table(results)
    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "device": args.device, "dtype": "fp32" if args.device == "cpu" else "auto",
           "load_average_at_end": os.getloadavg(), "batch_size": args.batch_size,
           "clock": "process CPU time" if args.device == "cpu" else "wall"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": env, "summary": summary, "results": results}, indent=2) + "\n")
    print(f"summary: {summary}\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
