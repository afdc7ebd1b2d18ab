"""Reading evaluation inputs: BoN pools (BoN items, or `prm sample` Solution records grouped by problem_id),
step-error items (ProcessBench items or annotated Solution records), and their `step_scores`.

Step scores live in each record's `extra` dict (`prm score` writes them there); `--model PATH` fills them in
first through `prm.scoring.load_scorer`. Every problem with the input names the file, the line and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prm.errors import InputError, PrmError
from prm.jsonl import iter_lines, load_records, parse_line, record_lines
from prm.records import BonCandidate, BonItem, Record, Solution, StepErrorItem


@dataclass
class Pool:
    """One problem's candidates, with where they came from (for error messages)."""

    problem_id: str
    problem: str
    answer: str
    steps: list[list[str]]
    final_answers: list[str | None]
    correct: list[bool]
    step_scores: list[list[float] | None]
    where: list[tuple[int, str]]  # (line, field prefix) per candidate
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.steps)


def _first_object(path: str | Path) -> dict[str, Any]:
    for no, raw in iter_lines(path):
        data = parse_line(str(path), no, raw)
        if data is not None:
            return data
    raise InputError(str(path), None, None, "empty file: no records")


def check_step_scores(value: Any, n_steps: int, path: str, line: int, fname: str) -> list[float]:
    """Validate a `step_scores` value: one finite number in [0, 1] per step."""
    if not isinstance(value, list):
        raise InputError(path, line, fname, f"expected a list of numbers, got {type(value).__name__}")
    if len(value) != n_steps:
        raise InputError(path, line, fname, f"has {len(value)} scores for {n_steps} steps")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(path, line, f"{fname}[{i}]", f"expected a finite number, got {v!r}")
        if not 0.0 <= v <= 1.0:
            raise InputError(path, line, f"{fname}[{i}]", f"step scores are probabilities in [0, 1], got {v}")
        out.append(float(v))
    return out


def load_pools(path: str | Path) -> list[Pool]:
    """BoN items, or Solution records (e.g. `prm sample` output) grouped by problem_id in first-seen order."""
    path = str(path)
    first = _first_object(path)
    lines = record_lines(path)
    pools: list[Pool] = []
    if "candidates" in first:
        items = load_records(path, BonItem)
        for item, line in zip(items, lines, strict=True):
            pool = Pool(item.problem_id, item.problem, item.answer, [], [], [], [], [], dict(item.extra))
            for i, cand in enumerate(item.candidates):
                _add_candidate(pool, cand, line, f"candidates[{i}].", path)
            pools.append(pool)
        return pools
    solutions = load_records(path, Solution)
    by_id: dict[str, Pool] = {}
    for sol, line in zip(solutions, lines, strict=True):
        pool = by_id.get(sol.problem_id)
        if pool is None:
            pool = by_id[sol.problem_id] = Pool(sol.problem_id, sol.problem, sol.answer, [], [], [], [], [])
            pools.append(pool)
        _add_candidate(pool, sol, line, "", path)
    return pools


def _add_candidate(pool: Pool, cand: BonCandidate | Solution, line: int, prefix: str, path: str) -> None:
    pool.steps.append(list(cand.steps))
    pool.final_answers.append(cand.final_answer)
    pool.correct.append(bool(cand.correct))
    raw = cand.extra.get("step_scores")
    scores = None if raw is None else check_step_scores(raw, len(cand.steps), path, line, f"{prefix}step_scores")
    pool.step_scores.append(scores)
    pool.where.append((line, prefix))


def require_scores(pools: list[Pool], path: str) -> None:
    """Every candidate must carry step_scores (run `prm score` first, or pass --model)."""
    for pool in pools:
        for scores, (line, prefix) in zip(pool.step_scores, pool.where, strict=True):
            if scores is None:
                raise InputError(path, line, f"{prefix}step_scores",
                                 "missing: score the file first (`prm score`) or pass --model PATH")


def score_pools(pools: list[Pool], model: str, model_format: str, batch_size: int) -> None:
    """Fill step_scores of every candidate with a PRM checkpoint (replacing any already there)."""
    scorer = _load_scorer(model, model_format)
    problems, steps_list, slots = [], [], []
    for p, pool in enumerate(pools):
        for c, steps in enumerate(pool.steps):
            problems.append(pool.problem)
            steps_list.append(steps)
            slots.append((p, c))
    scores = scorer.score(problems, steps_list, batch_size)
    for (p, c), s in zip(slots, scores, strict=True):
        pools[p].step_scores[c] = check_step_scores(list(s), len(pools[p].steps[c]), model, 0, "scores")


