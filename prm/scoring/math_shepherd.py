"""`math_shepherd`: Math-Shepherd (peiyi9979/math-shepherd-mistral-7b-prm), a plain causal LM.

Text: the problem, a space, then the steps joined by newlines, each followed by " ки"; P(+) vs P(-) read at
each tag. Detected for a causal LM whose name holds `shepherd`, or whose tokenizer has no chat template and
reads `ки` as one token.
"""

from __future__ import annotations

from prm.scoring.base import Checkpoint, Encoded, find_token, is_one_token
from prm.scoring.causal_lm import CausalLMScorer


class MathShepherdScorer(CausalLMScorer):
    """Math-Shepherd: `problem + " " + steps each followed by " ки"` (joined by newlines); P(+) at each tag."""

    format = "math_shepherd"
    TAG = "ки"

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        if not checkpoint.is_causal_lm:
            return False
        if "shepherd" in checkpoint.name:
            return True
        tokenizer = checkpoint.tokenizer
        return not tokenizer.chat_template and is_one_token(tokenizer, f"x {cls.TAG}", cls.TAG)

    def answer_ids(self) -> tuple[int, int]:
        self.tag_id = find_token(self.tokenizer, f"x {self.TAG}", self.TAG, "step tag")
        # The tag is trained to be replaced by " +" / " -": the ids those take after a space.
        return (find_token(self.tokenizer, "x +", "+", "good token"),
                find_token(self.tokenizer, "x -", "-", "bad token"))

    def step_tag_id(self) -> int | None:
        return self.tag_id

    def _text(self, problem: str, steps: list[str]) -> str:
        body = "\n".join(f"{s.replace(self.TAG, '')} {self.TAG}" for s in steps)
        return f"{problem.replace(self.TAG, '')} {body}"

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        ids = self.tokenizer.encode(self._text(problem, steps))
        return Encoded(ids, [i for i, t in enumerate(ids) if t == self.tag_id])

    def reference_step(self, problem: str, steps: list[str]) -> float:
        ids = self.tokenizer.encode(self._text(problem, steps))
        last_tag = max(i for i, t in enumerate(ids) if t == self.tag_id)
        return self._reference_prob(ids, last_tag)
