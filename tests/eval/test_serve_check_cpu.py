"""`bash bench/gpu_check.sh --serve --cpu`: the one-GPU check of `prm serve`'s batching, on a tiny random-weight
PRM on the CPU: the random model is built at its shape in our format, both benches run, one summary, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.train.trainer_helpers import REPO

pytestmark = pytest.mark.slow


def test_serve_check_cpu_form(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PRM_RANDOM_PRMS=str(tmp_path / "random"))
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--serve", "--cpu", "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    model = tmp_path / "random" / "tiny-fp32"
    config = json.loads((model / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForTokenClassification"] and config["num_hidden_layers"] == 2
    assert config["step_marker"] == "<|prm_step|>" and (model / "RANDOM_WEIGHTS").is_file()

    padding = json.loads((out / "batch_padding.json").read_text())
    assert padding["scorer"] == "ours on cpu (float32)" and len(padding["rows"]) == 10
    assert all(row["solutions"] == 16 and row["solutions_per_s"] > 0 for row in padding["rows"])
    load = json.loads((out / "serve_load.json").read_text())
    assert [level["concurrency"] for level in load["levels"]] == [1, 8, 32, 64]
    assert all(level["errors"] == 0 and level["requests"] > 0 for level in load["levels"])
    assert load["server_exit_code"] == 0 and load["model"] == "random:tiny"
    assert "[serve check] random:tiny on cpu" in res.stdout and "prm serve, concurrency  64" in res.stdout
