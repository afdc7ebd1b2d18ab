"""Which problems and prompt let the embedded policy (SmolLM2-135M-Instruct) solve something: the measurement
behind configs/quickstart.yaml's `problems:` and `sample:` sections.

    python bench/policy_prompt.py --out bench/results/policy_prompt.json      # 128 samples, a few CPU minutes
    python bench/policy_prompt.py --problems 32 --samples 4 --seed 1

Each variant runs `prm sample`'s own code (prm.data_synthesis.sample.run_sample) on the same model, sampling
settings and number of problems, drawn with `--seed` (1 by default: not the quickstart's seed 0, so the choice
is not fitted to the quickstart's problems):
- `chain_sum, zero-shot`: the default step-by-step prompt on chains of 3-4 single-digit terms
  (`Compute 4 + 1 + 7 - 3.`);
- `chain_sum, few-shot`: the quickstart's prompt, two worked examples in the chat (one operation a line,
  `7 + 8 = 15`, then `The answer is N.`).
Reported: share of samples whose final answer grades correct, pass@k (a problem with any correct sample) and
the mean number of steps (no timing: it is not a speed measurement). One table is printed and the numbers
are written as JSON. `--gsm` adds the default prompt on gsm_symbolic (long generations; the 135M model solved
none of 16 problems in the quickstart run of 2026-11-23).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prm.data_synthesis.problems import ProblemsConfig, load_problems  # noqa: E402
from prm.data_synthesis.sample import SampleConfig, run_sample  # noqa: E402

from prm.config import load_section  # noqa: E402
from prm.generation import GeneratorConfig, make_generator  # noqa: E402
from prm.jsonl import load_records, write_atomic  # noqa: E402
from prm.records import Solution  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def variants() -> dict[str, tuple[str, dict]]:
    """name -> (problem source, SampleConfig fields); the few-shot prompt is the quickstart's own."""
    quick = load_section(SampleConfig, "sample", str(QUICKSTART), [])
    few_shot = {"user_template": quick.user_template, "few_shot": quick.few_shot,
                "system_prompt": quick.system_prompt}
    return {
        "gsm_symbolic, zero-shot": ("gsm_symbolic", {}),
        "chain_sum, zero-shot": ("chain_sum", {}),
        "chain_sum, few-shot": ("chain_sum", few_shot),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=1, help="problem draw (the quickstart uses 0)")
    parser.add_argument("--out", default=None, help="JSON results file")
    parser.add_argument("--gsm", action="store_true", help="also gsm_symbolic with the default prompt")
    args = parser.parse_args()

    generator = make_generator(GeneratorConfig(model="smollm2-135m-instruct", batch_size=32))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, fields) in variants().items():
            if source == "gsm_symbolic" and not args.gsm:
                continue
            problems = load_problems(ProblemsConfig(source=source, n=args.problems, seed=args.seed))
            src, out = Path(tmp) / f"{source}.problems.jsonl", Path(tmp) / f"{len(rows)}.samples.jsonl"
            write_atomic(src, problems)
            cfg = SampleConfig(input=str(src), output=str(out), n=args.samples, temperature=args.temperature,
                               max_new_tokens=args.max_new_tokens, seed=0, **fields)
            run_sample(cfg, generator=generator)
            solutions = load_records(out, Solution)
            solved = {s.problem_id for s in solutions if s.correct}
            rows.append({
                "variant": name, "source": source, "problems": len(problems), "samples": len(solutions),
                "correct_share": sum(s.correct for s in solutions) / max(len(solutions), 1),
                f"pass@{args.samples}": len(solved) / len(problems),
                "mean_steps": sum(len(s.steps) for s in solutions) / max(len(solutions), 1),
            })
    print(f"\n| variant | samples | correct | pass@{args.samples} | mean steps |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['samples']} | {100 * r['correct_share']:.1f}% | "
              f"{100 * r[f'pass@{args.samples}']:.1f}% | {r['mean_steps']:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "settings": vars(args) | {"model": "smollm2-135m-instruct", "machine": platform.machine(),
                                      "cpus": os.cpu_count()},
            "rows": rows}, indent=2) + "\n")
        print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
