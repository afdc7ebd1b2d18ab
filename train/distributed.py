"""Process-group setup, DeepSpeed's op folder, and the preemption signals of `prm train`.

    prm train --config configs/train_tiny.yaml                                  # a world of one
    torchrun --nproc_per_node 2 -m prm train --config configs/train_tiny.yaml   # gloo on CPU, nccl on CUDA

SIGTERM or SIGUSR1 (Slurm preemption) only sets a flag here; the loop (prm.train.trainer) all-reduces it at
the end of each optimizer step, checkpoints, and exits with PREEMPTED_EXIT_CODE.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: checkpointed on a signal; rerun with --resume
_stop_signal: int = 0


def _on_signal(signum: int, frame: Any) -> None:
    global _stop_signal
    _stop_signal = signum


def catch_stop_signals() -> None:
    """SIGTERM / SIGUSR1 set the stop flag instead of killing the process."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, _on_signal)


def ignore_stop_signals() -> None:
    """After the preemption checkpoint: a second signal (the launcher stopping its workers) must not turn
    exit 75 into a kill."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def stop_signal() -> int:
    """The signal number received since catch_stop_signals (0 = none)."""
    return _stop_signal


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_own_op_cache() -> Path:
    """Point torch's JIT-extension folder (where DeepSpeed builds its ops) at a folder of our own, keyed by the
    torch and DeepSpeed versions, unless TORCH_EXTENSIONS_DIR is set already. In the shared default
    (~/.cache/torch_extensions) two installs with different versions rebuild each other's ops on every run."""
    from importlib.metadata import version

    from prm.models import cache_dir

    key = f"torch-{version('torch')}_deepspeed-{version('deepspeed')}"
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions" / key))
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])


def process_start() -> float:
    """When this process started (seconds since the epoch)."""
    import psutil

    return psutil.Process().create_time()


def init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); a bare `python` run becomes a world of one."""
    use_own_op_cache()
    import deepspeed
    import deepspeed.ops
    import torch

    if "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    if os.environ["WORLD_SIZE"] == "1":
        # A world of one has no peer to share memory with: DeepSpeed's CPU shared-memory allreduce op is not
        # built (a JIT compile), nor are the other ops probed. Its only reader is comm's build_shm_op.
        deepspeed.ops.__compatible_ops__ = {"deepspeed_shm_comm": False}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False, verbose=False)
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
