"""PRM-guided search over steps, batched across problems and beams: Best-of-N, beam search and DVTS.

    from prm.eval.search_algo import SearchSpec, run_batch
    records = run_batch(problems, policy, scorer, SearchSpec(method="beam", n=8, beam_width=2))

A *policy* (eval/search_policies.py) turns prefixes into continuations: `expand(nodes, n)` writes one more
step for every node, `n` children each, in ONE call for the whole batch (one generate call per iteration for
all active beams of all problems); `complete(roots, n)` writes whole solutions (Best-of-N). A *scorer* scores
every new prefix of an iteration in one pass; a node is scored once and keeps its step scores, so no prefix
is scored twice.

Beam search and DVTS are one loop over *groups* of candidates: a group keeps its `keep` best unfinished
candidates (by aggregated step score, ties broken at random) and expands each into `expand` children.
Beam search: one group per problem, N first steps, keep N/M, M children each (N candidates an iteration).
DVTS: N/M groups per problem, M first steps each, keep 1, M children (independent subtrees).
A candidate finishes at the end of the sequence, a final answer, or the length limit (`max_steps` steps or
`max_tokens` generated tokens); finished candidates leave their group, and the answer is chosen among all
finished candidates of the problem: the best aggregated score (`argmax`) or the answer with the largest
sum of aggregated scores (`vote`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prm.errors import ConfigError
from prm.records import Problem

METHODS = ("beam", "dvts", "bon")
AGGREGATIONS = ("last", "min", "prod")
ANSWERS = ("argmax", "vote")


@dataclass
class Node:
    """One prefix (a partial or finished solution) of one problem."""

    problem: Problem
    steps: list[str]
    step_tokens: list[int]
    step_uids: list[int]  # which expansion wrote each step (the simulated PRM draws its noise per step)
    state: Any = None  # the policy's own state: continuation text, the simulated hidden solution
    done: str | None = None  # None (active), "eos", "answer" or "length"
    scores: list[float] | None = None
    cost: int = 0  # tokens generated to make this node from its parent (an end-of-sequence included)
    tokens: int = 0  # tokens generated along the whole path from the problem to this node


class Policy(Protocol):
    name: str

    def root(self, problem: Problem) -> Node: ...

    def expand(self, nodes: list[Node], n: int, uid: Callable[[int], int]) -> list[list[Node]]:
        """`n` children of every node, one more step each; `uid(i)` is a fresh id for node i's problem."""
        ...

    def complete(self, roots: list[Node], n: int, uid: Callable[[int], int]) -> list[list[Node]]:
        """`n` whole solutions for every root (Best-of-N)."""
        ...

    def final_answer(self, node: Node) -> str | None: ...


class StepScorer(Protocol):
    name: str

    def score(self, nodes: list[Node]) -> tuple[list[list[float]], list[int]]:
        """Step scores of every node (one per step) and the PRM tokens each cost (0 when cached)."""
        ...


@dataclass
class SearchSpec:
    method: str = "beam"
    n: int = 4
    beam_width: int = 2
    aggregation: str = "last"
    answer: str = "argmax"
    max_steps: int = 12
    max_tokens: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        check_spec(self.method, self.n, self.beam_width, self.aggregation, self.answer)


def check_spec(method: str, n: int, beam_width: int, aggregation: str, answer: str, where: str = "") -> None:
    """The search settings every method needs; ConfigError names the key."""
    if method not in METHODS:
        raise ConfigError(f"{where}method must be one of {', '.join(METHODS)}, got {method!r}")
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"{where}aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    if answer not in ANSWERS:
        raise ConfigError(f"{where}answer must be one of {', '.join(ANSWERS)}, got {answer!r}")
    if n < 1 or beam_width < 1:
        raise ConfigError(f"{where}n and {where}beam_width must be at least 1, got n={n}, beam_width={beam_width}")
    if method != "bon":
        if beam_width > n:
            raise ConfigError(f"{where}beam_width ({beam_width}) must not exceed n ({n})")
        if n % beam_width:
            raise ConfigError(f"{where}n ({n}) must be divisible by beam_width ({beam_width})")


def aggregate(scores: Sequence[float], how: str) -> float:
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    return float(math.prod(scores))


def top(nodes: list[Node], k: int, how: str, rng: random.Random) -> list[Node]:
    """The k best nodes by aggregated score; ties in random order (so ties cost no systematic bias)."""
    keyed = [(-aggregate(nd.scores or [], how), rng.random(), i) for i, nd in enumerate(nodes)]
    return [nodes[i] for _, _, i in sorted(keyed)[:k]]


@dataclass
class _Group:
    keep: int
    expand: int
    candidates: list[Node]


@dataclass
class _State:
    problem: Problem
    rng: random.Random
    groups: list[_Group] = field(default_factory=list)
    finished: list[Node] = field(default_factory=list)
    generated_tokens: int = 0
    scored_tokens: int = 0
    nodes: int = 0
    next_uid: int = 0

    def uid(self) -> int:
        self.next_uid += 1
        return self.next_uid


def _limit(node: Node, spec: SearchSpec) -> Node:
    if node.done is None and (len(node.steps) >= spec.max_steps or node.tokens >= spec.max_tokens):
        node.done = "length"
    return node


def _score_new(states: list[_State], scorer: StepScorer, nodes_of: list[list[Node]]) -> None:
    """One scoring pass over every node of this iteration that has steps and no scores yet."""
    todo = [(s, nd) for s, nodes in zip(states, nodes_of, strict=True) for nd in nodes
            if nd.scores is None and nd.steps]
    if todo:
        scores, tokens = scorer.score([nd for _, nd in todo])
        for (s, nd), values, t in zip(todo, scores, tokens, strict=True):
            nd.scores = list(values)
            s.scored_tokens += t
    for nodes in nodes_of:
        for nd in nodes:
            if nd.scores is None:
                nd.scores = []


