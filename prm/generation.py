"""Generation backends behind one interface: sample `n` continuations of many prompts at once.

A prompt is either raw text (used as is: MC rollouts continue a partly written assistant turn) or a
chat, a list of `{"role", "content"}` messages (the backend applies the chat template with the
generation prompt). Backends: transformers (anywhere), vLLM (GPUs), OpenAI-compatible HTTP (a judge
served elsewhere), and the simulated completer of the synthetic testbed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

Prompt = Union[str, list[dict[str, str]]]


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


class Generator(Protocol):
    """Everything a stage needs from a model that writes text."""

    name: str

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        """For each prompt, `sampling.n` completions; deterministic for a fixed `sampling.seed`."""
        ...
