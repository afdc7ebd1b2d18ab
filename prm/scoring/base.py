"""The batching engine every PRM format shares: one forward pass per solution, little padding.

A format turns (problem, steps) into token ids plus the positions where its head is read, one per step
(`encode`), runs its backbone over a padded batch (`hidden_states`) and maps the hidden states gathered at
those positions to probabilities (`head`). `Scorer.score` sorts the solutions by length, cuts batches of at
most `batch_size` sequences (and `max_tokens` padded tokens), right-pads, runs the backbone once per batch and
puts the scores back in input order. `reference_scores` is each format's own published procedure: one
forward pass per step over the prefix that ends with that step, unbatched.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prm.checkpoint_files import read_config, weight_files
from prm.errors import PrmError


@dataclass
class Encoded:
    """Token ids of one solution and the positions (one per step) where the head is read."""

    input_ids: list[int]
    positions: list[int]


@dataclass
class ScoreStats:
    """What the last `score` call did: sequences, real tokens, padded tokens, forward passes."""

    sequences: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def plan_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None,
                 max_padding: float | None = None) -> list[list[int]]:
    """Indices grouped into batches, longest first, so sequences of similar length share a batch.

    A batch holds at most `batch_size` sequences and, when `max_tokens` is set, at most `max_tokens`
    padded tokens (a single longer sequence still gets a batch of its own). When `max_padding` is set, a
    batch also ends before a sequence that would make its pad positions more than that share of its real
    tokens (0.1: at most 10% extra work). Why: a forward pass costs its padded tokens, so a batch of mixed
    lengths can cost more than running them apart; on a CPU, where one solution already fills the matrix
    units, batching SmolLM2-135M gained 2% with no padding at all and lost 28% at 42% padding
    (bench/batch_padding.py; README, "Serving a PRM over HTTP").
    """
    if batch_size < 1:
        raise PrmError(f"batch size must be at least 1, got {batch_size}")
    if max_padding is not None and max_padding < 0:
        raise PrmError(f"max_padding must be at least 0, got {max_padding}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        padded = lengths[current[0]] * (len(current) + 1) if current else 0
        full = bool(current) and (
            len(current) >= batch_size
            or (max_tokens is not None and padded > max_tokens)
            or (max_padding is not None and padded > (1 + max_padding) * (real + lengths[i]))
        )
        if full:
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += lengths[i]
    if current:
        batches.append(current)
    return batches


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and weight-loading bars (unused heads are expected here)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class Checkpoint:
    """What format detection looks at, each read only when a format asks: config.json, weight names, the
    tokenizer and the name (folder or hub id, lower case)."""

    def __init__(self, path: str, tokenizer: Any = None):
        self.path = path
        self.name = str(path).lower()
        self._tokenizer = tokenizer

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        return read_config(self.path)

    @property
    def architectures(self) -> list[str]:
        return [str(a) for a in self.config.get("architectures") or []]

    @property
    def is_causal_lm(self) -> bool:
        return any(a.endswith("ForCausalLM") for a in self.architectures)

    @functools.cached_property
    def weight_names(self) -> set[str]:
        try:
            return set(weight_files(self.path))
        except PrmError:  # no weights to look at: the other rules decide
            return set()

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        return self._tokenizer


def load_backbone(path: str, dtype: Any, device: str) -> Any:
    """The bare transformer (no LM head) for the config's model_type; `model.*` weights are picked up."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    with quiet_transformers():
        config = AutoConfig.from_pretrained(path)
        cls = MODEL_MAPPING[type(config)]
        model = cls.from_pretrained(path, config=config, dtype=dtype, **device_map(device))
    return model.to(device).eval()


def device_map(device: str) -> dict[str, Any]:
    """Load straight onto a GPU (a 7B model never sits in CPU memory first); plain load on the CPU."""
    return {} if device == "cpu" else {"device_map": device}


def max_positions(config: Any) -> int | None:
    return getattr(config, "max_position_embeddings", None)


