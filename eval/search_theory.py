"""Expected accuracy of Best-of-N and beam search in the simulated mode, in closed form.

    from prm.eval.search_theory import expected_accuracy
    expected_accuracy(problems, "beam", p=0.7, n=8, beam_width=2, accuracy=1.0)   # oracle PRM

Setting (eval/search_policies.py `SimulatedPolicy`, eval/search_scorers.py `SimulatedPrm`, aggregation
`last`, answer `argmax`, ties at random): a step with an equation is right with probability p (others always
are), an error is carried to the final answer, and the PRM reports the true label of the last step with
probability a (a = 1: oracle), independently per step. The accuracy predicted is that of *error-free* chosen
solutions (record field `error_free`): the testbed's carry-forward heuristic lets a few wrong chains land on
the right answer (`3 - 0 = 5`, `5 - 5 = 0` for `3 - 0 - 3`), so graded accuracy (`correct`) is a little higher.

Best-of-N: a solution is right with q = p^m (m steps with equations); it scores 1 with probability
s = q a + (1 - q)(1 - a). The argmax picks among the candidates scoring 1 if there is one, else among all:
acc = (1 - (1 - s)^N) q a / s + (1 - s)^N q (1 - a) / (1 - s).

Beam search (N beams, width M, K = N/M kept): with c right among the N candidates of a step, X ~ Bin(c, a)
right and Y ~ Bin(N - c, 1 - a) wrong ones score 1; the K kept are drawn from those (hypergeometric), topped
up from the rest when X + Y < K. The j right survivors give Bin(M j, p) right children (wrong ones stay wrong).
The distribution of c is carried step by step (exact, a finite sum); at the last step the argmax picks
a right candidate with probability X / (X + Y) (c / N when nothing scores 1).
"""

from __future__ import annotations

from collections import defaultdict
from math import comb

from prm.records import Problem


def _binom(n: int, p: float) -> list[float]:
    return [comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1)]


def _hyper(pop: int, good: int, draws: int) -> list[tuple[int, float]]:
    total = comb(pop, draws)
    return [(k, comb(good, k) * comb(pop - good, draws - k) / total)
            for k in range(max(0, draws - (pop - good)), min(good, draws) + 1)]


def step_probabilities(steps: list[str], p: float) -> list[float]:
    from prm.arithmetic import arithmetic_steps

    wrongable = set(arithmetic_steps(steps))
    return [p if k in wrongable else 1.0 for k in range(len(steps))]


def bon(q: float, n: int, a: float) -> float:
    s = q * a + (1 - q) * (1 - a)
    none = (1 - s) ** n
    picked_one = (1 - none) * (q * a / s) if s > 0 else 0.0
    picked_any = none * (q * (1 - a) / (1 - s)) if s < 1 else 0.0
    return picked_one + picked_any


def _scored(c: int, total: int, a: float):
    for x, px in enumerate(_binom(c, a)):
        for y, py in enumerate(_binom(total - c, 1 - a)):
            if px * py:
                yield x, y, px * py


def _kept(c: int, total: int, keep: int, a: float) -> dict[int, float]:
    out: dict[int, float] = defaultdict(float)
    for x, y, w in _scored(c, total, a):
        if x + y >= keep:
            for j, pj in _hyper(x + y, x, keep):
                out[j] += w * pj
        else:
            for j, pj in _hyper(total - x - y, c - x, keep - x - y):
                out[x + j] += w * pj
    return out


def beam(ps: list[float], n: int, m: int, a: float) -> float:
    keep = n // m
    dist = dict(enumerate(_binom(n, ps[0])))
    for p in ps[1:]:
        new: dict[int, float] = defaultdict(float)
        for c, w in dist.items():
            for j, wj in _kept(c, n, keep, a).items():
                for c2, w2 in enumerate(_binom(m * j, p)):
                    new[c2] += w * wj * w2
        dist = new
    acc = 0.0
    for c, w in dist.items():
        acc += w * sum(wx * (x / (x + y) if x + y else c / n) for x, y, wx in _scored(c, n, a))
    return acc


def expected_accuracy(problems: list[Problem], method: str, p: float, n: int, beam_width: int,
                      accuracy: float) -> float:
    """Mean expected accuracy over `problems` (each with meta.reference_steps)."""
    total = 0.0
    for prob in problems:
        ps = step_probabilities(prob.meta["reference_steps"], p)  # type: ignore[index]
        if method == "bon":
            q = 1.0
            for x in ps:
                q *= x
            total += bon(q, n, accuracy)
        elif method == "beam":
            total += beam(ps, n, beam_width, accuracy)
        else:
            raise ValueError(f"no closed form for method {method!r}")
    return total / len(problems)
