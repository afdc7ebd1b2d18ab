"""Step losses at marker positions: hard labels (2-class cross-entropy) or soft labels (MC values).

Both return (sum, count) over the labelled positions so that a batch split into micro-batches, packed or
padded, averages the same way: loss = sum / count. `class_weights = [w_wrong, w_correct]` scales each
class's term (soft: the [1-v, v] target mass of each class).
"""

from __future__ import annotations

from typing import Any, Literal

IGNORE_INDEX = -100
LossKind = Literal["hard", "soft"]


def step_loss_sum(logits: Any, labels: Any, soft: Any | None = None, kind: LossKind = "hard",
                  class_weights: list[float] | None = None) -> tuple[Any, int]:
    """logits (B, T, 2), labels (B, T) with -100 off markers, soft (B, T) values in [0, 1] at markers.

    hard: -w[y] log p[y];  soft: -(w0 (1-v) log p0 + w1 v log p1).  Returns (sum as a 0-dim tensor, count).
    """
    import torch

    mask = labels != IGNORE_INDEX
    count = int(mask.sum())
    sel = logits[mask].float()  # (N, 2)
    if count == 0:
        return logits.sum() * 0.0, 0
    logp = torch.log_softmax(sel, dim=-1)
    w = torch.tensor(class_weights or [1.0, 1.0], dtype=logp.dtype, device=logp.device)
    if kind == "hard":
        y = labels[mask]
        per = -logp.gather(1, y.unsqueeze(1)).squeeze(1) * w[y]
    elif kind == "soft":
        if soft is None:
            raise ValueError("soft loss needs soft targets")
        v = soft[mask].to(logp.dtype).clamp(0.0, 1.0)
        per = -(w[0] * (1.0 - v) * logp[:, 0] + w[1] * v * logp[:, 1])
    else:
        raise ValueError(f"unknown loss {kind!r}: hard or soft")
    return per.sum(), count


def step_loss(logits: Any, labels: Any, soft: Any | None = None, kind: LossKind = "hard",
              class_weights: list[float] | None = None) -> Any:
    """Mean step loss over the labelled positions of a batch."""
    total, count = step_loss_sum(logits, labels, soft, kind, class_weights)
    return total / max(count, 1)
