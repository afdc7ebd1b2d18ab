"""Every collective of `prm train` goes through here, onto a device the process group's backend serves.

    torchrun --nproc_per_node 8 -m prm train --config configs/train.yaml   # nccl: tensors go to the GPU

NCCL serves CUDA tensors only: an all-reduce of a CPU tensor fails ("No backend type associated with device
type cpu"). The loop's counts, loss sums and stop flag are made on the host, so `Collectives` moves each one
to the engine's device first and checks, before calling torch, that the backend serves that device type:
a mistake is one clear error on CPU too (tests/train/test_collectives.py), not a failure at step 1 on the
first GPU run. tests/train/test_collectives.py also checks that no module of prm.train calls
torch.distributed's collectives directly.
"""

from __future__ import annotations

from typing import Any


class CollectiveDeviceError(RuntimeError):
    """A collective was handed a tensor on a device its backend does not serve."""


def served_device_types(backend_config: str) -> set[str]:
    """Device types a process group's backend config serves: 'cpu:gloo,cuda:gloo' -> {cpu, cuda};
    'cuda:nccl' -> {cuda}; a bare backend name ('nccl', 'gloo') as torch maps it."""
    bare = {"nccl": {"cuda"}, "gloo": {"cpu", "cuda"}, "mpi": {"cpu", "cuda"}, "ccl": {"cpu", "xpu"}}
    if ":" not in backend_config:
        return set(bare.get(backend_config.strip(), set()))
    return {part.split(":", 1)[0].strip() for part in backend_config.split(",") if ":" in part}


class Collectives:
    """The collectives of one training run: `device` is where tensors go (the engine's), `served` the device
    types of the backend (from the live process group unless given)."""

    def __init__(self, device: Any, served: set[str] | None = None):
        import torch
        import torch.distributed as dist

        self.device = torch.device(device)
        self.served = served if served is not None else served_device_types(dist.get_backend_config())
        if self.device.type not in self.served:
            raise CollectiveDeviceError(
                f"the process group's backend serves {sorted(self.served)} tensors, but training runs on "
                f"{self.device}: start it with a backend for {self.device.type}")

    def _check(self, tensor: Any, what: str) -> Any:
        if tensor.device.type not in self.served:
            raise CollectiveDeviceError(f"{what}: a tensor on {tensor.device}, which the process group's backend "
                                        f"({', '.join(sorted(self.served))}) does not serve")
        return tensor

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any:
        """All-reduce (sum or max) of `tensor` moved to the run's device; returns the reduced tensor there."""
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
        t = self._check(tensor.to(self.device), "all_reduce")
        dist.all_reduce(t, op=ops[op])
        return t

    def all_gather_object(self, obj: Any, world: int) -> list[Any]:
        """Every rank's `obj` (pickled; torch moves the bytes to the current CUDA device under nccl)."""
        import torch.distributed as dist

        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.device.type == "cuda" and dist.get_backend() == "nccl":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()
