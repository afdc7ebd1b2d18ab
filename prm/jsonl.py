"""JSON Lines input and output.

Reading validates every line against a record type. By default the first bad line raises `InputError`
(file, line, field); with `on_error="skip"` bad lines are written with their reason to a side file and
counted instead. Writing appends whole lines only: a line is built in memory and written with one call,
and when a file is reopened to resume, a torn last line (a kill mid-write) is cut off and the ids already
present are skipped, so a rerun after a crash neither duplicates nor loses a record.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from prm.errors import InputError, PrmError
from prm.records import Record, RecordError, guess_record_type, record_id

R = TypeVar("R", bound=Record)


@dataclass
class ReadReport:
    """What a lenient read saw: how many lines were good, and each bad one with its reason."""

    good: int = 0
    errors: list[InputError] = field(default_factory=list)


def is_blank(raw: bytes) -> bool:
    """The one rule for a line that holds no record (skipped by every reader): only whitespace, Unicode
    whitespace such as a non-breaking space included. Bad UTF-8 is not blank, so it gets reported."""
    return not raw.decode("utf-8", errors="replace").strip()


MAX_DEPTH = 100  # deeper nesting is no record of ours, and would overflow the parser or the writer
_BOM = b"\xef\xbb\xbf"
# A surrogate escape: a lone one makes a str that cannot be encoded as UTF-8 (hashed, written). Finding one,
# like a parser hook that saw NaN, an overflowing number or a duplicate key, or enough brackets that the
# nesting may be too deep, triggers the (slower) walk over the parsed value; a clean line skips it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonError(ValueError):
    """A JSON text that is not strictly valid; `field` is a dotted path (`mc.values[3]`), `line` the text's
    line for a syntax error."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.line = line


class _NonFinite:
    def __init__(self, text: str):
        self.text = text


class _DuplicateKey(dict):  # type: ignore[type-arg]
    """An object that had a key twice (the last value kept), found by `first_problem`."""

    duplicate: str = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _DuplicateKey(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.duplicate = key
            break
        seen.add(key)
    return marked


def _is_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def first_problem(value: Any) -> JsonError | None:
    """The first duplicate key, non-finite number, lone surrogate or too-deep nesting in a parsed value (of
    JSON, or of YAML: config files), with its field path; iterative, so depth cannot overflow the stack."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:  # named by its top-level field: the full path would be 100 levels long
            return JsonError(f"nested deeper than {MAX_DEPTH} levels", re.split(r"[.\[]", path)[0] or None)
        if isinstance(item, dict):
            if isinstance(item, _DuplicateKey):
                key = item.duplicate
                return JsonError(f"duplicate key {key!r} in one object (which value is meant?)",
                                 f"{path}.{key}" if path else key)
            children = []
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _is_lone_surrogate(key):
                    return JsonError("a key holds a lone surrogate escape (not valid Unicode)", path or None)
                children.append((child, child_path, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in reversed(list(enumerate(item))))
        elif isinstance(item, _NonFinite):
            return JsonError(f"{item.text} is not a JSON number: write a finite number or null", path or None)
        elif isinstance(item, float) and not math.isfinite(item):
            return JsonError(f"{item} is not a finite number", path or None)
        elif isinstance(item, str) and _is_lone_surrogate(item):
            bad = next(c for c in item if 0xD800 <= ord(c) <= 0xDFFF)
            return JsonError(f"lone surrogate escape \\u{ord(bad):04x} in a string (not valid Unicode)", path or None)
    return None


def loads_strict(text: str | bytes) -> Any:
    """Parse one JSON text strictly, or raise JsonError: bad UTF-8, bad syntax, NaN/Infinity or a number
    that overflows, a duplicate key, a lone surrogate escape, nesting deeper than MAX_DEPTH. The one parser
    every reader of JSON Lines and JSON files goes through."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"invalid UTF-8 (byte {exc.start}: {text[exc.start:exc.start + 1]!r})") from None
    flagged: list[bool] = []

    def non_finite(name: str) -> _NonFinite:
        flagged.append(True)
        return _NonFinite(name)

    def checked_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = _object(pairs)
        if isinstance(obj, _DuplicateKey):
            flagged.append(True)
        return obj

    def checked_float(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):  # 1e999
            flagged.append(True)
        return value

    try:
        data = json.loads(text, object_pairs_hook=checked_object, parse_constant=non_finite,
                          parse_float=checked_float)
    except json.JSONDecodeError as exc:
        raise JsonError(f"invalid JSON: {exc.msg} at column {exc.colno}", line=exc.lineno) from None
    except RecursionError:
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels") from None
    if (flagged or text.count("[") + text.count("{") > MAX_DEPTH
            or ("\\u" in text and _SURROGATE_ESCAPE.search(text))):
        problem = first_problem(data)
        if problem is not None:
            raise problem
    return data


def parse_line(path: str, lineno: int, raw: bytes) -> dict[str, Any] | None:
    """Decode one line strictly (see `loads_strict`); None for a blank line. Raises InputError naming the
    file, the line and, where the problem is inside the record, the field."""
    if is_blank(raw):
        return None
    try:
        data = loads_strict(raw)
    except JsonError as exc:
        raise InputError(path, lineno, exc.field, exc.message) from None
    if not isinstance(data, dict):
        raise InputError(path, lineno, None, f"expected a JSON object, got {type(data).__name__}")
    return data


def is_json_array_file(path: str | Path) -> bool:
    """Whether a .json file holds one array (else it is read as JSON lines): its first non-blank byte is `[`."""
    with open(path, "rb") as fh:
        head = fh.read(4096).removeprefix(_BOM).lstrip()
    return head.startswith(b"[")


def read_json(path: str | Path) -> Any:
    """A whole JSON file, strictly (a UTF-8 byte-order mark is allowed); InputError names the file, and the
    line or field of the problem."""
    _check_not_dir(path, "JSON file")
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), None, None, "no such file") from None
    try:
        return loads_strict(raw.removeprefix(_BOM))
    except JsonError as exc:
        raise InputError(str(path), exc.line, exc.field, exc.message) from None


