"""Shared types of the generation backends (prompts, sampling settings, completions, forced endings)
and the helpers they share: sampling checks, per-sample seeds, stop strings, prompt rendering.

A prompt is either raw text (used as is: MC rollouts continue a partly written assistant turn) or a
chat, a list of `{"role", "content"}` messages (the backend applies the chat template with the
generation prompt). Backends: transformers (anywhere), vLLM (GPUs), OpenAI-compatible HTTP (a judge
served elsewhere), and the simulated completer of the synthetic testbed.

    from prm.generation import GeneratorConfig, SamplingConfig, make_generator
    gen = make_generator(GeneratorConfig(backend="transformers", model="smollm2-135m-instruct"))
    gen.generate([[{"role": "user", "content": "1+1?"}]], SamplingConfig(n=4, max_new_tokens=64))

Seeding: every (prompt, sample index k) pair draws from its own random stream, seeded from
`sampling.seed`, the rendered prompt text and k. The transformers backend therefore gives the same
k-th sample of a prompt whatever else is in the batch; vLLM gets one seed per prompt (its n samples
come from that request's stream); OpenAI-compatible servers receive the seed and honour it if they can.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prm.errors import ConfigError, PrmError

Prompt = str | list[dict[str, str]]


@dataclass
class SamplingConfig:
    n: int = 1
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] | None = None


@dataclass
class Completion:
    text: str
    tokens: int  # generated tokens, the unit of annotation cost
    finish_reason: str  # "stop" | "length"
    constrained: bool = False  # the reply ends in one of the allowed choices by construction (generate_choice)


@dataclass
class Choices:
    """A reply that must end in one allowed ending: free text, then exactly one of `options[i]` for prompt i
    (whole endings such as `\\boxed{2}`). `generate_choice` of a backend honours it.

    The free part ends where the model writes `stop` (default: the endings' common prefix, the "lead", e.g.
    `\\boxed{`) or at max_new_tokens, and is cut back to before the last lead it holds (so an ending that
    repeats what the model wrote, e.g. a closing tag, is not written twice). `accept(i, reply)` drops the
    endings that would not make a valid whole reply after this free text (kept all when none passes).
    """

    options: list[list[str]]
    stop: str = ""
    reason: bool = True  # free text first (at most sampling.max_new_tokens); False: the reply is the ending alone
    accept: Callable[[int, str], bool] | None = None

    def check(self, n_prompts: int) -> None:
        if len(self.options) != n_prompts:
            raise PrmError(f"{len(self.options)} option lists for {n_prompts} prompts")
        for i, options in enumerate(self.options):
            if not options or not all(isinstance(o, str) and o for o in options):
                raise PrmError(f"prompt {i}: the allowed endings must be non-empty strings, got {options!r}")

    def lead(self, i: int) -> str:
        return os.path.commonprefix(self.options[i]) if len(self.options[i]) > 1 else ""

    def free_parts(self, generator: Any, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        """The free text of each sample, generated with `generator.generate` and cut back before the lead."""
        if not self.reason:
            return [[Completion("", 0, "stop") for _ in range(sampling.n)] for _ in prompts]
        stops = sorted({self.stop or self.lead(i) for i in range(len(prompts))} - {""})
        free = generator.generate(prompts, dataclasses.replace(sampling, stop=[*stops, *(sampling.stop or [])] or None))
        for i, row in enumerate(free):
            lead = self.lead(i)
            for c in row:
                if lead and lead in c.text:
                    c.text = c.text[: c.text.rindex(lead)]
        return free

    def candidates(self, i: int, free: str) -> list[str]:
        """The endings allowed after this free text."""
        ok = [o for o in self.options[i] if self.accept is None or self.accept(i, free + o)]
        return ok or self.options[i]

    @staticmethod
    def reply(free: Completion, ending: str, ending_tokens: int) -> Completion:
        return Completion(free.text + ending, free.tokens + ending_tokens, "stop", constrained=True)


class Generator(Protocol):
    """Everything a stage needs from a model that writes text. Backends that can force a reply's ending also
    have `generate_choice(prompts, sampling, choices: Choices)` (transformers, vLLM, OpenAI-compatible)."""

    name: str

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        """For each prompt, `sampling.n` completions; deterministic for a fixed `sampling.seed`."""
        ...


# ----------------------------------------------------------------------------------------------------
# Helpers shared by the backends


def check_sampling(sampling: SamplingConfig) -> None:
    """Reject sampling settings a backend would refuse (ConfigError names the key), before any work: every
    backend takes the same settings, so what vLLM refuses is refused here for all of them."""
    if sampling.n < 1:
        raise ConfigError(f"sampling n must be at least 1, got {sampling.n}")
    if sampling.max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be at least 1, got {sampling.max_new_tokens}")
    if not 0 <= sampling.temperature <= 2:  # vLLM's range
        raise ConfigError(f"temperature must be in [0, 2] (0 = greedy), got {sampling.temperature}")
    if sampling.temperature == 0 and sampling.n > 1:  # n copies of one greedy reply; vLLM refuses it
        raise ConfigError(f"temperature 0 (greedy) gives one reply: n must be 1, got n={sampling.n} "
                          "(use temperature > 0 for several samples)")
    if not 0.0 < sampling.top_p <= 1.0:
        raise ConfigError(f"top_p must be in (0, 1], got {sampling.top_p}")
    for s in sampling.stop or []:
        if not isinstance(s, str) or s == "":
            raise ConfigError(f"stop strings must be non-empty strings, got {s!r}")


def check_prompt(prompt: Any, index: int) -> None:
    if isinstance(prompt, str):
        return
    if isinstance(prompt, list) and prompt and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    ):
        return
    raise PrmError(f"prompt {index}: expected text or a non-empty list of {{'role', 'content'}} messages")


def derive_seed(seed: int, prompt_text: str, k: int = 0) -> int:
    """A 63-bit seed for sample k of one prompt: stable across runs, machines and batch layouts."""
    digest = hashlib.blake2b(f"{seed}\x00{k}\x00{prompt_text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def _pick_option(scores: list[float], temperature: float, seed: int) -> int:
    """Index of the chosen option: the best score when greedy, else drawn with weights exp(score / T)."""
    import math

    if temperature <= 0:
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    return random.Random(seed).choices(range(len(scores)), weights=weights)[0]


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """Cut `text` at the earliest occurrence of any stop string (the stop string itself is dropped)."""
    if not stop:
        return text, False
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_template(template: str, values: dict[str, Any]) -> str:
    """Replace `{name}` for each name in `values`, in one pass: other braces (`\\boxed{}`) stay as they
    are, and text inserted for one field is never searched for another."""
    return _FIELD.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """A chat as the text the model reads: the tokenizer's chat template with the generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise PrmError(
            "this model's tokenizer has no chat template: give raw-text prompts (e.g. prompt_style=text) "
            "or use an instruct model"
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: Any, text: str, chat: bool) -> list[int]:
    """Token ids of a prompt. A rendered chat already holds its special tokens, and so does raw text
    that starts with the BOS token; neither gets a second BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not chat and not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])

