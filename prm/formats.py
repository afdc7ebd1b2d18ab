"""Converters between our records and released formats: TRL stepwise, ProcessBench, PRM800K, Math-Shepherd.

    prm data convert prm800k_phase2_train.jsonl train.jsonl --from prm800k --to trl
    prm data convert Qwen/ProcessBench pb_gsm8k.jsonl --from processbench --to ours --split gsm8k
    prm data convert solutions.jsonl ms.jsonl --from ours --to math_shepherd --label-source mc

Every conversion goes through a `Solution`: a reader turns one row into a Solution whose label annotation
(`consensus` by default, or `mc` / `judge`: the `label_source`) carries `first_error`; a writer reads that
annotation back. `first_error` is the 0-based index of the earliest wrong step, -1 if none; steps after it
carry no label, so TRL and Math-Shepherd output holds the steps up to and including the first error.

RewardMATH and RewardBench files (`--from rewardmath|rewardbench`) are grouped into Best-of-N items by
`prm.benchmarks` instead.

Rows come from a local `.jsonl`, `.json` (a list or JSON lines) or `.parquet` file, or a Hugging Face dataset
id, read by prm/tables.py. Errors name the row: the 1-based line for JSON lines, the 0-based row index for a
JSON list, a parquet file or a hub dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prm.benchmarks import convert_benchmark
from prm.errors import InputError, PrmError
from prm.jsonl import write_atomic
from prm.records import (
    ConsensusAnnotation,
    JudgeAnnotation,
    MCAnnotation,
    RecordError,
    Solution,
    StepErrorItem,
    TrainingExample,
)
from prm.tables import iter_rows

LabelSource = Literal["consensus", "mc", "judge"]
# `truth`: the known first error that the synthetic testbed writes as `true_first_error`.
LABEL_SOURCES: tuple[str, ...] = ("consensus", "mc", "judge", "truth")
# rewardmath and rewardbench (prm.benchmarks) are read into BoN items, written as ours.
INPUT_FORMATS: tuple[str, ...] = ("ours", "trl", "processbench", "prm800k", "math_shepherd", "rewardmath", "rewardbench")
OUTPUT_FORMATS: tuple[str, ...] = ("ours", "trl", "processbench", "math_shepherd")

# Math-Shepherd's step tag (Cyrillic). Some copies have " ки", others "ки": we split on the bare tag and strip.
MS_TAG = "ки"
_STEP_ONE = re.compile(r"step\s*1\s*:", re.IGNORECASE)
_STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*:", re.IGNORECASE)
_MS_ANSWER = re.compile(r"The answer is:?\s*(.+?)\s*$", re.IGNORECASE | re.DOTALL)


# ---------------------------------------------------------------------------------------------- helpers


def _digest(*parts: str) -> str:
    """A stable short id from content, so converting the same file twice gives the same ids."""
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _require(row: dict[str, Any], key: str, kind: type | tuple[type, ...], prefix: str = "") -> Any:
    if key not in row:
        raise RecordError(f"{prefix}{key}", "missing required field")
    value = row[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in _as_tuple(kind))
        raise RecordError(f"{prefix}{key}", f"expected {names}, got {_JSON_NAMES.get(type(value), type(value).__name__)}")
    return value


# Errors speak JSON, as prm.records does.
_JSON_NAMES: dict[type, str] = {dict: "object", str: "string", list: "list", int: "integer", float: "number",
                                bool: "boolean", type(None): "null"}


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _annotate(sol: Solution, first_error: int, label_source: str, reason: str,
              soft: list[float | None] | None = None) -> Solution:
    """Put imported labels on the annotation named by `label_source` (soft values always go to `mc`)."""
    n = len(sol.steps)
    if soft is not None or label_source == "mc":
        if soft is None:  # hard labels as MC values: 1 before the error, 0 at it, unknown after
            soft = [1.0 if first_error == -1 or k < first_error else 0.0 if k == first_error else None
                    for k in range(n)]
        sol.mc = MCAnnotation(values=list(soft), first_error=first_error, rollouts=0, tokens=0,
                              extra={"imported_from": reason})
    if label_source == "consensus":
        sol.consensus = ConsensusAnnotation(kept=True, first_error=first_error, reason=f"imported from {reason}")
    elif label_source == "truth":
        sol.extra["true_first_error"] = first_error
    elif label_source == "judge":
        sol.judge = JudgeAnnotation(first_error=first_error, votes=[first_error], parsed=True, raw="",
                                    extra={"imported_from": reason})
    sol.check()
    return sol


def solution_first_error(sol: Solution, label_source: str) -> int | None:
    """first_error from the chosen annotation; None when it exists but gives no usable label.

    A missing annotation is an input error (the wrong --label-source, most likely); a consensus that did not
    keep the solution, or a judge that could not be parsed, is a legitimate "no label" and is dropped.
    """
    if label_source not in LABEL_SOURCES:
        raise PrmError(f"unknown label source '{label_source}': use one of {', '.join(LABEL_SOURCES)}")
    if label_source == "truth":
        truth = sol.extra.get("true_first_error")
        if isinstance(truth, bool) or not isinstance(truth, int) or not -1 <= truth < len(sol.steps):
            raise RecordError("true_first_error", "needs the known first error (an integer step index or -1) "
                                                  "for --label-source truth")
        return truth
    ann = getattr(sol, label_source)
    if ann is None:
        raise RecordError(label_source, f"no '{label_source}' annotation to take step labels from "
                                        "(choose another --label-source)")
    if label_source == "consensus" and not ann.kept:
        return None
    return ann.first_error


def _hard_labels(n_steps: int, first_error: int) -> list[bool]:
    """Labels of the steps that carry one: all True, then a final False when there is an error."""
    if first_error == -1:
        return [True] * n_steps
    return [True] * first_error + [False]


# ---------------------------------------------------------------------------------------------- TRL


def trl_to_solution(row: dict[str, Any], label_source: str = "consensus") -> Solution:
    """A TRL stepwise row (prompt, completions, labels [+soft_labels, id]) -> Solution.

    first_error = the first False label; `correct` = the last step's label (in Math-Shepherd-derived data the
    last step's label is the final answer's correctness). soft_labels, if any, become `mc.values`.
    """
    ex = TrainingExample.from_dict(row)
    first_error = ex.first_error
    sol = Solution(
        id=ex.id or f"trl-{_digest(ex.prompt, *ex.completions)}",
        problem_id=str(row.get("problem_id") or f"p-{_digest(ex.prompt)}"),
        problem=ex.prompt,
        answer=str(row.get("answer") or ""),
        steps=list(ex.completions),
        final_answer=row.get("final_answer") if isinstance(row.get("final_answer"), str) else None,
        correct=bool(ex.labels[-1]),
        generator=str(row.get("generator") or "unknown"),
    )
    soft: list[float | None] | None = list(ex.soft_labels) if ex.soft_labels is not None else None
    return _annotate(sol, first_error, label_source, "trl", soft)


def solution_to_trl(sol: Solution, label_source: str = "consensus",
                    soft_labels: bool = False) -> TrainingExample | None:
    """Solution -> TRL example holding the steps up to and including the first error; None if unlabelled.

    With soft_labels, `mc.values` of those steps become `soft_labels`; a value MC never computed (binary
    search skips prefixes) takes the hard label, which is what that search concluded for the step.
    """
    first_error = solution_first_error(sol, label_source)
    if first_error is None:
        return None
    labels = _hard_labels(len(sol.steps), first_error)
    n = len(labels)
    soft: list[float] | None = None
    if soft_labels:
        if sol.mc is None:
            raise RecordError("mc", "soft labels were asked for but the solution has no 'mc' annotation")
        soft = [float(v) if v is not None else (1.0 if ok else 0.0) for v, ok in zip(sol.mc.values[:n], labels, strict=True)]
    ex = TrainingExample(prompt=sol.problem, completions=list(sol.steps[:n]), labels=labels,
                         soft_labels=soft, id=sol.id)
    ex.check()
    return ex


# ---------------------------------------------------------------------------------------------- ProcessBench


def processbench_to_solution(row: dict[str, Any], label_source: str = "consensus") -> Solution:
    """A ProcessBench item (id, generator, problem, steps, final_answer_correct, label) -> Solution."""
    item = StepErrorItem.from_dict(row)
    return step_error_to_solution(item, label_source)


def step_error_to_solution(item: StepErrorItem, label_source: str = "consensus") -> Solution:
    sol = Solution(
        id=item.id,
        problem_id=str(item.extra.get("problem_id") or item.id),
        problem=item.problem,
        answer=str(item.extra.get("answer") or ""),  # ProcessBench ships no gold answer
        steps=list(item.steps),
        final_answer=None,
        correct=item.final_answer_correct,
        generator=item.generator,
    )
    return _annotate(sol, item.label, label_source, "processbench")


def solution_to_step_error(sol: Solution, label_source: str = "consensus") -> StepErrorItem | None:
    """Solution -> ProcessBench item with every step kept and label = first_error; None if unlabelled."""
    first_error = solution_first_error(sol, label_source)
    if first_error is None:
        return None
    item = StepErrorItem(id=sol.id, generator=sol.generator, problem=sol.problem, steps=list(sol.steps),
                         final_answer_correct=sol.correct, label=first_error)
    item.check()
    return item


def step_error_to_trl(item: StepErrorItem) -> TrainingExample:
    """ProcessBench label -> TRL labels directly (steps up to the labelled error)."""
    labels = _hard_labels(len(item.steps), item.label)
    ex = TrainingExample(prompt=item.problem, completions=list(item.steps[:len(labels)]), labels=labels, id=item.id)
    ex.check()
    return ex


# ---------------------------------------------------------------------------------------------- PRM800K


def prm800k_to_solution(row: dict[str, Any], label_source: str = "consensus",
                        neutral_as_positive: bool = True) -> Solution | None:
    """One PRM800K line (phase 1 or 2) -> Solution over the labelled trajectory; None for a bad problem or
    a line with no rated step.

    The trajectory takes each step's chosen completion (`chosen_completion`), else the labeler's
    `human_completion`; a step with neither is where labelling stopped: its first -1 completion is the
    error that was found (phase 2 `found_error`), otherwise the step is unlabelled and dropped. Ratings
    1 and 0 count as correct (0 as wrong with neutral_as_positive=False); the first wrong step ends it.
    """
    question = _require(row, "question", dict)
    problem = _require(question, "problem", str, "question.")
    gold = question.get("ground_truth_answer")
    label = _require(row, "label", dict)
    raw_steps = _require(label, "steps", list, "label.")
    finish_reason = label.get("finish_reason")
    if finish_reason == "bad_problem":
        return None
    steps: list[str] = []
    ratings: list[int] = []
    first_error = -1
    for k, step in enumerate(raw_steps):
        prefix = f"label.steps[{k}]."
        if not isinstance(step, dict):
            raise RecordError(f"label.steps[{k}]", f"expected object, got {type(step).__name__}")
        text, rating = _prm800k_pick(step, prefix)
        if text is None or rating is None:
            break
        steps.append(text)
        ratings.append(rating)
        if rating == -1 or (rating == 0 and not neutral_as_positive):
            first_error = k
            break
    if not steps:
        return None
    final = steps[-1].split("# Answer", 1)[1].strip() if "# Answer" in steps[-1] else None
    sol = Solution(
        id=f"prm800k-{_digest(str(row.get('labeler')), str(row.get('timestamp')), problem, *steps)}",
        problem_id=f"p-{_digest(problem)}",
        problem=problem,
        answer=gold if isinstance(gold, str) else "",
        steps=steps,
        final_answer=final or None,
        correct=finish_reason == "solution",  # PRM800K: "reached a step that concluded in the correct answer"
        generator="prm800k" if row.get("generation") is None else f"prm800k-gen{row.get('generation')}",
        extra={"prm800k": {"labeler": row.get("labeler"), "timestamp": row.get("timestamp"),
                           "generation": row.get("generation"), "finish_reason": finish_reason,
                           "ratings": ratings}},
    )
    return _annotate(sol, first_error, label_source, "prm800k")


def _prm800k_pick(step: dict[str, Any], prefix: str) -> tuple[str | None, int | None]:
    """(text, rating) of the step on the labelled trajectory, (None, None) where labelling stopped."""
    completions = _require(step, "completions", list, prefix)
    for j, comp in enumerate(completions):
        if not isinstance(comp, dict):
            raise RecordError(f"{prefix}completions[{j}]", f"expected object, got {type(comp).__name__}")
        rating = comp.get("rating")
        if rating is not None and (isinstance(rating, bool) or rating not in (-1, 0, 1)):
            raise RecordError(f"{prefix}completions[{j}].rating", f"expected -1, 0, 1 or null, got {rating!r}")
    chosen = step.get("chosen_completion")
    human = step.get("human_completion")
    if chosen is not None:
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(completions):
            raise RecordError(f"{prefix}chosen_completion",
                              f"expected an index into {len(completions)} completion(s), got {chosen!r}")
        comp = completions[chosen]
        return _require(comp, "text", str, f"{prefix}completions[{chosen}]."), comp.get("rating")
    if human is not None:
        # Phase 1: the labeler wrote this step because every completion was wrong; it counts as +1.
        if isinstance(human, str):
            return human, 1
        if isinstance(human, dict):
            text = _require(human, "text", str, f"{prefix}human_completion.")
            rating = human.get("rating")
            return text, rating if rating in (-1, 0, 1) and not isinstance(rating, bool) else 1
        raise RecordError(f"{prefix}human_completion", f"expected string or object, got {type(human).__name__}")
    for j, comp in enumerate(completions):
        if comp.get("rating") == -1:
            return _require(comp, "text", str, f"{prefix}completions[{j}]."), -1
    return None, None


# ---------------------------------------------------------------------------------------------- Math-Shepherd


def parse_math_shepherd(input_text: str, label_text: str) -> tuple[str, list[str], list[bool]]:
    """(problem, steps, labels) from Math-Shepherd's `input` (a "ки" after each step) and `label` (the same
    text with each tag replaced by "+" or "-").

    The problem is the text before "Step 1:" (else up to the last "?" before the first tag). Tags found
    inside the problem (a known annotation slip in the release) are dropped with their labels.
    """
    parts = input_text.split(MS_TAG)
    if len(parts) < 2:
        raise RecordError("input", f"no '{MS_TAG}' step tag")
    if parts[-1].strip():
        raise RecordError("input", f"text after the last '{MS_TAG}' tag has no label: {parts[-1].strip()[:40]!r}")
    # Tags become one character each in `label`, so tag i sits at a fixed offset there.
    marks: list[str] = []
    pos = 0
    for i, part in enumerate(parts[:-1]):
        if label_text[pos:pos + len(part)] != part:
            raise RecordError("label", f"does not match 'input' with each '{MS_TAG}' replaced by '+' or '-' "
                                       f"(before tag {i})")
        pos += len(part)
        mark = label_text[pos:pos + 1]
        if mark not in ("+", "-"):
            raise RecordError("label", f"expected '+' or '-' for tag {i}, got {mark!r}")
        marks.append(mark)
        pos += 1
    if label_text[pos:] != parts[-1]:
        raise RecordError("label", f"does not match 'input' after the last '{MS_TAG}' tag")
    segments = parts[:-1]
    # Where does the problem end? The first segment holding "Step 1:" splits into problem and first step.
    start = next((i for i, seg in enumerate(segments) if _STEP_ONE.search(seg)), None)
    if start is not None:
        cut = _STEP_ONE.search(segments[start])
        assert cut is not None
        problem = "".join(segments[:start]) + segments[start][:cut.start()]
        first = segments[start][cut.start():]
    else:
        start = 0
        q = segments[0].rfind("?")
        if q == -1:
            raise RecordError("input", "cannot tell where the problem ends: no 'Step 1:' and no '?' "
                                       f"before the first '{MS_TAG}'")
        problem, first = segments[0][:q + 1], segments[0][q + 1:]
    steps = [first.strip(), *(seg.strip() for seg in segments[start + 1:])]
    labels = [m == "+" for m in marks[start:]]
    if not problem.strip():
        raise RecordError("input", "empty problem text before the first step")
    for i, step in enumerate(steps):
        if not step:
            raise RecordError("input", f"step {i} is empty")
    return problem.strip(), steps, labels


def format_math_shepherd(problem: str, steps: list[str], labels: list[bool]) -> dict[str, str]:
    """Math-Shepherd's `input` and `label` texts; a "Step k: " prefix is added to steps that lack one."""
    if MS_TAG in problem:
        raise RecordError("problem", f"contains the step tag '{MS_TAG}'")
    body = []
    for k, step in enumerate(steps):
        if MS_TAG in step:
            raise RecordError(f"steps[{k}]", f"contains the step tag '{MS_TAG}'")
        body.append(step if _STEP_PREFIX.match(step) else f"Step {k + 1}: {step}")
    text = f"{problem} " + "\n".join(f"{step} {MS_TAG}" for step in body)
    label = f"{problem} " + "\n".join(f"{step} {'+' if ok else '-'}" for step, ok in zip(body, labels, strict=True))
    return {"input": text, "label": label}


