"""The request and reply bodies of `prm serve` (pydantic): unknown fields, wrong types and empty steps are 422.

Counts and sizes (items per request, tokens per item) are the server's limits, checked in eval/serve.py.

Three shapes: the native `/v1/score`, OpenRLHF's remote reward model (`/get_reward`) and vLLM's pooling API
for PRMs (`/pooling`, the fields of vllm.entrypoints.pooling.pooling.protocol.PoolingCompletionRequest that a
PRM client sends; the others are refused by name rather than ignored).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScoreItem(Strict):
    """One solution: `steps`, or a `response` split into steps by the server's `split` rule."""

    problem: str
    steps: Annotated[list[str], Field(min_length=1)] | None = None
    response: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ScoreItem:
        if (self.steps is None) == (self.response is None):
            raise ValueError("give exactly one of 'steps' (a list of strings) or 'response' (a string)")
        return self


class ScoreRequest(Strict):
    items: Annotated[list[ScoreItem], Field(min_length=1)]


class ScoredItem(BaseModel):
    step_scores: list[float]
    steps: list[str] | None = None  # the split steps, for items given as a response


class ScoreReply(BaseModel):
    items: list[ScoredItem]
    model: str


class RewardRequest(Strict):
    """OpenRLHF's remote reward request: `query` is prompt + response as the trainer decoded it."""

    query: Annotated[list[str], Field(min_length=1)]
    prompts: list[str]
    labels: list[Any] | None = None

    @model_validator(mode="after")
    def _lengths(self) -> RewardRequest:
        if len(self.prompts) != len(self.query):
            raise ValueError(f"prompts has {len(self.prompts)} entries for {len(self.query)} queries")
        if self.labels is not None and len(self.labels) != len(self.query):
            raise ValueError(f"labels has {len(self.labels)} entries for {len(self.query)} queries")
        return self


class RewardReply(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[Any]]


class PoolingRequest(Strict):
    """vLLM's completion-style pooling request, as a PRM client sends it (`task: token_classify`)."""

    model_config = ConfigDict(extra="forbid", strict=False)  # vLLM coerces like this too
    input: str | Annotated[list[str], Field(min_length=1)] | Annotated[list[int], Field(min_length=1)] | \
        Annotated[list[list[int]], Field(min_length=1)]
    model: str | None = None
    task: Literal["token_classify"] | None = None
    user: str | None = None
    encoding_format: Literal["float"] = "float"
    add_special_tokens: bool = True
    use_activation: Literal[True] | None = None
    truncate_prompt_tokens: None = None

    def prompts(self) -> list[str | list[int]]:
        """The inputs as a list: one string or one token list becomes a list of one."""
        if isinstance(self.input, str) or (self.input and isinstance(self.input[0], int)):
            return [self.input]  # type: ignore[list-item]
        return list(self.input)  # type: ignore[arg-type]


class PoolingData(BaseModel):
    index: int
    object: str = "pooling"
    data: list[list[float]]


class Usage(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int = 0


class PoolingReply(BaseModel):
    id: str = Field(default_factory=lambda: f"pool-{uuid.uuid4().hex}")
    object: str = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[PoolingData]
    usage: Usage

