"""Stable sharding by record id, so one stage can run as N independent jobs (one Slurm array task each).

    prm annotate mc --shard 3/8 -o out.jsonl ...   # writes out.shard-00003-of-00008.jsonl
    prm data merge -o merged.jsonl --shards 8 out.jsonl

A record belongs to shard `blake2b(id) mod N`: the same on every machine, Python version and run
(Python's own `hash()` of a string is salted per process and must never be used for this).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from prm.errors import PrmError

T = TypeVar("T")

_SHARD_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_SHARD_NAME = re.compile(r"^(?P<stem>.*)\.shard-(?P<i>\d{5,})-of-(?P<n>\d{5,})(?P<suffix>(?:\.[^.]*)?)$")


def parse_shard(spec: str) -> tuple[int, int]:
    """'3/8' -> (3, 8): shard 3 (0-based) of 8. Raises PrmError on anything else."""
    match = _SHARD_SPEC.match(str(spec))
    if not match:
        raise PrmError(f"bad shard '{spec}': expected I/N, e.g. 0/8 (shard I of N, 0-based)")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1:
        raise PrmError(f"bad shard '{spec}': the number of shards N must be at least 1")
    if not 0 <= i < n:
        raise PrmError(f"bad shard '{spec}': the shard index I must be in [0, {n - 1}] (0-based)")
    return i, n


def shard_of(record_id: str, n: int) -> int:
    """The shard (0..n-1) that `record_id` belongs to: blake2b of its UTF-8 bytes, modulo n."""
    if n < 1:
        raise ValueError(f"number of shards must be at least 1, got {n}")
    digest = hashlib.blake2b(str(record_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def in_shard(record_id: str, i: int, n: int) -> bool:
    """Whether `record_id` falls in shard i of n. Every id is in exactly one shard."""
    return shard_of(record_id, n) == i


def select_shard(items: Iterable[T], i: int, n: int, key=lambda item: item.id) -> Iterator[T]:  # noqa: B008
    """The items of shard i of n, in their original order; `key` gives each item's id."""
    for item in items:
        if in_shard(str(key(item)), i, n):
            yield item


def shard_path(output: str | Path, i: int, n: int) -> Path:
    """'out.jsonl', 3, 8 -> 'out.shard-00003-of-00008.jsonl' (same folder; the last suffix is kept)."""
    if n < 1 or not 0 <= i < n:
        raise PrmError(f"bad shard {i}/{n}: need 0 <= I < N")
    output = Path(output)
    tag = f"shard-{i:05d}-of-{n:05d}"
    return output.with_name(f"{output.stem}.{tag}{output.suffix}")


def shard_paths(output: str | Path, n: int) -> list[Path]:
    """Every shard file of `output` split N ways, in shard order."""
    return [shard_path(output, i, n) for i in range(n)]


def parse_shard_path(path: str | Path) -> tuple[Path, int, int] | None:
    """Inverse of shard_path: 'out.shard-00003-of-00008.jsonl' -> (Path('out.jsonl'), 3, 8); None otherwise."""
    path = Path(path)
    match = _SHARD_NAME.match(path.name)
    if not match:
        return None
    i, n = int(match.group("i")), int(match.group("n"))
    if not 0 <= i < n:
        return None
    return path.with_name(match.group("stem") + match.group("suffix")), i, n