def math_shepherd_to_solution(row: dict[str, Any], label_source: str = "consensus") -> Solution:
    """A Math-Shepherd row (input, label [, task]) -> Solution; `correct` = the last step's label."""
    problem, steps, labels = parse_math_shepherd(_require(row, "input", str), _require(row, "label", str))
    first_error = next((i for i, ok in enumerate(labels) if not ok), -1)
    answer = _MS_ANSWER.search(steps[-1])
    task = row.get("task")
    sol = Solution(
        id=f"ms-{_digest(row['input'])}",
        problem_id=f"p-{_digest(problem)}",
        problem=problem,
        answer="",
        steps=steps,
        final_answer=answer.group(1) if answer else None,
        correct=labels[-1],
        generator="math-shepherd",
        extra={"task": task} if isinstance(task, str) else {},
    )
    return _annotate(sol, first_error, label_source, "math_shepherd")


def solution_to_math_shepherd(sol: Solution, label_source: str = "consensus") -> dict[str, str] | None:
    """Solution -> Math-Shepherd row over the steps up to and including the first error; None if unlabelled."""
    first_error = solution_first_error(sol, label_source)
    if first_error is None:
        return None
    labels = _hard_labels(len(sol.steps), first_error)
    row = format_math_shepherd(sol.problem, sol.steps[:len(labels)], labels)
    if isinstance(sol.extra.get("task"), str):
        row["task"] = sol.extra["task"]
    return row


