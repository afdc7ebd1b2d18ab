"""`rlhflow`: RLHFlow PRMs (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data, -Mistral-Data), plain causal LMs.

Detected for a causal LM whose name holds `rlhflow`, or whose tokenizer has a chat template (math_shepherd,
asked first, has taken the causal LMs named `shepherd`).
"""

from __future__ import annotations

from bisect import bisect_right

from prm.errors import PrmError
from prm.scoring.base import Checkpoint, Encoded, find_token
from prm.scoring.causal_lm import CausalLMScorer


class RLHFlowScorer(CausalLMScorer):
    """RLHFlow: a chat, user turn = problem + " " + first step (then one step a turn, each step stripped),
    assistant "+" after each.

    One pass over the whole conversation; step k is read at the position that predicts assistant turn k's
    answer token. Those positions are found by rendering the chat with a sentinel as each answer, then
    tokenizing the real text once and mapping each answer's character offset to its token.
    """

    format = "rlhflow"
    SENTINEL = "\ue000prm-answer\ue000"

    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        return checkpoint.is_causal_lm and ("rlhflow" in checkpoint.name or bool(checkpoint.tokenizer.chat_template))

    def answer_ids(self) -> tuple[int, int]:
        if not self.tokenizer.chat_template:
            raise PrmError("an RLHFlow PRM needs a tokenizer with a chat template")
        return (find_token(self.tokenizer, "+", "+", "good token"),
                find_token(self.tokenizer, "-", "-", "bad token"))

    def _conversation(self, problem: str, steps: list[str], answer: str) -> list[dict[str, str]]:
        # As RLHFlow's prm_evaluate.py: each step stripped of outer whitespace (`[j.strip() for j in ans_list]`),
        # the problem as given, the first turn `problem + " " + step 0`.
        conv = []
        for k, step in enumerate(s.strip() for s in steps):
            text = f"{problem} {step}" if k == 0 else step
            conv.append({"role": "user", "content": text.replace(self.SENTINEL, "")})
            conv.append({"role": "assistant", "content": answer})
        return conv

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        rendered = self.tokenizer.apply_chat_template(self._conversation(problem, steps, self.SENTINEL),
                                                      tokenize=False)
        parts = rendered.split(self.SENTINEL)
        if len(parts) != len(steps) + 1:
            raise PrmError(f"the chat template rendered {len(parts) - 1} assistant answers for {len(steps)} steps")
        text = "+".join(parts)
        chars, at = [], 0
        for part in parts[:-1]:
            at += len(part)
            chars.append(at)
            at += 1
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        starts = [s for s, _ in offsets]
        positions = []
        for k, c in enumerate(chars):
            t = bisect_right(starts, c) - 1
            if t < 1 or ids[t] != self.good_id or not offsets[t][0] <= c < offsets[t][1]:
                raise PrmError(f"step {k}: the assistant answer '+' did not tokenize to its own token")
            positions.append(t - 1)
        return Encoded(ids, positions)

    def reference_step(self, problem: str, steps: list[str]) -> float:
        # RLHFlow's prm_evaluate.py: the conversation up to this step's "+", logits at the position that
        # predicts that "+" (index -3 for the Llama 3.1 template; found here as "before the last '+'").
        ids = self.tokenizer.apply_chat_template(self._conversation(problem, steps, "+"), tokenize=True,
                                                 return_dict=False)
        last_answer = max(i for i, t in enumerate(ids) if t == self.good_id)
        return self._reference_prob(ids, last_answer - 1)
