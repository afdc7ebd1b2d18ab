"""`qwen_prm`: Qwen2.5-Math-PRM (Qwen/Qwen2.5-Math-PRM-7B, -72B), read without its remote code.

The chat template renders system, problem and the answer with `<extra_0>` after each step; the head
`score.0` Linear(h, h) -> ReLU -> `score.2` Linear(h, 2) gives P(class 1) at each tag. Detected by an
architecture named `*ForProcessRewardModel`.
"""

from __future__ import annotations

from typing import Any

from prm.errors import PrmError
from prm.scoring.base import Checkpoint, Encoded, Scorer, load_backbone, load_tensors, max_positions


class QwenPrmScorer(Scorer):
    """Qwen2.5-Math-PRM: chat template, `<extra_0>` after each step, 2-class head; P(class 1) at each tag."""

    format = "qwen_prm"
    SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
    TAG = "<extra_0>"

    def __init__(self, backbone: Any, score_head: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, max_positions(backbone.config))
        self.backbone = backbone
        self.score_head = score_head
        ids = tokenizer(self.TAG, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise PrmError(f"{self.TAG} is not one token in this tokenizer ({ids}); not a Qwen2.5-Math-PRM checkpoint")
        self.tag_id = ids[0]

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        return any(a.endswith("ForProcessRewardModel") for a in checkpoint.architectures)

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> QwenPrmScorer:
        import torch

        backbone = load_backbone(path, dtype, device)
        w = load_tensors(path, ["score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"])
        hidden, labels = w["score.0.weight"].shape[0], w["score.2.weight"].shape[0]
        head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, labels))
        head.load_state_dict({k.removeprefix("score."): v for k, v in w.items()})
        return cls(backbone, head.float().to(device).eval(), tokenizer, device, dtype)

    def _text(self, problem: str, steps: list[str]) -> str:
        answer = "".join(s.replace(self.TAG, "") + self.TAG for s in steps)
        messages = [{"role": "system", "content": self.SYSTEM},
                    {"role": "user", "content": problem.replace(self.TAG, "")},
                    {"role": "assistant", "content": answer}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        ids = self.tokenizer.encode(self._text(problem, steps))
        return Encoded(ids, [i for i, t in enumerate(ids) if t == self.tag_id])

    def head(self, hidden: Any) -> Any:
        return self.score_head(hidden.float()).softmax(-1)[:, 1]

    def reference_step(self, problem: str, steps: list[str]) -> float:
        import torch

        ids = torch.tensor([self.tokenizer.encode(self._text(problem, steps))], device=self.device)
        logits = self.score_head(self.backbone(input_ids=ids).last_hidden_state.float())
        probs = logits.softmax(-1)[0][ids[0] == self.tag_id]  # Qwen's make_step_rewards: P(1) at every tag
        return float(probs[-1, 1])
