"""Fixture `slurm`: a real local Slurm with two emulated nodes, started once per test module, stopped by PID."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from local_slurm import LocalSlurm, ensure_installed  # noqa: E402


@pytest.fixture(scope="module")
def slurm():
    reason = ensure_installed()
    if reason:
        pytest.skip(f"no local Slurm: {reason}")
    # munged refuses a socket below a directory that is not world-executable (pytest's tmp dirs are 0700).
    root = Path(tempfile.mkdtemp(prefix="prm-slurm-"))
    root.chmod(0o755)
    cluster = LocalSlurm(root, nodes=2, cpus=2)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
