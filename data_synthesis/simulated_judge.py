"""A simulated judge for testbed solutions: the true first error, with an accuracy you set.

    prm annotate judge -i testbed.jsonl -o judged.jsonl backend=simulated simulated.accuracy_erroneous=0.7
    prm annotate judge -i mc.jsonl -o judged.jsonl backend=simulated simulated.correlation=0.5   # errs where MC erred

It stands where the LLM judge's model stands (a `Generator` answering the judge prompts), so the records
are the real judge's: `judge: {first_error, votes, parsed, raw, reasons}`, parse outcome included. Each
vote of a solution with a known first error t (`true_first_error`, as `prm data testbed` writes it) is:

- right with probability `accuracy_erroneous` (t >= 0) or `accuracy_correct` (t = -1): `\\boxed{t}`;
- else wrong: on an erroneous solution "no error" (-1), an earlier step or a later step, drawn with the
  weights `wrong_none` : `wrong_earlier` : `wrong_later` among the kinds the solution allows (no earlier
  step before step 0); on a correct solution a step drawn uniformly;
- with probability `unparsed`, a reply without a verdict (parse outcome `no_box`), whatever it would say.

`correlation` (0..1) couples the judge's mistakes to the simulated MC annotator's: the input must carry
`mc` labels (annotate the MC output), and within each class (erroneous / correct) the judge's error and
the MC error (`mc.first_error != true_first_error`) get that phi correlation while the judge's error rate
stays 1 - accuracy (capped where the two error rates make the correlation unreachable). The MC error rate
of a class is taken over the whole input file, so a shard draws what the full run draws.
Every draw comes from `Random(seed, the solution's problem and steps, vote)`: deterministic, independent of
order and shards, and the same for two records with the same text (the judge sees only the prompt, and a
testbed draws the reference solution of a problem more than once), as a greedy LLM judge would answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from prm.config import option
from prm.errors import ConfigError, InputError
from prm.generation import Completion, Prompt, SamplingConfig
from prm.records import Solution


@dataclass
class SimulatedJudgeConfig:
    """Settings of the simulated judge (`judge.backend: simulated`)."""

    accuracy_erroneous: float = option(0.8, help="P(the verdict is the true first error) on solutions with an error")
    accuracy_correct: float = option(0.8, help="P(the verdict is -1) on solutions without an error")
    wrong_none: float = option(1.0, help="weight of 'no error' among wrong verdicts on erroneous solutions")
    wrong_earlier: float = option(1.0, help="weight of flagging an earlier step among wrong verdicts")
    wrong_later: float = option(1.0, help="weight of flagging a later step among wrong verdicts")
    correlation: float = option(
        0.0, help="phi correlation of the judge's errors with the MC annotator's (0..1; the input needs `mc`)")
    unparsed: float = option(0.0, help="share of replies without a parsable verdict")
    seed: int = option(0, help="seed of every draw (per solution text and vote)")

    def __post_init__(self) -> None:  # checked wherever the section is built, before any work
        self.check()

    def check(self) -> None:
        for name in ("accuracy_erroneous", "accuracy_correct", "correlation", "unparsed"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"judge.simulated.{name} must be in [0, 1], got {value}")
        weights = (self.wrong_none, self.wrong_earlier, self.wrong_later)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError("judge.simulated.wrong_none, wrong_earlier and wrong_later are weights: each >= 0, "
                              f"not all 0; got {list(weights)}")


def _truth(solution: Solution) -> int | None:
    value = solution.extra.get("true_first_error")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _erred(solution: Solution) -> bool:
    return solution.mc is not None and solution.mc.first_error != _truth(solution)


def error_given_mc(p: float, q: float, rho: float) -> tuple[float, float]:
    """P(judge errs | MC erred), P(judge errs | MC right) for a judge error rate p, an MC error rate q and a
    phi correlation rho, the joint clipped to what the marginals allow (p is kept)."""
    if rho == 0 or q <= 0 or q >= 1 or p <= 0 or p >= 1:
        return p, p
    joint = p * q + rho * math.sqrt(p * (1 - p) * q * (1 - q))
    joint = min(max(joint, max(0.0, p + q - 1)), min(p, q))
    return joint / q, (p - joint) / (1 - q)


class SimulatedJudge:
    """A `Generator` answering judge prompts of registered testbed solutions (see the module docstring)."""

    def __init__(self, cfg: SimulatedJudgeConfig, solutions: Sequence[Solution], prompt_for, path: str = "",
                 template: str = "processbench"):
        """`solutions`: the whole input file (its MC error rates set the coupling); `prompt_for(solution)`:
        the judge prompt that solution gets; `template`: the judge protocol the replies follow. Raises
        InputError (file, line, field) on unusable records."""
        from prm.data_synthesis.judge_templates import JUDGE_TEMPLATES

        from prm.jsonl import record_lines

        cfg.check()
        self.cfg = cfg
        self.template = JUDGE_TEMPLATES[template]
        self.name = f"simulated-judge(seed={cfg.seed})"
        lines = None
        for index, s in enumerate(solutions):
            missing = "true_first_error" if _truth(s) is None else "mc" if cfg.correlation > 0 and s.mc is None else ""
            if missing:
                lines = lines or record_lines(path)
                why = ("backend=simulated needs testbed solutions (prm data testbed)" if missing == "true_first_error"
                       else "simulated.correlation > 0 needs MC labels: judge the output of prm annotate mc")
                raise InputError(path, lines[index], missing, f"solution {s.id}: {why}")
        self.mc_error_rate = {}
        for erroneous in (True, False):
            group = [s for s in solutions if (_truth(s) >= 0) == erroneous]  # type: ignore[operator]
            self.mc_error_rate[erroneous] = sum(map(_erred, group)) / len(group) if group else 0.0
        self._lookup = {self._key(prompt_for(s)): s for s in solutions}

    @staticmethod
    def _key(prompt: Prompt) -> str:
        return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)

    def verdict(self, solution: Solution, vote: int) -> tuple[int | None, str]:
        """(the verdict, what kind it is: right / none / earlier / later / step / unparsed)."""
        cfg = self.cfg
        text = "\x00".join([solution.problem, *solution.steps])
        h = hashlib.blake2b(f"{cfg.seed}:{vote}:{text}".encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(h, "big"))
        truth, n = _truth(solution), len(solution.steps)
        erroneous = truth >= 0  # type: ignore[operator]
        p = 1.0 - (cfg.accuracy_erroneous if erroneous else cfg.accuracy_correct)
        if cfg.correlation > 0:
            if_erred, if_right = error_given_mc(p, self.mc_error_rate[erroneous], cfg.correlation)
            p = if_erred if _erred(solution) else if_right
        wrong, unparsed = rng.random() < p, rng.random() < cfg.unparsed
        pick = rng.random()
        if unparsed:
            return None, "unparsed"
        if not wrong:
            return truth, "right"
        if not erroneous:
            return int(pick * n), "step"
        kinds = [(kind, w) for kind, w, ok in (("none", cfg.wrong_none, True), ("earlier", cfg.wrong_earlier, truth > 0),
                                              ("later", cfg.wrong_later, truth < n - 1)) if ok and w > 0]
        if not kinds:  # only 'none' is always possible; its weight is 0 here
            kinds = [("none", 1.0)]
        total, acc = sum(w for _, w in kinds), 0.0
        for kind, w in kinds:
            acc += w / total
            if pick < acc or kind == kinds[-1][0]:
                break
        second = rng.random()
        if kind == "earlier":
            return int(second * truth), kind
        if kind == "later":
            return truth + 1 + int(second * (n - 1 - truth)), kind
        return -1, kind

    def reply(self, value: int, n_steps: int) -> str:
        """A reply in the template's protocol that its parser reads as `value` (its verdict ending, after
        the analyses of the paragraphs before it where the protocol wants one per paragraph)."""
        ending = next(text for text, v in self.template.verdicts(n_steps).items() if v == value)
        last = n_steps if value == -1 else value + 1  # paragraphs analysed, numbered from 1
        if "</analysis_" in ending:
            ending = "".join(f"<analysis_{i}>\nchecked\n</analysis_{i}>\n\n" for i in range(1, last)) + \
                f"<analysis_{last}>\nchecked\n" + ending
        return ending

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        out = []
        for prompt in prompts:
            solution = self._lookup.get(self._key(prompt))
            if solution is None:
                raise KeyError("simulated judge: a prompt of no registered solution")
            replies = []
            for vote in range(sampling.n):
                value, kind = self.verdict(solution, vote)
                text = f"[simulated judge: {kind}]\n" + ("I cannot decide." if value is None
                                                         else self.reply(value, len(solution.steps)))
                replies.append(Completion(text=text, tokens=len(text.split()), finish_reason="stop"))
            out.append(replies)
        return out
