"""The DeepSpeed PRM trainer: one entry point for 1 process, torchrun, and srun + torchrun across nodes.

    prm train --config configs/train_tiny.yaml                                  # 1 process
    torchrun --nproc_per_node 2 -m prm train --config configs/train_tiny.yaml   # N processes (gloo on CPU)
    sbatch slurm/train.sbatch configs/train.yaml                                # nodes x GPUs, ZeRO-3, requeue
    prm train --config configs/train_tiny.yaml --resume                         # continue from the latest checkpoint

A plain loop over `deepspeed.initialize` (ZeRO-2 or ZeRO-3 from configs/deepspeed/, "auto" values filled
from TrainConfig; one process runs those presets without ZeRO, as it has nothing to shard), torch's fused
AdamW, and DeepSpeed's JIT-built ops in a folder keyed by the torch and DeepSpeed versions (only the ops a run
uses: one process builds none). The time from process start to the first optimizer step is printed.
The micro-batch stream is a pure function of (seed, epoch, step), so a resumed run reads exactly the
batches the uninterrupted run would have read, and reproduces its losses.

The loss of an optimizer step is the mean over every labelled step in it, across micro-batches, gradient
accumulation and processes (see Trainer._loss_scale), so micro_batch_size, packing and the process count
do not change the objective.

Output dir: `losses.jsonl` (one line per optimizer step: step, loss, lr, tokens, steps, elapsed, grad_norm:
the gradient norm before clipping),
`eval.jsonl` (validation metrics), `checkpoints/step_N` (DeepSpeed, with `latest`), `final/` (a plain
Hugging Face AutoModelForTokenClassification + tokenizer with the marker; LoRA merged), `wandb/` when
report_to=wandb. SIGTERM or SIGUSR1 (Slurm preemption) -> checkpoint at the end of the current step,
write `PREEMPTED`, exit with PREEMPTED_EXIT_CODE (75); rerun with --resume to continue.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from prm.train.config import TrainConfig
from prm.train.losses import SOFT_LOSSES

from prm.config import to_dict
from prm.errors import ConfigError, InputError
from prm.jsonl import read_json
from prm.prm_model import is_head_parameter
from prm.steps import STEP_MARKER

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: checkpointed on a signal; rerun with --resume
_REPO = Path(__file__).resolve().parent.parent
_stop_signal: int = 0


def _on_signal(signum: int, frame: Any) -> None:
    global _stop_signal
    _stop_signal = signum


# ------------------------------------------------------------------------------------------ setup helpers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_own_op_cache() -> Path:
    """Point torch's JIT-extension folder (where DeepSpeed builds its ops) at a folder of our own, keyed by the
    torch and DeepSpeed versions, unless TORCH_EXTENSIONS_DIR is set already. In the shared default
    (~/.cache/torch_extensions) two installs with different versions rebuild each other's ops on every run."""
    from importlib.metadata import version

    from prm.models import cache_dir

    key = f"torch-{version('torch')}_deepspeed-{version('deepspeed')}"
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions" / key))
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); a bare `python` run becomes a world of one."""
    use_own_op_cache()
    import deepspeed
    import deepspeed.ops
    import torch

    if "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    if os.environ["WORLD_SIZE"] == "1":
        # A world of one has no peer to share memory with: DeepSpeed's CPU shared-memory allreduce op is not
        # built (a JIT compile), nor are the other ops probed. Its only reader is comm's build_shm_op.
        deepspeed.ops.__compatible_ops__ = {"deepspeed_shm_comm": False}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False, verbose=False)
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """configs/deepspeed/<zero2|zero3>.json (or a path) with every "auto" value filled from cfg.

    A world of one shards nothing, so the zero2/zero3 presets run there without ZeRO (stage 0: no partition
    buffers, no gradient-bucket copies; bf16 as torch autocast); a JSON file of your own is taken as written
    (e.g. ZeRO-Offload on one GPU). The optimizer is torch's AdamW, fused (one kernel over all parameters) on
    CPU and CUDA: no DeepSpeed op to JIT-build."""
    path = Path(cfg.deepspeed)
    preset = cfg.deepspeed in ("zero2", "zero3")
    if preset:
        path = _REPO / "configs" / "deepspeed" / f"{cfg.deepspeed}.json"
    if not path.is_file():
        raise ConfigError(f"train.deepspeed: {cfg.deepspeed!r} is neither zero2, zero3 nor a JSON file")
    try:
        ds = read_json(path)
    except OSError as exc:
        raise ConfigError(f"train.deepspeed: cannot read {path}: {exc}") from None
    except InputError as exc:
        raise ConfigError(f"train.deepspeed: {exc.describe()}") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"train.deepspeed: {path}: expected a JSON object of DeepSpeed settings, "
                          f"got a {type(ds).__name__}")
    if cfg.precision == "auto":
        raise ValueError("train.precision 'auto' must be resolved (Trainer.run does) before building the DeepSpeed config")
    mb, gas = cfg.data.micro_batch_size, cfg.gradient_accumulation_steps
    auto = {
        "train_batch_size": mb * gas * world_size,
        "train_micro_batch_size_per_gpu": mb,
        "gradient_accumulation_steps": gas,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16.enabled": cfg.precision == "bf16",
        "optimizer.params.lr": cfg.optim.lr,
        "optimizer.params.betas": list(cfg.optim.betas),
        "optimizer.params.eps": cfg.optim.eps,
        "optimizer.params.weight_decay": cfg.optim.weight_decay,
        "optimizer.params.torch_adam": True,
        "optimizer.params.fused": True,  # torch >= 2.4 has a fused AdamW on CPU and CUDA
    }

    def fill(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                fill(value, name + ".")
            elif value == "auto":
                if name not in auto:
                    raise ConfigError(f"{path}: no value for \"auto\" key {name}")
                node[key] = auto[name]

    fill(ds, "")
    if "scheduler" in ds:
        raise ConfigError(f"{path}: remove 'scheduler' (the schedule comes from train.optim)")
    if preset and world_size == 1:
        ds["zero_optimization"] = {"stage": 0}
        if cfg.precision == "bf16":
            # DeepSpeed's bf16 without ZeRO would accumulate gradients in bf16; torch autocast keeps fp32
            # weights, gradients and AdamW, and runs the matmuls in bf16.
            ds["bf16"] = {"enabled": False}
            ds["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return ds


def read_losses(path: Path) -> list[tuple[int, str]]:
    """(step, line) for each record of a losses.jsonl being resumed. A last line without its newline is torn
    (a kill mid-write) and dropped; any other bad line is an InputError naming the file and line."""
    from prm.jsonl import parse_line

    if not path.exists():
        return []
    *whole, _torn = path.read_bytes().split(b"\n")  # `_torn` is b"" when the file ends with a newline
    out = []
    for lineno, raw in enumerate(whole, start=1):
        record = parse_line(str(path), lineno, raw)
        if record is None:
            continue
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise InputError(str(path), lineno, "step", f"expected an integer, got {step!r}")
        out.append((step, raw.decode("utf-8").rstrip("\r")))
    return out


def lr_lambda(cfg: TrainConfig, total_steps: int):
    """Warmup then constant / linear / cosine decay, as a multiplier of optim.lr."""
    o = cfg.optim
    warmup = o.warmup_steps if o.warmup_steps > 0 else int(round(o.warmup_ratio * total_steps))

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if o.schedule == "constant" or total_steps <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        decay = 1.0 - progress if o.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * decay

    return fn


def _blocks(model: Any) -> Any:
    """The backbone's list of transformer blocks (`layers` in Llama/Qwen/Mistral, `h` in GPT-2)."""
    import torch

    body = model.base_model
    for name in ("layers", "h", "blocks"):
        blocks = getattr(body, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ConfigError(f"train.trainable_layers: no list of transformer blocks found in {type(body).__name__}")


def freeze_lower_layers(model: Any, trainable: int) -> None:
    """Freeze all but the top `trainable` blocks; the head (and, with blocks trained, the final norm) stay
    trainable. The embeddings, the marker's row included, stay as initialized."""
    blocks = _blocks(model)
    if trainable > len(blocks):
        raise ConfigError(f"train.trainable_layers={trainable}: the model has {len(blocks)} blocks")
    keep = {id(p) for block in list(blocks)[len(blocks) - trainable:] for p in block.parameters()}
    body = model.base_model
    final_norm = getattr(body, "norm", None) or getattr(body, "ln_f", None)
    if trainable > 0 and final_norm is not None:
        keep |= {id(p) for p in final_norm.parameters()}
    for name, p in model.named_parameters():
        if not is_head_parameter(model, name) and id(p) not in keep:
            p.requires_grad_(False)


def parameter_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Trainable parameters as optimizer groups: the body at optim.lr, the score head at optim.head_lr."""
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if is_head_parameter(model, name) else body).append(p)
    groups = [{"params": body, "lr": cfg.optim.lr}] if body else []
    return groups + [{"params": head, "lr": cfg.optim.head_lr or cfg.optim.lr}]


def build_model(cfg: TrainConfig, per_example_attention: bool = False) -> tuple[Any, Any, Any]:
    """(model ready for DeepSpeed, tokenizer, peft LoraConfig or None); `per_example_attention`: packed rows
    attend per example (train/attention.py) instead of through a row-wide mask."""
    import torch

    from prm.prm_model import build_prm

    torch.manual_seed(cfg.seed)
    model, tokenizer = build_prm(cfg.model, dtype="fp32", head=cfg.head)
    if per_example_attention:
        from prm.train.attention import use_segment_attention

        use_segment_attention(model)
    if cfg.trainable_layers >= 0:  # with LoRA too is rejected by TrainConfig.validate
        freeze_lower_layers(model, cfg.trainable_layers)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_config = None
    if cfg.lora.enabled:
        from peft import LoraConfig, TaskType, get_peft_model

        peft_config = LoraConfig(task_type=TaskType.TOKEN_CLS, r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                 lora_dropout=cfg.lora.dropout, target_modules=list(cfg.lora.targets),
                                 modules_to_save=list(cfg.lora.modules_to_save))
        try:
            model = get_peft_model(model, peft_config)
        except ValueError as exc:
            raise ConfigError(f"train.lora: {exc}") from None
    return model, tokenizer, peft_config


# ------------------------------------------------------------------------------------------------ metrics

def first_error(flags: list[bool]) -> int:
    """Index of the first False, -1 if none."""
    return next((i for i, ok in enumerate(flags) if not ok), -1)


def step_metrics(probs: list[list[float]], labels: list[list[int]], threshold: float) -> dict[str, float]:
    """Step accuracy, and ProcessBench-style first-error metrics at `threshold`.

    Predicted first error = first step with P(correct) < threshold (-1 if none). acc_error = exact match on
    items with an error, acc_correct = share of all-correct items predicted -1, f1 = their harmonic mean."""
    n_steps = sum(len(p) for p in probs)
    hits = sum(int((pi >= threshold) == bool(li)) for p, lab in zip(probs, labels, strict=True)
               for pi, li in zip(p, lab, strict=True))
    err_hit = err_n = ok_hit = ok_n = 0
    for p, lab in zip(probs, labels, strict=True):
        gold = first_error([bool(v) for v in lab])
        pred = first_error([v >= threshold for v in p])
        if gold == -1:
            ok_n += 1
            ok_hit += int(pred == -1)
        else:
            err_n += 1
            err_hit += int(pred == gold)
    acc_err = err_hit / err_n if err_n else 0.0
    acc_ok = ok_hit / ok_n if ok_n else 0.0
    f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok > 0 else 0.0
    return {"step_accuracy": hits / max(n_steps, 1), "acc_error": acc_err, "acc_correct": acc_ok, "f1": f1,
            "items": float(len(probs)), "steps": float(n_steps)}


# ------------------------------------------------------------------------------------------------ trainer

class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.resume = resume
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints"

    # -- logging helpers (rank 0)
    def log(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)

    def _micro_batches(self, step: int) -> list[list[list[Any]]]:
        """This rank's micro-batches for optimizer step `step` (a pure function of seed, epoch, step)."""
        from prm.train.data import make_batches

        per_step = self.world * self.cfg.gradient_accumulation_steps
        out = []
        for g in range(self.cfg.gradient_accumulation_steps):
            index = step * per_step + g * self.world + self.rank
            epoch, k = divmod(index, self.batches_per_epoch)
            if epoch not in self._epoch_cache:
                self._epoch_cache = {epoch: make_batches(self.train_data, self.cfg.data.micro_batch_size,
                                                         self.cfg.data.packing, self.pack_length,
                                                         self.cfg.seed, epoch)}
            out.append(self._epoch_cache[epoch][k])
        return out

    def _loss_scale(self, micro_batches: list[list[list[Any]]]) -> float:
        """The factor that turns a micro-batch's loss sum into its share of the optimizer step's loss, the mean
        over every labelled step of the step (all micro-batches, all ranks): world / (labelled steps of all
        ranks). DeepSpeed averages gradients over ranks (the factor `world` undoes that); backward is called
        with scale_wrt_gas=False, so no division by the accumulation steps. Micro-batch size, accumulation,
        packing and process count then leave the objective unchanged."""
        import torch
        import torch.distributed as dist

        count = torch.tensor([sum(len(ex.labels) for mb in micro_batches for row in mb for ex in row)],
                             dtype=torch.float64)
        dist.all_reduce(count)
        return self.world / max(float(count), 1.0)

    def _local_grad_norm(self) -> float:
        """Norm of the accumulated gradients before clipping, without ZeRO (they sit in p.grad, all-reduced
        over ranks at the step boundary, so every rank holds the full gradient)."""
        import torch

        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    def _forward_loss(self, batch: dict[str, Any]) -> tuple[Any, int]:
        from prm.train.losses import step_loss_sum

        dev = self.engine.device
        out = self.engine(input_ids=batch["input_ids"].to(dev),
                          attention_mask=None if batch["attention_mask"] is None else batch["attention_mask"].to(dev),
                          position_ids=batch["position_ids"].to(dev), use_cache=False)
        return step_loss_sum(out.logits, batch["labels"].to(dev), batch["soft"].to(dev), self.cfg.loss,
                             list(self.cfg.class_weights))

    def run(self) -> int:
        import deepspeed
        import torch
        import torch.distributed as dist
        from prm.train.data import collate, load_tokenized, make_batches

        cfg = self.cfg
        cfg.validate()  # again: a config built in code may have been changed after loading
        losses_path = self.out / "losses.jsonl"
        # Read now, so a corrupt losses file fails before any weight is touched or file written.
        old_losses = read_losses(losses_path) if self.resume and (self.ckpt_dir / "latest").exists() else []
        self.rank, self.world, self.local_rank = init_distributed()
        if cfg.precision == "auto":
            from prm.models import default_device, native_bf16

            cfg = self.cfg = dataclasses.replace(cfg, precision="bf16" if native_bf16(default_device()) else "fp32")
        ds_config = deepspeed_config(cfg, self.world)
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, _on_signal)

        # Data first: every record is validated before any weight is touched.
        from prm.models import load_tokenizer
        from prm.prm_model import add_step_marker

        tok = load_tokenizer(cfg.model)
        add_step_marker(tok)
        self.pack_length = cfg.data.pack_length or cfg.data.max_length
        self.train_data = load_tokenized(cfg.data.train_files, tok, cfg.data.max_length, cfg.data.format,
                                         soft_loss=cfg.loss if cfg.loss in SOFT_LOSSES else None)
        val_data = load_tokenized(cfg.data.val_files, tok, cfg.data.max_length, cfg.data.format) \
            if cfg.data.val_files else []
        first_epoch = make_batches(self.train_data, cfg.data.micro_batch_size, cfg.data.packing, self.pack_length,
                                   cfg.seed, 0)
        self.batches_per_epoch = len(first_epoch)
        self._epoch_cache: dict[int, Any] = {0: first_epoch}
        per_step = self.world * cfg.gradient_accumulation_steps
        total = cfg.max_steps or max(1, int(math.ceil(cfg.epochs * self.batches_per_epoch / per_step)))
        self.log(f"train: {len(self.train_data)} examples, {self.batches_per_epoch} micro-batches/epoch, "
                 f"world {self.world}, {total} optimizer steps, {cfg.deepspeed}, {cfg.precision}"
                 f"{', LoRA' if cfg.lora.enabled else ''}{', packed' if cfg.data.packing else ', padded'}")

        # On CPU, a row of several packed examples attends per example: its row-wide mask would cost L x L
        # scores, most of them masked out. A row of about one example (plus padding) wastes little that way,
        # and one sdpa call over it beats several small ones.
        per_row = len(self.train_data) / sum(len(mb) for mb in first_epoch) if cfg.data.packing else 0.0
        per_example = per_row >= 2 and not torch.cuda.is_available()
        if cfg.data.packing:
            self.log(f"packed rows of {self.pack_length} tokens hold {per_row:.2f} examples on average; attention "
                     f"{'per example' if per_example else 'through the row mask'}")
        model, tokenizer, peft_config = build_model(cfg, per_example)
        if tokenizer.convert_tokens_to_ids(STEP_MARKER) != tok.convert_tokens_to_ids(STEP_MARKER):
            raise ConfigError(f"{cfg.model}: the step marker got different ids in data and model tokenizers")
        fn = lr_lambda(cfg, total)
        self.engine, _, _, scheduler = deepspeed.initialize(
            model=model, model_parameters=parameter_groups(model, cfg), config=ds_config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, fn))
        if self.world == 1 and not self.engine.zero_optimization():
            self.engine.enable_backward_allreduce = False  # one process: no gradients to average, no copies

        step = 0
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "PREEMPTED").unlink(missing_ok=True)
        if self.resume and (self.ckpt_dir / "latest").exists():
            path, client = self.engine.load_checkpoint(str(self.ckpt_dir))
            if path is None:
                raise ConfigError(f"{self.ckpt_dir}: could not load the latest checkpoint")
            step = int(client["step"])
            self.log(f"resumed from {path} at step {step}")
        elif self.resume:
            self.log(f"--resume: no checkpoint in {self.ckpt_dir}, starting from step 0")
        elif self.rank == 0 and self.ckpt_dir.exists():
            shutil.rmtree(self.ckpt_dir)  # a fresh run never mixes with an old one's checkpoints
        if self.rank == 0:
            kept = [line for s, line in old_losses if s <= step] if step else []
            losses_path.write_text("".join(line + "\n" for line in kept))
            if step == 0:
                (self.out / "eval.jsonl").unlink(missing_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=1))
        dist.barrier()
        wandb_run = self._init_wandb() if self.rank == 0 and cfg.report_to == "wandb" else None

        self.engine.train()
        start = time.time()
        tokens_seen = 0
        last_saved = first_step = step
        while step < total:
            sums = torch.zeros(3, dtype=torch.float64)  # loss sum, labelled steps, tokens
            micro_batches = self._micro_batches(step)
            scale = self._loss_scale(micro_batches)
            grad_norm = None
            for g, mb in enumerate(micro_batches):
                batch = collate(mb, tokenizer.pad_token_id, cfg.data.packing,
                                self.pack_length if cfg.data.packing else None, cfg.data.pad_to_multiple_of)
                loss_sum, count = self._forward_loss(batch)
                self.engine.backward(loss_sum * scale, scale_wrt_gas=False)
                if g == len(micro_batches) - 1 and not self.engine.zero_optimization():
                    grad_norm = self._local_grad_norm()  # ZeRO reports its own after the step
                self.engine.step()
                sums += torch.tensor([float(loss_sum.detach()), count, batch["n_tokens"]], dtype=torch.float64)
            dist.all_reduce(sums)
            step += 1
            tokens_seen += int(sums[2])
            lr = scheduler.get_last_lr()[0] if scheduler is not None else cfg.optim.lr
            record = {"step": step, "loss": float(sums[0] / max(sums[1], 1)), "lr": lr,
                      "tokens": int(sums[2]), "steps": int(sums[1]), "elapsed": round(time.time() - start, 3)}
            grad_norm = self.engine.get_global_grad_norm() if grad_norm is None else grad_norm
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            if self.rank == 0:
                with open(losses_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if wandb_run is not None:
                    wandb_run.log({"train/loss": record["loss"], "train/lr": lr, "train/tokens": tokens_seen},
                                  step=step)
            if step == first_step + 1:
                self.log(f"first optimizer step {time.time() - _process_start():.1f} s after the process started")
            if step % max(cfg.log_every, 1) == 0 or step == total:
                rate = tokens_seen / max(time.time() - start, 1e-9)
                eta = (total - step) * (time.time() - start) / max(step - first_step, 1)
                self.log(f"step {step}/{total}  loss {record['loss']:.4f}  lr {lr:.2e}  {rate:.0f} tok/s  "
                         f"eta {eta:.0f}s")
            if val_data and cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                self._validate(val_data, tokenizer, step, wandb_run)
            if self.rank == 0 and cfg.debug_signal_at_step and step == cfg.debug_signal_at_step:
                os.kill(os.getpid(), signal.SIGTERM)
            flag = torch.tensor([_stop_signal], dtype=torch.long)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if int(flag):
                if last_saved != step:
                    self._save_checkpoint(step)
                if self.rank == 0:
                    (self.out / "PREEMPTED").write_text(json.dumps({"step": step, "signal": int(flag)}) + "\n")
                self.log(f"signal {int(flag)}: checkpoint at step {step} saved; rerun with --resume "
                         f"(exit {PREEMPTED_EXIT_CODE})")
                dist.barrier()
                if wandb_run is not None:
                    wandb_run.finish(exit_code=PREEMPTED_EXIT_CODE)
                # Saved: a second signal (the launcher stopping its workers) must not turn exit 75 into a kill.
                for sig in (signal.SIGTERM, signal.SIGUSR1):
                    signal.signal(sig, signal.SIG_IGN)
                return PREEMPTED_EXIT_CODE
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                self._save_checkpoint(step)
                last_saved = step

        if val_data:
            self._validate(val_data, tokenizer, step, wandb_run)
        self._save_checkpoint(step)
        self._save_final(tokenizer, peft_config)
        if wandb_run is not None:
            wandb_run.finish()
        dist.barrier()
        self.log(f"done: {step} steps in {time.time() - start:.1f}s; model in {self.out / 'final'}")
        return 0

    # -- pieces
    def _init_wandb(self) -> Any:
        import wandb

        if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
            os.environ["WANDB_MODE"] = "offline"
        id_file = self.out / "wandb_run_id"
        run_id = id_file.read_text().strip() if self.resume and id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        return wandb.init(project=self.cfg.wandb_project, name=self.cfg.run_name or self.out.name, id=run_id,
                          resume="allow", dir=str(self.out), config=to_dict(self.cfg))

    def _save_checkpoint(self, step: int) -> None:
        import torch.distributed as dist

        tag = f"step_{step}"
        self.engine.save_checkpoint(str(self.ckpt_dir), tag=tag, client_state={"step": step})
        dist.barrier()
        if self.rank == 0:
            tags = sorted((p for p in self.ckpt_dir.glob("step_*") if p.is_dir()),
                          key=lambda p: int(p.name.split("_")[1]))
            for old in tags[: -self.cfg.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        dist.barrier()
        self.log(f"checkpoint {self.ckpt_dir / tag}")

    def _validate(self, val_data: list[Any], tokenizer: Any, step: int, wandb_run: Any) -> dict[str, float]:
        """Every rank scores its share of the validation set (same number of forwards on every rank, as
        ZeRO-3 needs); the results are gathered and the metrics computed once."""
        import torch
        import torch.distributed as dist
        from prm.train.data import collate
        from prm.train.losses import IGNORE_INDEX

        self.engine.eval()
        mine = list(range(self.rank, len(val_data), self.world))
        bs = self.cfg.data.val_micro_batch_size
        n_batches = math.ceil(math.ceil(len(val_data) / self.world) / bs)
        results: list[tuple[int, list[float]]] = []
        with torch.no_grad():
            for b in range(n_batches):
                idx = mine[b * bs:(b + 1) * bs]
                rows = [[val_data[i]] for i in (idx or [0])]  # a dummy forward keeps ranks in step
                batch = collate(rows, tokenizer.pad_token_id, packed=False,
                                multiple=self.cfg.data.pad_to_multiple_of)
                dev = self.engine.device
                logits = self.engine(input_ids=batch["input_ids"].to(dev),
                                     attention_mask=batch["attention_mask"].to(dev),
                                     position_ids=batch["position_ids"].to(dev), use_cache=False).logits.float()
                probs = torch.softmax(logits, -1)[..., 1].cpu()
                for r, i in enumerate(idx):
                    sel = batch["labels"][r] != IGNORE_INDEX
                    results.append((i, probs[r][sel].tolist()))
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, results)
        merged = dict(item for part in gathered for item in part)
        order = sorted(merged)
        metrics = step_metrics([merged[i] for i in order], [val_data[i].labels for i in order], self.cfg.threshold)
        metrics["step"] = step
        if self.rank == 0:
            with open(self.out / "eval.jsonl", "a") as fh:
                fh.write(json.dumps(metrics) + "\n")
            if wandb_run is not None:
                wandb_run.log({f"val/{k}": v for k, v in metrics.items() if k != "step"}, step=step)
            self.log(f"validation at step {step}: step acc {metrics['step_accuracy']:.3f}  "
                     f"F1 {metrics['f1']:.3f} (error {metrics['acc_error']:.3f}, correct {metrics['acc_correct']:.3f})")
        self.engine.train()
        return metrics

    def _save_final(self, tokenizer: Any, peft_config: Any) -> None:
        """Save a Hugging Face folder (model + tokenizer with the marker), LoRA merged. Without ZeRO-3 every rank
        holds the whole model, and rank 0 saves it as it is; ZeRO-3 gathers the 16-bit weights into a file and
        rank 0 rebuilds a plain model from it (a file and a second model: the peak memory of a run that
        does not need them)."""
        import torch
        import torch.distributed as dist

        if not self.engine.zero_optimization_partition_weights():
            if self.rank == 0:
                model = self.engine.module  # training is over: merged and cast in place
                if peft_config is not None:
                    model = model.merge_and_unload()
                self._write_final(model.to(torch.bfloat16) if self.cfg.precision == "bf16" else model, tokenizer)
            dist.barrier()
            return
        tmp = self.out / "final.tmp"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        dist.barrier()
        if not self.engine.save_16bit_model(str(tmp), "consolidated.bin"):
            raise ConfigError("DeepSpeed did not save the full model: set "
                              "stage3_gather_16bit_weights_on_model_save=true in the DeepSpeed config")
        dist.barrier()
        if self.rank == 0:
            from prm.prm_model import prm_from_config

            state = torch.load(tmp / "consolidated.bin", map_location="cpu", weights_only=True)
            module = self.engine.module
            config = (module.get_base_model() if peft_config is not None else module).config
            fresh = prm_from_config(config)
            if peft_config is not None:
                from peft import get_peft_model

                fresh = get_peft_model(fresh, peft_config)
            missing, unexpected = fresh.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if "rotary" not in k]:
                raise RuntimeError(f"final save: missing {missing[:5]}, unexpected {unexpected[:5]}")
            if peft_config is not None:
                fresh = fresh.merge_and_unload()
            if self.cfg.precision == "bf16":
                fresh = fresh.to(torch.bfloat16)
            self._write_final(fresh, tokenizer)
            shutil.rmtree(tmp, ignore_errors=True)
        dist.barrier()

    def _write_final(self, model: Any, tokenizer: Any) -> None:
        final = self.out / "final"
        shutil.rmtree(final, ignore_errors=True)
        model.save_pretrained(final, safe_serialization=True)
        tokenizer.save_pretrained(final)


def train(cfg: TrainConfig, resume: bool = False) -> int:
    """Run training; returns 0 when done, PREEMPTED_EXIT_CODE after a signal-triggered checkpoint."""
    import torch.distributed as dist

    try:
        return Trainer(cfg, resume).run()
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
