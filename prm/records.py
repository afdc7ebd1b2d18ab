"""Typed records for every file the pipeline reads or writes (field names are the contract: docs/DESIGN.md).

Each record is a dataclass. `Record.from_dict` checks types and the rules that keep step labels aligned
and raises `RecordError(field, message)` naming the first bad field (`candidates[2].steps`, say); unknown
keys are kept in `extra` and written back, so a stage never drops what an earlier stage or a user added.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, Union

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A record-level validation failure; `field` is a dotted path such as `mc.values[3]`."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "object"
    if dataclasses.is_dataclass(tp):
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check `value` (parsed JSON) against the annotation `tp` and build nested records."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise RecordError(path, f"expected {_type_name(tp)}, got null")
        inner: RecordError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except RecordError as exc:
                # An error below `path` means the value has this arm's shape with a bad part: the real reason.
                if exc.field != path and inner is None:
                    inner = exc
        if inner is not None:
            raise inner
        raise RecordError(path, f"expected {_type_name(tp)}, got {_json_type(value)}")
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(path, f"expected {_type_name(tp)}, got {_json_type(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise RecordError(path, f"expected object, got {_json_type(value)}")
        return value
    if isinstance(tp, type) and issubclass(tp, Record):
        if not isinstance(value, dict):
            raise RecordError(path, f"expected object, got {_json_type(value)}")
        return tp.from_dict(value, _prefix=f"{path}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise RecordError(path, f"expected boolean, got {_json_type(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(path, f"expected integer, got {_json_type(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(path, f"expected number, got {_json_type(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer with hundreds of digits
            raise RecordError(path, "number too large") from None
    if tp is str:
        if not isinstance(value, str):
            raise RecordError(path, f"expected string, got {_json_type(value)}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """typing.get_type_hints once per class: evaluating the annotations was most of the cost of reading a file."""
    return typing.get_type_hints(cls)


@dataclass
class Record:
    """Base class: JSON dict <-> dataclass with validation; unknown keys survive in `extra`."""

    # Fields that may be absent from the JSON; written back only when not None.
    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any], _prefix: str = "") -> R:
        if not isinstance(data, dict):
            raise RecordError(None, f"expected a JSON object, got {_json_type(data)}")
        hints = _type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            name = f"{_prefix}{f.name}"
            if f.name not in data:
                if f.name in cls.OPTIONAL:
                    continue
                raise RecordError(name, "missing required field")
            kwargs[f.name] = _convert(data[f.name], hints[f.name], name)
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in data.items() if k not in known}
        record = cls(**kwargs)
        if "extra" in known:
            record.extra = extra  # type: ignore[attr-defined]
        record.check(_prefix)
        return record

    def check(self, prefix: str = "") -> None:
        """Cross-field rules; subclasses raise RecordError with the field path."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = _plain(value)
        out.update(getattr(self, "extra", {}) or {})
        return out


def _check_first_error(value: int | None, n_steps: int, path: str) -> None:
    if value is not None and not -1 <= value < n_steps:
        raise RecordError(path, f"must be -1 (no error) or a step index in [0, {n_steps - 1}], got {value}")


def _check_steps(steps: list[str], path: str) -> None:
    if not steps:
        raise RecordError(path, "empty step list: a solution needs at least one step")


@dataclass
class Problem(Record):
    id: str
    problem: str
    answer: str
    source: str
    meta: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    OPTIONAL: ClassVar[tuple[str, ...]] = ("meta",)


@dataclass
class MCAnnotation(Record):
    """Monte Carlo labels. values[k]: share of rollouts from the prefix ending at step k that reach the gold
    answer, None where that prefix was not rolled out (binary search skips most prefixes)."""

    values: list[float | None]
    first_error: int
    rollouts: int
    tokens: int
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, prefix: str = "") -> None:
        for i, v in enumerate(self.values):
            if v is not None and not 0.0 <= v <= 1.0:  # NaN fails too
                raise RecordError(f"{prefix}values[{i}]", f"must be in [0, 1] (a share of rollouts), got {v}")


