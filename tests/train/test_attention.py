"""train/attention.py: per-example causal attention on packed rows gives sdpa's block-diagonal logits and
gradients (the tiny model has grouped KV heads), padded batches go through sdpa, and the saved config does not
name the training-only implementation."""

from __future__ import annotations

import pytest
import torch
from prm.train.attention import NAME, segment_starts, use_segment_attention
from prm.train.data import collate, load_tokenized, pack_rows
from prm.train.losses import step_loss

from prm.prm_model import build_prm
from tests.train.test_train_data import _examples, _write


def test_segment_starts_follow_position_restarts():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    assert segment_starts(pos) == [[0, 3, 5], [0, 6]]
    assert segment_starts(torch.tensor([[5, 6, 7, 0]])) == [[0, 3]]  # a row need not start at position 0


def _forward(model, b):
    return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=b["position_ids"],
                 use_cache=False).logits


def test_segments_equal_sdpa_on_packed_and_padded_rows(tiny_model_dir, tmp_path):
    model, tok = build_prm(tiny_model_dir)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    data = load_tokenized([_write(tmp_path / "t.jsonl", _examples(9))], tok, 4096)
    rows = [[data[i] for i in r] for r in pack_rows(data, 300)]
    assert any(len(r) > 2 for r in rows)
    packed = collate(rows, tok.pad_token_id, packed=True, width=300)
    padded = collate([[e] for e in data], tok.pad_token_id, packed=False)
    real = packed["input_ids"] != tok.pad_token_id

    def run(b):
        model.zero_grad()
        logits = _forward(model, b)
        step_loss(logits, b["labels"], b["soft"]).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    ref_packed, ref_grads = run(packed)
    ref_padded, _ = run(padded)
    use_segment_attention(model)
    assert model.config._attn_implementation == NAME
    seg_packed, seg_grads = run(packed)
    seg_padded, _ = run(padded)
    assert torch.allclose(seg_packed[real], ref_packed[real], atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(seg_grads, ref_grads, strict=True))
    mask = padded["attention_mask"].bool()
    assert torch.equal(seg_padded[mask], ref_padded[mask])  # a mask given: sdpa itself
    model.save_pretrained(tmp_path / "saved")
    assert NAME not in (tmp_path / "saved" / "config.json").read_text()


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_packed_loss_with_segments_equals_padded_sdpa_loss(tiny_model_dir, tmp_path, kind):
    model, tok = build_prm(tiny_model_dir)
    model.eval()
    data = load_tokenized([_write(tmp_path / "t.jsonl", _examples(9))], tok, 4096)
    padded = collate([[e] for e in data], tok.pad_token_id, packed=False)
    with torch.no_grad():
        unpacked = step_loss(_forward(model, padded), padded["labels"], padded["soft"], kind, [1.5, 1.0])
        use_segment_attention(model)
        rows = [[data[i] for i in r] for r in pack_rows(data, 300)]
        packed = collate(rows, tok.pad_token_id, packed=True, width=300)
        loss = step_loss(_forward(model, packed), packed["labels"], packed["soft"], kind, [1.5, 1.0])
    assert abs(loss.item() - unpacked.item()) < 1e-5
