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


def build_model(cfg: TrainConfig, per_example_attention: bool = False) -> tuple[Any, Any, Any]:
    """(model ready for DeepSpeed, tokenizer, peft LoraConfig or None); `per_example_attention`: packed rows
    attend per example (train/attention.py) instead of through a row-wide mask."""
    import torch

    from prm.prm_model import build_prm

    torch.manual_seed(cfg.seed)
    model, tokenizer = build_prm(cfg.model, dtype="fp32", head=cfg.head)
    if per_example_attention:
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
            model = get_peft_model(model, peft_config)
        except ValueError as exc:
            raise ConfigError(f"train.lora: {exc}") from None
    return model, tokenizer, peft_config
