"""The five PRM formats: how each one reads steps (facts in /work/shared/notes/released-formats.md).

Every class scores all steps of a solution from ONE forward pass (see prm/scoring_base.py) and keeps the
format's own per-step-prefix procedure in `reference_step`. Released checkpoints are read by weight name,
without remote code: the backbone is transformers' own class for the config's `model_type`, the head is
built here from its weights.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from prm.errors import PrmError
from prm.scoring_base import Encoded, Scorer, find_token, load_tensors, quiet_transformers, weight_files


def _load_backbone(path: str, dtype: Any, device: str) -> Any:
    """The bare transformer (no LM head) for the config's model_type; `model.*` weights are picked up."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    with quiet_transformers():
        config = AutoConfig.from_pretrained(path)
        cls = MODEL_MAPPING[type(config)]
        model = cls.from_pretrained(path, config=config, dtype=dtype, **_device_map(device))
    return model.to(device).eval()


def _device_map(device: str) -> dict[str, Any]:
    """Load straight onto a GPU (a 7B model never sits in CPU memory first); plain load on the CPU."""
    return {} if device == "cpu" else {"device_map": device}


def _max_positions(config: Any) -> int | None:
    return getattr(config, "max_position_embeddings", None)


def _strip(text: str, tag: str) -> str:
    return text.replace(tag, "")


class QwenPrmScorer(Scorer):
    """Qwen2.5-Math-PRM: chat template, `<extra_0>` after each step, 2-class head; P(class 1) at each tag."""

    format = "qwen_prm"
    SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
    TAG = "<extra_0>"

    def __init__(self, backbone: Any, score_head: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, _max_positions(backbone.config))
        self.backbone = backbone
        self.score_head = score_head
        ids = tokenizer(self.TAG, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise PrmError(f"{self.TAG} is not one token in this tokenizer ({ids}); not a Qwen2.5-Math-PRM checkpoint")
        self.tag_id = ids[0]

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> QwenPrmScorer:
        import torch

        backbone = _load_backbone(path, dtype, device)
        w = load_tensors(path, ["score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"])
        hidden, labels = w["score.0.weight"].shape[0], w["score.2.weight"].shape[0]
        head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, labels))
        head.load_state_dict({k.removeprefix("score."): v for k, v in w.items()})
        return cls(backbone, head.float().to(device).eval(), tokenizer, device, dtype)

    def _text(self, problem: str, steps: list[str]) -> str:
        answer = "".join(_strip(s, self.TAG) + self.TAG for s in steps)
        messages = [{"role": "system", "content": self.SYSTEM},
                    {"role": "user", "content": _strip(problem, self.TAG)},
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


class _CausalLMScorer(Scorer):
    """A causal LM read through two answer tokens: P(good) = softmax over (good, bad) logits."""

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, _max_positions(model.config))
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
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> _CausalLMScorer:
        from transformers import AutoModelForCausalLM

        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **_device_map(device))
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


class MathShepherdScorer(_CausalLMScorer):
    """Math-Shepherd: `problem + " " + steps each followed by " ки"` (joined by newlines); P(+) at each tag."""

    format = "math_shepherd"
    TAG = "ки"

    def answer_ids(self) -> tuple[int, int]:
        self.tag_id = find_token(self.tokenizer, f"x {self.TAG}", self.TAG, "step tag")
        # The tag is trained to be replaced by " +" / " -": the ids those take after a space.
        return (find_token(self.tokenizer, "x +", "+", "good token"),
                find_token(self.tokenizer, "x -", "-", "bad token"))

    def _text(self, problem: str, steps: list[str]) -> str:
        body = "\n".join(f"{_strip(s, self.TAG)} {self.TAG}" for s in steps)
        return f"{_strip(problem, self.TAG)} {body}"

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        ids = self.tokenizer.encode(self._text(problem, steps))
        return Encoded(ids, [i for i, t in enumerate(ids) if t == self.tag_id])

    def reference_step(self, problem: str, steps: list[str]) -> float:
        ids = self.tokenizer.encode(self._text(problem, steps))
        last_tag = max(i for i, t in enumerate(ids) if t == self.tag_id)
        return self._reference_prob(ids, last_tag)


class RLHFlowScorer(_CausalLMScorer):
    """RLHFlow: a chat, user turn = problem + " " + first step (then one step a turn), assistant "+" after each.

    One pass over the whole conversation; step k is read at the position that predicts assistant turn k's
    answer token. Those positions are found by rendering the chat with a sentinel as each answer, then
    tokenizing the real text once and mapping each answer's character offset to its token.
    """

    format = "rlhflow"
    SENTINEL = "\ue000prm-answer\ue000"

    def answer_ids(self) -> tuple[int, int]:
        if not self.tokenizer.chat_template:
            raise PrmError("an RLHFlow PRM needs a tokenizer with a chat template")
        return (find_token(self.tokenizer, "+", "+", "good token"),
                find_token(self.tokenizer, "-", "-", "bad token"))

    def _conversation(self, problem: str, steps: list[str], answer: str) -> list[dict[str, str]]:
        conv = []
        for k, step in enumerate(steps):
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


class SkyworkScorer(Scorer):
    """Skywork-o1-Open-PRM: bos + problem + "\\n", each step's ids + the step token; sigmoid(value head)."""

    format = "skywork"
    STEP_TOKEN = "\n"
    HEAD_NAMES = (("v_head.summary.weight", "v_head.summary.bias"), ("v_head.weight", "v_head.bias"),
                  ("value_head.weight", "value_head.bias"), ("value_head.summary.weight", "value_head.summary.bias"))

    def __init__(self, backbone: Any, value_head: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, _max_positions(backbone.config))
        self.backbone = backbone
        self.value_head = value_head
        self.step_id = tokenizer.encode(self.STEP_TOKEN)[-1]

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
        backbone = _load_backbone(path, dtype, device)
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


class OursScorer(Scorer):
    """Our checkpoint: token classification (2 labels), P(label 1) at the step marker after each step."""

    format = "ours"

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: Any):
        super().__init__(tokenizer, device, dtype, _max_positions(model.config))
        self.model = model
        self.backbone = model.base_model
        head = getattr(model, "score", None)
        self.classifier = head if head is not None else getattr(model, "classifier", None)
        if self.classifier is None:
            raise PrmError(f"{type(model).__name__}: no 'score' or 'classifier' head")
        from prm.prm_model import encode_steps

        self._encode_steps = encode_steps

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


SCORERS: dict[str, type[Scorer]] = {
    "ours": OursScorer,
    "qwen_prm": QwenPrmScorer,
    "math_shepherd": MathShepherdScorer,
    "rlhflow": RLHFlowScorer,
    "skywork": SkyworkScorer,
}
