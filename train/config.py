"""The `train:` section of a config (see configs/train_tiny.yaml); importable without torch."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

from prm.config import option
from prm.errors import ConfigError


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
    head: Literal["linear", "two_layer"] = option(
        "linear", help="PRM head: linear (one Linear(h, 2)) or two_layer (the Qwen2.5-Math-PRM head, score.0 "
                       "Linear(h, h) -> ReLU -> score.2 Linear(h, 2); scored like the released checkpoints)")
    output_dir: str = option("runs/prm", help="checkpoints, losses.jsonl, final/ (the HF folder)")
    loss: Literal["hard", "soft", "soft_mse"] = option(
        "hard", help="hard: CE on labels; soft: CE against [1-v, v] MC values; soft_mse: (P(correct) - v)^2 "
                     "against MC values (the Qwen PRM paper's soft labels); soft* need soft_labels on every example")
    class_weights: list[float] = option([1.0, 1.0], help="[weight of wrong steps, weight of correct steps]")
    deepspeed: str = option("zero2", help="zero2 | zero3 | a DeepSpeed JSON path ('auto' values filled in)")
    precision: Literal["auto", "bf16", "fp32"] = option(
        "auto", help="bf16 mixed precision, fp32, or auto: bf16 where the hardware runs it natively (a bf16 GPU, "
                     "a CPU with AVX-512 BF16 or AMX), else fp32 (emulated bf16 trains slower than fp32)")
    attention: Literal["auto", "sdpa", "segments", "flash_attention_2"] = option(
        "auto", help="packed rows' attention: auto = flash_attention_2 (flash-attn varlen) on a GPU with flash_attn "
                     "installed and bf16, else segments (per-example sdpa, no mask) when rows hold ~2+ examples, "
                     "else sdpa (transformers' sdpa with the row's block mask)")
    peak_tflops: float = option(0.0, help="peak FLOP/s of one device in TFLOP/s, for the MFU in the log "
                                          "(0 = by GPU name from a table; n/a on CPU)")
    trainable_layers: int = option(-1, help="train only the top N transformer blocks, the final norm and the "
                                            "head (0 = the head only, -1 = every weight); the frozen lower "
                                            "blocks keep no activations for backward, so a step is cheaper")
    gradient_checkpointing: bool = option(False, help="recompute activations in backward")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step per device")
    max_steps: int = option(0, help="optimizer steps (0 = epochs x steps per epoch)")
    epochs: float = option(1.0, help="passes over the data when max_steps is 0")
    seed: int = option(0, help="seed of weights init, shuffling and packing")
    save_every: int = option(100, help="checkpoint every N optimizer steps (0 = only at the end / on preemption)")
    save_total_limit: int = option(2, help="checkpoints kept, at least 1 (older ones deleted)")
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

    def __post_init__(self) -> None:
        # load_section builds the config through here, so `prm config get`, `prm run` and the Slurm scripts
        # reject a bad value up front, not mid-training.
        self.validate()

    def validate(self) -> None:
        """Range checks: a ConfigError naming the first bad key (Trainer.run calls it again)."""
        o, d, lo, cw, fin = self.optim, self.data, self.lora, self.class_weights, math.isfinite
        checks = [  # (key, ok, the documented range)
            ("output_dir", bool(str(self.output_dir).strip()), "a folder name"),
            ("deepspeed", bool(str(self.deepspeed).strip()), "zero2, zero3 or a JSON file"),
            ("class_weights", len(cw) == 2 and all(fin(w) and w >= 0 for w in cw) and sum(cw) > 0,
             "two weights >= 0 ([wrong steps, correct steps]), not both 0"),
            ("trainable_layers", self.trainable_layers >= -1, ">= -1 (-1 = every weight)"),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps >= 1, "at least 1"),
            ("max_steps", self.max_steps >= 0, ">= 0 (0 = epochs x steps per epoch)"),
            ("epochs", fin(self.epochs) and self.epochs > 0, "> 0"),
            ("save_every", self.save_every >= 0, ">= 0 (0 = only at the end)"),
            ("save_total_limit", self.save_total_limit >= 1,
             "at least 1 (--resume continues from the latest checkpoint)"),
            ("eval_every", self.eval_every >= 0, ">= 0 (0 = only at the end)"),
            ("threshold", 0.0 <= self.threshold <= 1.0, "a probability in [0, 1]"),
            ("log_every", self.log_every >= 1, "at least 1"),
            ("peak_tflops", fin(self.peak_tflops) and self.peak_tflops >= 0, ">= 0 (0 = from the GPU's name)"),
            ("debug_signal_at_step", self.debug_signal_at_step >= 0, ">= 0 (0 = off)"),
            ("lora.r", lo.r >= 1, "at least 1"),
            ("lora.alpha", lo.alpha > 0, "> 0"),
            ("lora.dropout", 0.0 <= lo.dropout < 1.0, "in [0, 1)"),
            ("optim.lr", fin(o.lr) and o.lr > 0, "> 0"),
            ("optim.head_lr", fin(o.head_lr) and o.head_lr >= 0, ">= 0 (0 = lr)"),
            ("optim.weight_decay", fin(o.weight_decay) and o.weight_decay >= 0, ">= 0"),
            ("optim.betas", len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas),
             "two numbers in [0, 1)"),
            ("optim.eps", fin(o.eps) and o.eps > 0, "> 0"),
            ("optim.warmup_steps", o.warmup_steps >= 0, ">= 0"),
            ("optim.warmup_ratio", 0.0 <= o.warmup_ratio <= 1.0, "a share in [0, 1]"),
            ("optim.min_lr_ratio", 0.0 <= o.min_lr_ratio <= 1.0, "a share in [0, 1]"),
            ("optim.grad_clip", fin(o.grad_clip) and o.grad_clip >= 0, ">= 0 (0 = off)"),
            ("data.max_length", d.max_length >= 1, "at least 1"),
            ("data.pack_length", d.pack_length == 0 or d.pack_length >= (d.max_length if d.packing else 1),
             f"0 (= max_length) or at least data.max_length ({d.max_length})"),
            ("data.pad_to_multiple_of", d.pad_to_multiple_of >= 1, "at least 1"),
            ("data.micro_batch_size", d.micro_batch_size >= 1, "at least 1"),
            ("data.val_micro_batch_size", d.val_micro_batch_size >= 1, "at least 1"),
        ]
        for key, ok, rule in checks:
            if not ok:
                value = functools.reduce(getattr, key.split("."), self)
                raise ConfigError(f"train.{key} must be {rule}, got {value!r}")
        if self.trainable_layers >= 0 and lo.enabled:
            raise ConfigError("train.trainable_layers and train.lora.enabled: "
                              "choose one way to limit training")