@dataclass
class JudgeAnnotation(Record):
    """LLM-as-judge label: first_error is None when no vote could be parsed."""

    first_error: int | None
    votes: list[int | None]
    parsed: bool
    raw: list[str] | str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConsensusAnnotation(Record):
    kept: bool
    first_error: int | None
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Solution(Record):
    id: str
    problem_id: str
    problem: str
    answer: str
    steps: list[str]
    final_answer: str | None
    correct: bool
    generator: str
    mc: MCAnnotation | None = None
    judge: JudgeAnnotation | None = None
    consensus: ConsensusAnnotation | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    OPTIONAL: ClassVar[tuple[str, ...]] = ("mc", "judge", "consensus")

    def check(self, prefix: str = "") -> None:
        _check_steps(self.steps, f"{prefix}steps")
        n = len(self.steps)
        if self.mc is not None:
            if len(self.mc.values) != n:
                raise RecordError(f"{prefix}mc.values", f"has {len(self.mc.values)} values for {n} steps")
            _check_first_error(self.mc.first_error, n, f"{prefix}mc.first_error")
        if self.judge is not None:
            _check_first_error(self.judge.first_error, n, f"{prefix}judge.first_error")
        if self.consensus is not None:
            _check_first_error(self.consensus.first_error, n, f"{prefix}consensus.first_error")


@dataclass
class TrainingExample(Record):
    """TRL stepwise supervision: one label per completion (step); True = the step is correct."""

    prompt: str
    completions: list[str]
    labels: list[bool]
    soft_labels: list[float] | None = None
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    OPTIONAL: ClassVar[tuple[str, ...]] = ("soft_labels", "id")

    def check(self, prefix: str = "") -> None:
        _check_steps(self.completions, f"{prefix}completions")
        if len(self.labels) != len(self.completions):
            raise RecordError(
                f"{prefix}labels", f"has {len(self.labels)} labels for {len(self.completions)} completions"
            )
        if self.soft_labels is not None:
            if len(self.soft_labels) != len(self.completions):
                raise RecordError(
                    f"{prefix}soft_labels",
                    f"has {len(self.soft_labels)} values for {len(self.completions)} completions",
                )
            for i, v in enumerate(self.soft_labels):
                if not 0.0 <= v <= 1.0:
                    raise RecordError(f"{prefix}soft_labels[{i}]", f"must be in [0, 1], got {v}")

    @property
    def first_error(self) -> int:
        """Index of the first False label, -1 when every step is labelled correct."""
        return next((i for i, ok in enumerate(self.labels) if not ok), -1)


@dataclass
class StepErrorItem(Record):
    """ProcessBench's own item: label = index of the earliest wrong step, -1 if none."""

    id: str
    generator: str
    problem: str
    steps: list[str]
    final_answer_correct: bool
    label: int
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, prefix: str = "") -> None:
        _check_steps(self.steps, f"{prefix}steps")
        _check_first_error(self.label, len(self.steps), f"{prefix}label")


@dataclass
class BonCandidate(Record):
    steps: list[str]
    final_answer: str | None
    correct: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, prefix: str = "") -> None:
        _check_steps(self.steps, f"{prefix}steps")


@dataclass
class BonItem(Record):
    problem_id: str
    problem: str
    answer: str
    candidates: list[BonCandidate]
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, prefix: str = "") -> None:
        if not self.candidates:
            raise RecordError(f"{prefix}candidates", "empty candidate list")

    @property
    def id(self) -> str:
        return self.problem_id


RECORD_TYPES: dict[str, type[Record]] = {
    "problem": Problem,
    "solution": Solution,
    "training": TrainingExample,
    "step_error": StepErrorItem,
    "bon": BonItem,
}


def record_id(record: Record | dict[str, Any]) -> str | None:
    """The key a resumable writer deduplicates on: `id`, else `problem_id` (BoN items)."""
    data = record.to_dict() if isinstance(record, Record) else record
    value = data.get("id", data.get("problem_id"))
    return None if value is None else str(value)


def guess_record_type(data: dict[str, Any]) -> type[Record]:
    """Pick the record type from the keys of one JSON object (used by `prm data validate`)."""
    if "candidates" in data:
        return BonItem
    if "completions" in data:
        return TrainingExample
    if "final_answer_correct" in data or "label" in data:
        return StepErrorItem
    if "steps" in data or "problem_id" in data:
        return Solution
    return Problem
