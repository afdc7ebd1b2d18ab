"""Shared by the trainer tests: toy data files and `prm train` subprocess runs (1 process or torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prm.train.toy_data import toy_examples

from prm.jsonl import write_atomic

REPO = Path(__file__).resolve().parents[2]


def write_toy(dir_: Path, n: int = 24, seed: int = 0) -> str:
    path = dir_ / f"toy-{seed}-{n}.jsonl"
    if not path.exists():
        write_atomic(path, toy_examples(n, seed))
    return str(path)


def run_train(overrides: list[str], nproc: int = 1, extra_env: dict[str, str] | None = None,
              resume: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.update(extra_env or {})
    if nproc == 1:
        cmd = [sys.executable, "-m", "prm", "train"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "prm", "train"]
    cmd += ["--config", str(REPO / "configs" / "train_tiny.yaml")] + (["--resume"] if resume else []) + overrides
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "losses.jsonl").read_text().splitlines()]


def base_overrides(model: str, out: Path, data: str, **kw: object) -> list[str]:
    values: dict[str, object] = {"model": model, "output_dir": str(out), "data.train_files": f"[{data}]",
                                 "data.val_files": "[]", "max_steps": 6, "save_every": 0, "eval_every": 0,
                                 "log_every": 1, "precision": "fp32", "report_to": "none"}
    values.update(kw)
    return [f"{k}={v}" for k, v in values.items()]
