"""Readers for the released reward-model benchmarks, into our BoN items (`prm data convert --from ...`).

    prm data convert RewardMATH_direct.json rewardmath.jsonl --from rewardmath
    prm data convert allenai/reward-bench rewardbench.jsonl --from rewardbench --split filtered

RewardMATH (Kim et al. 2024, `kimsh0507/RewardMATH_official`, `dataset/benchmark/RewardMATH_direct.json`): a
JSON list of solution rows `{problem, answer, eval_solution: [steps], solution_type: chosen|rejected,
solution_reference, problem_id, id, subject, level}`, one verified-correct (`chosen`) solution against nine
incorrect ones per problem (`answer` may be absent, as in the repository's step-split RewardBench math-prm
file `rewardbench_math_prm_.json`, which reads the same way). Rows are grouped by `problem_id` into one BoN item each; a candidate is correct
when it is `chosen`. A problem without a chosen or without a rejected solution stops the conversion.

RewardBench (Lambert et al. 2024, `allenai/reward-bench`): rows `{prompt, chosen, rejected, subset, id}` with
whole responses; each becomes a BoN item with two candidates, chosen (correct) and rejected, split into steps
by `prm.steps.split_steps` (auto: "Step k" prefixes, else blank lines, else lines), its `subset` kept in
`extra` for `prm eval pairwise`'s per-subset accuracy and section scores.

Errors name the file, the line and the field; in a JSON list file (as both benchmarks ship) the line is the
one where the row's object starts, in JSON lines the row's line, in parquet or a hub dataset the row index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prm.errors import InputError
from prm.grading import extract_answer
from prm.jsonl import is_json_array_file, read_json
from prm.steps import split_steps
from prm.tables import load_rows

BENCHMARK_FORMATS: tuple[str, ...] = ("rewardmath", "rewardbench")


def benchmark_rows(source: str, split: str = "train") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row): a JSON list file gives the line where each row starts; anything else as prm.formats reads it."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".json" and is_json_array_file(path):
        try:
            rows = read_json(path)  # the strict parser every JSON reader uses
        except InputError as exc:  # a value it refuses (a duplicate key, NaN) is named by index: give its line
            element = re.match(r"\[(\d+)\]\.?(.*)", exc.field or "")
            if exc.line is not None or element is None:
                raise
            line = _element_lines(path.read_bytes().decode("utf-8-sig"))[int(element.group(1))]
            raise InputError(source, line, element.group(2) or None, exc.message) from None
        for line, row in zip(_element_lines(path.read_bytes().decode("utf-8-sig")), rows, strict=True):
            if not isinstance(row, dict):
                raise InputError(source, line, None, f"expected a JSON object, got {type(row).__name__}")
            yield line, row
        return
    yield from load_rows(source, split)


_SPACE = re.compile(r"[ \t\r\n]*")


def _element_lines(text: str) -> list[int]:
    """The 1-based line on which each element of a (valid) top-level JSON array starts."""
    decoder = json.JSONDecoder()
    lines, line, counted = [], 1, 0
    pos = _SPACE.match(text, text.index("[") + 1).end()
    while text[pos] != "]":
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, end = decoder.raw_decode(text, pos)
        pos = _SPACE.match(text, end).end()
        if text[pos] == ",":
            pos = _SPACE.match(text, pos + 1).end()
    return lines


_KINDS = {str: "a string", list: "a list", (int, str): "an integer or a string",
          (str, int, float): "a string or a number"}


def _field(source: str, line: int, row: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in row or row[key] is None:
        raise InputError(source, line, key, "missing required field")
    value = row[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(source, line, key, f"expected {_KINDS[kind]}, got {type(value).__name__}")
    return value


def _text(source: str, line: int, row: dict[str, Any], key: str) -> str:
    value = _field(source, line, row, key, str)
    if not value.strip():
        raise InputError(source, line, key, "empty text")
    return value


# ----------------------------------------------------------------------------------------------- RewardMATH


def rewardmath_items(source: str, split: str = "train") -> list[dict[str, Any]]:
    """The RewardMATH benchmark file as BoN items, one per problem_id in first-seen order."""
    items: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    for line, row in benchmark_rows(source, split):
        pid = str(_field(source, line, row, "problem_id", (int, str)))
        problem = _text(source, line, row, "problem")
        steps = _field(source, line, row, "eval_solution", list)
        if not steps or not all(isinstance(s, str) for s in steps):
            raise InputError(source, line, "eval_solution", "expected a non-empty list of step strings")
        kind = _field(source, line, row, "solution_type", str)
        if kind not in ("chosen", "rejected"):
            raise InputError(source, line, "solution_type", f"expected 'chosen' or 'rejected', got {kind!r}")
        item = items.get(pid)
        if item is None:
            answer = _field(source, line, row, "answer", (str, int, float)) if "answer" in row else ""
            extra = {k: row[k] for k in ("subject", "level") if k in row}
            item = items[pid] = {"problem_id": f"rewardmath-{pid}", "problem": problem, "answer": str(answer),
                                 "candidates": [], "benchmark": "rewardmath", **extra}
            first_line[pid] = line
        elif problem != item["problem"]:
            raise InputError(source, line, "problem", f"differs from the problem text of problem_id {pid} "
                                                      f"(line {first_line[pid]})")
        extra = {k: row[k] for k in ("id", "solution_reference") if k in row}
        item["candidates"].append({"steps": list(steps), "final_answer": extract_answer(steps[-1], ("boxed",)),
                                   "correct": kind == "chosen", **extra})
    for pid, item in items.items():
        kinds = {c["correct"] for c in item["candidates"]}
        if kinds != {True, False}:
            missing = "correct (chosen)" if True not in kinds else "incorrect (rejected)"
            raise InputError(source, first_line[pid], "solution_type", f"problem_id {pid} has no {missing} solution")
    return list(items.values())


# ---------------------------------------------------------------------------------------------- RewardBench


def rewardbench_items(source: str, split: str = "filtered") -> list[dict[str, Any]]:
    """RewardBench rows as BoN items of two candidates (chosen correct, rejected not), subset in `extra`."""
    items, seen = [], set()
    for line, row in benchmark_rows(source, split):
        prompt = _text(source, line, row, "prompt")
        chosen = _text(source, line, row, "chosen")
        rejected = _text(source, line, row, "rejected")
        subset = _text(source, line, row, "subset")
        rid = str(row.get("id", line))
        if rid in seen:
            raise InputError(source, line, "id", f"duplicate id {rid}")
        seen.add(rid)
        candidates = []
        for text, correct, model_key in ((chosen, True, "chosen_model"), (rejected, False, "rejected_model")):
            extra = {"model": row[model_key]} if isinstance(row.get(model_key), str) else {}
            candidates.append({"steps": split_steps(text), "final_answer": extract_answer(text, ("boxed",)),
                               "correct": correct, **extra})
        items.append({"problem_id": f"rewardbench-{rid}", "problem": prompt, "answer": "",
                      "candidates": candidates, "benchmark": "rewardbench", "subset": subset})
    return items


def convert_benchmark(source: str, fmt: str, dst: str, split: str | None = None) -> int:
    """Read a whole benchmark file (any bad row stops it before anything is written), then write `dst`
    atomically; returns the number of items."""
    from prm.jsonl import write_atomic
    from prm.records import BonItem, RecordError

    read = rewardmath_items if fmt == "rewardmath" else rewardbench_items
    items = read(source, split) if split else read(source)
    if not items:
        raise InputError(source, None, None, "no rows")
    records = []
    for item in items:
        try:
            records.append(BonItem.from_dict(item))  # our own record check, before anything is written
        except RecordError as exc:
            raise InputError(source, None, f"{item['problem_id']}.{exc.field}", exc.message) from None
    write_atomic(dst, records)
    return len(items)
