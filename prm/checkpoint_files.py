"""Reading a checkpoint's files without building its model: config.json and a few named weights, from a local
folder or the hub cache, single-file or sharded. Shared by scoring (prm/scoring/) and the PRM model
(prm/prm_model.py, the two-layer head).

    from prm.checkpoint_files import load_tensors
    load_tensors("runs/tiny/final", ["score.0.weight"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.errors import PrmError
from prm.jsonl import read_json


def _local_or_cached(path: str, filename: str) -> str | None:
    """A checkpoint file from a local folder or the hub cache (None when absent)."""
    local = Path(path) / filename
    if Path(path).is_dir():
        return str(local) if local.exists() else None
    try:
        from transformers.utils import cached_file

        return cached_file(path, filename, _raise_exceptions_for_missing_entries=False)
    except Exception:  # noqa: BLE001 - offline, unknown repo: treated as absent
        return None


def read_config(path: str) -> dict[str, Any]:
    """The checkpoint's config.json as a plain dict."""
    file = _local_or_cached(path, "config.json")
    if file is None:
        raise PrmError(f"{path}: no config.json (not a model folder or hub id)")
    config = read_json(file)
    if not isinstance(config, dict):
        raise PrmError(f"{file}: expected a JSON object of model settings, got {type(config).__name__}")
    return config


def weight_files(path: str) -> dict[str, str]:
    """Weight name -> file holding it (safetensors or .bin, single file or sharded with an index)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = _local_or_cached(path, index_name)
        if index is not None:
            index_data = read_json(index)
            weight_map = index_data.get("weight_map") if isinstance(index_data, dict) else None
            if not isinstance(weight_map, dict):
                raise PrmError(f"{index}: no 'weight_map' object (not a weight index)")
            folder = Path(index).parent
            return {name: str(folder / file) for name, file in weight_map.items()}
    single = _local_or_cached(path, "model.safetensors")
    if single is not None:
        from safetensors import safe_open

        with safe_open(single, "pt") as fh:
            return {name: single for name in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    single = _local_or_cached(path, "pytorch_model.bin")
    if single is not None:
        import torch

        return {name: single for name in torch.load(single, map_location="cpu", weights_only=True)}
    raise PrmError(f"{path}: no model.safetensors, pytorch_model.bin or index file")


def load_tensors(path: str, names: list[str]) -> dict[str, Any]:
    """Read a few named tensors without loading the rest of the checkpoint."""
    import torch

    files = weight_files(path)
    missing = [n for n in names if n not in files]
    if missing:
        raise PrmError(f"{path}: checkpoint has no weight {missing[0]}")
    out: dict[str, Any] = {}
    for name in names:
        file = files[name]
        if file.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(file, "pt") as fh:
                out[name] = fh.get_tensor(name)
        else:
            out[name] = torch.load(file, map_location="cpu", weights_only=True)[name]
    return out
