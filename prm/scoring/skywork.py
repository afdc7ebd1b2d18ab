"""`skywork`: Skywork-o1-Open-PRM (Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B, -7B), read without remote code.

Text: bos + problem + "\\n", then each step's ids followed by the step token "\\n"; sigmoid of the value
head at each step token. Detected by an architecture named `*ForPrmModel` or a value-head weight
(`v_head.*`, `value_head.*`).
"""

from __future__ import annotations

from typing import Any

from prm.checkpoint_files import load_tensors, weight_files
from prm.errors import PrmError
from prm.scoring.base import Checkpoint, Encoded, Scorer, load_backbone, max_positions


class SkyworkScorer(Scorer):
    """Skywork-o1-Open-PRM: bos + problem + "\\n", each step's ids + the step token; sigmoid(value head)."""

    format = "skywork"
    STEP_TOKEN = "\n"
    HEAD_NAMES = (("v_head.summary.weight", "v_head.summary.bias"), ("v_head.weight", "v_head.bias"),
                  ("value_head.weight", "value_head.bias"), ("value_head.summary.weight", "value_head.summary.bias"))

    def __init__(self, backbone: Any, value_head: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, max_positions(backbone.config))
        self.backbone = backbone
        self.value_head = value_head
        self.step_id = tokenizer.encode(self.STEP_TOKEN)[-1]

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        return (any(a.endswith("ForPrmModel") for a in checkpoint.architectures)
                or cls.head_names(checkpoint.weight_names) is not None)

    @classmethod
    def head_names(cls, names: set[str]) -> tuple[str, str] | None:
        return next((pair for pair in cls.HEAD_NAMES if pair[0] in names), None)

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> SkyworkScorer:
        import torch

        names = set(weight_files(path))
        pair = cls.head_names(names)
        if pair is None:
            raise PrmError(f"{path}: no value head weight ({', '.join(p[0] for p in cls.HEAD_NAMES)})")
        w = load_tensors(path, [n for n in pair if n in names])
        weight = w[pair[0]]
        head = torch.nn.Linear(weight.shape[1], 1, bias=pair[1] in w)
        head.weight.data.copy_(weight.reshape(1, -1))
        if pair[1] in w:
            head.bias.data.copy_(w[pair[1]].reshape(1))
        backbone = load_backbone(path, dtype, device)
        return cls(backbone, head.float().to(device).eval(), tokenizer, device, dtype)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        return self.encode_many([problem], [steps])[0]

    def encode_many(self, problems: list[str], steps: list[list[str]]) -> list[Encoded]:
        # Two tokenizer calls for all solutions (problems, then every step) instead of two per solution.
        bos = self.tokenizer.bos_token or ""
        heads = self.tokenizer([bos + p + "\n" for p in problems])["input_ids"]
        flat = [s for solution in steps for s in solution]
        step_ids = self.tokenizer(flat)["input_ids"] if flat else []
        out, k = [], 0
        for head, solution in zip(heads, steps, strict=True):
            ids, positions = list(head), []
            for one in step_ids[k:k + len(solution)]:
                ids.extend(one)
                positions.append(len(ids))
                ids.append(self.step_id)
            k += len(solution)
            out.append(Encoded(ids, positions))
        return out

    def head(self, hidden: Any) -> Any:
        return self.value_head(hidden.float()).squeeze(-1).sigmoid()

    def reference_step(self, problem: str, steps: list[str]) -> float:
        import torch

        ids = torch.tensor([self.encode(problem, steps).input_ids], device=self.device)
        values = self.value_head(self.backbone(input_ids=ids).last_hidden_state.float()).squeeze(-1).sigmoid()
        return float(values[0, -1])  # Skywork's reward_flags: the step token closing the last step