def _load_scorer(model: str, model_format: str) -> Any:
    try:
        from prm.scoring import load_scorer
    except ImportError as exc:
        raise PrmError(f"--model needs prm.scoring, which is not available here ({exc})") from None
    return load_scorer(model, format=model_format)


# ---------------------------------------------------------------------------------------------------------
# Step-error items


@dataclass
class StepItem:
    """One solution with a gold first error (-1: all steps right) and what predicts it."""

    id: str
    split: str
    problem: str
    steps: list[str]
    label: int
    step_scores: list[float] | None
    predicted: dict[str, int | None]  # source name -> predicted first error (None: no usable prediction)
    line: int = 0
    final_answer_correct: bool = False  # ProcessBench's field, a Solution's `correct`


def _dotted(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


GOLD_FIELDS = ("label", "true_first_error")


def load_step_items(path: str | Path, gold_field: str = "auto") -> list[StepItem]:
    """ProcessBench items (`label`) or Solution records (gold first error at `gold_field`, a dotted path into
    the record such as `consensus.first_error`; `auto` takes `label`, else the testbed's `true_first_error`). Predictions found on each record: `step_scores`
    (a PRM), `judge.first_error` (the LLM judge), `predicted_first_error` (any other predictor). The split is
    the record's `split` field, else the file name without extension."""
    path = str(path)
    first = _first_object(path)
    lines = record_lines(path)
    default_split = Path(path).name.split(".")[0]
    record_type: type[Record] = StepErrorItem if "final_answer_correct" in first else Solution
    records = load_records(path, record_type)
    items: list[StepItem] = []
    for rec, line in zip(records, lines, strict=True):
        data = rec.to_dict()
        n = len(rec.steps)  # type: ignore[attr-defined]
        if isinstance(rec, StepErrorItem):
            label = rec.label
        else:
            field_name = gold_field
            if gold_field == "auto":
                field_name = next((k for k in GOLD_FIELDS if _dotted(data, k) is not None), "label")
            label = _dotted(data, field_name)
            if isinstance(label, bool) or not isinstance(label, int):
                raise InputError(path, line, field_name,
                                 f"gold first error missing or not an integer ({label!r}); set eval.gold_field")
            if not -1 <= label < n:
                raise InputError(path, line, field_name, f"must be -1 or a step index in [0, {n - 1}], got {label}")
        extra = rec.extra  # type: ignore[attr-defined]
        scores = extra.get("step_scores")
        scores = None if scores is None else check_step_scores(scores, n, path, line, "step_scores")
        predicted: dict[str, int | None] = {}
        judge = data.get("judge")
        if isinstance(judge, dict) and "first_error" in judge:
            predicted["judge"] = _predicted_step(judge["first_error"], n, path, line, "judge.first_error")
        if "predicted_first_error" in extra:
            predicted["predicted"] = _predicted_step(extra["predicted_first_error"], n, path, line,
                                                     "predicted_first_error")
        split = extra.get("split", default_split)
        items.append(StepItem(
            id=str(data.get("id")), split=str(split), problem=rec.problem,  # type: ignore[attr-defined]
            steps=list(rec.steps), label=label, step_scores=scores,  # type: ignore[attr-defined]
            predicted=predicted, line=line,
            final_answer_correct=bool(rec.final_answer_correct if isinstance(rec, StepErrorItem)
                                      else rec.correct),  # type: ignore[attr-defined]
        ))
    return items


def _predicted_step(value: Any, n: int, path: str | Path, line: int, field: str) -> int | None:
    """A predicted first error: null (no verdict), -1 (all steps correct) or a step index."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < n):
        raise InputError(path, line, field, f"must be null, -1 or a step index in [0, {n - 1}], got {value!r}")
    return value


def score_step_items(items: list[StepItem], model: str, model_format: str, batch_size: int) -> None:
    scorer = _load_scorer(model, model_format)
    scores = scorer.score([it.problem for it in items], [it.steps for it in items], batch_size)
    for it, s in zip(items, scores, strict=True):
        it.step_scores = check_step_scores(list(s), len(it.steps), model, 0, "scores")
