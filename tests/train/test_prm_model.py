"""prm/prm_model.py on the real SmolLM2 tokenizer: one marker id per step, whole-step truncation, scoring
reads the positions training reads, and the backbone's weights really load."""

from __future__ import annotations

import pytest
import torch

from prm.prm_model import add_step_marker, build_prm, encode_steps, load_prm
from prm.scoring import load_scorer
from prm.steps import STEP_MARKER

# Step texts ending in characters that a BPE could merge with "<|prm_step|>".
TRICKY = ["2 + 3 = 5 <", "so a |", "Шаг ки", "x <|prm_step|> y", "<|prm_step", "|", "ends with <|", "\n", "ки"]


@pytest.fixture(scope="module")
def prm(tiny_model_dir):
    return build_prm(tiny_model_dir)


def test_marker_is_one_special_token_and_idempotent(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    n = len(tok)
    mid = add_step_marker(tok)
    assert add_step_marker(tok) == mid
    assert len(tok) == n + 1
    assert tok.encode(STEP_MARKER, add_special_tokens=False) == [mid]
    assert STEP_MARKER in tok.all_special_tokens


def test_marker_count_equals_steps_on_tricky_texts(prm):
    _, tok = prm
    mid = tok.convert_tokens_to_ids(STEP_MARKER)
    labels = [i % 2 == 0 for i in range(len(TRICKY))]
    enc = encode_steps(tok, "Problem <| with ки", TRICKY, labels=labels)
    assert enc.n_steps_kept == len(TRICKY) == len(enc.marker_positions) == len(enc.labels)
    assert [enc.input_ids[p] for p in enc.marker_positions] == [mid] * len(TRICKY)
    assert enc.input_ids.count(mid) == len(TRICKY)
    # The text before each marker decodes to the step content (literal markers stripped, nothing merged).
    text = tok.decode(enc.input_ids[enc.marker_positions[0] - 8: enc.marker_positions[0]])
    assert text.endswith("= 5 <")


def test_truncation_drops_whole_trailing_steps(prm):
    _, tok = prm
    steps = [f"Step {i}: add {i} to the total, which gives {i * 7} <" for i in range(12)]
    labels = [True] * 6 + [False] * 6
    soft = [round(1 - i / 12, 3) for i in range(12)]
    full = encode_steps(tok, "Sum it.", steps, labels=labels, soft_labels=soft)
    for max_length in range(full.marker_positions[0] + 1, len(full.input_ids) + 3, 7):
        enc = encode_steps(tok, "Sum it.", steps, max_length=max_length, labels=labels, soft_labels=soft)
        assert len(enc.input_ids) <= max_length
        k = enc.n_steps_kept
        assert k == len(enc.marker_positions) == len(enc.labels) == len(enc.soft_labels)
        assert enc.marker_positions == full.marker_positions[:k]
        assert enc.labels == labels[:k] and enc.soft_labels == soft[:k]
        # Kept tokens are the full encoding's prefix: a step is never cut in half.
        assert enc.input_ids == full.input_ids[: len(enc.input_ids)]
        if k < len(steps):
            assert enc.input_ids[-1] == full.input_ids[full.marker_positions[k - 1]]
            assert full.marker_positions[k] >= max_length
    none = encode_steps(tok, "Sum it.", steps, max_length=full.marker_positions[0])
    assert none.n_steps_kept == 0 and none.marker_positions == []


def test_backbone_weights_load(tiny_model_dir, prm):
    from transformers import AutoModelForCausalLM

    model, tok = prm
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    a = lm.model.layers[1].mlp.down_proj.weight
    b = model.model.layers[1].mlp.down_proj.weight
    assert torch.equal(a, b)
    assert model.config.num_labels == 2
    assert model.config.step_marker == STEP_MARKER
    assert model.config.step_marker_id == tok.convert_tokens_to_ids(STEP_MARKER)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_scoring_reads_training_positions(prm, tmp_path):
    """The production scorer (`prm score`'s load_scorer -> OursScorer) reads P(correct) at the marker positions
    that encode_steps gives training, alone and batched with padding."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model, tok = prm
    model.eval()
    problem, steps = "What is 2+3?", ["2 + 3 = 5 <", "The answer is 5 |", "ки"]
    enc = encode_steps(tok, problem, steps)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0]
    expected = torch.softmax(logits[enc.marker_positions], -1)[:, 1].tolist()
    # The saved folder loads with plain transformers and with load_prm.
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    plain_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert plain.config.step_marker_id == plain_tok.convert_tokens_to_ids(STEP_MARKER)
    m2, _ = load_prm(str(tmp_path), "cpu", "fp32")
    assert m2.config.step_marker_id == plain.config.step_marker_id
    scorer = load_scorer(str(tmp_path), device="cpu", dtype="fp32")
    assert scorer.format == "ours"
    assert scorer.score([problem], [steps])[0] == pytest.approx(expected, abs=1e-6)
    # Batched with padding and different lengths: the same numbers.
    batch = scorer.score(["1?", problem, "long " * 40], [["a"], steps, ["b", "c"]], batch_size=3)
    assert batch[1] == pytest.approx(expected, abs=1e-5)
    assert [len(s) for s in batch] == [1, 3, 2]
