"""slurm/train.sbatch on a real local Slurm with two emulated nodes: srun starts torchrun on each node
(rendezvous at the first host), ZeRO-3 across the 2 workers; a signal-triggered checkpoint requeues the job,
and the requeued run resumes and reproduces the losses of an uninterrupted run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from local_slurm import free_ports

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_two_node_zero3_preempt_requeue_resume(slurm, tmp_path, tiny_model_dir):
    from prm.train.toy_data import toy_examples

    from prm.jsonl import write_atomic

    data = tmp_path / "toy.jsonl"
    write_atomic(data, toy_examples(32, 0))
    common = [f"model={tiny_model_dir}", f"data.train_files=[{data}]", "data.val_files=[]", "max_steps=6",
              "save_every=0", "eval_every=0", "log_every=1", "precision=fp32", "report_to=none",
              "optim.lr=2e-3"]
    env = dict(PRM_PYTHON=sys.executable, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    # Each job its own free rendezvous port: the script's default (from the job id) could be taken here.
    full_port, pre_port = free_ports(2)
    full = slurm.sbatch("-N", "2", "-o", str(tmp_path / "full.log"), str(REPO / "slurm" / "train.sbatch"),
                        str(REPO / "configs" / "train_tiny.yaml"), f"output_dir={tmp_path / 'full'}", *common,
                        cwd=tmp_path, env={**env, "PRM_MASTER_PORT": str(full_port)})
    pre = slurm.sbatch("-N", "2", "-o", str(tmp_path / "pre.log"), str(REPO / "slurm" / "train.sbatch"),
                       str(REPO / "configs" / "train_tiny.yaml"), f"output_dir={tmp_path / 'pre'}",
                       "debug_signal_at_step=3", *common, cwd=tmp_path, env={**env, "PRM_MASTER_PORT": str(pre_port)})
    # The requeued job waits out the cluster's short credential lifetime by itself, as on a real cluster.
    states = slurm.wait([full, pre], timeout_s=900)
    log = (tmp_path / "pre.log").read_text()
    assert all(s == "COMPLETED 0:0" for s in states.values()), (states, log[-3000:], slurm.daemon_log(pre))
    assert "requeueing" in log and "(restart 1)" in log and "resumed from" in log
    assert "world 2" in (tmp_path / "full.log").read_text()

    def losses(name):
        return [json.loads(x)["loss"] for x in (tmp_path / name / "losses.jsonl").read_text().splitlines()]

    assert len(losses("full")) == 6
    assert losses("pre") == pytest.approx(losses("full"), abs=1e-6)
    assert (tmp_path / "pre" / "final" / "model.safetensors").exists()


def test_bad_config_key_fails_the_job_with_one_line(slurm, tmp_path):
    """A typo in an override fails train.sbatch before torchrun starts: the log names the key, no traceback."""
    env = dict(PRM_PYTHON=sys.executable, HF_HUB_OFFLINE="1")
    job = slurm.sbatch("-N", "1", "-o", str(tmp_path / "bad.log"), str(REPO / "slurm" / "train.sbatch"),
                       str(REPO / "configs" / "train_tiny.yaml"), f"output_dir={tmp_path / 'out'}", "max_stepz=3",
                       cwd=tmp_path, env=env)
    states = slurm.wait([job], timeout_s=300)
    log = (tmp_path / "bad.log").read_text()
    assert states == {job: "FAILED 2:0"}, (states, log)
    assert "unknown config key 'train.max_stepz'" in log and "Traceback" not in log and "torch.distributed" not in log
    assert not (tmp_path / "out").exists()
