"""The synthetic testbed: solutions whose first wrong step is known (the command is `prm data testbed`,
in `testbed_cli.py`).

From each gsm_symbolic problem's reference solution (`meta.reference_steps`, one step a line) this makes
Solution records (`generator = "testbed"`) that are either the reference itself (`true_first_error = -1`)
or the reference with one injected arithmetic error (`prm.arithmetic`): in step k (chosen among the steps
whose arithmetic checks out, e.g. `28 x 4 = 112`) the result of one equation is changed (`28 x 4 = 115`), and
the wrong value is carried forward: every later occurrence of the old result becomes the new one and every
later equation that used it is recomputed (`132 - 115 = 17`), so the final answer is wrong. `true_first_error
= k` is a top-level field (it lands in `Solution.extra`). With `flawed_correct_rate` a share of solutions
instead gets a wrong value in step k that is not carried on (later steps keep the right values, as if the
slip were undone or never used): `true_first_error = k` with a right final answer, the kind of step error
that MC rollouts cannot see (ProcessBench's "erroneous but right answer" items). `correct` is the final
answer graded against the gold answer with `prm.grading`. Everything is drawn from
`random.Random(f"{seed}:{problem id}:{i}")`, so a rerun, a shard or a subset gives the same records.

The held-out step-error items are in `testbed_heldout.py`, the simulated MC completer that knows the truth
in `simulated_completer.py`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from prm.arithmetic import arithmetic_steps, final_answer_of, inject_error
from prm.errors import PrmError
from prm.records import Problem, Solution

GENERATOR_NAME = "testbed"


@dataclass
class TestbedStats:
    problems: int = 0
    correct: int = 0
    with_error: int = 0
    no_arithmetic: int = 0  # an error was drawn but no step holds checkable arithmetic: kept correct
    error_not_propagated: int = 0  # an error was drawn but no injection changed the final answer
    flawed_correct: int = 0  # a flaw that later steps do not use: wrong step, right final answer
    flaw_not_placed: int = 0  # a flaw was drawn but every candidate step changed the final answer: kept correct
    reference_wrong: int = 0  # the reference's own final answer does not grade as the gold answer: skipped
    first_error_hist: dict[int, int] = field(default_factory=dict)


def reference_steps(problem: Problem) -> list[str] | None:
    steps = (problem.meta or {}).get("reference_steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        return None
    return [s.strip() for s in steps]


def make_solutions(problem: Problem, error_rate: float, seed: int, per_problem: int = 1,
                   grade: Callable[[str | None, str], bool] | None = None,
                   stats: TestbedStats | None = None, flawed_correct_rate: float = 0.0) -> list[Solution]:
    """`per_problem` testbed solutions of one problem; each has an injected error carried to a wrong final
    answer with probability `error_rate`, else a flawed step whose wrong value later steps do not use (the
    final answer stays right, `true_first_error` is still that step) with probability `flawed_correct_rate`.
    Deterministic in (seed, problem id, index)."""
    if grade is None:
        grade = _grade
    stats = stats if stats is not None else TestbedStats()
    steps = reference_steps(problem)
    if steps is None:
        raise PrmError(f"problem {problem.id}: no meta.reference_steps (a list of non-empty strings)")
    stats.problems += 1
    ref_final = final_answer_of(steps)
    if not grade(ref_final, problem.answer):
        stats.reference_wrong += 1
        return []
    out = []
    candidates = arithmetic_steps(steps)
    context = problem.problem
    for i in range(per_problem):
        rng = random.Random(f"{seed}:{problem.id}:{i}")
        draw = rng.random()  # one draw: the same records as before flawed steps existed when their rate is 0
        want_error = draw < error_rate
        want_flaw = not want_error and draw < error_rate + flawed_correct_rate
        sol_steps, first_error, final = steps, -1, ref_final
        if want_flaw:
            sol_steps, first_error = _place_flaw(steps, candidates, rng, context, ref_final, problem.answer, grade)
            stats.flawed_correct += first_error >= 0
            stats.flaw_not_placed += first_error < 0
        elif want_error and not candidates:
            stats.no_arithmetic += 1
        elif want_error:
            order = list(candidates)
            rng.shuffle(order)
            for k in order:
                for _attempt in range(3):
                    mutated = inject_error(steps, k, rng, context)
                    if mutated is None:
                        break
                    mutated_final = final_answer_of(mutated)
                    if mutated_final is not None and not grade(mutated_final, problem.answer):
                        sol_steps, first_error, final = mutated, k, mutated_final
                        break
                if first_error >= 0:
                    break
            if first_error < 0:
                stats.error_not_propagated += 1
        correct = grade(final, problem.answer)
        if first_error >= 0:
            stats.with_error += 1  # a flawed step with a right answer counts too
        else:
            stats.correct += 1
        stats.first_error_hist[first_error] = stats.first_error_hist.get(first_error, 0) + 1
        out.append(Solution(
            id=f"{problem.id}-tb{i}", problem_id=problem.id, problem=problem.problem, answer=problem.answer,
            steps=list(sol_steps), final_answer=final, correct=correct, generator=GENERATOR_NAME,
            extra={"true_first_error": first_error, "source": problem.source},
        ))
    return out


def _place_flaw(steps: list[str], candidates: list[int], rng: random.Random, context: str, ref_final: str | None,
                gold: str, grade: Callable[[str | None, str], bool]) -> tuple[list[str], int]:
    """(steps with one unused wrong value, its step) or (the reference, -1) when every try moves the answer."""
    order = list(candidates)
    rng.shuffle(order)
    for k in order:
        mutated = inject_error(steps, k, rng, context, propagate=False)
        if mutated is None or mutated == steps:
            continue
        final = final_answer_of(mutated)
        if final is not None and final == ref_final and grade(final, gold):
            return mutated, k
    return steps, -1


def _grade(pred: str | None, gold: str) -> bool:
    from prm.grading import grade

    return pred is not None and bool(grade(pred, gold))


def true_first_error(solution: Solution) -> int | None:
    value = solution.extra.get("true_first_error")
    return value if isinstance(value, int) and not isinstance(value, bool) else None

