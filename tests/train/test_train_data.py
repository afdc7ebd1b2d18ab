"""train/data.py + train/losses.py: validation before training, label alignment through tokenize/truncate/
pack, packed == padded loss on the tiny model (no attention across packed examples), TRL export."""

from __future__ import annotations

import json

import pytest
import torch
from prm.train.data import (
    IGNORE_INDEX,
    collate,
    export_trl,
    load_tokenized,
    make_batches,
    pack_rows,
    read_examples,
)
from prm.train.losses import step_loss, step_loss_sum

from prm.errors import InputError
from prm.prm_model import build_prm
from prm.steps import STEP_MARKER

ENDINGS = ["<", "|", "ки", "<|", " ", "prm_step|>"]


def _examples(n: int = 10) -> list[dict]:
    rows = []
    for i in range(n):
        k = 1 + i % 5
        steps = [f"Step {j}: {i} + {j} = {i + j} {ENDINGS[(i + j) % len(ENDINGS)]}" for j in range(k)]
        labels = [j < k - 1 or i % 2 == 0 for j in range(k)]
        soft = [0.9 if ok else 0.2 for ok in labels]
        rows.append({"id": f"ex{i}", "prompt": f"Problem {i}: compute {i} + something.", "completions": steps,
                     "labels": labels, "soft_labels": soft})
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def prm(tiny_model_dir):
    model, tok = build_prm(tiny_model_dir)
    return model.eval(), tok


def test_alignment_after_tokenize_truncate_pack(prm, tmp_path):
    _, tok = prm
    mid = tok.convert_tokens_to_ids(STEP_MARKER)
    path = _write(tmp_path / "t.jsonl", _examples(12))
    for max_length in (4096, 90):
        data = load_tokenized([path], tok, max_length)
        for ex in data:
            assert len(ex.labels) == len(ex.soft) == len(ex.marker_positions) >= 1
            assert [ex.input_ids[p] for p in ex.marker_positions] == [mid] * len(ex.labels)
            assert ex.input_ids.count(mid) == len(ex.labels) and len(ex) <= max_length
        for packed in (True, False):
            batches = make_batches(data, 3, packed, pack_length=256 if max_length > 90 else 90, seed=0, epoch=0)
            seen = 0
            for mb in batches:
                b = collate(mb, tok.pad_token_id, packed)
                marks = b["input_ids"] == mid
                assert torch.equal(marks, b["labels"] != IGNORE_INDEX)
                assert int(marks.sum()) == b["n_steps"] == sum(len(e.labels) for row in mb for e in row)
                assert torch.equal(~torch.isnan(b["soft"]), marks)
                seen += sum(len(row) for row in mb)
            assert seen == len(data)
    truncated = load_tokenized([path], tok, 90)
    assert sum(len(e.labels) for e in truncated) < sum(len(e.labels) for e in load_tokenized([path], tok, 4096))


def test_pack_rows_fit():
    class E:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    ex = [E(n) for n in (50, 30, 70, 20, 100, 10)]
    rows = pack_rows(ex, 100)  # type: ignore[arg-type]
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum(ex[i].n for i in r) <= 100 for r in rows)
    assert len(rows) == 3


@pytest.mark.parametrize("kind", ["hard", "soft", "soft_mse"])
def test_packed_loss_equals_padded_loss(prm, tmp_path, kind):
    model, tok = prm
    data = load_tokenized([_write(tmp_path / "t.jsonl", _examples(9))], tok, 4096)
    padded = collate([[e] for e in data], tok.pad_token_id, packed=False)
    rows = [[data[i] for i in r] for r in pack_rows(data, 300)]
    assert any(len(r) > 1 for r in rows)
    packed = collate(rows, tok.pad_token_id, packed=True, width=300)

    def loss(b, kind=kind):
        with torch.no_grad():
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        position_ids=b["position_ids"], use_cache=False)
        return step_loss(out.logits, b["labels"], b["soft"], kind, [1.5, 1.0])

    lp, lu = loss(packed), loss(padded)
    assert abs(lp.item() - lu.item()) < 1e-5
    wide = collate([[e] for e in data], tok.pad_token_id, packed=False, multiple=64)
    assert wide["input_ids"].shape[1] % 64 == 0 and abs(loss(wide).item() - lu.item()) < 1e-5
    # The check is not vacuous: the same packed row with plain positions (attention across examples) differs
    # (shown on the cross-entropy: the squared error of a tiny random model's P(correct) moves too little).
    leaky = dict(packed, position_ids=torch.arange(300).expand(len(rows), 300))
    assert abs(loss(leaky, "hard").item() - loss(padded, "hard").item()) > 1e-4


