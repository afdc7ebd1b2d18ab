"""Stable sharding by record id: parse, partition, stability across processes, file naming."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from prm.errors import PrmError
from prm.shards import (
    in_shard,
    parse_shard,
    parse_shard_path,
    select_shard,
    shard_of,
    shard_path,
    shard_paths,
)

IDS = [f"gsm_symbolic-0-{i}" for i in range(500)] + [f"prob-{i}-sol-{j}" for i in range(50) for j in range(4)]


def test_parse_shard():
    assert parse_shard("3/8") == (3, 8)
    assert parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ["8/8", "-1/4", "1/0", "a/b", "3", "3/8/2", ""]:
        with pytest.raises(PrmError, match="bad shard"):
            parse_shard(bad)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 16])
def test_every_id_in_exactly_one_shard(n):
    for rid in IDS:
        owners = [i for i in range(n) if in_shard(rid, i, n)]
        assert owners == [shard_of(rid, n)]
    shards = [list(select_shard(IDS, i, n, key=lambda x: x)) for i in range(n)]
    assert sorted(x for s in shards for x in s) == sorted(IDS)
    # order inside a shard is the input order
    for s in shards:
        assert s == [x for x in IDS if x in set(s)]


def test_split_is_roughly_balanced():
    counts = Counter(shard_of(rid, 8) for rid in IDS)
    assert set(counts) == set(range(8))
    assert min(counts.values()) > len(IDS) / 8 * 0.6


def test_stable_across_processes_and_hash_seeds():
    """Python's hash() is salted per process; shard_of must not be."""
    code = "from prm.shards import shard_of; print([shard_of(f'id-{i}', 7) for i in range(200)])"
    outputs = set()
    for seed in ("1", "2"):
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                             cwd=Path(__file__).resolve().parents[2])
        outputs.add(run.stdout.strip())
    assert outputs == {str([shard_of(f"id-{i}", 7) for i in range(200)])}
    # pinned values: a change of the hash would silently re-split resumed runs
    assert [shard_of(x, 8) for x in ("a", "b", "gsm_symbolic-0-0")] == [7, 5, 1]


def test_shard_paths():
    assert shard_path("out/res.jsonl", 3, 8) == Path("out/res.shard-00003-of-00008.jsonl")
    assert shard_path("res", 0, 1) == Path("res.shard-00000-of-00001")
    assert [p.name for p in shard_paths("a.jsonl", 2)] == ["a.shard-00000-of-00002.jsonl",
                                                          "a.shard-00001-of-00002.jsonl"]
    assert parse_shard_path("out/res.shard-00003-of-00008.jsonl") == (Path("out/res.jsonl"), 3, 8)
    assert parse_shard_path("res.jsonl") is None
    with pytest.raises(PrmError):
        shard_path("x.jsonl", 8, 8)
