"""The `train:` section of a config (see configs/train_tiny.yaml); importable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prm.config import option


@dataclass
class LoraConfig:
    enabled: bool = option(False, help="train LoRA adapters (peft) instead of all weights; merged on the final save")
    r: int = option(16, help="LoRA rank")
    alpha: int = option(32, help="LoRA alpha (scaling = alpha / r)")
    dropout: float = option(0.0, help="LoRA dropout (0 keeps resumed runs bit-reproducible)")
    targets: list[str] = option(["q_proj", "k_proj", "v_proj", "o_proj"],
                                help="module names that get adapters (peft target_modules)")
    modules_to_save: list[str] = option(["score"], help="modules trained fully (the token-classification head)")


@dataclass
class OptimConfig:
    lr: float = option(2e-5, help="peak learning rate")
    head_lr: float = option(0.0, help="peak learning rate of the new score head (0 = lr); a fresh head "
                                      "learns faster than a pretrained body should move")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    betas: list[float] = option([0.9, 0.999], help="AdamW betas")
    eps: float = option(1e-8, help="AdamW epsilon")
    schedule: Literal["constant", "linear", "cosine"] = option("cosine", help="decay after warmup")
    warmup_steps: int = option(0, help="linear warmup steps (overrides warmup_ratio when > 0)")
    warmup_ratio: float = option(0.0, help="warmup as a share of all optimizer steps")
    min_lr_ratio: float = option(0.0, help="floor of the decay as a share of lr")
    grad_clip: float = option(1.0, help="gradient norm clipping (0 = off)")


@dataclass
class DataConfig:
    train_files: list[str] = option([], help="TrainingExample / TRL stepwise JSONL files (or prm.formats ones)")
    val_files: list[str] = option([], help="validation files (same formats); empty = no validation")
    format: Literal["auto", "training", "trl", "math_shepherd", "prm800k", "processbench"] = option(
        "auto", help="input format of the files")
    max_length: int = option(2048, help="tokens per example; whole trailing steps past it are dropped")
    packing: bool = option(True, help="pack several examples per row (no attention across them) instead of padding")
    pack_length: int = option(0, help="tokens per packed row (0 = max_length)")
    pad_to_multiple_of: int = option(64, help="padded rows: width rounded up to a multiple (fewer shapes)")
    micro_batch_size: int = option(4, help="rows per device per micro-batch")
    val_micro_batch_size: int = option(8, help="examples per device per validation forward")


@dataclass
class TrainConfig:
    model: str = option("smollm2-135m-instruct", help="backbone: embedded name, hub id or local folder")
    output_dir: str = option("runs/prm", help="checkpoints, losses.jsonl, final/ (the HF folder)")
    loss: Literal["hard", "soft"] = option("hard", help="hard: CE on labels; soft: CE against [1-v, v] MC values")
    class_weights: list[float] = option([1.0, 1.0], help="[weight of wrong steps, weight of correct steps]")
    deepspeed: str = option("zero2", help="zero2 | zero3 | a DeepSpeed JSON path ('auto' values filled in)")
    precision: Literal["bf16", "fp32"] = option("bf16", help="bf16 mixed precision or fp32")
    trainable_layers: int = option(-1, help="train only the top N transformer blocks, the final norm and the "
                                            "head (0 = the head only, -1 = every weight); the frozen lower "
                                            "blocks keep no activations for backward, so a step is cheaper")
    gradient_checkpointing: bool = option(False, help="recompute activations in backward")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step per device")
    max_steps: int = option(0, help="optimizer steps (0 = epochs x steps per epoch)")
    epochs: float = option(1.0, help="passes over the data when max_steps is 0")
    seed: int = option(0, help="seed of weights init, shuffling and packing")
    save_every: int = option(100, help="checkpoint every N optimizer steps (0 = only at the end / on preemption)")
    save_total_limit: int = option(2, help="checkpoints kept (older ones deleted)")
    eval_every: int = option(0, help="validate every N steps (0 = only at the end)")
    threshold: float = option(0.5, help="P(correct) below which a step counts as an error in validation")
    log_every: int = option(10, help="print progress every N steps")
    report_to: Literal["wandb", "none"] = option("none", help="wandb (offline without an API key) or none")
    wandb_project: str = option("prm", help="wandb project")
    run_name: str = option("", help="run name (default: the output folder's name)")
    lora: LoraConfig = option(default_factory=LoraConfig, help="LoRA adapters")
    optim: OptimConfig = option(default_factory=OptimConfig, help="optimizer and schedule")
    data: DataConfig = option(default_factory=DataConfig, help="data files, length, packing, batch sizes")
    debug_signal_at_step: int = option(0, help="testing: rank 0 sends itself SIGTERM after this step (0 = off)")