def run_batch(problems: list[Problem], policy: Policy, scorer: StepScorer, spec: SearchSpec,
              stats: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Search every problem of the batch together; one record (a dict) per problem, in input order."""
    stats = stats if stats is not None else {}
    states = [_State(p, random.Random(f"{spec.seed}|{p.id}")) for p in problems]
    roots = [policy.root(p) for p in problems]
    calls = 0
    if spec.method == "bon":
        outs = policy.complete(roots, spec.n, _UidRouter(states))
        calls += 1
        for s, children in zip(states, outs, strict=True):
            for ch in children:
                ch.done = ch.done or "eos"
            s.finished.extend(children)
        _account(states, outs)
        _score_new(states, scorer, outs)
    else:
        outs = policy.expand(roots, spec.n, _UidRouter(states))
        calls += 1
        _account(states, outs)
        for s, children in zip(states, outs, strict=True):
            children = [_limit(c, spec) for c in children]
            m = spec.beam_width
            if spec.method == "beam":
                s.groups = [_Group(spec.n // m, m, children)]
            else:
                s.groups = [_Group(1, m, children[g * m:(g + 1) * m]) for g in range(spec.n // m)]
        _score_new(states, scorer, outs)
        while True:
            parents: list[Node] = []
            slots: list[tuple[_State, _Group]] = []
            for s in states:
                for g in s.groups:
                    s.finished.extend(c for c in g.candidates if c.done)
                    active = [c for c in g.candidates if not c.done]
                    g.candidates = []
                    for survivor in top(active, g.keep, spec.aggregation, s.rng):
                        parents.append(survivor)
                        slots.append((s, g))
            if not parents:
                break
            # Same n for every parent: one generate call for all active beams of all problems.
            outs = policy.expand(parents, spec.beam_width, _UidRouter(states, [s for s, _ in slots]))
            calls += 1
            by_state: dict[int, list[Node]] = {}
            for (s, g), children in zip(slots, outs, strict=True):
                children = [_limit(c, spec) for c in children]
                g.candidates.extend(children)
                s.generated_tokens += sum(c.cost for c in children)
                s.nodes += len(children)
                by_state.setdefault(id(s), []).extend(children)
            _score_new(states, scorer, [by_state.get(id(s), []) for s in states])
    stats["generate_calls"] = stats.get("generate_calls", 0) + calls
    return [_record(s, policy, spec) for s in states]


class _UidRouter:
    """Hands a policy fresh node ids: per problem when it asks with the node's problem index."""

    def __init__(self, states: list[_State], per_parent: list[_State] | None = None):
        self.states = states
        self.per_parent = per_parent

    def __call__(self, index: int) -> int:
        return (self.per_parent or self.states)[index].uid()


def _account(states: list[_State], outs: list[list[Node]]) -> None:
    for s, children in zip(states, outs, strict=True):
        s.generated_tokens += sum(c.cost for c in children)
        s.nodes += len(children)


def _candidate(node: Node, policy: Policy, how: str) -> dict[str, Any]:
    out = {"steps": node.steps, "step_scores": node.scores or [], "step_tokens": node.step_tokens,
           "tokens": node.tokens, "score": aggregate(node.scores or [], how), "finish": node.done,
           "final_answer": policy.final_answer(node)}
    truth = getattr(policy, "first_error", None)
    if truth is not None:  # the simulated policy knows its first wrong step (None: every step right)
        out["first_error"] = truth(node)
    return out


def _record(s: _State, policy: Policy, spec: SearchSpec) -> dict[str, Any]:
    from prm.grading import grade

    cands = [_candidate(nd, policy, spec.aggregation) for nd in s.finished]
    for c in cands:
        c["correct"] = grade(c["final_answer"], s.problem.answer)
    chosen = choose(cands, spec.answer, s.rng)
    return {
        "id": s.problem.id, "problem": s.problem.problem, "answer": s.problem.answer,
        "method": spec.method, "n": spec.n, "beam_width": spec.beam_width, "aggregation": spec.aggregation,
        "answer_mode": spec.answer, "policy": policy.name,
        "chosen": chosen, "correct": bool(chosen is not None and chosen["correct"]),
        **({"error_free": bool(chosen is not None and chosen["first_error"] is None)}
           if chosen is not None and "first_error" in chosen else {}),
        "candidates": cands, "generated_tokens": s.generated_tokens, "scored_tokens": s.scored_tokens,
        "nodes": s.nodes,
    }


def answer_key(answer: str | None) -> str | None:
    from prm.grading import normalize_answer

    return normalize_answer(answer) if answer else None


def choose(cands: list[dict[str, Any]], mode: str, rng: random.Random) -> dict[str, Any] | None:
    """The chosen candidate: best score (argmax), or the best-scored candidate of the answer whose candidates'
    scores sum highest (vote, PRM-weighted); ties at random."""
    if not cands:
        return None
    if mode == "vote":
        totals: dict[str, float] = {}
        for c in cands:
            key = answer_key(c["final_answer"])
            if key is not None:
                totals[key] = totals.get(key, 0.0) + c["score"]
        if totals:
            best = max(totals.values())
            keys = sorted(k for k, v in totals.items() if v == best)
            key = keys[rng.randrange(len(keys))]
            cands = [c for c in cands if answer_key(c["final_answer"]) == key]
    best_score = max(c["score"] for c in cands)
    tied = [c for c in cands if c["score"] == best_score]
    return tied[rng.randrange(len(tied))]
