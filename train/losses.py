"""Step losses at marker positions: hard labels or soft labels (MC values v in [0, 1]).

  hard      2-class cross-entropy on the 0/1 label
  soft      cross-entropy against the target distribution [1-v, v]
  soft_mse  (P(correct) - v)^2, the Qwen2.5-Math-PRM paper's soft-label objective (MC value regression)

Each returns (sum, count) over the labelled positions so that a batch split into micro-batches, packed or
padded, averages the same way: loss = sum / count. `class_weights = [w_wrong, w_correct]` scales each
class's term (soft and soft_mse: weighted by the [1-v, v] target mass of each class).
"""

from __future__ import annotations

from typing import Any, Literal

IGNORE_INDEX = -100
LossKind = Literal["hard", "soft", "soft_mse"]
SOFT_LOSSES = ("soft", "soft_mse")


def step_loss_sum(logits: Any, labels: Any, soft: Any | None = None, kind: LossKind = "hard",
                  class_weights: list[float] | None = None, count: int | None = None,
                  check_soft: bool = True) -> tuple[Any, int]:
    """logits (B, T, 2), labels (B, T) with -100 off markers, soft (B, T) values in [0, 1] at markers.

    `count`: the labelled positions, when the caller knows them from the host copy of the labels (the
    trainer does: no device sync); `check_soft=False` skips the NaN check of soft targets (a sync), for
    data already checked when loaded.

    hard: -w[y] log p[y];  soft: -(w0 (1-v) log p0 + w1 v log p1);  soft_mse: (w0 (1-v) + w1 v) (p1 - v)^2.
    Returns (sum as a 0-dim tensor, count).
    """
    import torch

    mask = labels != IGNORE_INDEX
    if count is None:
        count = int(mask.sum())
    if count == 0:
        return logits.sum() * 0.0, 0
    # Every position is scored and the unlabelled ones weighted 0: no boolean indexing, whose output size
    # the host must read back (a device sync per micro-batch on a GPU).
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, L, 2)
    keep = mask.to(logp.dtype)
    w = torch.tensor(class_weights or [1.0, 1.0], dtype=logp.dtype, device=logp.device)
    if kind == "hard":
        y = labels.clamp(min=0)
        per = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1) * w[y]
    elif kind in SOFT_LOSSES:
        if soft is None:
            raise ValueError(f"{kind} loss needs soft targets")
        v = soft.to(logp.dtype)
        if check_soft and torch.isnan(v[mask]).any():
            raise ValueError(f"{kind} loss: a labelled step has no soft target")
        v = torch.where(mask, v, torch.zeros_like(v)).clamp(0.0, 1.0)
        if kind == "soft":
            per = -(w[0] * (1.0 - v) * logp[..., 0] + w[1] * v * logp[..., 1])
        else:
            per = (w[0] * (1.0 - v) + w[1] * v) * (logp[..., 1].exp() - v) ** 2
    else:
        raise ValueError(f"unknown loss {kind!r}: hard, soft or soft_mse")
    return (per * keep).sum(), count


def step_loss(logits: Any, labels: Any, soft: Any | None = None, kind: LossKind = "hard",
              class_weights: list[float] | None = None) -> Any:
    """Mean step loss over the labelled positions of a batch."""
    total, count = step_loss_sum(logits, labels, soft, kind, class_weights)
    return total / max(count, 1)
