"""Reading rows of a table: a local `.jsonl`, `.json` (a list or JSON lines) or `.parquet` file, or a Hugging Face
dataset id. Shared by the format converters (prm/formats.py), the benchmark readers (prm/benchmarks.py) and
training data (prm/train/data.py). Errors name the row: the 1-based line for JSON lines, the 0-based row index
for a JSON list, a parquet file or a hub dataset.

    from prm.tables import load_rows
    for rowno, row in load_rows("pb_gsm8k.jsonl"): ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prm.errors import InputError, PrmError
from prm.hub import DATASETS_OFFLINE, hub_host, hub_offline, hub_reachable
from prm.jsonl import is_json_array_file, iter_lines, parse_line, read_json

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_TABLE_SUFFIXES = (".jsonl", ".json", ".parquet")


def load_rows(source: str, split: str = "train") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (row number, row) from a local table file or a Hugging Face dataset id.

    Row numbers: 1-based line numbers for JSON lines, 0-based row indexes for a JSON list, parquet, the hub.
    A missing local file or a bad line raises InputError; an unreachable hub raises PrmError naming the id.
    """
    return iter_rows(source, split, None)


OnBadRow = Callable[[InputError], None]


def iter_rows(source: str, split: str, on_bad: OnBadRow | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """load_rows; with `on_bad`, a line that is not a JSON object is handed to it and skipped."""
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix == ".jsonl":
            yield from _jsonl_rows(source, on_bad)
        elif suffix == ".json":
            yield from _json_rows(source, on_bad)
        elif suffix == ".parquet":
            yield from _parquet_rows(source)
        else:
            raise InputError(source, None, None, f"unsupported file type '{suffix}': use .jsonl, .json or .parquet")
        return
    if path.exists():
        raise InputError(source, None, None, "is a directory: give a .jsonl, .json or .parquet file")
    # A name that looks like a file (or not like `owner/name`) is a missing file, never a hub lookup.
    if suffix in _TABLE_SUFFIXES or not _HUB_ID.fullmatch(source):
        raise InputError(source, None, None, "no such file")
    yield from _hub_rows(source, split)


def _jsonl_rows(path: str, on_bad: OnBadRow | None) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, raw in iter_lines(path):
        try:
            data = parse_line(path, lineno, raw)
        except InputError as exc:
            if on_bad is None:
                raise
            on_bad(exc)
            continue
        if data is not None:
            yield lineno, data


def _json_rows(path: str, on_bad: OnBadRow | None) -> Iterator[tuple[int, dict[str, Any]]]:
    if not is_json_array_file(path):
        yield from _jsonl_rows(path, on_bad)
        return
    for index, row in enumerate(read_json(path)):
        if not isinstance(row, dict):
            exc = InputError(path, index, None, f"expected a JSON object, got {type(row).__name__}")
            if on_bad is None:
                raise exc
            on_bad(exc)
            continue
        yield index, row


def _parquet_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not parquet
        raise InputError(path, None, None, f"cannot read parquet: {exc}") from None
    index = 0
    for batch in table.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def _hub_rows(source: str, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import datasets

    where = f"cannot load dataset '{source}' (split '{split}') from the Hugging Face hub"
    offline = hub_offline(DATASETS_OFFLINE) or bool(datasets.config.HF_HUB_OFFLINE)
    if offline and not datasets.config.HF_HUB_OFFLINE:
        # The variable was set after `datasets` was imported: it would still try the network.
        raise PrmError(f"{where}: the hub is not reachable (offline mode: HF_HUB_OFFLINE=1); "
                       "download it and pass a local .jsonl/.json/.parquet file")
    if not offline and not hub_reachable(offline_variables=DATASETS_OFFLINE):
        raise PrmError(f"{where}: the hub ({hub_host()}) cannot be reached from here; "
                       "download it and pass a local .jsonl/.json/.parquet file")
    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as exc:  # the hub client raises many types; the user needs one clear line
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if offline:
            reason = "the hub is not reachable (offline mode: HF_HUB_OFFLINE=1)"
        elif isinstance(exc, (ConnectionError, OSError, TimeoutError)):
            reason = f"the hub is not reachable (network error: {first_line})"
        else:
            reason = first_line
        raise PrmError(f"{where}: {reason}; download it and pass a local .jsonl/.json/.parquet file") from None
    for index, row in enumerate(ds):
        yield index, dict(row)
