"""Collectives of `prm train` go through prm.train.collectives: tensors move to the run's device, and a tensor
on a device the backend does not serve is one clear error, on CPU as it would be under NCCL on a GPU."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from prm.train.collectives import CollectiveDeviceError, Collectives, served_device_types

TRAIN = Path(__file__).resolve().parents[2] / "train"
COLLECTIVE_CALLS = {"all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list",
                    "reduce_scatter", "reduce", "barrier", "all_to_all", "gather", "scatter"}


@pytest.fixture(scope="module")
def gloo_group(tmp_path_factory):
    if not dist.is_initialized():
        store = dist.FileStore(str(tmp_path_factory.mktemp("pg") / "store"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_served_device_types():
    assert served_device_types("cuda:nccl") == {"cuda"}
    assert served_device_types("nccl") == {"cuda"}
    assert served_device_types("cpu:gloo,cuda:nccl") == {"cpu", "cuda"}
    assert served_device_types("cpu:gloo,cuda:gloo") == {"cpu", "cuda"}


def test_reduces_on_the_served_device(gloo_group):
    comm = Collectives("cpu")
    assert "cpu" in comm.served
    assert comm.all_reduce(torch.tensor([2.0, 3.0])).tolist() == [2.0, 3.0]
    assert comm.all_reduce(torch.tensor([4]), op="max").item() == 4
    assert comm.all_gather_object({"a": 1}, 1) == [{"a": 1}]
    comm.barrier()


def test_a_tensor_the_backend_does_not_serve_is_refused(gloo_group):
    # The step-1 failure on a GPU: an NCCL group (serves cuda only) handed a CPU tensor. Here the group is
    # gloo, so NCCL's device set is given: the helper must refuse before torch is called.
    with pytest.raises(CollectiveDeviceError, match=r"serves \['cuda'\].*training runs on cpu"):
        Collectives("cpu", served={"cuda"})
    comm = Collectives("cpu")
    comm.served = {"cuda"}
    with pytest.raises(CollectiveDeviceError, match="all_reduce: a tensor on cpu"):
        comm.all_reduce(torch.zeros(3))


def test_no_module_of_prm_train_calls_torch_collectives_directly():
    """Every collective goes through the checked helper (its own module excepted)."""
    offenders = []
    for path in sorted(TRAIN.glob("*.py")):
        if path.name == "collectives.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in COLLECTIVE_CALLS and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in {"dist", "distributed", "deepspeed"}):
                offenders.append(f"{path.name}:{node.lineno} {node.func.value.id}.{node.func.attr}")
            if isinstance(node, ast.ImportFrom) and node.module in ("torch.distributed", "deepspeed.comm"):
                offenders += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names
                              if a.name in COLLECTIVE_CALLS]
    assert not offenders, offenders
    assert os.path.exists(TRAIN / "collectives.py")
