"""The DeepSpeed config of `prm train`: a preset (configs/deepspeed/zero2.json, zero3.json, zero3_offload.json)
or a JSON file of your own, with every "auto" value filled from the `train:` section, and checked before any
work starts (one line naming the file and field).

    prm train --config configs/train_tiny.yaml deepspeed=zero3
    prm train --config configs/train.yaml deepspeed=zero3_offload        # a 7B PRM on one 80 GB GPU
    prm train --config configs/train_tiny.yaml deepspeed=path/to/my_ds.json

The optimizer follows the offload setting: with its state offloaded (`offload_optimizer.device` cpu or nvme)
"auto" gives DeepSpeedCPUAdam (torch_adam false: DeepSpeed's vectorised CPU Adam, a JIT-built op; torch's
AdamW on the CPU is several times slower), otherwise torch's fused AdamW on the engine's device (one kernel
over all parameters, no DeepSpeed op to build).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.train.config import TrainConfig

from prm.errors import ConfigError, InputError
from prm.jsonl import read_json

_REPO = Path(__file__).resolve().parent.parent
PRESETS = ("zero2", "zero3", "zero3_offload")
OFFLOAD_DEVICES = ("none", "cpu", "nvme")


def _offloaded(section: Any) -> bool:
    return isinstance(section, dict) and section.get("device", "none") not in (None, "none")


def preset_path(name: str) -> Path:
    return _REPO / "configs" / "deepspeed" / f"{name}.json"


def deepspeed_config(cfg: TrainConfig, world_size: int, cuda: bool = False) -> dict[str, Any]:
    """configs/deepspeed/<preset>.json (or a path) with every "auto" value filled from cfg, checked.

    `cuda`: whether training runs on CUDA GPUs. On CPU a world of one shards nothing, so the presets run there
    without ZeRO (stage 0: no partition buffers, no gradient-bucket copies; bf16 as torch autocast); on a GPU
    a preset keeps its ZeRO stage at any world size (ZeRO's bf16 weights and offload are what let a large
    model fit one card). A JSON file of your own is taken as written."""
    path = Path(cfg.deepspeed)
    preset = cfg.deepspeed in PRESETS
    if preset:
        path = preset_path(cfg.deepspeed)
    if not path.is_file():
        raise ConfigError(f"train.deepspeed: {cfg.deepspeed!r} is neither {', '.join(PRESETS)} nor a JSON file")
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
    zero = ds.get("zero_optimization", {})
    offload_opt = _offloaded(zero.get("offload_optimizer")) if isinstance(zero, dict) else False
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
        # Offloaded state: DeepSpeedCPUAdam; else torch's AdamW, fused (torch >= 2.4 has it on CPU and CUDA).
        "optimizer.params.torch_adam": not offload_opt,
        "optimizer.params.fused": not offload_opt,
    }

    def fill(node: dict[str, Any], prefix: str) -> None:
        for key, value in list(node.items()):
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                fill(value, name + ".")
            elif value == "auto":
                if name not in auto:
                    raise ConfigError(f"{path}: no value for \"auto\" key {name}")
                node[key] = auto[name]

    fill(ds, "")
    params = ds.get("optimizer", {}).get("params") if isinstance(ds.get("optimizer"), dict) else None
    if isinstance(params, dict) and params.get("fused") is False and not params.get("torch_adam", False):
        params.pop("fused")  # DeepSpeedCPUAdam / FusedAdam take no `fused` argument
    if "scheduler" in ds:
        raise ConfigError(f"{path}: remove 'scheduler' (the schedule comes from train.optim)")
    check_deepspeed_config(ds, path, cfg, world_size, cuda)
    if preset and world_size == 1 and not cuda:
        ds["zero_optimization"] = {"stage": 0}
        if cfg.precision == "bf16":
            # DeepSpeed's bf16 without ZeRO would accumulate gradients in bf16; torch autocast keeps fp32
            # weights, gradients and AdamW, and runs the matmuls in bf16.
            ds["bf16"] = {"enabled": False}
            ds["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return ds


def check_deepspeed_config(ds: dict[str, Any], path: Path, cfg: TrainConfig, world_size: int, cuda: bool) -> None:
    """What this machine and launcher cannot run, as one ConfigError naming the file and field: fp16 where
    the device or the config can't, offload to a device that does not exist, a ZeRO stage out of range or
    one the run cannot use."""
    fp16 = ds.get("fp16", {})
    bf16 = ds.get("bf16", {})
    if isinstance(fp16, dict) and fp16.get("enabled") is True:
        if not cuda:
            raise ConfigError(f"{path}: fp16.enabled needs a CUDA GPU (DeepSpeed's fp16 loss scaling does not "
                              f"run on the CPU); use train.precision bf16 or fp32")
        if isinstance(bf16, dict) and bf16.get("enabled") is True:
            raise ConfigError(f"{path}: fp16.enabled and bf16.enabled are both true; choose one")
        if cfg.precision == "bf16":
            raise ConfigError(f"{path}: fp16.enabled with train.precision bf16; set precision fp32 for an fp16 "
                              f"JSON, or drop fp16")
    zero = ds.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise ConfigError(f"{path}: zero_optimization must be an object, got {type(zero).__name__}")
    stage = zero.get("stage", 0)
    if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        raise ConfigError(f"{path}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    for key in ("offload_optimizer", "offload_param"):
        section = zero.get(key)
        if section is None:
            continue
        device = section.get("device", "none") if isinstance(section, dict) else section
        if device not in OFFLOAD_DEVICES:
            raise ConfigError(f"{path}: zero_optimization.{key}.device must be one of "
                              f"{', '.join(OFFLOAD_DEVICES)}, got {device!r}")
        if device == "none":
            continue
        if key == "offload_param" and stage != 3:
            raise ConfigError(f"{path}: zero_optimization.offload_param needs stage 3, got stage {stage}")
        if key == "offload_optimizer" and stage == 0:
            raise ConfigError(f"{path}: zero_optimization.offload_optimizer needs stage 1, 2 or 3, got stage 0")
        if device == "nvme":
            nvme = section.get("nvme_path") if isinstance(section, dict) else None
            if not nvme or not Path(nvme).is_dir():
                raise ConfigError(f"{path}: zero_optimization.{key}.nvme_path {nvme!r} is not an existing folder")
