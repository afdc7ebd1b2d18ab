"""The local Slurm harness: an array job and a 2-node job run through a real slurmctld."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_array_and_two_node_jobs(slurm, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/bash\necho task=${SLURM_ARRAY_TASK_ID} > " + str(tmp_path) + "/out_${SLURM_ARRAY_TASK_ID}\n")
    array = slurm.sbatch("--array=0-1", "-o", str(tmp_path / "a_%a.log"), str(script))
    two = tmp_path / "two.sh"
    two.write_text("#!/bin/bash\nsrun bash -c 'echo $SLURM_NODEID $SLURMD_NODENAME' > " + str(tmp_path) + "/nodes\n")
    nodes_job = slurm.sbatch("-N", "2", "--ntasks-per-node=1", "-o", str(tmp_path / "n.log"), str(two))
    states = slurm.wait([array, nodes_job], timeout_s=120)
    assert all(s == "COMPLETED 0:0" for s in states.values()), states
    assert (tmp_path / "out_0").read_text().strip() == "task=0"
    assert (tmp_path / "out_1").read_text().strip() == "task=1"
    lines = sorted((tmp_path / "nodes").read_text().split("\n"))
    assert [line.split()[1] for line in lines if line] == ["n1", "n2"]
