"""`head=two_layer`: our PRM with the Qwen2.5-Math-PRM head (`score.0` Linear -> ReLU -> `score.2`), saved under
the released weight names, scored through the same code as the released `qwen_prm` format, loadable with plain
transformers (AutoModel + the two head tensors), and trained by `prm train` (a real DeepSpeed run)."""

from __future__ import annotations

import json

import pytest
import torch

from prm.errors import PrmError
from prm.prm_model import HEAD_WEIGHTS, build_prm, encode_steps, is_head_parameter, load_prm
from prm.scoring import detect_format, load_scorer
from prm.scoring.ours import OursScorer
from prm.scoring.qwen_prm import QwenPrmScorer
from prm.scoring.two_layer import TwoLayerHeadScorer
from testkit.tiny_checkpoints import make_tiny_checkpoint
from tests.train.trainer_helpers import base_overrides, losses, run_train, write_toy

PROBLEMS = ["What is 2 + 3 * 4?", "Solve 3x - 7 = 11 for x."]
STEPS = [["3 * 4 = 12.", "2 + 12 = 14.", "The answer is 14."], ["3x = 18.", "x = 6."]]


@pytest.fixture(scope="module")
def two_layer_dir(tmp_path_factory, tiny_model_dir) -> str:
    torch.manual_seed(0)
    model, tokenizer = build_prm(tiny_model_dir, head="two_layer")
    path = tmp_path_factory.mktemp("ours-two-layer")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def plain_transformers_scores(path: str, problem: str, steps: list[str]) -> list[float]:
    """The recipe in prm/prm_model.py's docstring: no remote code, no class of ours."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    body = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    h = body.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
    head.load_state_dict({k.removeprefix("score."): v for k, v in load_file(f"{path}/model.safetensors").items()
                          if k.startswith("score.")})
    enc = encode_steps(tokenizer, problem, steps)
    with torch.no_grad():
        hidden = body(input_ids=torch.tensor([enc.input_ids])).last_hidden_state[0]
        return head(hidden[enc.marker_positions]).softmax(-1)[:, 1].tolist()


def test_saved_with_the_released_head_layout(two_layer_dir):
    from safetensors import safe_open

    with safe_open(f"{two_layer_dir}/model.safetensors", "pt") as fh:
        names = set(fh.keys())
        h = fh.get_tensor("score.0.weight").shape
    assert {n for n in names if n.startswith("score.")} == set(HEAD_WEIGHTS)
    assert h[0] == h[1]  # Linear(h, h)
    config = json.loads(open(f"{two_layer_dir}/config.json").read())
    assert config["prm_head"] == "two_layer" and "step_marker" in config


def test_two_layer_scores_through_the_released_qwen_code(two_layer_dir, tmp_path):
    scorer = load_scorer(two_layer_dir, device="cpu")
    assert detect_format(two_layer_dir) == "ours" and scorer.format == "ours"
    released = load_scorer(make_tiny_checkpoint("qwen_prm", tmp_path / "qwen"), device="cpu")
    # One loading and scoring path: the body, the head and its reading are the released format's own code.
    for method in ("load", "head", "reference_step"):
        for s in (scorer, released):
            assert getattr(type(s), method).__qualname__ == f"TwoLayerHeadScorer.{method}"
    assert isinstance(scorer, TwoLayerHeadScorer) and isinstance(released, TwoLayerHeadScorer)
    assert type(scorer).head is QwenPrmScorer.head is TwoLayerHeadScorer.head

    fast = scorer.score(PROBLEMS, STEPS, batch_size=2)
    slow = scorer.reference_scores(PROBLEMS, STEPS)
    model, tok = load_prm(two_layer_dir, "cpu", "fp32")  # the token classifier training runs, head swapped in
    for problem, steps, got, want in zip(PROBLEMS, STEPS, fast, slow, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
        enc = encode_steps(tok, problem, steps)
        with torch.no_grad():  # the forward training runs: the token classifier's logits at the markers
            logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0, enc.marker_positions]
        assert got == pytest.approx(logits.softmax(-1)[:, 1].tolist(), abs=1e-4)
        assert got == pytest.approx(plain_transformers_scores(two_layer_dir, problem, steps), abs=1e-5)
    flat = [x for s in fast for x in s]
    assert max(flat) - min(flat) > 1e-3  # a head that reads the states, not a constant


def test_linear_head_unchanged_and_bad_head(tiny_model_dir, tmp_path):
    model, tok = build_prm(tiny_model_dir)
    assert isinstance(model.score, torch.nn.Linear) and not hasattr(model.config, "prm_head")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert type(load_scorer(str(tmp_path), device="cpu")) is OursScorer
    with pytest.raises(PrmError, match="unknown PRM head"):
        build_prm(tiny_model_dir, head="three_layer")


def test_two_layer_head_is_the_trained_head(tiny_model_dir):
    model, tok = build_prm(tiny_model_dir, head="two_layer")
    assert [n for n, _ in model.named_parameters() if is_head_parameter(model, n)] == [
        "score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"]
    enc = encode_steps(tok, PROBLEMS[0], STEPS[0], labels=[True, True, False])
    labels = torch.full((1, len(enc.input_ids)), -100)
    labels[0, enc.marker_positions] = torch.tensor([1, 1, 0])
    model.train()
    model(input_ids=torch.tensor([enc.input_ids]), labels=labels).loss.backward()
    assert model.score[0].weight.grad.abs().sum() > 0 and model.score[2].weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_prm_train_with_the_two_layer_head(tmp_path, tiny_model_dir):
    data = write_toy(tmp_path, 16, seed=0)
    out = tmp_path / "run"
    res = run_train(base_overrides(tiny_model_dir, out, data, max_steps=4, report_to="none",
                                   **{"head": "two_layer", "optim.lr": 2e-3}))
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(losses(out)) == 4
    scorer = load_scorer(str(out / "final"), device="cpu")
    assert isinstance(scorer, TwoLayerHeadScorer) and scorer.format == "ours"
    for got, want in zip(scorer.score(PROBLEMS, STEPS), scorer.reference_scores(PROBLEMS, STEPS), strict=True):
        assert got == pytest.approx(want, abs=1e-4)
