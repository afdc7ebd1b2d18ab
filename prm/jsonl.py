"""JSON Lines input and output.

Reading validates every line against a record type. By default the first bad line raises `InputError`
(file, line, field); with `on_error="skip"` bad lines are written with their reason to a side file and
counted instead. Writing appends whole lines only: a line is built in memory and written with one call,
and when a file is reopened to resume, a torn last line (a kill mid-write) is cut off and the ids already
present are skipped, so a rerun after a crash neither duplicates nor loses a record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from prm.errors import InputError
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


def parse_line(path: str, lineno: int, raw: bytes) -> dict[str, Any] | None:
    """Decode one line; None for a blank line. Raises InputError on bad UTF-8 or bad JSON."""
    if is_blank(raw):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, lineno, None, f"invalid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise InputError(path, lineno, None, f"expected a JSON object, got {type(data).__name__}")
    return data


def _check_not_dir(path: str | Path, kind: str = "JSONL file") -> None:
    if os.path.isdir(path):
        raise InputError(str(path), None, None, f"is a directory, not a {kind}")


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes without the newline) for each line of a file."""
    _check_not_dir(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputError(str(path), None, None, "no such file") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            yield lineno, raw.rstrip(b"\r\n")


def iter_records(
    path: str | Path,
    record_type: type[R] | None,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[R]:
    """Yield validated records. `record_type=None` guesses the type from each line's keys."""
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
        yield record  # type: ignore[misc]


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
    """Check every line; returns all errors rather than stopping at the first."""
    report = ReadReport()
    for _ in iter_records(path, record_type, on_error="skip", report=report):
        pass
    return report


def dumps(record: Record | dict[str, Any]) -> str:
    data = record.to_dict() if isinstance(record, Record) else record
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


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
            raise InputError(str(path), lines[index], "id",
                             f"duplicate id {rid!r} (first on line {lines[seen[rid]]}){consequence}")
        seen[rid] = index


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

    def _parse_resumed(self, lineno: int, raw: bytes) -> dict[str, Any] | None:
        try:
            return parse_line(str(self.path), lineno, raw.rstrip(b"\r\n"))
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