# ---------------------------------------------------------------------------------------------- files


@dataclass
class ConvertReport:
    """What a conversion did: records written, rows dropped for lack of a label, bad rows skipped."""

    written: int = 0
    dropped: int = 0
    errors: list[InputError] = field(default_factory=list)


def convert_file(
    src: str,
    src_format: str,
    dst: str,
    dst_format: str,
    *,
    label_source: str = "consensus",
    soft_labels: bool = False,
    neutral_as_positive: bool = True,
    split: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    rejects_path: str | None = None,
    report: ConvertReport | None = None,
) -> int:
    """Convert a whole table, then write `dst` atomically (JSON lines); returns the number of records written.

    A bad row raises InputError(src, row, field) before anything is written; with on_error="skip" it is
    counted and written with its reason to `rejects_path` (default `<dst>.rejects.jsonl`). Rows with no
    usable label (a consensus that dropped them, a PRM800K bad problem) are dropped and counted.
    """
    if src_format not in INPUT_FORMATS:
        raise PrmError(f"unknown input format '{src_format}': use one of {', '.join(INPUT_FORMATS)}")
    if dst_format not in OUTPUT_FORMATS:
        hint = " (prm800k is read-only)" if dst_format == "prm800k" else ""
        raise PrmError(f"unknown output format '{dst_format}'{hint}: use one of {', '.join(OUTPUT_FORMATS)}")
    if label_source not in LABEL_SOURCES:
        raise PrmError(f"unknown label source '{label_source}': use one of {', '.join(LABEL_SOURCES)}")
    if Path(dst).suffix.lower() not in (".jsonl", ".json"):
        raise PrmError(f"output {dst}: converted files are JSON lines; name it *.jsonl")
    report = report if report is not None else ConvertReport()
    if src_format in ("rewardmath", "rewardbench"):
        if dst_format != "ours":
            raise PrmError(f"--from {src_format} gives Best-of-N items: use --to ours")
        report.written = convert_benchmark(src, src_format, dst, split)
        return report.written
    split = split or "train"
    read = _reader(src_format, label_source, neutral_as_positive)
    write = _writer(dst_format, label_source, soft_labels)
    out: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []

    def skip_bad_line(exc: InputError) -> None:
        report.errors.append(exc)
        rejects.append({"line": exc.line, "field": exc.field, "error": exc.message, "raw": None})

    for rowno, row in iter_rows(src, split, skip_bad_line if on_error == "skip" else None):
        try:
            sol = read(row)
            record = write(sol) if sol is not None else None
        except RecordError as exc:
            err = InputError(src, rowno, exc.field, exc.message)
            if on_error == "raise":
                raise err from None
            report.errors.append(err)
            rejects.append({"line": rowno, "field": exc.field, "error": exc.message,
                            "raw": json.dumps(row, ensure_ascii=False, default=str)})
            continue
        if record is None:
            report.dropped += 1
            continue
        out.append(record)
    if rejects:
        target = rejects_path or f"{dst}.rejects.jsonl"
        write_atomic(target, rejects)
        print(f"skipped {len(rejects)} bad row(s) of {src}; reasons in {target}")
    if not out:  # an empty output is never what a conversion was for: say why
        rows = report.dropped + len(report.errors)
        raise InputError(src, None, None, "no records" if not rows else
                         f"no record converted ({report.dropped} without a usable label, {len(report.errors)} bad)")
    write_atomic(dst, out)
    report.written = len(out)
    return report.written


def _reader(fmt: str, label_source: str, neutral_as_positive: bool) -> Callable[[dict[str, Any]], Solution | None]:
    if fmt == "ours":
        return Solution.from_dict
    if fmt == "trl":
        return lambda row: trl_to_solution(row, label_source)
    if fmt == "processbench":
        return lambda row: processbench_to_solution(row, label_source)
    if fmt == "prm800k":
        return lambda row: prm800k_to_solution(row, label_source, neutral_as_positive)
    return lambda row: math_shepherd_to_solution(row, label_source)


def _writer(fmt: str, label_source: str, soft_labels: bool) -> Callable[[Solution], dict[str, Any] | None]:
    def as_dict(record: Any) -> dict[str, Any] | None:
        return None if record is None else record if isinstance(record, dict) else record.to_dict()

    if fmt == "ours":
        return lambda sol: sol.to_dict()
    if fmt == "trl":
        return lambda sol: as_dict(solution_to_trl(sol, label_source, soft_labels))
    if fmt == "processbench":
        return lambda sol: as_dict(solution_to_step_error(sol, label_source))
    return lambda sol: as_dict(solution_to_math_shepherd(sol, label_source))
