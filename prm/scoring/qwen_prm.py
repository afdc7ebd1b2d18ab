"""`qwen_prm`: Qwen2.5-Math-PRM (Qwen/Qwen2.5-Math-PRM-7B, -72B), read without its remote code.

The chat template renders system, problem and the answer with `<extra_0>` after each step; the head
`score.0` Linear(h, h) -> ReLU -> `score.2` Linear(h, 2) gives P(class 1) at each tag (prm/scoring/two_layer.py,
shared with `ours` checkpoints trained with that head). Detected by an architecture named
`*ForProcessRewardModel`.
"""

from __future__ import annotations

from typing import Any

from prm.errors import PrmError
from prm.scoring.base import Checkpoint, Encoded
from prm.scoring.two_layer import TwoLayerHeadScorer


class QwenPrmScorer(TwoLayerHeadScorer):
    """Qwen2.5-Math-PRM: chat template, `<extra_0>` after each step, 2-class head; P(class 1) at each tag."""

    format = "qwen_prm"
    SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
    TAG = "<extra_0>"

    def __init__(self, backbone: Any, score_head: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(backbone, score_head, tokenizer, device, dtype)
        self.init_encoding({})

    def init_encoding(self, config: dict[str, Any]) -> None:
        ids = self.tokenizer(self.TAG, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise PrmError(f"{self.TAG} is not one token in this tokenizer ({ids}); not a Qwen2.5-Math-PRM checkpoint")
        self.tag_id = ids[0]

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        return any(a.endswith("ForProcessRewardModel") for a in checkpoint.architectures)

    def _text(self, problem: str, steps: list[str]) -> str:
        answer = "".join(s.replace(self.TAG, "") + self.TAG for s in steps)
        messages = [{"role": "system", "content": self.SYSTEM},
                    {"role": "user", "content": problem.replace(self.TAG, "")},
                    {"role": "assistant", "content": answer}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def step_tag_id(self) -> int | None:
        return self.tag_id

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        ids = self.tokenizer.encode(self._text(problem, steps))
        return Encoded(ids, [i for i, t in enumerate(ids) if t == self.tag_id])
