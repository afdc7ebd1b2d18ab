"""`prm serve`: a PRM checkpoint as a batched HTTP reward service for RL trainers and search loops.

    prm serve --model CKPT [--format auto] --host 127.0.0.1 --port 8000
    prm serve --model Qwen/Qwen2.5-Math-PRM-7B --aggregate min --batch-size 32 --max-tokens 32768
    prm serve --model runs/quickstart/train/final --backend vllm      # vLLM's pooling runner (ours, qwen_prm)
    PRM_API_KEY=secret prm serve --model runs/quickstart/train/final --config configs/serve.yaml

Any checkpoint `prm score` reads (format detected, prm.scoring.load_scorer), on CPU or GPU. Endpoints:

    GET  /health       status, model, format, queue length, batching counters (no API key needed)
    POST /v1/score     {"items": [{"problem", "steps": [...]} | {"problem", "response"}]} -> {"items": [{"step_scores"}]}
    POST /get_reward   OpenRLHF's remote reward: {"query", "prompts", "labels"} -> {"rewards", "scores", "extra_logs"}
    POST /pooling      vLLM's pooling API for PRMs: {"model", "input", "task": "token_classify"}
                       -> {"data": [{"index", "data": [[p_neg, p_pos], ...]}]}

Concurrent requests are scored together (eval/serve_batching.py); the scores equal `prm score`'s for the same
solutions. Errors are JSON `{"error": {"message", "type", "param", "code"}}` (`param` names the field):
malformed JSON 400, wrong types / unknown fields / empty steps 422, a body over `max_body_bytes` or more than
`max_items` items 413, an item over `max_item_tokens` tokens 422, a missing or wrong API key 401 (the key is
read from the environment variable `api_key_env`, PRM_API_KEY by default; unset means no key). SIGTERM stops
taking connections, finishes the requests in flight and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
from dataclasses import dataclass
from typing import Any

from prm.config import option
from prm.errors import ConfigError, PrmError
from prm.stage import StageCommand

SPLITS = ("auto", "blank_line", "newline", "step_prefix")
AGGREGATES = ("min", "product", "prod", "last", "mean", "geomean")


@dataclass
class ServeConfig:
    """The `serve:` section of a config file (flags override it)."""

    model: str | None = option(None, help="PRM checkpoint: folder, hub id or embedded model name")
    format: str = option("auto", help="auto (detected) or a format of prm.scoring.SCORERS: ours, qwen_prm, ...")
    device: str = option("auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    dtype: str = option("auto", help="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32")
    backend: str = option("transformers", help="scoring backend: transformers (every format) or vllm (vLLM's "
                                               "pooling runner: ours and qwen_prm; batches by itself)")
    host: str = option("127.0.0.1", help="address to listen on (0.0.0.0 to serve other nodes)")
    port: int = option(8000, help="TCP port")
    served_model_name: str | None = option(None, help="the name /pooling answers to (default: the model path)")
    batch_size: int = option(16, help="solutions per forward pass at most")
    max_tokens: int = option(16384, help="padded tokens per forward pass at most (a longer solution runs alone)")
    max_padding: float | None = option(0.1, help="a forward pass's pad positions at most this share of its real "
                                                 "tokens (longer rounds split by length; null: no limit)")
    gather: int = option(64, help="solutions taken from the queue per batching round (whole requests)")
    split: str = option("auto", help="how a `response` splits into steps: auto, blank_line, newline, step_prefix")
    aggregate: str = option("min", help="/get_reward's reward from step scores: min, product (prod), last, ...")
    log_step_scores: bool = option(True, help="/get_reward: put each solution's step list in extra_logs "
                                              "(false when the trainer turns every extra_logs value into a scalar)")
    max_items: int = option(256, help="solutions per request at most (more: 413)")
    max_item_tokens: int | None = option(None, help="tokens per solution at most (default: the model's positions)")
    max_body_bytes: int = option(16 * 2**20, help="request body size at most (more: 413)")
    api_key_env: str = option("PRM_API_KEY", help="environment variable holding the bearer API key (unset: none)")
    graceful_timeout: float | None = option(None, help="seconds SIGTERM waits for requests in flight (none: all)")

    def __post_init__(self) -> None:
        from prm.scoring import BACKENDS, SCORERS

        if self.format != "auto" and self.format not in SCORERS:
            raise ConfigError(f"serve.format must be auto or one of {', '.join(SCORERS)}, got {self.format!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"serve.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"serve.split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"serve.aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"serve.port must be 0..65535, got {self.port}")
        for name in ("batch_size", "max_tokens", "gather", "max_items", "max_item_tokens", "max_body_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"serve.{name} must be at least 1, got {value}")
        if self.max_padding is not None and self.max_padding < 0:
            raise ConfigError(f"serve.max_padding must be at least 0 (or null: no limit), got {self.max_padding}")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="PRM checkpoint (folder, hub id)")
    p.add_argument("--format", default=None, help="checkpoint format (default auto: detected)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--backend", default=None, help="transformers (default) or vllm (ours and qwen_prm)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None, help="padded tokens per forward pass at most")
    p.add_argument("--aggregate", default=None, help="/get_reward's reward: min, product (prod), last, ...")
    p.add_argument("--split", default=None, help="how a response splits into steps (auto, blank_line, ...)")


def _config(args: argparse.Namespace) -> ServeConfig:
    from prm.config import load_section

    cfg = load_section(ServeConfig, "serve", args.config, args.overrides)
    flags = {"model": args.model, "format": args.format, "host": args.host, "port": args.port,
             "device": args.device, "dtype": args.dtype, "backend": args.backend, "batch_size": args.batch_size,
             "max_tokens": args.max_tokens, "aggregate": args.aggregate, "split": args.split}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if not cfg.model:
        raise PrmError("prm serve needs --model (or serve.model in the config)")
    return cfg


def load(cfg: ServeConfig) -> Any:
    """The scorer, through the library's one loading function."""
    from prm.scoring import load_scorer

    return load_scorer(cfg.model, cfg.format, cfg.device, cfg.dtype, backend=cfg.backend)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    cfg = _config(args)
    key = os.environ.get(cfg.api_key_env) or None
    scorer = load(cfg)
    from prm.eval.serve_app import create_app

    app = create_app(scorer, cfg, key)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                                           timeout_graceful_shutdown=cfg.graceful_timeout, access_log=False))
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown with the handlers it found installed; a
    # no-op handler here makes that a plain return, so a drained shutdown exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    print(f"prm serve: {scorer.describe()} from {cfg.model} at http://{cfg.host}:{cfg.port} "
          f"(API key {'required' if key else 'off'}; reward = {cfg.aggregate} of step scores)", flush=True)
    try:
        server.run()
    finally:
        # vLLM's engine runs in child processes: stop them here, while the interpreter is whole (left to
        # exit-time teardown, a drained server was seen to abort)
        scorer.close()
    return 0 if server.started else 1


COMMAND = StageCommand(("serve",), "serve a PRM over HTTP: /v1/score, /get_reward (OpenRLHF), /pooling (vLLM)",
                       _add_arguments, _cmd_serve, section="serve", config=ServeConfig, description=__doc__)
