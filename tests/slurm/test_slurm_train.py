"""slurm/train.sbatch on a real local Slurm with two emulated nodes: srun starts torchrun on each node
(rendezvous at the first host), ZeRO-3 across the 2 workers; a signal-triggered checkpoint requeues the job,
and the requeued run resumes and reproduces the losses of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _release_requeued(slurm, job: str, timeout_s: float) -> None:
    """Slurm holds a requeued job back (BeginTime ~2 min ahead); start it now, as a free cluster would."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        info = subprocess.run(["scontrol", "-o", "show", "job", job], env=slurm.env, capture_output=True,
                              text=True).stdout
        if "Restarts=1" in info or "JobState=COMPLETED" in info or "JobState=FAILED" in info:
            if "JobState=PENDING" in info:
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm.env,
                               capture_output=True)
            if "JobState=PENDING" not in info:
                return
        time.sleep(1.0)


def test_two_node_zero3_preempt_requeue_resume(slurm, tmp_path, tiny_model_dir):
    from prm.jsonl import write_atomic
    from train.toy_data import toy_examples

    data = tmp_path / "toy.jsonl"
    write_atomic(data, toy_examples(32, 0))
    common = [f"model={tiny_model_dir}", f"data.train_files=[{data}]", "data.val_files=[]", "max_steps=6",
              "save_every=0", "eval_every=0", "log_every=1", "precision=fp32", "report_to=none",
              "optim.lr=2e-3"]
    os.environ.update(PRM_PYTHON=sys.executable, PRM_REPO=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    full = slurm.sbatch("-N", "2", "-o", str(tmp_path / "full.log"), str(REPO / "slurm" / "train.sbatch"),
                        str(REPO / "configs" / "train_tiny.yaml"), f"output_dir={tmp_path / 'full'}", *common,
                        cwd=tmp_path)
    pre = slurm.sbatch("-N", "2", "-o", str(tmp_path / "pre.log"), str(REPO / "slurm" / "train.sbatch"),
                       str(REPO / "configs" / "train_tiny.yaml"), f"output_dir={tmp_path / 'pre'}",
                       "debug_signal_at_step=3", *common, cwd=tmp_path)
    _release_requeued(slurm, pre, timeout_s=600)
    states = slurm.wait([full, pre], timeout_s=900)
    log = (tmp_path / "pre.log").read_text()
    assert all(s == "COMPLETED 0:0" for s in states.values()), (states, log[-3000:])
    assert "requeueing" in log and "(restart 1)" in log and "resumed from" in log
    assert "world 2" in (tmp_path / "full.log").read_text()

    def losses(name):
        return [json.loads(x)["loss"] for x in (tmp_path / name / "losses.jsonl").read_text().splitlines()]

    assert len(losses("full")) == 6
    assert losses("pre") == pytest.approx(losses("full"), abs=1e-6)
    assert (tmp_path / "pre" / "final" / "model.safetensors").exists()
