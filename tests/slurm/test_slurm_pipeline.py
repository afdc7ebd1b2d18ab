"""The whole pipeline through a real local Slurm (two emulated nodes): slurm/submit_pipeline.sh submits the
prep job, a 2-shard MC annotation array with its merge (afterok), the judge, consensus, a 2-node training of
the tiny model (srun + torchrun over gloo, ZeRO-3) and the evaluation; the test checks every output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_slurm import free_ports

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_submit_pipeline_two_shards_two_nodes(slurm, tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    env = {**slurm.env, "PRM_PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "PRM_MASTER_PORT": str(free_ports(1)[0])}  # not the script's default: it could be taken here
    overrides = [f"run.run_dir={run_dir}", f"sample.generator.model={tiny_model_dir}",
                 f"mc.generator.model={tiny_model_dir}", f"mc.chat_template_model={tiny_model_dir}",
                 f"judge.generator.model={tiny_model_dir}", f"train.model={tiny_model_dir}",
                 "train.deepspeed=zero3"]
    proc = subprocess.run(["bash", str(REPO / "slurm" / "submit_pipeline.sh"), "-c", str(REPO / "configs" / "tiny.yaml"),
                           "-n", "2", "-N", "2", "-g", "--cpus-per-task=1", "--", *overrides], env=env, capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = proc.stdout.strip().splitlines()[-1].split()
    assert len(jobs) == 7, proc.stdout
    states = slurm.wait(jobs, timeout_s=1500)
    logs = run_dir / "logs"
    tails = {p.name: p.read_text()[-1500:] for p in sorted(logs.glob("*.log"))}
    assert all(s == "COMPLETED 0:0" for s in states.values()), (states, tails)
    # Both array tasks ran and wrote their shards; the merge holds every sampled solution exactly once.
    assert len([name for name in tails if name.startswith("mc_")]) == 2
    shards = sorted(p.name for p in run_dir.glob("mc.shard-*-of-00002.jsonl"))
    assert shards == ["mc.shard-00000-of-00002.jsonl", "mc.shard-00001-of-00002.jsonl"]

    def ids(name: str) -> list[str]:
        return [json.loads(line)["id"] for line in (run_dir / name).read_text().splitlines()]

    assert sorted(ids("mc.jsonl")) == sorted(ids("annotate.jsonl"))
    assert len(set(ids("mc.jsonl"))) == len(ids("mc.jsonl"))
    assert sorted(ids("consensus.jsonl")) == sorted(ids("annotate.jsonl"))
    # Training ran on 2 nodes (one worker each) and saved a Hugging Face folder.
    train_log = next(p.read_text() for p in logs.glob("train_*.log"))
    assert "2 node(s)" in train_log and "world 2" in train_log, train_log[-3000:]
    assert (run_dir / "train" / "final" / "config.json").exists()
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert set(report["steps"]) == {"trained", "untrained"} and set(report["bon"]) == {"trained", "untrained"}
    assert os.path.exists(run_dir / "report" / "report.md")


def test_submit_pipeline_stops_on_a_typo_before_submitting(slurm, tmp_path):
    env = {**slurm.env, "PRM_PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "slurm" / "submit_pipeline.sh"), "-c", str(REPO / "configs" / "tiny.yaml"),
                           "--", f"run.run_dir={tmp_path / 'run'}", "train.max_stepz=3"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown config key 'train.max_stepz'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
    queue = subprocess.run(["squeue", "-h"], env=slurm.env, capture_output=True, text=True)
    assert queue.stdout.strip() == ""
