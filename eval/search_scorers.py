"""Step scorers for `prm search`: any checkpoint `prm score` reads, or the simulated PRM.

`PrmStepScorer` wraps a `prm.scoring` Scorer (every format: ours, qwen_prm, skywork, math_shepherd,
rlhflow): the prefixes of an iteration go through `Scorer.score_encoded` in one pass (batched by length), each
prefix's scores are cached by its text, so a prefix met again (a duplicate beam) costs no PRM tokens.
`check_prefixes` refuses a scorer whose score of a step changes when later steps are appended: search scores
prefixes, so such a scorer cannot guide it.

`SimulatedPrm` knows the simulated policy's first wrong step: `oracle` scores a step 1 when it and every step
before it are right, else 0; `noisy` reports that label with probability `accuracy` (else the flipped one),
drawn once per step. Its tokens: words of the problem and steps (one more for each delimiter).
"""

from __future__ import annotations

import random
from typing import Any

from prm.eval.search_algo import Node
from prm.eval.search_policies import words

from prm.errors import PrmError

PROBE = ("Compute 1 + 2 + 3.", ["1 + 2 = 3", "3 + 3 = 6", "The answer is 6."])


class PrmStepScorer:
    def __init__(self, scorer: Any, batch_size: int = 8, max_tokens: int | None = None):
        self.scorer = scorer
        self.name = scorer.describe()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.cache: dict[tuple[str, tuple[str, ...]], list[float]] = {}

    def _run(self, problems: list[str], steps: list[list[str]]) -> tuple[list[list[float]], list[int]]:
        encoded = self.scorer.encode_all(problems, steps)
        scores = self.scorer.score_encoded(encoded, self.batch_size, self.max_tokens)
        return scores, [len(e.input_ids) for e in encoded]

    def check_prefixes(self) -> None:
        problem, steps = PROBE
        try:
            (full, part), _ = self._run([problem, problem], [steps, steps[:2]])
        except PrmError as exc:
            raise PrmError(f"{self.name} cannot score prefixes: {exc}") from None
        if len(full) != len(steps) or len(part) != 2 or \
                any(abs(a - b) > 1e-3 for a, b in zip(full[:2], part, strict=True)):
            raise PrmError(f"{self.name} cannot score prefixes: a step's score changes when later steps are "
                           f"appended ({[round(x, 4) for x in part]} vs {[round(x, 4) for x in full[:2]]})")

    def score(self, nodes: list[Node]) -> tuple[list[list[float]], list[int]]:
        keys = [(nd.problem.problem, tuple(nd.steps)) for nd in nodes]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        cost: dict[tuple[str, tuple[str, ...]], int] = {}
        if todo:
            scores, tokens = self._run([k[0] for k in todo], [list(k[1]) for k in todo])
            for k, s, t in zip(todo, scores, tokens, strict=True):
                self.cache[k] = s
                cost[k] = t
        return [list(self.cache[k]) for k in keys], [cost.pop(k, 0) for k in keys]


class SimulatedPrm:
    def __init__(self, kind: str, accuracy: float, seed: int):
        self.kind, self.accuracy, self.seed = kind, accuracy, seed
        self.name = "oracle PRM" if kind == "oracle" else f"noisy PRM (accuracy {accuracy})"

    def score(self, nodes: list[Node]) -> tuple[list[list[float]], list[int]]:
        out, tokens = [], []
        for nd in nodes:
            first_error = nd.state[1]
            row = []
            for j, uid in enumerate(nd.step_uids):
                right = first_error is None or j < first_error
                if self.kind == "noisy" and random.Random(f"{self.seed}|prm|{nd.problem.id}|{uid}").random() >= self.accuracy:
                    right = not right
                row.append(1.0 if right else 0.0)
            out.append(row)
            tokens.append(words(nd.problem.problem) + sum(words(s) for s in nd.steps))
        return out, tokens
