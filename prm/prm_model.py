"""The PRM: a causal-LM backbone as a 2-label token classifier read at one step-marker token per step.

Shared by training (`train/`) and scoring (`prm/scoring/ours.py`, `prm score`), so both read the head at the same
positions. The text of an example is the tokenizer's chat template with the problem as the user turn and
the steps, each followed by the marker, as the assistant turn:

    <|im_start|>user\\n{problem}<|im_end|>\\n<|im_start|>assistant\\n{step 1}<|prm_step|>\\n{step 2}<|prm_step|><|im_end|>

The marker is one additional special token: the tokenizer splits it out before BPE, so it is exactly one id
after every step whatever the step ends with ("<", "|", "ки"), and content never produces it (any literal
marker in the content is removed first). Class 1 of the head at a marker = P(step correct).

    model, tok = build_prm("smollm2-135m-instruct")          # backbone -> PRM (head new, body loaded)
    model, tok = load_prm("runs/tiny/final", "cpu", "fp32")  # a saved PRM folder
    load_scorer("runs/tiny/final").score(["What is 2+3?"], [["2+3=5.", "The answer is 5."]])  # prm.scoring

A saved folder is plain transformers: `AutoModelForTokenClassification.from_pretrained(path)` plus
`AutoTokenizer.from_pretrained(path)`; `config.step_marker` / `config.step_marker_id` name the marker.

`head="two_layer"` (`train.head`) gives the Qwen2.5-Math-PRM head instead of one linear layer: `score.0`
Linear(h, h) -> ReLU -> `score.2` Linear(h, 2), recorded as `config.prm_head = "two_layer"`, with the released
checkpoints' weight names, so `prm score` reads both through one code path (prm/scoring/two_layer.py). Such a
folder needs no remote code and no custom class, but `AutoModelForTokenClassification` alone would put a fresh
one-layer `score` in place of it (warning that `score.0.*`/`score.2.*` went unused). With plain transformers:

    body = AutoModel.from_pretrained(path)                      # the `model.*` weights
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
    head.load_state_dict({k.removeprefix("score."): v for k, v in safetensors.torch.load_file(
        f"{path}/model.safetensors").items() if k.startswith("score.")})
    p_correct = head(body(input_ids).last_hidden_state).softmax(-1)[..., 1]   # read at the marker positions

or `load_prm(path)`, which loads the token classifier and puts the two-layer head in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prm.errors import PrmError
from prm.steps import STEP_MARKER, strip_markers

# Separator between a step's marker and the next step's text inside the assistant turn.
STEP_SEPARATOR = "\n"
# `linear`: one Linear(h, 2) (transformers' token classifier); `two_layer`: the Qwen2.5-Math-PRM head.
PRM_HEADS: tuple[str, ...] = ("linear", "two_layer")
HEAD_WEIGHTS: tuple[str, ...] = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")


def two_layer_head(hidden: int, labels: int = 2) -> Any:
    """The Qwen2.5-Math-PRM head: `score.0` Linear(h, h) -> ReLU -> `score.2` Linear(h, labels)."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, labels))


def load_two_layer_head(path: str) -> Any:
    """The two-layer head of a checkpoint (ours with head=two_layer, or a released Qwen2.5-Math-PRM), fp32."""
    from prm.checkpoint_files import load_tensors

    weights = load_tensors(path, list(HEAD_WEIGHTS))
    head = two_layer_head(weights["score.0.weight"].shape[0], weights["score.2.weight"].shape[0])
    head.load_state_dict({k.removeprefix("score."): v.float() for k, v in weights.items()})
    return head


def add_step_marker(tokenizer: Any, marker: str = STEP_MARKER) -> int:
    """Register `marker` as one additional special token (idempotent); returns its id."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    if marker not in vocab or marker not in tokenizer.all_special_tokens:
        token = AddedToken(marker, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)
        try:  # transformers 5 renamed additional_special_tokens to extra_special_tokens
            tokenizer.add_special_tokens({"extra_special_tokens": [token]}, replace_extra_special_tokens=False)
        except (TypeError, ValueError):
            tokenizer.add_special_tokens({"additional_special_tokens": [token]},
                                         replace_additional_special_tokens=False)
    ids = tokenizer.encode(marker, add_special_tokens=False)
    if len(ids) != 1:
        raise PrmError(f"step marker {marker!r} does not tokenize to one id (got {ids})")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return int(ids[0])


def marker_id(tokenizer: Any, marker: str = STEP_MARKER) -> int:
    """The id of an already registered marker (raises if the tokenizer lacks it)."""
    ids = tokenizer.encode(marker, add_special_tokens=False)
    if len(ids) != 1 or tokenizer.convert_tokens_to_ids(marker) != ids[0]:  # get_vocab() costs ~0.1 s
        raise PrmError(f"tokenizer has no step marker {marker!r}: call add_step_marker or load a PRM folder")
    return int(ids[0])


def _torch_dtype(dtype: Any, device: str = "cpu") -> Any:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    from prm.models import resolve_dtype

    return resolve_dtype(str(dtype), device)


def is_head_parameter(model: Any, name: str) -> bool:
    """Whether parameter `name` belongs to the PRM head (every top-level module outside the transformer body,
    e.g. `score`), for a plain model or a peft-wrapped one (`base_model.model.score.modules_to_save...`)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if inner is not model:
        name = name.removeprefix("base_model.model.")
    return name.split(".", 1)[0] != inner.base_model_prefix


