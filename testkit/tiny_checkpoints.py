"""Tiny random checkpoints in each released PRM format, saved the way the real ones are (tests, benches).

    python -c "from testkit.tiny_checkpoints import make_tiny_checkpoint as m; m('qwen_prm', '/tmp/tiny-qwen-prm')"

Only tests and bench/ import this module (an import-linter contract in pyproject.toml keeps production off it).

Each folder holds a 2-layer, hidden-64 random model over the real SmolLM2 tokenizer (plus the tokens a
format needs), a `config.json` whose `architectures` names the released class, and weights named as the
released checkpoints name them:

- `qwen_prm`: Qwen2 backbone under `model.*`, head `score.0` Linear(h, h) -> ReLU -> `score.2` Linear(h, 2);
  `<extra_0>` added as a special token; architectures `Qwen2ForProcessRewardModel` with its `auto_map`.
- `math_shepherd`: a plain causal LM (`model.*`, `lm_head.weight`), the tag `ки` added as one token, no chat
  template (the released Mistral tokenizer has none).
- `rlhflow`: a plain causal LM with Llama-3.1 chat tokens and a Llama-3.1-style chat template.
- `skywork`: Qwen2 causal LM weights plus the value head `v_head.summary.{weight,bias}` (Linear(h, 1));
  architectures `Qwen2ForPrmModel`.
- `ours`: `prm.prm_model.build_prm` over a tiny causal LM (token classification, step marker in the config).

Weights are drawn with a wider spread than a fresh model (std 0.2) so that step scores vary from step to step
and between solutions: a test comparing two scoring paths then catches a wrong position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prm.errors import PrmError
from prm.models import EMBEDDED_MODEL, load_tokenizer
from prm.scoring.base import quiet_transformers

FORMATS = ("ours", "qwen_prm", "skywork", "math_shepherd", "rlhflow")  # the formats of prm.scoring.SCORERS

QWEN_PRM_TAG = "<extra_0>"
SHEPHERD_TAG = "ки"
INIT_STD = 0.2
HIDDEN = 64
# 16 is the smallest and fastest; vLLM's CPU attention refuses head_dim 16, so its tests ask for 32.
HEAD_DIMS = (16, 32)

# The Llama 3.1 template's output for conversations without tools: a system header with the knowledge-date
# lines, then one header + trimmed content + <|eot_id|> per message.
LLAMA31_TEMPLATE = (
    r"{{- bos_token -}}"
    r"{%- if messages[0]['role'] == 'system' -%}"
    r"{%- set system_message = messages[0]['content'] | trim -%}{%- set messages = messages[1:] -%}"
    r"{%- else -%}{%- set system_message = '' -%}{%- endif -%}"
    r"{{- '<|start_header_id|>system<|end_header_id|>\n\n' -}}"
    r"{{- 'Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n' -}}"
    r"{{- system_message + '<|eot_id|>' -}}"
    r"{%- for message in messages -%}"
    r"{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    r" + '<|eot_id|>' -}}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"
)


def _heads(head_dim: int) -> dict[str, int]:
    """Attention heads of the hidden-64 model for `head_dim` (16: 4 heads over 2 KV heads; 32: 2 over 1)."""
    if head_dim not in HEAD_DIMS:
        raise PrmError(f"tiny checkpoints have head_dim {' or '.join(map(str, HEAD_DIMS))}, got {head_dim}")
    heads = HIDDEN // head_dim
    return {"num_attention_heads": heads, "num_key_value_heads": heads // 2}


def _tiny_params(vocab_size: int, head_dim: int = 16) -> dict[str, Any]:
    return dict(
        vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
        max_position_embeddings=4096, tie_word_embeddings=False, initializer_range=INIT_STD, **_heads(head_dim),
    )


def _add_special(tokenizer: Any, tokens: list[str]) -> None:
    from transformers import AddedToken

    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in tokens], special_tokens=True)


def _save_state_dict(state: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})


def _write_config(config: Any, path: Path, extra: dict[str, Any]) -> None:
    data = config.to_dict()
    data.update(extra)
    (path / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _linear(rows: int, cols: int, gen: Any) -> tuple[Any, Any]:
    import torch

    return torch.randn(rows, cols, generator=gen) * INIT_STD, torch.randn(rows, generator=gen) * INIT_STD


def _qwen_prm(path: Path, tokenizer: Any, gen: Any, head_dim: int) -> None:
    from transformers import Qwen2Config, Qwen2Model

    _add_special(tokenizer, [QWEN_PRM_TAG])
    config = Qwen2Config(**_tiny_params(len(tokenizer), head_dim), num_labels=2, pad_token_id=tokenizer.pad_token_id)
    backbone = Qwen2Model(config)
    state = {f"model.{k}": v for k, v in backbone.state_dict().items()}
    h = config.hidden_size
    state["score.0.weight"], state["score.0.bias"] = _linear(h, h, gen)
    state["score.2.weight"], state["score.2.bias"] = _linear(2, h, gen)
    _save_state_dict(state, path)
    _write_config(config, path, {
        "architectures": ["Qwen2ForProcessRewardModel"],
        "auto_map": {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                     "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"},
    })
    tokenizer.save_pretrained(path)


def _causal_lm(path: Path, tokenizer: Any, head_dim: int) -> None:
    from transformers import AutoModelForCausalLM

    from prm.models import tiny_config

    config = tiny_config(len(tokenizer), initializer_range=INIT_STD, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, **_heads(head_dim))
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _math_shepherd(path: Path, tokenizer: Any, gen: Any, head_dim: int) -> None:
    from transformers import AddedToken

    tokenizer.add_tokens([AddedToken(SHEPHERD_TAG, normalized=False)])
    tokenizer.chat_template = None
    _causal_lm(path, tokenizer, head_dim)
    template = path / "chat_template.jinja"
    if template.exists():
        template.unlink()


def _rlhflow(path: Path, tokenizer: Any, gen: Any, head_dim: int) -> None:
    _add_special(tokenizer, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    tokenizer.bos_token = "<|begin_of_text|>"
    tokenizer.eos_token = "<|eot_id|>"
    tokenizer.chat_template = LLAMA31_TEMPLATE
    _causal_lm(path, tokenizer, head_dim)


def _skywork(path: Path, tokenizer: Any, gen: Any, head_dim: int) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**_tiny_params(len(tokenizer), head_dim), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = Qwen2ForCausalLM(config)
    state = dict(model.state_dict())
    state["v_head.summary.weight"], state["v_head.summary.bias"] = _linear(1, config.hidden_size, gen)
    _save_state_dict(state, path)
    _write_config(config, path, {"architectures": ["Qwen2ForPrmModel"]})
    tokenizer.save_pretrained(path)


def _ours(path: Path, tokenizer_name: str, seed: int, head_dim: int) -> None:
    import tempfile

    import torch

    from prm.models import tiny_causal_lm
    from prm.prm_model import build_prm

    backbone, tokenizer = tiny_causal_lm(tokenizer_name, seed, initializer_range=INIT_STD, **_heads(head_dim))
    with tempfile.TemporaryDirectory() as tmp:
        backbone.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.manual_seed(seed)
        model, tokenizer = build_prm(tmp)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def make_tiny_checkpoint(format: str, path: str | Path, tokenizer_name: str = EMBEDDED_MODEL,  # noqa: A002
                         seed: int = 0, head_dim: int = 16) -> str:
    """Write a tiny random checkpoint folder in `format` (one of FORMATS) to `path`; returns the path.

    `head_dim` 32 (2 attention heads over 1 KV head instead of 4 over 2) for vLLM, whose CPU attention
    refuses head_dim 16."""
    import torch

    _heads(head_dim)  # a bad head_dim fails before anything is written
    if format not in FORMATS:
        raise PrmError(f"unknown PRM format '{format}'; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        if format == "ours":
            _ours(path, tokenizer_name, seed, head_dim)
            return str(path)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed + 1)
        tokenizer = load_tokenizer(tokenizer_name)
        builders = {"qwen_prm": _qwen_prm, "math_shepherd": _math_shepherd, "rlhflow": _rlhflow,
                    "skywork": _skywork}
        builders[format](path, tokenizer, gen, head_dim)
    return str(path)
