"""`ours`: the checkpoints `prm train` writes (prm/prm_model.py): token classification with 2 labels,
P(label 1) at the step marker after each step. Detected by `step_marker` in config.json.
"""

from __future__ import annotations

from typing import Any

from prm.errors import PrmError
from prm.scoring.base import Checkpoint, Encoded, Scorer, max_positions, quiet_transformers


class OursScorer(Scorer):
    """Our checkpoint: token classification (2 labels), P(label 1) at the step marker after each step."""

    format = "ours"

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, max_positions(model.config))
        self.model = model
        self.backbone = model.base_model
        head = getattr(model, "score", None)
        self.classifier = head if head is not None else getattr(model, "classifier", None)
        if self.classifier is None:
            raise PrmError(f"{type(model).__name__}: no 'score' or 'classifier' head")
        from prm.prm_model import encode_steps

        self._encode_steps = encode_steps

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        return "step_marker" in checkpoint.config or "step_marker_id" in checkpoint.config

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> OursScorer:
        from prm.prm_model import load_prm

        with quiet_transformers():
            loaded = load_prm(path, device, dtype)
        model, tok = loaded if isinstance(loaded, tuple) else (loaded, tokenizer)
        return cls(model.eval(), tok, device, dtype)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        enc = self._encode_steps(self.tokenizer, problem, steps)
        return Encoded(list(enc.input_ids), list(enc.marker_positions))

    def head(self, hidden: Any) -> Any:
        return self.classifier(hidden).float().softmax(-1)[:, 1]

    def reference_step(self, problem: str, steps: list[str]) -> float:
        import torch

        enc = self._encode_steps(self.tokenizer, problem, steps)
        logits = self.model(input_ids=torch.tensor([list(enc.input_ids)], device=self.device)).logits
        return float(logits[0, list(enc.marker_positions)[-1]].float().softmax(-1)[1])