def build_prm(backbone: str, tokenizer: Any = None, dtype: Any = "fp32", marker: str = STEP_MARKER,
              attn_implementation: str | None = "sdpa", head: str = "linear") -> tuple[Any, Any]:
    """Any causal LM backbone (embedded name, hub id or folder) as a 2-label token classifier.

    The backbone's transformer body is loaded (checked: only the new `score` head may be missing), the
    embeddings are resized for the marker, and the marker is recorded in the config. `head` is `linear` or
    `two_layer` (the Qwen2.5-Math-PRM layout, see the module docstring).
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from prm.models import resolve_model

    if head not in PRM_HEADS:
        raise PrmError(f"unknown PRM head {head!r}; choose one of {', '.join(PRM_HEADS)}")
    path = resolve_model(backbone)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(path)
    mid = add_step_marker(tokenizer, marker)
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model, info = AutoModelForTokenClassification.from_pretrained(
            path, num_labels=2, dtype=_torch_dtype(dtype), output_loading_info=True,
            id2label={0: "incorrect", 1: "correct"}, label2id={"incorrect": 0, "correct": 1}, **kwargs,
        )
    except (OSError, ValueError) as exc:
        raise PrmError(f"cannot load backbone {backbone!r} as a token classifier: {exc}") from None
    head_names = {name for name, _ in model.named_parameters() if is_head_parameter(model, name)}
    body_missing = [k for k in info.get("missing_keys", []) if k not in head_names]
    if body_missing:
        raise PrmError(f"backbone {backbone!r}: body weights not loaded (newly initialized): {body_missing[:5]}")
    if head == "two_layer":
        model.config.prm_head = head
        _use_config_head(model)
        model.score.apply(model._init_weights)  # the backbone's initializer, as the one-layer head got
    if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.step_marker = marker
    model.config.step_marker_id = mid
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.classifier_dropout = 0.0  # deterministic head: resume and packing reproduce losses exactly
    if isinstance(getattr(model, "dropout", None), torch.nn.Dropout):
        model.dropout.p = 0.0
    model.config.use_cache = False  # a cache would disable packed-sequence masking in training
    return model, tokenizer


def _use_config_head(model: Any) -> None:
    """Put the head that `config.prm_head` names in place of transformers' one-layer `score` (new weights)."""
    if getattr(model.config, "prm_head", "linear") == "two_layer":
        linear = model.score
        model.score = two_layer_head(linear.in_features, linear.out_features).to(linear.weight.dtype)


def prm_from_config(config: Any) -> Any:
    """An untrained PRM of `config`'s shape, head included (for loading a full state dict into)."""
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_config(config)
    _use_config_head(model)
    return model


def load_prm(path: str, device: str = "cpu", dtype: Any = "auto") -> tuple[Any, Any]:
    """A saved PRM folder (ours): model in eval mode on `device`, tokenizer with the marker."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from prm.models import resolve_model

    path = resolve_model(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForTokenClassification.from_pretrained(path, dtype=_torch_dtype(dtype, device))
    except (OSError, ValueError) as exc:
        raise PrmError(f"cannot load PRM from {path}: {exc}") from None
    if getattr(model.config, "prm_head", "linear") == "two_layer":  # the one-layer score loaded fresh: replace it
        model.score = load_two_layer_head(path).to(model.dtype)
    marker = getattr(model.config, "step_marker", STEP_MARKER)
    mid = marker_id(tokenizer, marker)
    if getattr(model.config, "step_marker_id", mid) != mid:
        raise PrmError(f"{path}: config step_marker_id {model.config.step_marker_id} != tokenizer id {mid}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False
    return model.to(device).eval(), tokenizer


@dataclass
class EncodedSteps:
    """One tokenized example. `marker_positions[k]` is the token index of step k's marker; labels and
    soft_labels (when given) are cut to the steps kept: n_steps_kept == len(marker_positions)."""

    input_ids: list[int]
    marker_positions: list[int]
    labels: list[bool] | None
    soft_labels: list[float] | None
    n_steps_kept: int


def _render(tokenizer: Any, problem: str, content: str) -> str:
    messages = [{"role": "user", "content": problem}, {"role": "assistant", "content": content}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return f"{problem}\n\n{content}"


def encode_steps(tokenizer: Any, problem: str, steps: list[str], max_length: int | None = None,
                 labels: list[bool] | None = None, soft_labels: list[float] | None = None,
                 marker: str = STEP_MARKER) -> EncodedSteps:
    """Tokenize a solution with one marker id after each step; truncation drops whole trailing steps.

    A truncated example ends right after the last kept marker: under causal attention its tokens are the
    same as those of the full example up to there, so training on it reads the same logits as scoring.
    """
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"{len(labels)} labels for {len(steps)} steps")
    if soft_labels is not None and len(soft_labels) != len(steps):
        raise ValueError(f"{len(soft_labels)} soft labels for {len(steps)} steps")
    mid = marker_id(tokenizer, marker)
    clean_problem = strip_markers(problem, marker)
    content = STEP_SEPARATOR.join(strip_markers(step, marker) + marker for step in steps)
    text = _render(tokenizer, clean_problem, content)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    positions = [i for i, t in enumerate(ids) if t == mid]
    if len(positions) != len(steps):
        raise PrmError(f"chat template lost step markers: {len(positions)} markers for {len(steps)} steps")
    keep = len(steps)
    if max_length is not None and len(ids) > max_length:
        keep = sum(1 for p in positions if p < max_length)
        ids = ids[: positions[keep - 1] + 1] if keep else ids[:max_length]
        positions = positions[:keep]
    return EncodedSteps(
        input_ids=ids,
        marker_positions=positions,
        labels=None if labels is None else list(labels[:keep]),
        soft_labels=None if soft_labels is None else list(soft_labels[:keep]),
        n_steps_kept=keep,
    )
