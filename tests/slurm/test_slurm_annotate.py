"""slurm/annotate_submit.sh on a real local Slurm: a 2-task array of `prm annotate mc --shard I/2` and the
merge job that waits for it (afterok); the merged file equals a one-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prm.data_synthesis.problems import gsm_symbolic_problems
from prm.data_synthesis.testbed import make_solutions

from prm.app.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARGS = ["backend=simulated", "mode=binary", "k=3", "simulated.noise=0.1"]


def test_submit_array_and_dependent_merge(slurm, tmp_path):
    tmp_path.chmod(0o755)
    sols = [s for p in gsm_symbolic_problems(16, seed=4) for s in make_solutions(p, 0.5, seed=0)]
    src = tmp_path / "tb.jsonl"
    src.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in sols))
    ref = tmp_path / "ref.jsonl"
    assert main(["annotate", "mc", "-i", str(src), "-o", str(ref), *ARGS]) == 0

    out = tmp_path / "out" / "mc.jsonl"
    env = {**slurm.env, "PRM_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(["bash", str(REPO / "slurm" / "annotate_submit.sh"), "-n", "2", "-i", str(src),
                           "-o", str(out), "-s", "--cpus-per-task=1", "--", *ARGS], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    array_id, merge_id = words[2], words[words.index("merge") + 2].rstrip(",;")
    states = slurm.wait([array_id, merge_id], timeout_s=300)
    logs = "\n".join(p.read_text() for p in (tmp_path / "out" / "logs").glob("*.log"))
    assert all(s == "COMPLETED 0:0" for s in states.values()), (states, logs)
    assert len(states) == 3  # two array tasks and the merge job
    merged = tmp_path / "out" / "mc.merged.jsonl"
    assert merged.read_text() == ref.read_text()
    assert (tmp_path / "out" / "mc.shard-00000-of-00002.jsonl").exists()

    # a bad N fails fast, before anything is submitted
    bad = subprocess.run(["bash", str(REPO / "slurm" / "annotate_submit.sh"), "-n", "0", "-i", str(src),
                          "-o", str(out)], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "positive integer" in bad.stderr
