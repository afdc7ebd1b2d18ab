"""Attention for packed rows without flash-attn: causal attention over each packed example, not over the whole row.

A packed row holds several examples whose `position_ids` restart at 0. With sdpa, transformers turns the
restarts into a block-diagonal (rows x L x L) mask and computes every one of the L x L scores, most of them
masked out; per example, `is_causal` attention computes only the lower triangle of each block (on 1024-token
rows of ~200-token examples, about a tenth of the scores) and no mask is built. The result is the same
attention (tests/train/test_train_data.py checks the logits against sdpa). A batch with an attention mask
(padded rows, validation) goes to transformers' sdpa unchanged.

Used by `prm train` (train.attention: segments, or auto where flash-attn's varlen kernel is not available and
rows hold about two examples or more; prm.train.model_setup.build_model); the saved model says "sdpa".
"""

from __future__ import annotations

from typing import Any

NAME = "prm_packed_segments"


def segment_starts(position_ids: Any) -> list[list[int]]:
    """Per row, the indices where an example starts: 0 and every position that does not follow its left
    neighbour (transformers' own rule for packed sequences, masking_utils.find_packed_sequence_indices)."""
    import torch

    breaks = torch.ones_like(position_ids, dtype=torch.bool)
    breaks[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    return [row.nonzero().flatten().tolist() for row in breaks]


def segment_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
                      dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention interface: query (B, H, L, D), key/value (B, Hkv, L, D) -> (B, L, H, D)."""
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    # The trainer passes the segments' starts computed from the host copy of position_ids: reading them
    # from a GPU tensor here would sync the device in every layer.
    known = kwargs.pop("prm_segment_starts", None)
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    length = query.shape[2]
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    rows = []
    if known is None or len(known) != query.shape[0]:
        known = segment_starts(position_ids.expand(query.shape[0], -1))
    for b, starts in enumerate(known):
        bounds = [*starts, length]
        rows.append(torch.cat([
            F.scaled_dot_product_attention(query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
                                           dropout_p=p, is_causal=True, scale=scaling, enable_gqa=gqa)
            for s, e in zip(bounds[:-1], bounds[1:], strict=True)], dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def _mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask for packed rows (the segments are the mask); sdpa's padding mask for padded ones."""
    from transformers.masking_utils import sdpa_mask

    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def use_segment_attention(model: Any) -> None:
    """Register the implementation with transformers and switch `model` (a PreTrainedModel) to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, _mask)
    model.set_attn_implementation(NAME)
