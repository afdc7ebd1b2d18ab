"""slurm/train.sbatch submitted from a folder holding its own train.py, eval.py, data_synthesis.py and
testkit.py (each raising on import), with no checkout on PYTHONPATH: the job `cd`s to the submit folder and
runs `python -m prm config get` and `torchrun -m prm train` there, and neither imports the folder's modules.
The console (the job log) carries the stage's own lines, the library chatter is in OUTPUT_DIR/prm.log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from local_slurm import free_ports

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_train_job_submitted_from_a_shadowing_folder(slurm, shadow_dir, tiny_model_dir):
    from prm.train.toy_data import toy_examples

    from prm.jsonl import write_atomic

    data = shadow_dir / "toy.jsonl"
    write_atomic(data, toy_examples(16, 0))
    # PYTHONPATH="" is unset for Python: the job finds prm only where the interpreter has it installed.
    env = dict(PRM_PYTHON=sys.executable, PYTHONPATH="", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PRM_MASTER_PORT=str(free_ports(1)[0]), PRM_DEEPSPEED="zero2")
    job = slurm.sbatch("-N", "1", "-o", str(shadow_dir / "train.log"), str(REPO / "slurm" / "train.sbatch"),
                       str(REPO / "configs" / "train_tiny.yaml"), "output_dir=out", f"model={tiny_model_dir}",
                       "data.train_files=[toy.jsonl]", "data.val_files=[]", "max_steps=2", "save_every=0",
                       "eval_every=0", "log_every=1", "precision=fp32", "report_to=none",
                       cwd=shadow_dir, env=env)
    states = slurm.wait([job], timeout_s=600)
    log = (shadow_dir / "train.log").read_text()
    assert states == {job: "COMPLETED 0:0"}, (states, log[-3000:], slurm.daemon_log(job))
    assert "SHADOWED" not in log and "Traceback" not in log, log[-3000:]
    assert "step 2/2" in log and (shadow_dir / "out" / "final" / "model.safetensors").exists()
    assert "Setting accelerator" not in log and "LOAD REPORT" not in log, log
    assert "Setting accelerator" in (shadow_dir / "out" / "prm.log").read_text()
