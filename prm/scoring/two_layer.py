"""The Qwen2.5-Math-PRM head over a bare transformer body, shared by `qwen_prm` (the released checkpoints) and
`ours` checkpoints trained with `train.head=two_layer`: one loading and one scoring path for both; each format
only says how a solution is encoded and where each step is read.

Body: `load_backbone` (the `model.*` weights); head: `score.0` Linear(h, h) -> ReLU -> `score.2` Linear(h, 2)
(`prm.prm_model.load_two_layer_head`), run in fp32; a step's score is P(class 1) at its position.
"""

from __future__ import annotations

from typing import Any

from prm.scoring.base import Scorer, load_backbone, max_positions


class TwoLayerHeadScorer(Scorer):
    """A body and the two-layer head; subclasses implement `claims`, `encode` (and `load` when they need more)."""

    def __init__(self, backbone: Any, score_head: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, max_positions(backbone.config))
        self.backbone = backbone
        self.score_head = score_head

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> TwoLayerHeadScorer:
        from prm.prm_model import load_two_layer_head

        backbone = load_backbone(path, dtype, device)
        return cls(backbone, load_two_layer_head(path).to(device).eval(), tokenizer, device, dtype)

    def head(self, hidden: Any) -> Any:
        return self.score_head(hidden.float()).softmax(-1)[:, 1]

    def reference_step(self, problem: str, steps: list[str]) -> float:
        # The released procedure (Qwen's make_step_rewards): the unpadded prefix, P(class 1) at its last tag.
        import torch

        enc = self.encode(problem, steps)
        ids = torch.tensor([enc.input_ids], device=self.device)
        logits = self.score_head(self.backbone(input_ids=ids).last_hidden_state.float())
        return float(logits.softmax(-1)[0, enc.positions[-1], 1])
