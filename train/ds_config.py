"""The DeepSpeed config of `prm train`: a preset (configs/deepspeed/zero2.json, zero3.json) or a JSON file
of your own, with every "auto" value filled from the `train:` section.

    prm train --config configs/train_tiny.yaml deepspeed=zero3
    prm train --config configs/train_tiny.yaml deepspeed=path/to/my_ds.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.train.config import TrainConfig

from prm.errors import ConfigError, InputError
from prm.jsonl import read_json

_REPO = Path(__file__).resolve().parent.parent


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """configs/deepspeed/<zero2|zero3>.json (or a path) with every "auto" value filled from cfg.

    A world of one shards nothing, so the zero2/zero3 presets run there without ZeRO (stage 0: no partition
    buffers, no gradient-bucket copies; bf16 as torch autocast); a JSON file of your own is taken as written
    (e.g. ZeRO-Offload on one GPU). The optimizer is torch's AdamW, fused (one kernel over all parameters) on
    CPU and CUDA: no DeepSpeed op to JIT-build."""
    path = Path(cfg.deepspeed)
    preset = cfg.deepspeed in ("zero2", "zero3")
    if preset:
        path = _REPO / "configs" / "deepspeed" / f"{cfg.deepspeed}.json"
    if not path.is_file():
        raise ConfigError(f"train.deepspeed: {cfg.deepspeed!r} is neither zero2, zero3 nor a JSON file")
    try:
        ds = read_json(path)
    except OSError as exc:
        raise ConfigError(f"train.deepspeed: cannot read {path}: {exc}") from None
    except InputError as exc:
        raise ConfigError(f"train.deepspeed: {exc.describe()}") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"train.deepspeed: {path}: expected a JSON object of DeepSpeed settings, "
                          f"got a {type(ds).__name__}")
    if cfg.precision == "auto":
        raise ValueError("train.precision 'auto' must be resolved (Trainer.run does) before building the DeepSpeed config")
    mb, gas = cfg.data.micro_batch_size, cfg.gradient_accumulation_steps
    auto = {
        "train_batch_size": mb * gas * world_size,
        "train_micro_batch_size_per_gpu": mb,
        "gradient_accumulation_steps": gas,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16.enabled": cfg.precision == "bf16",
        "optimizer.params.lr": cfg.optim.lr,
        "optimizer.params.betas": list(cfg.optim.betas),
        "optimizer.params.eps": cfg.optim.eps,
        "optimizer.params.weight_decay": cfg.optim.weight_decay,
        "optimizer.params.torch_adam": True,
        "optimizer.params.fused": True,  # torch >= 2.4 has a fused AdamW on CPU and CUDA
    }

    def fill(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                fill(value, name + ".")
            elif value == "auto":
                if name not in auto:
                    raise ConfigError(f"{path}: no value for \"auto\" key {name}")
                node[key] = auto[name]

    fill(ds, "")
    if "scheduler" in ds:
        raise ConfigError(f"{path}: remove 'scheduler' (the schedule comes from train.optim)")
    if preset and world_size == 1:
        ds["zero_optimization"] = {"stage": 0}
        if cfg.precision == "bf16":
            # DeepSpeed's bf16 without ZeRO would accumulate gradients in bf16; torch autocast keeps fp32
            # weights, gradients and AdamW, and runs the matmuls in bf16.
            ds["bf16"] = {"enabled": False}
            ds["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return ds
