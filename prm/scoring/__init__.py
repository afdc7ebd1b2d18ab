"""Step scoring with our PRM and released PRMs: all steps of a solution in ONE forward pass, batched.

    from prm.scoring import load_scorer
    scorer = load_scorer("Qwen/Qwen2.5-Math-PRM-7B")            # format detected from the checkpoint
    scores = scorer.score(problems, steps, batch_size=16)        # list[list[float]], P(step correct)
    slow = scorer.reference_scores(problems, steps)              # the format's per-step-prefix procedure

    prm score --model PATH -i solutions.jsonl -o scored.jsonl    # the command line (eval/scoring_cli.py)

Formats (`format=`), one module each in this package, registered in `SCORERS` below: `ours` (token
classification at our step marker), `qwen_prm` (Qwen2.5-Math-PRM, `<extra_0>`), `skywork` (value head),
`math_shepherd` (`ки` tags, P(+) vs P(-)), `rlhflow` (one chat turn per step, `+`/`-` answers).
`format="auto"` asks each format's `claims` in SCORERS' order and takes the first that claims the checkpoint:
`step_marker` in config.json (ours), an architecture `*ForProcessRewardModel` (qwen_prm), `*ForPrmModel` or a
value-head weight `v_head.*`/`value_head.*` (skywork), then for a plain causal LM the name (`shepherd`,
`rlhflow`) and the tokenizer: a one-token `ки` tag without a chat template means math_shepherd, a chat
template rlhflow. Adding a format: a module with its Scorer subclass and one line in SCORERS
(docs/DESIGN.md, "Add a checkpoint format").
Device "auto" is CUDA when present, else CPU; dtype "auto" is bf16 on CUDA, fp32 on CPU.
`backend="vllm"` (prm/scoring/vllm_pool.py) runs `ours` and `qwen_prm` checkpoints on vLLM's pooling runner with
the same token ids; other formats get one line naming the transformers backend.
"""

from __future__ import annotations

from typing import Any

from prm.errors import PrmError
from prm.scoring.base import Checkpoint, Encoded, Scorer, ScoreStats, plan_batches
from prm.scoring.math_shepherd import MathShepherdScorer
from prm.scoring.ours import OursScorer
from prm.scoring.qwen_prm import QwenPrmScorer
from prm.scoring.rlhflow import RLHFlowScorer
from prm.scoring.skywork import SkyworkScorer

__all__ = ["BACKENDS", "SCORERS", "Encoded", "Scorer", "ScoreStats", "detect_format", "load_scorer", "plan_batches",
           "reference_scores"]

# Format name -> scorer class. The order is the order in which format="auto" asks each class's `claims`:
# the formats told apart by config.json or weight names come before the plain causal LMs.
SCORERS: dict[str, type[Scorer]] = {
    "ours": OursScorer,
    "qwen_prm": QwenPrmScorer,
    "skywork": SkyworkScorer,
    "math_shepherd": MathShepherdScorer,
    "rlhflow": RLHFlowScorer,
}

# Scoring backends (`load_scorer(backend=...)`, `prm score --backend`): transformers runs every format;
# vllm runs the formats vLLM's pooling runner can read (prm.scoring.vllm_pool.POOLED) and refuses the others.
BACKENDS = ("transformers", "vllm")


def detect_format(path: str, tokenizer: Any = None) -> str:
    """The PRM format of a checkpoint folder or hub id: the first format in SCORERS that claims it."""
    checkpoint = Checkpoint(path, tokenizer)
    for name, scorer in SCORERS.items():
        if scorer.claims(checkpoint):
            return name
    raise PrmError(f"{path}: cannot tell its PRM format (architectures {checkpoint.architectures}); "
                   f"pass --format, one of {', '.join(SCORERS)}")


def load_scorer(path: str, format: str = "auto", device: str = "auto", dtype: str = "auto",  # noqa: A002
                backend: str = "transformers", engine_args: dict[str, Any] | None = None) -> Scorer:
    """A scorer for the checkpoint at `path` (folder, hub id or the embedded model's name).

    `backend` is one of BACKENDS: `transformers` (every format, prm/scoring/<format>.py) or `vllm` (vLLM's
    pooling runner, prm/scoring/vllm_pool.py: formats `ours` and `qwen_prm`; `engine_args` go to `vllm.LLM`).
    """
    from transformers import AutoTokenizer

    from prm.models import clear_load_errors, resolve_device, resolve_dtype, resolve_model

    if backend not in BACKENDS:
        raise PrmError(f"unknown scoring backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    path = resolve_model(path)
    if format != "auto" and format not in SCORERS:
        raise PrmError(f"unknown PRM format '{format}'; choose one of auto, {', '.join(SCORERS)}")
    device = resolve_device(device)
    if backend == "vllm":
        from prm.scoring.vllm_pool import VllmPoolScorer

        with clear_load_errors(path):
            tokenizer = AutoTokenizer.from_pretrained(path)
        fmt = detect_format(path, tokenizer) if format == "auto" else format
        return VllmPoolScorer.load_vllm(path, fmt, SCORERS[fmt], tokenizer, device, dtype, engine_args)
    if dtype == "auto" and device.startswith("cuda"):
        import torch

        dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        torch_dtype = resolve_dtype(dtype, device)
    except KeyError:
        raise PrmError(f"unknown dtype '{dtype}'; choose auto, bf16, fp16 or fp32") from None
    with clear_load_errors(path):
        tokenizer = AutoTokenizer.from_pretrained(path)
    fmt = detect_format(path, tokenizer) if format == "auto" else format
    return SCORERS[fmt].load(path, tokenizer, device, torch_dtype)


def reference_scores(scorer: Scorer, problems: list[str], steps: list[list[str]]) -> list[list[float]]:
    """The scorer's format's own procedure: per-step prefixes, one unbatched forward pass per step."""
    return scorer.reference_scores(problems, steps)
