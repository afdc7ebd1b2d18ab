"""The model and optimizer pieces `prm train` hands to deepspeed.initialize: the PRM (frozen layers, LoRA,
gradient checkpointing), the parameter groups (head learning rate) and the learning-rate schedule.

    prm train --config configs/train_tiny.yaml trainable_layers=2 optim.head_lr=1e-3
"""

from __future__ import annotations

import math
from typing import Any

from prm.train.config import TrainConfig

from prm.errors import ConfigError
from prm.prm_model import is_head_parameter


def lr_lambda(cfg: TrainConfig, total_steps: int):
    """Warmup then constant / linear / cosine decay, as a multiplier of optim.lr."""
    o = cfg.optim
    warmup = o.warmup_steps if o.warmup_steps > 0 else int(round(o.warmup_ratio * total_steps))

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if o.schedule == "constant" or total_steps <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        decay = 1.0 - progress if o.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * decay

    return fn


def _blocks(model: Any) -> Any:
    """The backbone's list of transformer blocks (`layers` in Llama/Qwen/Mistral, `h` in GPT-2)."""
    import torch

    body = model.base_model
    for name in ("layers", "h", "blocks"):
        blocks = getattr(body, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ConfigError(f"train.trainable_layers: no list of transformer blocks found in {type(body).__name__}")


def freeze_lower_layers(model: Any, trainable: int) -> None:
    """Freeze all but the top `trainable` blocks; the head (and, with blocks trained, the final norm) stay
    trainable. The embeddings, the marker's row included, stay as initialized."""
    blocks = _blocks(model)
    if trainable > len(blocks):
        raise ConfigError(f"train.trainable_layers={trainable}: the model has {len(blocks)} blocks")
    keep = {id(p) for block in list(blocks)[len(blocks) - trainable:] for p in block.parameters()}
    body = model.base_model
    final_norm = getattr(body, "norm", None) or getattr(body, "ln_f", None)
    if trainable > 0 and final_norm is not None:
        keep |= {id(p) for p in final_norm.parameters()}
    for name, p in model.named_parameters():
        if not is_head_parameter(model, name) and id(p) not in keep:
            p.requires_grad_(False)


def parameter_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Trainable parameters as optimizer groups: the body at optim.lr, the score head at optim.head_lr."""
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if is_head_parameter(model, name) else body).append(p)
    groups = [{"params": body, "lr": cfg.optim.lr}] if body else []
    return groups + [{"params": head, "lr": cfg.optim.head_lr or cfg.optim.lr}]


ATTENTIONS = ("sdpa", "segments", "flash_attention_2")


def build_model(cfg: TrainConfig, attention: str = "sdpa", ds_config: dict[str, Any] | None = None
                ) -> tuple[Any, Any, Any]:
    """(model ready for DeepSpeed, tokenizer, peft LoraConfig or None).

    `attention`: sdpa (transformers' sdpa; packed rows through a row-wide mask), segments (packed rows attend
    per example, train/attention.py) or flash_attention_2 (packed rows through flash-attn's varlen kernel).
    The weights load in the dtype DeepSpeed trains them in (bf16 when its bf16 is on, never an fp32 copy to
    cast later), and under ZeRO-3 inside `deepspeed.zero.Init` (through transformers' HfDeepSpeedConfig),
    so each rank materialises only its partition of the weights."""
    import torch

    from prm.prm_model import build_prm

    if attention not in ATTENTIONS:
        raise ConfigError(f"train.attention: {attention!r} is not one of {', '.join(ATTENTIONS)}")
    ds_config = ds_config or {}
    bf16 = isinstance(ds_config.get("bf16"), dict) and ds_config["bf16"].get("enabled") is True
    zero3 = ds_config.get("zero_optimization", {}).get("stage", 0) == 3
    torch.manual_seed(cfg.seed)
    keep_alive = None
    if zero3:
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)  # while it lives, from_pretrained builds under zero.Init
    model, tokenizer = build_prm(cfg.model, dtype="bf16" if bf16 else "fp32", head=cfg.head,
                                 attn_implementation="sdpa" if attention == "segments" else attention)
    del keep_alive
    if attention == "segments":
        from prm.train.attention import use_segment_attention

        use_segment_attention(model)
    if cfg.trainable_layers >= 0:  # with LoRA too is rejected by TrainConfig.validate
        freeze_lower_layers(model, cfg.trainable_layers)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_config = None
    if cfg.lora.enabled:
        from peft import LoraConfig, TaskType, get_peft_model

        peft_config = LoraConfig(task_type=TaskType.TOKEN_CLS, r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                 lora_dropout=cfg.lora.dropout, target_modules=list(cfg.lora.targets),
                                 modules_to_save=list(cfg.lora.modules_to_save))
        try:
            # Adapters in the weights' dtype (peft would make them fp32 beside bf16 weights, and ZeRO-3
            # partitions each group as one buffer of one dtype).
            model = get_peft_model(model, peft_config, autocast_adapter_dtype=False)
        except ValueError as exc:
            raise ConfigError(f"train.lora: {exc}") from None
    return model, tokenizer, peft_config
