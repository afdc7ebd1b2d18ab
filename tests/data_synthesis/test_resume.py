"""`prm annotate mc` killed with SIGKILL part-way and rerun gives exactly the records of an uninterrupted
run: same ids, same labels, none twice, none missing; the same for a 2-shard run merged with `prm data merge`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prm.data_synthesis.problems import gsm_symbolic_problems
from prm.data_synthesis.testbed import make_solutions

from prm.app.cli import main

REPO = Path(__file__).resolve().parents[2]
# noise makes the labels non-trivial; window=2 writes every two solutions; the delay slows each generate call
ARGS = ["backend=simulated", "mode=exhaustive", "k=4", "window=2", "batch_prompts=4",
        "simulated.noise=0.2", "simulated.seed=5"]
SLOW = "simulated.delay=0.08"


@pytest.fixture(scope="module")
def testbed_file(tmp_path_factory) -> Path:
    sols = [s for p in gsm_symbolic_problems(24, seed=2) for s in make_solutions(p, 0.5, seed=1)]
    path = tmp_path_factory.mktemp("resume") / "tb.jsonl"
    path.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in sols))
    return path


@pytest.fixture(scope="module")
def reference(testbed_file) -> dict[str, dict]:
    """An uninterrupted run, in process and without delay."""
    out = testbed_file.parent / "reference.jsonl"
    assert main(["annotate", "mc", "-i", str(testbed_file), "-o", str(out), *ARGS]) == 0
    return _records(out)


def _records(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate records"
    return {r["id"]: r for r in rows}


def _command(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "prm", "annotate", "mc", "-i", str(src), "-o", str(out), *ARGS, SLOW, *extra]


def _complete_lines(path: Path) -> int:
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


def _run_and_kill(cmd: list[str], watch: Path, after_lines: int, total: int) -> int:
    """Start `cmd`, SIGKILL it once `watch` holds `after_lines` lines; returns the lines written by then."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    try:
        while _complete_lines(watch) < after_lines:
            assert proc.poll() is None, "finished before it could be killed (make the delay longer)"
            assert time.time() < deadline, "no progress"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = _complete_lines(watch)
    assert written < total, "the run was not interrupted"
    return written


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_sigkill_then_rerun_gives_the_uninterrupted_records(testbed_file, reference, tmp_path):
    out = tmp_path / "mc.jsonl"
    cmd = _command(testbed_file, out)
    written = _run_and_kill(cmd, out, after_lines=4, total=len(reference))
    assert 4 <= written
    _run(cmd)  # the same command resumes
    assert _records(out) == reference


def test_two_shards_killed_resumed_and_merged(testbed_file, reference, tmp_path):
    out = tmp_path / "mc.jsonl"
    shard0 = tmp_path / "mc.shard-00000-of-00002.jsonl"
    cmd0 = _command(testbed_file, out, "--shard", "0/2")
    n0 = sum(1 for rid in reference if _shard(rid) == 0)
    _run_and_kill(cmd0, shard0, after_lines=2, total=n0)
    _run(_command(testbed_file, out, "--shard", "1/2"))
    _run(cmd0)
    merged = tmp_path / "merged.jsonl"
    assert main(["data", "merge", "-o", str(merged), "--shards", "2", str(out), "--expect", str(testbed_file)]) == 0
    assert _records(merged) == reference
    assert list(_records(merged)) == list(reference)  # merged in the input's order


def _shard(rid: str) -> int:
    from prm.shards import shard_of

    return shard_of(rid, 2)
