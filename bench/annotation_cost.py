"""Cost of MC step labels: exhaustive vs binary search, on the synthetic testbed.

    python bench/annotation_cost.py --out bench/results/annotation_cost.json
    python bench/annotation_cost.py --problems 200 --model-solutions 8 --k 4 --max-new-tokens 48
    python bench/annotation_cost.py --skip-model          # simulated completer only (seconds)

Two backends label the same testbed solutions (gsm_symbolic, half with an injected error, known
`true_first_error`):
- the simulated completer (an exact oracle; tokens = a rough count of the rest of the solution), on
  `--problems` solutions: the pure cost of each search, and its exactness;
- the embedded model `smollm2-135m-instruct` through TransformersGenerator on CPU, on the first
  `--model-solutions` of them, with `--k` rollouts per prefix and `--max-new-tokens` per rollout.
Modes: `exhaustive` (early stop at the first all-fail prefix, the default), `exhaustive-full` (every
prefix, Math-Shepherd's complete soft labels; simulated only unless --model-full), `binary` (OmegaPRM).
Each mode gets a fresh rollout cache, so every rollout it needs is generated and timed. Reported per
labeled solution: rollouts, generated tokens, wall time; generate calls; first-error accuracy against the
truth; and how often the mode's first_error equals exhaustive's. One table is printed and the numbers are
written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prm.data_synthesis.mc import MCConfig, PromptBuilder, RolloutRunner, build_generator, label_solutions  # noqa: E402
from prm.data_synthesis.problems import gsm_symbolic_problems  # noqa: E402
from prm.data_synthesis.testbed import make_solutions  # noqa: E402

from prm.config import build  # noqa: E402
from prm.records import Solution  # noqa: E402

MODES = {
    "exhaustive": {"mode": "exhaustive", "early_stop": True},
    "exhaustive-full": {"mode": "exhaustive", "early_stop": False},
    "binary": {"mode": "binary"},
}


def run_mode(solutions: list[Solution], cfg: MCConfig, generator, prompts: PromptBuilder) -> tuple[dict, list]:
    runner = RolloutRunner(generator, cfg, prompts)  # fresh cache: every rollout is generated
    start = time.perf_counter()
    labeled = label_solutions(solutions, runner, cfg)
    wall = time.perf_counter() - start
    n = len(labeled)
    truth = [(s.mc.first_error, s.extra["true_first_error"]) for s in labeled]  # type: ignore[union-attr]
    row = {
        "solutions": n,
        "rollouts_per_solution": runner.stats.generated_rollouts / n,
        "tokens_per_solution": runner.stats.generated_tokens / n,
        "prefixes_per_solution": (runner.stats.requests - runner.stats.cache_hits) / n,
        "generate_calls": runner.stats.generate_calls,
        "wall_s": wall,
        "s_per_solution": wall / n,
        "first_error_accuracy": sum(p == t for p, t in truth) / n,
        "flags_error_where_truth_has_one": sum(p >= 0 for p, t in truth if t >= 0) / max(1, sum(t >= 0 for _, t in truth)),
        "first_errors": [p for p, _ in truth],
    }
    return row, labeled


def bench_backend(name: str, solutions: list[Solution], base: dict, modes: list[str]) -> dict:
    results: dict[str, dict] = {}
    generator, prompts = None, None
    for mode in modes:
        cfg = build(MCConfig, {**base, **MODES[mode]})
        if generator is None:
            generator, prompts = build_generator(cfg, solutions)
        row, _ = run_mode(solutions, cfg, generator, prompts)
        results[mode] = row
        print(f"  {name} {mode}: {row['s_per_solution']:.3f} s/solution, {row['tokens_per_solution']:.0f} tokens/solution",
              flush=True)
    ref = results["exhaustive"]["first_errors"]
    for row in results.values():
        row["same_first_error_as_exhaustive"] = sum(a == b for a, b in zip(row["first_errors"], ref, strict=True)) / len(ref)
    return results


def table(all_results: dict[str, dict[str, dict]]) -> str:
    head = ("backend", "mode", "sols", "rollouts/sol", "tokens/sol", "prefixes/sol", "calls", "s/sol",
            "acc vs truth", "= exhaustive")
    rows = [head]
    for backend, modes in all_results.items():
        for mode, r in modes.items():
            rows.append((backend, mode, str(r["solutions"]), f"{r['rollouts_per_solution']:.1f}",
                         f"{r['tokens_per_solution']:.0f}", f"{r['prefixes_per_solution']:.2f}", str(r["generate_calls"]),
                         f"{r['s_per_solution']:.4f}" if r["s_per_solution"] < 1 else f"{r['s_per_solution']:.2f}",
                         f"{r['first_error_accuracy']:.1%}", f"{r['same_first_error_as_exhaustive']:.1%}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=200, help="testbed problems for the simulated completer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--error-rate", type=float, default=0.5)
    ap.add_argument("--k", type=int, default=8, help="rollouts per prefix (simulated)")
    ap.add_argument("--noise", type=float, default=0.0, help="simulated completer flip probability")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--model-solutions", type=int, default=8)
    ap.add_argument("--model-k", type=int, default=4, help="rollouts per prefix (model)")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="tokens per model rollout")
    ap.add_argument("--model-batch-size", type=int, default=16, help="rows per forward batch (model)")
    ap.add_argument("--model-full", action="store_true", help="also run exhaustive-full with the model")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--out", default="bench/results/annotation_cost.json")
    args = ap.parse_args()

    problems = gsm_symbolic_problems(args.problems, seed=args.seed)
    solutions = [s for p in problems for s in make_solutions(p, args.error_rate, seed=args.seed)]
    steps = [len(s.steps) for s in solutions]
    print(f"testbed: {len(solutions)} solutions, {sum(s.extra['true_first_error'] >= 0 for s in solutions)} with "
          f"an injected error, {sum(steps) / len(steps):.1f} steps on average", flush=True)
    all_results: dict[str, dict[str, dict]] = {}
    sim_base = {"backend": "simulated", "k": args.k, "simulated": {"noise": args.noise, "seed": args.seed}}
    all_results["simulated"] = bench_backend("simulated", solutions, sim_base, ["exhaustive", "exhaustive-full", "binary"])
    # The claim that matters for cost: on longer solutions binary search needs far fewer rollouts.
    long = [s for s in solutions if len(s.steps) >= 4]
    all_results["simulated, >=4 steps"] = bench_backend("simulated, >=4 steps", long, sim_base,
                                                        ["exhaustive", "exhaustive-full", "binary"])

    model_info = None
    if not args.skip_model:
        # a spread of first errors: alternate erroneous and correct solutions
        wrong = [s for s in solutions if s.extra["true_first_error"] >= 0]
        right = [s for s in solutions if s.extra["true_first_error"] == -1]
        subset = [s for pair in zip(wrong, right, strict=False) for s in pair][: args.model_solutions]
        base = {"backend": "generator", "k": args.model_k, "max_new_tokens": args.max_new_tokens,
                "temperature": 0.7, "seed": args.seed, "batch_prompts": 64,
                "generator": {"backend": "transformers", "model": args.model, "device": "cpu",
                              "batch_size": args.model_batch_size}}
        modes = ["exhaustive", "binary"] + (["exhaustive-full"] if args.model_full else [])
        import torch

        model_info = {"model": args.model, "device": "cpu", "torch_threads": torch.get_num_threads(),
                      "solutions": len(subset), "k": args.model_k, "max_new_tokens": args.max_new_tokens}
        print(f"model: {args.model} on CPU ({torch.get_num_threads()} threads), {len(subset)} solutions, "
              f"k={args.model_k}, max_new_tokens={args.max_new_tokens}", flush=True)
        all_results[args.model] = bench_backend(args.model, subset, base, modes)

    print()
    print(table(all_results))
    out = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "testbed": {"solutions": len(solutions), "with_error": sum(s.extra["true_first_error"] >= 0 for s in solutions),
                    "mean_steps": sum(steps) / len(steps)},
        "model_run": model_info,
        "results": {b: {m: {k: v for k, v in r.items() if k != "first_errors"} for m, r in modes.items()}
                    for b, modes in all_results.items()},
        "first_errors": {b: {m: r["first_errors"] for m, r in modes.items()} for b, modes in all_results.items()},
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