class Scorer:
    """Scores every step of each solution in one forward pass per solution, batched.

    Subclasses set `format` and `self.backbone` (a bare transformer returning `last_hidden_state`) and
    implement `claims`, `load`, `encode`, `head` and `reference_step`.
    """

    format: ClassVar[str] = ""
    backbone: Any

    def __init__(self, tokenizer: Any, device: str, dtype: Any, max_positions: int | None = None):
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.max_positions = max_positions
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.stats = ScoreStats()
        self._warned_long = False

    # ---- implemented by each format -------------------------------------------------------------
    @classmethod
    def claims(cls, checkpoint: Checkpoint) -> bool:
        """True when `checkpoint` is in this format (format="auto" asks the formats in SCORERS' order)."""
        return False

    @classmethod
    def load(cls, path: str, tokenizer: Any, device: str, dtype: Any) -> Scorer:
        """Read the checkpoint at `path` (weights by name, no remote code) onto `device` in `dtype`."""
        raise NotImplementedError

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        raise NotImplementedError

    def init_encoding(self, config: dict[str, Any]) -> None:
        """Set what `encode` needs besides the tokenizer (tag ids, the marker), from config.json's dict."""

    @classmethod
    def encoder(cls, path: str, tokenizer: Any) -> Scorer:
        """This format's `encode` without its weights: for an engine that runs the model itself (vLLM), so
        both backends feed the model the same token ids. `score`/`reference_scores` need `load` instead."""
        config = read_config(path)
        scorer = cls.__new__(cls)  # no model: only the encoding state that `init_encoding` sets
        Scorer.__init__(scorer, tokenizer, "cpu", None, config.get("max_position_embeddings"))
        scorer.init_encoding(config)
        return scorer

    def hidden_states(self, input_ids: Any, attention_mask: Any) -> Any:
        """Backbone forward over a padded batch: [batch, length, hidden] (the head is applied by `head`)."""
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state

    def head(self, hidden: Any) -> Any:
        """[n, hidden] states at step positions -> [n] probabilities (float32)."""
        raise NotImplementedError

    def reference_step(self, problem: str, steps: list[str]) -> float:
        """The format's own procedure for the LAST of `steps`: one unbatched forward pass over the prefix."""
        raise NotImplementedError

    def step_tag_id(self) -> int | None:
        """The one token that closes every step in this format's text (vLLM's `step_tag_id`), or None when
        steps are not marked by one token (then text cannot be scored as given, only as problem + steps)."""
        return None

    # ---- shared -----------------------------------------------------------------------------------
    def encode_many(self, problems: list[str], steps: list[list[str]]) -> list[Encoded]:
        """Every solution encoded; a format whose layout allows it tokenizes all of them in one call."""
        return [self.encode(p, s) for p, s in zip(problems, steps, strict=True)]

    def encode_all(self, problems: list[str], steps: list[list[str]]) -> list[Encoded]:
        if len(problems) != len(steps):
            raise PrmError(f"{len(problems)} problems for {len(steps)} step lists")
        empty = next((i for i, s in enumerate(steps) if not s), None)
        if empty is not None:
            raise PrmError(f"solution {empty}: no steps to score")
        encoded = self.encode_many(problems, steps)
        for index, (enc, s) in enumerate(zip(encoded, steps, strict=True)):
            if len(enc.positions) != len(s):
                raise PrmError(f"solution {index}: {len(enc.positions)} step positions found for {len(s)} steps "
                               f"(format {self.format}: the step tag must be one token, never produced by content)")
            if self.max_positions and len(enc.input_ids) > self.max_positions and not self._warned_long:
                print(f"warning: a solution has {len(enc.input_ids)} tokens, more than the model's "
                      f"{self.max_positions} positions; its later steps may score poorly", file=sys.stderr)
                self._warned_long = True
        return encoded

    def pad_batch(self, encoded: list[Encoded]) -> tuple[Any, Any]:
        """Right-padded input ids and attention mask on the scorer's device."""
        import torch

        width = max(len(e.input_ids) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids, dtype=torch.long)
            mask[row, : len(e.input_ids)] = 1
        return ids.to(self.device), mask.to(self.device)

    def score_encoded(self, encoded: list[Encoded], batch_size: int = 8, max_tokens: int | None = None,
                      progress: Any = None, max_padding: float | None = None) -> list[list[float]]:
        """Scores for already encoded solutions, batched by `plan_batches`; `progress` (a tqdm bar) is advanced
        per solution."""
        import torch

        out: list[list[float]] = [[] for _ in encoded]
        stats = ScoreStats(sequences=len(encoded))
        with torch.inference_mode():
            for batch in plan_batches([len(e.input_ids) for e in encoded], batch_size, max_tokens, max_padding):
                items = [encoded[i] for i in batch]
                ids, mask = self.pad_batch(items)
                hidden = self.hidden_states(ids, mask)
                rows = torch.tensor([r for r, e in enumerate(items) for _ in e.positions], device=hidden.device)
                cols = torch.tensor([p for e in items for p in e.positions], device=hidden.device)
                probs = self.head(hidden[rows, cols]).float().cpu().tolist()
                start = 0
                for i, e in zip(batch, items, strict=True):
                    out[i] = probs[start : start + len(e.positions)]
                    start += len(e.positions)
                stats.batches += 1
                stats.tokens += int(mask.sum())
                stats.padded_tokens += ids.numel()
                stats.steps += len(probs)
                if progress is not None:
                    progress.update(len(batch))
        self.stats = stats
        return out

    def score(self, problems: list[str], steps: list[list[str]], batch_size: int = 8,
              max_tokens: int | None = None, progress: Any = None) -> list[list[float]]:
        """P(step correct) for every step of every solution, in input order (probabilities in [0, 1])."""
        return self.score_encoded(self.encode_all(problems, steps), batch_size, max_tokens, progress)

    def reference_scores(self, problems: list[str], steps: list[list[str]]) -> list[list[float]]:
        """The format's reference procedure: per-step prefixes, one forward pass per step, unbatched."""
        import torch

        if len(problems) != len(steps):
            raise PrmError(f"{len(problems)} problems for {len(steps)} step lists")
        with torch.inference_mode():
            return [[float(self.reference_step(p, s[: k + 1])) for k in range(len(s))]
                    for p, s in zip(problems, steps, strict=True)]

    def describe(self) -> str:
        return f"{self.format} on {self.device} ({str(self.dtype).replace('torch.', '')})"

    def close(self) -> None:
        """Release what the scorer runs on beyond its weights (the vLLM backend's engine processes)."""


def is_one_token(tokenizer: Any, probe: str, text: str) -> bool:
    """Whether `text` at the end of `probe` (e.g. 'x ки') is one whole token."""
    ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
    return bool(ids) and tokenizer.decode([ids[-1]]).strip() == text


def find_token(tokenizer: Any, probe: str, text: str, what: str) -> int:
    """The id of `text` as it appears at the end of `probe` (e.g. 'x ки'), which must be one whole token."""
    ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
    token = ids[-1] if ids else None
    if token is None or tokenizer.decode([token]).strip() != text:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise PrmError(f"the {what} {text!r} is not one token in this tokenizer ({probe!r} -> {pieces}); "
                       f"this checkpoint does not read steps in that format")
    return int(token)
