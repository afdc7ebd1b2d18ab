"""`ours`: the checkpoints `prm train` writes (prm/prm_model.py): token classification with 2 labels,
P(label 1) at the step marker after each step. Detected by `step_marker` in config.json.

A checkpoint trained with `train.head=two_layer` (`prm_head: two_layer` in config.json) has the
Qwen2.5-Math-PRM head and is scored by the released format's code (prm/scoring/two_layer.py), with our
encoding: `OursTwoLayerScorer`.
"""

from __future__ import annotations

from typing import Any

from prm.errors import PrmError
from prm.scoring.base import Checkpoint, Encoded, Scorer, max_positions, quiet_transformers
from prm.scoring.two_layer import TwoLayerHeadScorer
from prm.steps import STEP_MARKER


class OursEncoding:
    """Our encoding, for both our heads: the steps as the assistant turn, our marker (config.json's `step_marker`)
    after each. It reads only the config, so a scorer without weights (`Scorer.encoder`, for vLLM) has it too."""

    tokenizer: Any

    def init_encoding(self, config: dict[str, Any]) -> None:
        from prm.prm_model import encode_steps, marker_id

        self.marker = config.get("step_marker") or STEP_MARKER
        marker_id(self.tokenizer, self.marker)  # a folder without its marker cannot be read
        self._encode_steps = encode_steps

    def step_tag_id(self) -> int | None:
        from prm.prm_model import marker_id

        return marker_id(self.tokenizer, self.marker)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        enc = self._encode_steps(self.tokenizer, problem, steps, marker=self.marker)
        return Encoded(list(enc.input_ids), list(enc.marker_positions))


class OursScorer(OursEncoding, Scorer):
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
        self.init_encoding(model.config.to_dict())

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        return "step_marker" in checkpoint.config or "step_marker_id" in checkpoint.config

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> Scorer:
        from prm.prm_model import load_prm

        if Checkpoint(path, tokenizer).config.get("prm_head") == "two_layer":
            return OursTwoLayerScorer.load(path, tokenizer, device, dtype)
        with quiet_transformers():
            loaded = load_prm(path, device, dtype)
        model, tok = loaded if isinstance(loaded, tuple) else (loaded, tokenizer)
        return cls(model.eval(), tok, device, dtype)

    def head(self, hidden: Any) -> Any:
        return self.classifier(hidden).float().softmax(-1)[:, 1]

    def reference_step(self, problem: str, steps: list[str]) -> float:
        import torch

        enc = self._encode_steps(self.tokenizer, problem, steps, marker=self.marker)
        logits = self.model(input_ids=torch.tensor([list(enc.input_ids)], device=self.device)).logits
        return float(logits[0, list(enc.marker_positions)[-1]].float().softmax(-1)[1])


class OursTwoLayerScorer(OursEncoding, TwoLayerHeadScorer):
    """Our checkpoint with the Qwen2.5-Math-PRM head: our encoding (step marker), the released format's body,
    head and reading."""

    format = "ours"

    def __init__(self, backbone: Any, score_head: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(backbone, score_head, tokenizer, device, dtype)
        self.init_encoding(backbone.config.to_dict())