def _check_not_dir(path: str | Path, kind: str = "JSONL file") -> None:
    if os.path.isdir(path):
        raise InputError(str(path), None, None, f"is a directory, not a {kind}")


def strip_bom(lineno: int, raw: bytes) -> bytes:
    """A UTF-8 byte-order mark is accepted at the start of a file (common Windows tools write one)."""
    return raw.removeprefix(_BOM) if lineno == 1 else raw


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes without the newline) for each line of a file."""
    _check_not_dir(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputError(str(path), None, None, "no such file") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            yield lineno, strip_bom(lineno, raw.rstrip(b"\r\n"))


def iter_records(
    path: str | Path,
    record_type: type[R] | None,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[R]:
    """Yield validated records. `record_type=None` guesses the type from each line's keys."""
    for _, record in iter_numbered_records(path, record_type, on_error, report):
        yield record


def iter_numbered_records(
    path: str | Path,
    record_type: type[R] | None,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[tuple[int, R]]:
    """`iter_records`, each record with its 1-based line number."""
    path = str(path)
    for lineno, raw in iter_lines(path):  # a missing file: InputError "no such file"
        try:
            data = parse_line(path, lineno, raw)
            if data is None:
                continue
            cls = record_type or guess_record_type(data)
            try:
                record = cls.from_dict(data)
            except RecordError as exc:
                raise InputError(path, lineno, exc.field, exc.message) from None
        except InputError as exc:
            if on_error == "raise":
                raise
            if report is not None:
                report.errors.append(exc)
            continue
        if report is not None:
            report.good += 1
        yield lineno, record  # type: ignore[misc]


def load_records(
    path: str | Path,
    record_type: type[R],
    on_error: Literal["raise", "skip"] = "raise",
    rejects_path: str | Path | None = None,
    require_records: bool = False,
) -> list[R]:
    """Read a whole file before a stage writes anything, so bad input never leaves partial output.

    With on_error="skip", every bad line goes to `rejects_path` (default: `<path>.rejects.jsonl`) as
    `{"line": N, "field": ..., "error": ..., "raw": ...}`. `require_records=True` makes a file with no
    (good) record an InputError, for stages where an empty input can only be a mistake.
    """
    report = ReadReport()
    records = list(iter_records(path, record_type, on_error=on_error, report=report))
    if on_error == "skip" and report.errors:
        rejects = Path(rejects_path or f"{path}.rejects.jsonl")
        raw_lines = dict(iter_lines(path))
        rows = [
            {
                "line": err.line,
                "field": err.field,
                "error": err.message,
                "raw": raw_lines.get(err.line or 0, b"").decode("utf-8", errors="replace"),
            }
            for err in report.errors
        ]
        write_atomic(rejects, rows)
        print(f"skipped {len(rows)} bad line(s) of {path}; reasons in {rejects}")
    if require_records and not records:
        skipped = f" ({len(report.errors)} bad line(s) skipped)" if report.errors else ""
        raise InputError(str(path), None, None, f"no records{skipped}")
    return records


def validate_file(path: str | Path, record_type: type[Record] | None = None) -> ReadReport:
    """Check every line, and that no id repeats (as every stage requires); returns all errors in line order
    rather than stopping at the first."""
    report = ReadReport()
    first_line: dict[str, int] = {}
    for lineno, record in iter_numbered_records(path, record_type, on_error="skip", report=report):
        rid = record_id(record)
        if rid is not None and rid in first_line:
            report.good -= 1
            report.errors.append(duplicate_id_error(path, lineno, rid, first_line[rid]))
        elif rid is not None:
            first_line[rid] = lineno
    report.errors.sort(key=lambda err: err.line or 0)
    return report


def dumps(record: Record | dict[str, Any]) -> str:
    """One record as one line of JSON. NaN or an infinity (a score that overflowed, say) is refused with a
    PrmError naming the record, rather than written as a line that no strict reader accepts."""
    data = record.to_dict() if isinstance(record, Record) else record
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        problem = first_problem(data)
        where = f" field '{problem.field}'" if problem is not None and problem.field else ""
        raise PrmError(f"record {record_id(data)!r}:{where} NaN or infinity is not JSON; not written") from None


@contextmanager
def _atomic_file(path: str | Path, mode: str) -> Iterator[IO[Any]]:
    """An open temporary file beside `path`, fsynced and renamed over it on success, removed on failure."""
    path = Path(path)
    _check_not_dir(path, "file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> None:
    """Write a whole file at once: a temporary file renamed over the target, never a half-written file."""
    with _atomic_file(path, "w") as fh:
        for record in records:
            fh.write(dumps(record) + "\n")


def write_text_atomic(path: str | Path, text: str | bytes) -> None:
    """Write a whole text (or binary) file atomically, like `write_atomic`."""
    with _atomic_file(path, "wb" if isinstance(text, bytes) else "w") as fh:
        fh.write(text)


def record_lines(path: str | Path) -> list[int]:
    """1-based line numbers of the non-blank lines: one per record, in order, as the readers take them."""
    return [lineno for lineno, raw in iter_lines(path) if not is_blank(raw)]


def check_unique_ids(records: Sequence[Record], path: str | Path, consequence: str = "") -> None:
    """Every record of a file read whole (one record per non-blank line) has its own id; else an InputError at
    the line of the repeat that names the line of the first."""
    seen: dict[str | None, int] = {}
    for index, record in enumerate(records):
        rid = record_id(record)
        if rid in seen:
            lines = record_lines(path)
            raise duplicate_id_error(path, lines[index], rid, lines[seen[rid]], consequence)
        seen[rid] = index


def duplicate_id_error(path: str | Path, line: int, rid: str | None, first: int, consequence: str = "") -> InputError:
    return InputError(str(path), line, "id", f"duplicate id {rid!r} (first on line {first}){consequence}")


def previous_ids(path: str | Path) -> set[str]:
    """The ids already in a resumable output (a torn last line cut off); empty when there is no file yet.
    Lets a command load its model before it opens (and so creates) its output."""
    if not Path(path).exists():
        return set()
    with JsonlWriter(path, resume=True) as previous:
        return set(previous.done)


class JsonlWriter:
    """Append-only, resumable JSONL output.

    `resume=True` keeps an existing file: a torn last line is truncated away and the ids already written are
    in `self.done`, so callers skip them; any other line that is not a JSON object raises InputError and the
    file is left as it is (it is not this command's output). `resume=False` starts the file afresh. Every record is one
    `write` of a complete line, flushed (and fsynced every `sync_every` lines) so a kill loses at most the
    line in flight, which the next resume cuts off.
    """

    def __init__(self, path: str | Path, resume: bool = True, sync_every: int = 1):
        self.path = Path(path)
        _check_not_dir(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        self.sync_every = sync_every
        self._since_sync = 0
        if resume and self.path.exists():
            self._repair_and_scan()
        elif self.path.exists():
            self.path.unlink()
        self._created = not self.path.exists()
        self._written = 0
        self._fh = open(self.path, "ab")

    def _repair_and_scan(self) -> None:
        """Check every line before touching the file: only a torn last line (a kill mid-write) is cut off;
        any other bad line means this is not our output, and losing the user's data is never an option."""
        good_bytes, unterminated = 0, False
        with open(self.path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                unterminated = not raw.endswith(b"\n")
                if unterminated and self._is_torn(raw):
                    break
                data = self._parse_resumed(lineno, raw)
                good_bytes += len(raw)
                rid = None if data is None else record_id(data)
                if rid is not None:
                    self.done.add(rid)
        if good_bytes != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_bytes)
        elif unterminated:
            # A whole last record that lacks only its newline: end it so the next write starts a new line.
            with open(self.path, "ab") as fh:
                fh.write(b"\n")

    @staticmethod
    def _is_torn(raw: bytes) -> bool:
        """A prefix of one of our lines: starts like a JSON object but does not parse as one."""
        if not raw.startswith(b"{"):
            return False
        try:
            return not isinstance(json.loads(raw), dict)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return True
        except RecursionError:
            return False  # whole but too deep: reported by _parse_resumed

    def _parse_resumed(self, lineno: int, raw: bytes) -> dict[str, Any] | None:
        try:
            return parse_line(str(self.path), lineno, strip_bom(lineno, raw.rstrip(b"\r\n")))
        except InputError as exc:
            raise InputError(
                exc.path, lineno, None,
                f"{exc.message}; this file is not a resumable output of this command: "
                "pick another output file or delete this one",
            ) from None

    def write(self, record: Record | dict[str, Any]) -> None:
        line = (dumps(record) + "\n").encode("utf-8")
        self._fh.write(line)
        self._fh.flush()
        self._since_sync += 1
        if self._since_sync >= self.sync_every:
            os.fsync(self._fh.fileno())
            self._since_sync = 0
        self._written += 1
        rid = record_id(record)
        if rid is not None:
            self.done.add(rid)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close()
        if exc_type is not None and self._created and not self._written:
            self.path.unlink(missing_ok=True)  # a command that failed before its first record leaves no file
