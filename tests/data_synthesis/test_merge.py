"""`prm data merge`: shard files joined by id, with missing shards, torn files, duplicates and --expect caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.shards import shard_of, shard_path


def _solution(pid: str, k: int, correct: bool = True) -> dict:
    return {"id": f"{pid}-s{k}", "problem_id": pid, "problem": f"problem {pid}", "answer": "4",
            "steps": ["2+2=4", "The answer is 4."], "final_answer": "4", "correct": correct, "generator": "g"}


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def sharded(tmp_path):
    """An input of 40 solutions, and its 4 shard outputs (each record annotated, split by id)."""
    rows = [_solution(f"p{i}", k) for i in range(20) for k in range(2)]
    _write(tmp_path / "in.jsonl", rows)
    for i in range(4):
        mine = [dict(r, mc={"values": [1.0, 1.0], "first_error": -1, "rollouts": 4, "tokens": 10})
                for r in rows if shard_of(r["id"], 4) == i]
        _write(shard_path(tmp_path / "out.jsonl", i, 4), mine)
    return tmp_path, rows


def test_merge_all_shards_in_input_order(sharded, capsys):
    tmp, rows = sharded
    merged = tmp / "merged.jsonl"
    assert main(["data", "merge", "-o", str(merged), "--shards", "4", str(tmp / "out.jsonl"),
                 "--expect", str(tmp / "in.jsonl")]) == 0
    out = _read(merged)
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert all(r["mc"]["rollouts"] == 4 for r in out)
    assert "merged 40 record(s) from 4 shard file(s)" in capsys.readouterr().out
    assert main(["data", "validate", "--type", "solution", str(merged)]) == 0


def test_merge_explicit_files_keeps_every_record(sharded):
    tmp, rows = sharded
    files = [str(shard_path(tmp / "out.jsonl", i, 4)) for i in range(4)]
    merged = tmp / "m.jsonl"
    assert main(["data", "merge", "-o", str(merged), *files]) == 0
    out = _read(merged)
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    # without --expect: shard order, then line order
    assert [r["id"] for r in out] == [r["id"] for f in files for r in _read(Path(f))]


def test_missing_shard_file_exit_2(sharded, capsys):
    tmp, _ = sharded
    shard_path(tmp / "out.jsonl", 2, 4).unlink()
    merged = tmp / "m.jsonl"
    assert main(["data", "merge", "-o", str(merged), "--shards", "4", str(tmp / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "1 of 4 shard file(s) missing" in err and "out.shard-00002-of-00004.jsonl (shard 2/4)" in err
    assert not merged.exists()
    # explicit shard files that name their N: leaving one out is caught too
    files = [str(shard_path(tmp / "out.jsonl", i, 4)) for i in (0, 1, 3)]
    assert main(["data", "merge", "-o", str(merged), *files]) == 2
    assert "1 of 4 shard file(s) not given: " in capsys.readouterr().err


def test_torn_shard_file_exit_2(sharded, capsys):
    tmp, _ = sharded
    path = shard_path(tmp / "out.jsonl", 1, 4)
    path.write_bytes(path.read_bytes() + b'{"id": "p99-s0", "probl')
    assert main(["data", "merge", "-o", str(tmp / "m.jsonl"), "--shards", "4", str(tmp / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "incomplete" in err and "cut off" in err and "--shard 1/4" in err


def test_duplicates(sharded, capsys):
    tmp, _ = sharded
    a, b = shard_path(tmp / "out.jsonl", 0, 4), shard_path(tmp / "out.jsonl", 1, 4)
    first = _read(a)[0]
    # an identical copy (same id, same content) of a record is kept once
    extra = tmp / "extra.jsonl"
    _write(extra, [first])
    merged = tmp / "m.jsonl"
    assert main(["data", "merge", "-o", str(merged), str(a), str(b), str(extra)]) == 0
    assert "1 identical duplicate(s) kept once" in capsys.readouterr().out
    assert len(_read(merged)) == len(_read(a)) + len(_read(b))
    # the same id with different content is an error naming both places
    _write(extra, [dict(first, correct=not first["correct"])])
    assert main(["data", "merge", "-o", str(merged), str(a), str(b), str(extra)]) == 2
    err = capsys.readouterr().err
    assert f"duplicate id '{first['id']}' with different content" in err and "extra.jsonl:1" in err


def test_record_in_wrong_shard_is_caught(sharded, capsys):
    tmp, rows = sharded
    stranger = next(r for r in rows if shard_of(r["id"], 4) != 0)
    path = shard_path(tmp / "out.jsonl", 0, 4)
    _write(path, [*_read(path), stranger])
    assert main(["data", "merge", "-o", str(tmp / "m.jsonl"), "--shards", "4", str(tmp / "out.jsonl")]) == 2
    assert f"belongs to shard {shard_of(stranger['id'], 4)}/4, not 0/4" in capsys.readouterr().err


def test_expect_reports_missing_ids(sharded, capsys):
    tmp, rows = sharded
    path = shard_path(tmp / "out.jsonl", 3, 4)
    kept = _read(path)
    lost, kept = kept[:2], kept[2:]
    _write(path, kept)
    merged = tmp / "m.jsonl"
    args = ["data", "merge", "-o", str(merged), "--shards", "4", str(tmp / "out.jsonl"),
            "--expect", str(tmp / "in.jsonl")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 of 40 id(s)" in err and "(by shard: 3/4: 2)" in err
    assert all(r["id"] in err for r in lost)
    assert not merged.exists()
    assert main([*args, "--allow-missing"]) == 0
    assert len(_read(merged)) == 38
    assert "warning: 2 of 40" in capsys.readouterr().out


def test_expect_by_problem_id(tmp_path, capsys):
    """Sampling output sharded by problem: --key problem_id matches the problems file's ids."""
    problems = [{"id": f"p{i}", "problem": f"problem p{i}", "answer": "4", "source": "t"} for i in range(10)]
    _write(tmp_path / "problems.jsonl", problems)
    for i in range(2):
        _write(shard_path(tmp_path / "s.jsonl", i, 2),
               [_solution(p["id"], k) for p in problems if shard_of(p["id"], 2) == i for k in range(3)])
    merged = tmp_path / "m.jsonl"
    args = ["data", "merge", "-o", str(merged), "--shards", "2", str(tmp_path / "s.jsonl"),
            "--expect", str(tmp_path / "problems.jsonl")]
    # sharded by problem_id, so checking by id would see records in the "wrong" shard
    assert main(args) == 2
    assert main([*args, "--key", "problem_id"]) == 0
    out = _read(merged)
    assert len(out) == 30
    assert [r["problem_id"] for r in out] == [p["id"] for p in problems for _ in range(3)]
