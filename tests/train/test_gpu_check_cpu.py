"""`bash bench/gpu_check.sh --cpu`: the one-GPU check's steps on tiny shapes on the CPU (ZeRO-2 and ZeRO-3 in
one process, LoRA, the two-layer head, SIGTERM + --resume reproducing the losses, `prm score` on the final
folder, two attention paths), one table, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.train.trainer_helpers import REPO

pytestmark = pytest.mark.slow


def test_gpu_check_cpu_form(tmp_path):
    out = tmp_path / "gpu_check_cpu.json"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu", "--steps", "4", "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads(out.read_text())
    names = [r["name"] for r in result["rows"]]
    assert names[:4] == ["zero2", "zero3", "zero2_lora", "zero2_two_layer_head"]
    assert result["resume_ok"] and result["resume_max_diff"] <= 1e-6
    assert result["score"]["ok"] and result["score"]["items"] == 16
    assert all(r["tok_s"] and r["tok_s"] > 0 and r["mfu"] == "n/a" for r in result["rows"])
    assert result["rows"][-1]["max_loss_diff_vs_zero2"] < 1e-4  # the row mask and per-example sdpa agree
    assert "tokens/s" in res.stdout and "resume: losses equal to the uninterrupted zero2 run: True" in res.stdout