def test_losses_hand_computed():
    logits = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [2.0, 0.5]]])
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])
    soft = torch.tensor([[float("nan"), 0.25, 1.0]])
    lp = torch.log_softmax(logits[0], -1)
    s, n = step_loss_sum(logits, labels, soft, "hard", [2.0, 1.0])
    assert n == 2 and s.item() == pytest.approx(-(2 * lp[1, 0] + lp[2, 1]).item(), abs=1e-6)
    s, n = step_loss_sum(logits, labels, soft, "soft")
    want = -(0.75 * lp[1, 0] + 0.25 * lp[1, 1] + lp[2, 1])
    assert s.item() == pytest.approx(want.item(), abs=1e-6)
    # soft_mse: (P(correct) - v)^2, each step weighted by its target mass [1-v, v] of the class weights
    p1 = lp.exp()[:, 1]
    s, n = step_loss_sum(logits, labels, soft, "soft_mse", [2.0, 1.0])
    want = (2 * 0.75 + 0.25) * (p1[1] - 0.25) ** 2 + (p1[2] - 1.0) ** 2
    assert n == 2 and s.item() == pytest.approx(want.item(), abs=1e-6)
    with pytest.raises(ValueError, match="no soft target"):
        step_loss_sum(logits, labels, torch.full((1, 3), float("nan")), "soft_mse")
    # A soft target of exactly 0/1 equals the hard loss.
    assert step_loss(logits, labels, labels.clamp(min=0).float(), "soft").item() == pytest.approx(
        step_loss(logits, labels, None, "hard").item(), abs=1e-6)


def test_bad_records_fail_with_file_line_and_id(prm, tmp_path):
    _, tok = prm
    rows = _examples(4)
    rows[2]["labels"] = rows[2]["labels"] + [True]
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError) as err:
        load_tokenized([path], tok, 4096)
    assert err.value.line == 3 and err.value.field == "labels" and "ex2" in str(err.value)
    assert str(path) in str(err.value)

    rows = _examples(4)
    rows[1]["prompt"] = "a very long problem statement " * 40
    path = _write(tmp_path / "long.jsonl", rows)
    with pytest.raises(InputError) as err:
        load_tokenized([path], tok, 128)
    assert err.value.line == 2 and "ex1" in str(err.value) and "max_length=128" in str(err.value)

    path = tmp_path / "json.jsonl"
    path.write_text(json.dumps(_examples(1)[0]) + "\n{not json\n")
    with pytest.raises(InputError) as err:
        load_tokenized([str(path)], tok, 4096)
    assert err.value.line == 2


def test_export_trl_roundtrip(tmp_path):
    path = _write(tmp_path / "ours.jsonl", _examples(5))
    n = export_trl(read_examples(path), tmp_path / "trl.jsonl")
    assert n == 5
    lines = [json.loads(x) for x in (tmp_path / "trl.jsonl").read_text().splitlines()]
    assert set(lines[0]) == {"prompt", "completions", "labels"}
    back = read_examples(tmp_path / "trl.jsonl", "trl")
    assert [b.example.labels for b in back] == [r["labels"] for r in _examples(5)]


def test_training_positions_are_scoring_positions(prm, tmp_path):
    """P(correct) read at the training labels' positions of a packed batch == what `prm score` writes for the
    same solutions (the production path for our checkpoints: format detection, OursScorer, batched one pass)."""
    from prm.app.cli import main

    model, tok = prm
    path = _write(tmp_path / "t.jsonl", _examples(7))
    data = load_tokenized([path], tok, 4096)
    rows = [[data[i] for i in r] for r in pack_rows(data, 400)]
    b = collate(rows, tok.pad_token_id, packed=True, width=400)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=b["input_ids"], position_ids=b["position_ids"],
                                    use_cache=False).logits, -1)[..., 1]
    from_training = {}
    for r, row in enumerate(rows):
        at = 0
        for ex in row:
            labelled = (b["labels"][r, at:at + len(ex)] != IGNORE_INDEX).nonzero().flatten().tolist()
            assert labelled == ex.marker_positions
            from_training[ex.name] = probs[r, at:at + len(ex)][labelled].tolist()
            at += len(ex)
    model.save_pretrained(tmp_path / "prm")
    tok.save_pretrained(tmp_path / "prm")
    items = [{"id": row["id"], "generator": "test", "problem": row["prompt"], "steps": row["completions"],
              "final_answer_correct": True, "label": -1} for row in _examples(7)]
    _write(tmp_path / "items.jsonl", items)
    assert main(["score", "--model", str(tmp_path / "prm"), "-i", str(tmp_path / "items.jsonl"),
                 "-o", str(tmp_path / "scored.jsonl"), "--batch-size", "3", "--device", "cpu", "--dtype", "fp32"]) == 0
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scored] == [row["id"] for row in _examples(7)]
    for s in scored:
        assert s["step_scores"] == pytest.approx(from_training[s["id"]], abs=1e-5)
