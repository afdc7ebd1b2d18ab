"""docs/DESIGN.md, "Add a checkpoint format", followed step by step with a dummy format: its module (the
class below, as `prm/scoring/last_newline.py` would hold it), one line in SCORERS (done here with
monkeypatch), and `prm score` then detects and scores checkpoints in it.

    pytest tests/prm/test_add_format.py -q
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import prm.scoring
from prm.app.cli import main
from prm.scoring import SCORERS, detect_format, load_scorer
from prm.scoring.base import Checkpoint, Encoded, Scorer, load_backbone, max_positions


# ---- step 1: the format's module -------------------------------------------------------------------
class LastNewlineScorer(Scorer):
    """A dummy format: the problem, then each step followed by a newline; P(step correct) = sigmoid of the
    sum of the hidden state at that newline. Checkpoints say `"last_newline_prm": true` in config.json."""

    format = "last_newline"

    def __init__(self, backbone: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, max_positions(backbone.config))
        self.backbone = backbone
        self.newline_id = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        return bool(checkpoint.config.get("last_newline_prm"))

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> LastNewlineScorer:
        return cls(load_backbone(path, dtype, device), tokenizer, device, dtype)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        ids = list(self.tokenizer(problem + "\n", add_special_tokens=False)["input_ids"])
        positions = []
        for step in steps:
            ids += self.tokenizer(step.replace("\n", " "), add_special_tokens=False)["input_ids"]
            positions.append(len(ids))
            ids.append(self.newline_id)
        return Encoded(ids, positions)

    def head(self, hidden: Any) -> Any:
        return hidden.float().sum(-1).sigmoid()

    def reference_step(self, problem: str, steps: list[str]) -> float:
        import torch

        enc = self.encode(problem, steps)
        hidden = self.backbone(input_ids=torch.tensor([enc.input_ids], device=self.device)).last_hidden_state
        return float(self.head(hidden[0, enc.positions[-1]][None])[0])


# ---- step 2: one line in SCORERS (first: a plain causal LM would otherwise be claimed by rlhflow) ----------
@pytest.fixture()
def registered(monkeypatch):
    monkeypatch.setattr(prm.scoring, "SCORERS", {"last_newline": LastNewlineScorer, **SCORERS})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    from prm.models import save_tiny_causal_lm

    path = Path(save_tiny_causal_lm(tmp_path_factory.mktemp("last-newline")))
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "last_newline_prm": True}))
    return str(path)


PROBLEMS = ["What is 2 + 3?", "Compute 7 * 8, then add one."]
STEPS = [["2 + 3 = 5.", "The answer is 5."], ["7 * 8 = 56.", "56 + 1 = 57.", "The answer is 57."]]


def test_the_new_format_is_detected_and_scores_in_one_pass(registered, checkpoint):
    assert detect_format(checkpoint) == "last_newline"
    scorer = load_scorer(checkpoint, device="cpu", dtype="fp32")
    assert isinstance(scorer, LastNewlineScorer)
    one_pass = scorer.score(PROBLEMS, STEPS, batch_size=2)
    assert [len(s) for s in one_pass] == [2, 3] and all(0 < p < 1 for s in one_pass for p in s)
    assert one_pass == [pytest.approx(r, abs=1e-5) for r in scorer.reference_scores(PROBLEMS, STEPS)]


@pytest.mark.parametrize("flags", [[], ["--format", "last_newline"]], ids=["auto", "named"])
def test_prm_score_uses_the_new_format(registered, checkpoint, tmp_path, flags):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{k}", "generator": "test", "problem": p, "steps": s,
                                         "final_answer_correct": True, "label": -1}) + "\n"
                             for k, (p, s) in enumerate(zip(PROBLEMS, STEPS, strict=True))))
    out = tmp_path / "scored.jsonl"
    assert main(["score", "--model", checkpoint, "-i", str(items), "-o", str(out), "--device", "cpu",
                 "--dtype", "fp32", *flags]) == 0
    expected = load_scorer(checkpoint, device="cpu", dtype="fp32").score(PROBLEMS, STEPS)
    scored = [json.loads(line)["step_scores"] for line in out.read_text().splitlines()]
    assert scored == [pytest.approx(e, abs=1e-6) for e in expected]


def test_without_its_line_in_scorers_the_format_is_unknown(checkpoint, tmp_path, capsys):
    """Step 2 is what makes the format known: without it `--format last_newline` is a config error."""
    assert "last_newline" not in prm.scoring.SCORERS
    assert main(["score", "--model", checkpoint, "-i", str(tmp_path / "x.jsonl"), "-o", str(tmp_path / "o.jsonl"),
                 "--format", "last_newline"]) == 2
    assert "score.format must be auto or one of ours, qwen_prm" in capsys.readouterr().err
