"""The base of formats that read a plain causal LM through two answer tokens (math_shepherd, rlhflow)."""

from __future__ import annotations

from typing import Any

from prm.scoring.base import Scorer, device_map, max_positions, quiet_transformers


class CausalLMScorer(Scorer):
    """A causal LM read through two answer tokens: P(good) = softmax over (good, bad) logits."""

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, max_positions(model.config))
        self.model = model
        self.backbone = model.base_model
        self.good_id, self.bad_id = self.answer_ids()
        lm_head = model.get_output_embeddings()
        rows = [self.good_id, self.bad_id]
        self.head_weight = lm_head.weight[rows].detach().float()
        bias = getattr(lm_head, "bias", None)
        self.head_bias = None if bias is None else bias[rows].detach().float()
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def answer_ids(self) -> tuple[int, int]:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> CausalLMScorer:
        from transformers import AutoModelForCausalLM

        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **device_map(device))
        return cls(model.to(device).eval(), tokenizer, device, dtype)

    def head(self, hidden: Any) -> Any:
        import torch

        logits = hidden.float() @ self.head_weight.T  # only the two answer rows of the LM head
        if self.head_bias is not None:
            logits = logits + self.head_bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.softmax(-1)[:, 0]

    def _reference_prob(self, ids: list[int], position: int) -> float:
        import torch

        logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, position]
        return float(logits[[self.good_id, self.bad_id]].float().softmax(-1)[0])
