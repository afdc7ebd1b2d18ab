"""A simulated MC completer for testbed solutions, with known ground truth (`mc.backend: simulated`).

    prm annotate mc -i testbed.jsonl -o mc.jsonl backend=simulated simulated.noise=0.1

`SimulatedCompleter` is a `prm.generation.Generator` for the MC annotator: it recognises a rollout prompt
(the text of a solution prefix, registered beforehand) and answers with the gold answer iff that prefix is
still clean (every step before `true_first_error`, or any prefix of a solution whose flaw leaves the final
answer right), else with a wrong answer; `noise` flips each rollout's outcome with that probability (seeded
per prompt and sample, so independent of batching). Two prefix-level modes model the MC failures of the
Qwen PRM paper: `false_negative` (that share of clean prefixes has every rollout fail) and `false_positive`
(that share of wrong prefixes has 1..k of its rollouts reach the gold answer anyway).
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prm.data_synthesis.testbed import true_first_error

from prm.arithmetic import Tok, format_like
from prm.config import option
from prm.errors import ConfigError, PrmError
from prm.generation import Completion, Prompt, SamplingConfig
from prm.records import Solution

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
