"""Step scoring with our PRM and released PRMs: all steps of a solution in ONE forward pass, batched.

    from prm.scoring import load_scorer
    scorer = load_scorer("Qwen/Qwen2.5-Math-PRM-7B")            # format detected from the checkpoint
    scores = scorer.score(problems, steps, batch_size=16)        # list[list[float]], P(step correct)
    slow = scorer.reference_scores(problems, steps)              # the format's per-step-prefix procedure

    prm score --model PATH -i solutions.jsonl -o scored.jsonl    # the command line (eval/scoring_cli.py)

Formats (`format=`): `ours` (token classification at our step marker), `qwen_prm` (Qwen2.5-Math-PRM,
`<extra_0>`), `math_shepherd` (`ки` tags, P(+) vs P(-)), `rlhflow` (one chat turn per step, `+`/`-` answers),
`skywork` (value head). `format="auto"` reads, in order: `step_marker` in config.json (ours), an
architecture named `*ForProcessRewardModel` (qwen_prm), a value-head weight `v_head.*`/`value_head.*` or the
architecture `*ForPrmModel` (skywork), then for a plain causal LM the name (`shepherd`, `rlhflow`) and the
tokenizer: a chat template means rlhflow, a one-token `ки` tag means math_shepherd.
Device "auto" is CUDA when present, else CPU; dtype "auto" is bf16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from typing import Any

from prm.errors import PrmError
from prm.scoring_base import Encoded, Scorer, ScoreStats, plan_batches, read_config, weight_files
from prm.scoring_formats import SCORERS, SkyworkScorer
from prm.tiny_checkpoints import FORMATS, make_tiny_checkpoint

__all__ = ["FORMATS", "Encoded", "Scorer", "ScoreStats", "detect_format", "load_scorer", "make_tiny_checkpoint",
           "plan_batches", "reference_scores"]


def _is_one_token(tokenizer: Any, probe: str, text: str) -> bool:
    ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
    return bool(ids) and tokenizer.decode([ids[-1]]).strip() == text


def _weight_names(path: str) -> set[str]:
    try:
        return set(weight_files(path))
    except PrmError:  # no weights to look at: the other rules decide
        return set()


def detect_format(path: str, tokenizer: Any = None) -> str:
    """The PRM format of a checkpoint folder or hub id (see the module docstring for the rules)."""
    config = read_config(path)
    if "step_marker" in config or "step_marker_id" in config:
        return "ours"
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForProcessRewardModel") for a in archs):
        return "qwen_prm"
    if any(a.endswith("ForPrmModel") for a in archs) or SkyworkScorer.head_names(_weight_names(path)):
        return "skywork"
    if any(a.endswith("ForCausalLM") for a in archs):
        name = str(path).lower()
        if "shepherd" in name:
            return "math_shepherd"
        if "rlhflow" in name:
            return "rlhflow"
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.chat_template:
            return "rlhflow"
        if _is_one_token(tokenizer, "x ки", "ки"):
            return "math_shepherd"
    raise PrmError(f"{path}: cannot tell its PRM format (architectures {archs}); "
                   f"pass --format, one of {', '.join(FORMATS)}")


def load_scorer(path: str, format: str = "auto", device: str = "auto", dtype: str = "auto") -> Scorer:  # noqa: A002
    """A scorer for the checkpoint at `path` (folder, hub id or the embedded model's name)."""
    from transformers import AutoTokenizer

    from prm.models import clear_load_errors, resolve_device, resolve_dtype, resolve_model

    path = resolve_model(path)
    if format != "auto" and format not in SCORERS:
        raise PrmError(f"unknown PRM format '{format}'; choose one of auto, {', '.join(FORMATS)}")
    device = resolve_device(device)
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
