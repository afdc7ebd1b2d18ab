"""The synthetic testbed: solutions whose first wrong step is known, and a completer that knows it too.

    prm data testbed -i problems.jsonl -o testbed.jsonl --error-rate 0.5 --seed 0
    prm data testbed -i problems.jsonl -o testbed.jsonl --heldout-fraction 0.2 --heldout-out heldout.jsonl
    prm data testbed -i problems.jsonl -o testbed.jsonl --error-rate 0.4 --flawed-correct-rate 0.1

From each gsm_symbolic problem's reference solution (`meta.reference_steps`, one step a line) this makes
Solution records (`generator = "testbed"`) that are either the reference itself (`true_first_error = -1`)
or the reference with one injected arithmetic error: in step k (chosen among the steps whose arithmetic
checks out, e.g. `28 x 4 = 112`) the result of one equation is changed (`28 x 4 = 115`), and the wrong
value is carried forward: every later occurrence of the old result becomes the new one and every later
equation that used it is recomputed (`132 - 115 = 17`), so the final answer is wrong. `true_first_error
= k` is a top-level field (it lands in `Solution.extra`). With `--flawed-correct-rate` a share of solutions
instead gets a wrong value in step k that is not carried on (later steps keep the right values, as if the
slip were undone or never used): `true_first_error = k` with a right final answer, the kind of step error
that MC rollouts cannot see (ProcessBench's "erroneous but right answer" items). `correct` is the final answer graded against the
gold answer with `prm.grading`. Everything is drawn from `random.Random(f"{seed}:{problem id}:{i}")`, so a
rerun, a shard or a subset gives the same records.

`SimulatedCompleter` is a `prm.generation.Generator` for the MC annotator: it recognises a rollout prompt
(the text of a solution prefix, registered beforehand) and answers with the gold answer iff that prefix is
still clean (every step before `true_first_error`, or any prefix of a solution whose flaw leaves the final
answer right), else with a wrong answer; `noise` flips each rollout's outcome with that probability (seeded
per prompt and sample, so independent of batching). Two prefix-level modes model the MC failures of the
Qwen PRM paper: `false_negative` (that share of clean prefixes has every rollout fail) and `false_positive`
(that share of wrong prefixes has 1..k of its rollouts reach the gold answer anyway).
`heldout_step_items` turns testbed solutions into ProcessBench-style StepErrorItem records for evaluation.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prm.arithmetic import Tok, arithmetic_steps, final_answer_of, format_like, inject_error
from prm.config import option
from prm.errors import ConfigError, InputError, PrmError
from prm.generation import Completion, Prompt, SamplingConfig
from prm.records import Problem, Solution, StepErrorItem
from prm.stage import StageCommand

GENERATOR_NAME = "testbed"

# ---------------------------------------------------------------------------------------------------------
# Building testbed solutions
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# The simulated completer
# ---------------------------------------------------------------------------------------------------------

_WORDISH = re.compile(r"\d+|[A-Za-z]+|[^\sA-Za-z\d]")


def count_tokens(text: str) -> int:
    """A rough BPE-like count: words, numbers and punctuation marks."""
    return len(_WORDISH.findall(text))


def _wrong_answer(gold: str, solution: Solution) -> str:
    if not solution.correct and solution.final_answer:
        return solution.final_answer
    try:
        value = float(gold.replace(",", ""))
        return format_like(value + 1, Tok("num", "", 0, 0))
    except ValueError:
        return f"{gold}0"


def _reachable(solution: Solution, k: int) -> bool:
    """Does the simulated policy reach the gold answer from prefix 0..k of this testbed solution?"""
    tfe = true_first_error(solution)
    return tfe == -1 or k < tfe or solution.correct  # type: ignore[operator]


@dataclass
class SimulatedConfig:
    """Settings of the simulated completer (`mc.backend: simulated`)."""

    noise: float = option(0.0, help="probability that a rollout's outcome is flipped (0 = exact oracle)")
    false_negative: float = option(
        0.0, help="share of clean prefixes from which every rollout fails (wrong answers from correct steps)")
    false_positive: float = option(
        0.0, help="share of wrong prefixes from which 1..k rollouts (uniform) still reach the gold answer")
    seed: int = option(0, help="seed of the flips and of the token-count jitter")
    delay: float = option(0.0, help="seconds to sleep per generate call (to test kill and resume)")

    def check(self, section: str = "mc.simulated") -> None:
        for name in ("noise", "false_negative", "false_positive"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{section}.{name} must be in [0, 1], got {getattr(self, name)}")


class SimulatedCompleter:
    """A `Generator` for MC rollouts on testbed solutions, with known ground truth.

    Each prompt must be registered first (`register(prompt, solution, k)`; `for_solutions` registers every
    prefix through the annotator's own prompt builder), so the annotator runs unchanged against it. A
    rollout from prefix 0..k reaches the gold answer iff the prefix is clean (`k < true_first_error`, or no
    error), flipped with probability `noise`. The text is the rest of the solution and a boxed answer;
    `tokens` is its rough token count (x0.8-1.2 jitter); over `max_new_tokens` it is cut and unanswered.
    Each sample draws from `Random(seed, sampling.seed, prompt, index)`, so results do not depend on how
    prompts are batched. `delay` sleeps that many seconds per call (tests kill a slowed run).
    """

    def __init__(self, noise: float = 0.0, seed: int = 0, delay: float = 0.0, name: str = "simulated",
                 false_negative: float = 0.0, false_positive: float = 0.0):
        for knob, value in (("noise", noise), ("false_negative", false_negative), ("false_positive", false_positive)):
            if not 0.0 <= value <= 1.0:
                raise PrmError(f"simulated {knob} must be in [0, 1], got {value}")
        self.noise, self.seed, self.delay = noise, seed, delay
        self.false_negative, self.false_positive = false_negative, false_positive
        modes = f",fn={false_negative},fp={false_positive}" if false_negative or false_positive else ""
        self.name = f"{name}(noise={noise}{modes},seed={seed})"
        self._lookup: dict[str, list[tuple[Solution, int]]] = {}
        self.calls = 0

    def register(self, prompt: str, solution: Solution, k: int) -> None:
        if true_first_error(solution) is None:
            raise PrmError(f"simulated backend: solution {solution.id} has no true_first_error "
                           "(use testbed records: prm data testbed)")
        # Solutions of one problem can share a prefix text (a flaw and a carried error made alike); the
        # prefix then counts as clean only if it is clean for each, whatever the order they come in.
        self._lookup.setdefault(prompt, []).append((solution, k))

    @classmethod
    def for_solutions(cls, solutions: Iterable[Solution], prompt_for: Callable[[Solution, int], str],
                      **kwargs: Any) -> SimulatedCompleter:
        completer = cls(**kwargs)
        for sol in solutions:
            for k in range(len(sol.steps)):
                completer.register(prompt_for(sol, k), sol, k)
        return completer

    def _one(self, prompt: str, index: int, sampling: SamplingConfig) -> Completion:
        registrants = self._lookup[prompt]
        solution, k = min(registrants, key=lambda r: r[0].id)
        # A flaw the later steps do not use (right final answer) leaves the gold answer reachable: rollouts
        # check answers, not steps, which is why MC labels miss such errors.
        clean = all(_reachable(sol, j) for sol, j in registrants)
        h = hashlib.blake2b(f"{self.seed}:{sampling.seed}:{index}:{prompt}".encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(h, "big"))
        reaches_gold = clean != (rng.random() < self.noise)
        prefix_mode = self._prefix_mode(prompt, sampling, clean)
        if prefix_mode is not None:  # a prefix-level failure mode overrides the per-rollout draw
            reaches_gold = prefix_mode(index)
        answer = solution.answer if reaches_gold else _wrong_answer(solution.answer, solution)
        rest = "\n\n".join(solution.steps[k + 1:])
        text = (rest + "\n\n" if rest else "") + f"The final answer is $\\boxed{{{answer}}}$."
        tokens = max(1, round(count_tokens(text) * rng.uniform(0.8, 1.2)))
        if tokens > sampling.max_new_tokens:
            words = text.split()
            cut = " ".join(words[: max(1, len(words) * sampling.max_new_tokens // tokens)])
            return Completion(text=cut.split("\\boxed")[0], tokens=sampling.max_new_tokens, finish_reason="length")
        return Completion(text=text, tokens=tokens, finish_reason="stop")

    def _prefix_mode(self, prompt: str, sampling: SamplingConfig, clean: bool) -> Callable[[int], bool] | None:
        """Whether this prefix falls into a false-negative / false-positive mode, drawn once per prefix
        (`Random(seed, sampling.seed, prompt)`): a function of the rollout index giving its outcome."""
        rate = self.false_negative if clean else self.false_positive
        if rate <= 0:
            return None
        h = hashlib.blake2b(f"{self.seed}:{sampling.seed}:prefix:{prompt}".encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(h, "big"))
        if rng.random() >= rate:
            return None
        if clean:
            return lambda index: False  # every rollout from a correct prefix fails
        lucky = set(rng.sample(range(sampling.n), rng.randint(1, sampling.n)))
        return lambda index: index in lucky  # some rollouts reach the gold answer after an error

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        self.calls += 1
        if self.delay > 0:
            time.sleep(self.delay)
        out = []
        for prompt in prompts:
            if not isinstance(prompt, str) or prompt not in self._lookup:
                shown = (prompt if isinstance(prompt, str) else str(prompt))[-80:]
                raise PrmError(f"simulated backend: unknown prompt (not a registered solution prefix): ...{shown!r}")
            out.append([self._one(prompt, i, sampling) for i in range(sampling.n)])
        return out


# ---------------------------------------------------------------------------------------------------------
# CLI: prm data testbed
# ---------------------------------------------------------------------------------------------------------


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
