"""`prm data testbed`: write testbed solutions with known first errors, and optionally held-out items.

    prm data testbed -i problems.jsonl -o testbed.jsonl --error-rate 0.5 --seed 0
    prm data testbed -i problems.jsonl -o testbed.jsonl --heldout-fraction 0.2 --heldout-out heldout.jsonl
    prm data testbed -i problems.jsonl -o testbed.jsonl --error-rate 0.4 --flawed-correct-rate 0.1

The solutions are made by `testbed.py`, the held-out items by `testbed_heldout.py`; both outputs resume.
"""

from __future__ import annotations

import argparse

from prm.data_synthesis.testbed import TestbedStats, make_solutions, reference_steps
from prm.data_synthesis.testbed_heldout import is_heldout, step_item

from prm.errors import InputError, PrmError
from prm.records import Problem
from prm.stage import StageCommand


def run_testbed(args: argparse.Namespace) -> int:
    """prm data testbed -i problems.jsonl -o testbed.jsonl [--error-rate 0.5] [--seed S] [--per-problem N]
    [--heldout-fraction F --heldout-out heldout.jsonl]"""
    from tqdm import tqdm

    from prm.jsonl import JsonlWriter, load_records

    if not 0.0 <= args.error_rate <= 1.0:
        raise PrmError(f"--error-rate must be in [0, 1], got {args.error_rate}")
    if not 0.0 <= args.flawed_correct_rate <= 1.0 - args.error_rate:
        raise PrmError(f"--flawed-correct-rate must be in [0, 1 - error rate = {1.0 - args.error_rate:g}], "
                       f"got {args.flawed_correct_rate}")
    if args.per_problem < 1:
        raise PrmError(f"--per-problem must be at least 1, got {args.per_problem}")
    if not 0.0 <= args.heldout_fraction < 1.0:
        raise PrmError(f"--heldout-fraction must be in [0, 1), got {args.heldout_fraction}")
    if (args.heldout_fraction > 0) != bool(args.heldout_out):
        raise PrmError("--heldout-fraction and --heldout-out go together")
    problems = load_records(args.input, Problem, require_records=True)
    for lineno, problem in enumerate(problems, start=1):
        if reference_steps(problem) is None:
            raise InputError(args.input, lineno, "meta.reference_steps",
                             f"problem {problem.id} has no reference steps (a list of non-empty strings); "
                             "make problems with: prm data problems --source gsm_symbolic")
    stats = TestbedStats()
    writer = JsonlWriter(args.output, resume=True)
    held_writer = JsonlWriter(args.heldout_out, resume=True) if args.heldout_out else None
    written = held = 0
    try:
        for problem in tqdm(problems, desc="testbed", unit="problem"):
            for sol in make_solutions(problem, args.error_rate, args.seed, args.per_problem, stats=stats,
                                      flawed_correct_rate=args.flawed_correct_rate):
                if held_writer is not None and is_heldout(sol.problem_id, args.heldout_fraction, args.seed):
                    if sol.id not in held_writer.done:
                        held_writer.write(step_item(sol))
                        held += 1
                elif sol.id not in writer.done:
                    writer.write(sol)
                    written += 1
    finally:
        writer.close()
        if held_writer is not None:
            held_writer.close()
    hist = ", ".join(f"{k}: {v}" for k, v in sorted(stats.first_error_hist.items()))
    print(f"{stats.problems} problems -> {stats.correct} correct and {stats.with_error} with an injected error "
          f"(true_first_error counts {{{hist}}}); {written} new record(s) in {args.output}"
          + (f", {held} held-out item(s) in {args.heldout_out}" if held_writer is not None else ""))
    if stats.reference_wrong:
        print(f"skipped {stats.reference_wrong} problem(s) whose reference answer does not grade as gold")
    if stats.flawed_correct or stats.flaw_not_placed:
        print(f"{stats.flawed_correct} with a flawed step and a right final answer (counted in 'with an injected "
              f"error'); {stats.flaw_not_placed} drawn for a flaw kept correct (every flaw moved the answer)")
    if stats.no_arithmetic or stats.error_not_propagated:
        print(f"kept correct: {stats.no_arithmetic} without checkable arithmetic, "
              f"{stats.error_not_propagated} where no injected error changed the final answer")
    return 0


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, help="problems JSONL with meta.reference_steps")
    p.add_argument("-o", "--output", required=True, help="testbed solutions JSONL (resumable)")
    p.add_argument("--error-rate", type=float, default=0.5, help="share of solutions with an injected error")
    p.add_argument("--flawed-correct-rate", type=float, default=0.0,
                   help="share of solutions with a wrong step that later steps do not use (final answer right)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-problem", type=int, default=1, help="solutions per problem (each drawn independently)")
    p.add_argument("--heldout-fraction", type=float, default=0.0,
                   help="share of problems held out as ProcessBench-style items (needs --heldout-out)")
    p.add_argument("--heldout-out", default=None, help="StepErrorItem JSONL for the held-out problems")


COMMAND = StageCommand(("data", "testbed"), "synthetic solutions with known first errors (from gsm_symbolic)",
                       _add_arguments, run_testbed)
