"""Shared fixtures: the real SmolLM2 tokenizer and tiny random models built over it (seconds, offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No hub at test time; wandb never phones home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Commands the tests start (`python -m prm ...`) run this checkout's code, not an installed copy
# (pyproject's `pythonpath` does the same for the test process itself).
_REPO = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH")) if p)


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): at most 2 workers. Each may run a vLLM engine, a two-process DeepSpeed job
    or a two-node local Slurm; the suite is timed and checked at 2 (CI's 2 cores)."""
    return max(1, min(2, len(os.sched_getaffinity(0))))


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's real tokenizer (converted once into the cache on first use)."""
    from prm.models import EMBEDDED_MODEL, load_tokenizer

    return load_tokenizer(EMBEDDED_MODEL)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> str:
    """A folder holding a tiny random causal LM (2 layers, hidden 64) and the real tokenizer."""
    from prm.models import save_tiny_causal_lm

    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


# A user's research folder often holds its own train.py or eval.py: the commands must never import them.
SHADOWING_NAMES = ("train", "eval", "data_synthesis", "testkit")


@pytest.fixture
def shadow_dir(tmp_path) -> Path:
    """A folder holding train.py, eval.py, data_synthesis.py and testkit.py, each raising on import."""
    folder = tmp_path / "research"
    folder.mkdir()
    for name in SHADOWING_NAMES:
        (folder / f"{name}.py").write_text(f"raise ImportError('SHADOWED: the folder\\'s own {name}.py was imported')\n")
    return folder


@pytest.fixture
def user_env() -> dict[str, str]:
    """The environment of a user with the package installed: no checkout on PYTHONPATH, no prm settings."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PRM_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false")
    return env
