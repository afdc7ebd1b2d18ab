"""Held-out testbed problems as ProcessBench-style step-error items (label = the known first error).

    prm data testbed -i problems.jsonl -o testbed.jsonl --heldout-fraction 0.2 --heldout-out heldout.jsonl

The split is by problem id (all solutions of a problem fall on the same side), stable across reruns and
shards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from prm.data_synthesis.testbed import true_first_error

from prm.errors import PrmError
from prm.records import Solution, StepErrorItem


def is_heldout(problem_id: str, fraction: float, seed: int) -> bool:
    """A stable split by problem id (all solutions of a problem fall on the same side)."""
    digest = hashlib.blake2b(f"{seed}:{problem_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def step_item(solution: Solution) -> StepErrorItem:
    """A ProcessBench-style item (label = the known first error) from a testbed solution."""
    label = true_first_error(solution)
    if label is None:
        raise PrmError(f"solution {solution.id}: no true_first_error (not a testbed record)")
    return StepErrorItem(id=solution.id, generator=solution.generator, problem=solution.problem,
                         steps=list(solution.steps), final_answer_correct=solution.correct, label=label,
                         extra={"problem_id": solution.problem_id, "answer": solution.answer})


def heldout_step_items(solutions: Iterable[Solution], fraction: float = 0.2,
                       seed: int = 0) -> tuple[list[Solution], list[StepErrorItem]]:
    """Split testbed solutions by problem: (the kept solutions, the held-out ones as StepErrorItems)."""
    if not 0.0 <= fraction <= 1.0:
        raise PrmError(f"held-out fraction must be in [0, 1], got {fraction}")
    kept, held = [], []
    for sol in solutions:
        if is_heldout(sol.problem_id, fraction, seed):
            held.append(step_item(sol))
        else:
            kept.append(sol)
    return kept, held
