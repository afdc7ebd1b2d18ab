"""The DeepSpeed PRM trainer's loop: one entry point for 1 process, torchrun, and srun + torchrun across nodes.

    prm train --config configs/train_tiny.yaml                                  # 1 process
    torchrun --nproc_per_node 2 -m prm train --config configs/train_tiny.yaml   # N processes (gloo on CPU)
    sbatch slurm/train.sbatch configs/train.yaml                                # nodes x GPUs, ZeRO-3, requeue
    prm train --config configs/train_tiny.yaml --resume                         # continue from the latest checkpoint

A plain loop over `deepspeed.initialize` (ZeRO-2 / ZeRO-3 from configs/deepspeed/, "auto" values filled from
TrainConfig: prm.train.ds_config; one CPU process runs those presets without ZeRO, as it has nothing to
shard), torch's fused AdamW (DeepSpeedCPUAdam for offloaded optimizer state), and DeepSpeed's JIT-built ops in
a folder keyed by the torch and DeepSpeed versions (only the ops a run uses: one process builds none). The
time from process start to the first optimizer step is printed, and each log line tokens/s and MFU
(prm.train.throughput). The device is read once per optimizer step: the loss sum stays on it, the counts
come from the host batch, and every collective goes through prm.train.collectives.
The micro-batch stream is a pure function of (seed, epoch, step), so a resumed run reads exactly the
batches the uninterrupted run would have read, and reproduces its losses.

The loss of an optimizer step is the mean over every labelled step in it, across micro-batches, gradient
accumulation and processes (see Trainer._loss_scale), so micro_batch_size, packing and the process count
do not change the objective.

Output dir: `losses.jsonl` (one line per optimizer step: step, loss, lr, tokens, steps, elapsed, grad_norm:
the gradient norm before clipping; peak_mem_mib on a GPU),
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
import time
import uuid
from pathlib import Path
from typing import Any

from prm.train.checkpoints import read_losses, save_checkpoint, save_final
from prm.train.collectives import Collectives
from prm.train.config import TrainConfig
from prm.train.distributed import (
    PREEMPTED_EXIT_CODE,
    catch_stop_signals,
    ignore_stop_signals,
    init_distributed,
    process_start,
    stop_signal,
)
from prm.train.ds_config import deepspeed_config
from prm.train.losses import SOFT_LOSSES
from prm.train.metrics import step_metrics
from prm.train.model_setup import build_model, lr_lambda, parameter_groups
from prm.train.throughput import step_flops

from prm.config import to_dict
from prm.errors import ConfigError
from prm.steps import STEP_MARKER

__all__ = ["PREEMPTED_EXIT_CODE", "Trainer", "train"]


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

    def _loss_scale(self, micro_batches: list[list[list[Any]]]) -> Any:
        """The factor that turns a micro-batch's loss sum into its share of the optimizer step's loss, the mean
        over every labelled step of the step (all micro-batches, all ranks): world / (labelled steps of all
        ranks). DeepSpeed averages gradients over ranks (the factor `world` undoes that); backward is called
        with scale_wrt_gas=False, so no division by the accumulation steps. Micro-batch size, accumulation,
        packing and process count then leave the objective unchanged."""
        import torch

        count = torch.tensor([sum(len(ex.labels) for mb in micro_batches for row in mb for ex in row)],
                             dtype=torch.float64)
        count = self.comm.all_reduce(count)
        # Stays on the device (no host sync); fp32, as the python float it replaces multiplied the loss.
        return (self.world / count.clamp(min=1.0)).to(torch.float32).squeeze(0)

    def _local_grad_norm(self) -> float:
        """Norm of the accumulated gradients before clipping, without ZeRO (they sit in p.grad, all-reduced
        over ranks at the step boundary, so every rank holds the full gradient)."""
        import torch

        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    def _forward_loss(self, batch: dict[str, Any]) -> tuple[Any, int]:
        from prm.train.losses import step_loss_sum

        dev = self.engine.device
        out = self.engine(input_ids=batch["input_ids"].to(dev, non_blocking=True),
                          attention_mask=None if batch["attention_mask"] is None else batch["attention_mask"].to(dev),
                          position_ids=batch["position_ids"].to(dev, non_blocking=True), use_cache=False,
                          **self._attention_kwargs(batch))
        return step_loss_sum(out.logits, batch["labels"].to(dev), batch["soft"].to(dev), self.cfg.loss,
                             list(self.cfg.class_weights), count=batch["n_steps"], check_soft=False)

    def _attention_kwargs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Packed rows' example boundaries, computed from the host copy of position_ids, so no layer reads
        them back from the GPU: flash-attn's cu_seqlens (over the flattened batch) or the segments' starts."""
        if batch["attention_mask"] is not None or self.attention == "sdpa":
            return {}
        from prm.train.attention import segment_starts

        starts = segment_starts(batch["position_ids"])
        if self.attention == "segments":
            return {"prm_segment_starts": starts}
        import torch

        width = batch["position_ids"].shape[1]
        bounds = [r * width + s for r, row in enumerate(starts) for s in row] + [len(starts) * width]
        cu = torch.tensor(bounds, dtype=torch.int32).to(self.engine.device, non_blocking=True)
        longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}

    def _choose_attention(self, per_row: float, ds_config: dict[str, Any]) -> str:
        """train.attention, with auto resolved: flash-attn varlen for packed rows on a GPU where flash_attn is
        installed and the weights are 16-bit; else per-example sdpa (no L x L mask) when rows hold about two
        examples or more; else transformers' sdpa (a row of about one example wastes little on its mask,
        and one sdpa call over it beats several small ones)."""
        import importlib.util

        import torch

        if self.cfg.attention != "auto":
            return self.cfg.attention
        if not self.cfg.data.packing:
            return "sdpa"
        bf16 = isinstance(ds_config.get("bf16"), dict) and ds_config["bf16"].get("enabled") is True
        if torch.cuda.is_available() and bf16 and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
        return "segments" if per_row >= 2 else "sdpa"

    def run(self) -> int:
        import deepspeed
        import torch
        from prm.train.data import collate, load_tokenized, make_batches

        cfg = self.cfg
        cfg.validate()  # again: a config built in code may have been changed after loading
        losses_path = self.out / "losses.jsonl"
        # Read now, so a corrupt losses file fails before any weight is touched or file written.
        old_losses = read_losses(losses_path) if self.resume and (self.ckpt_dir / "latest").exists() else []
        if cfg.precision == "auto":
            from prm.models import default_device, native_bf16

            cfg = self.cfg = dataclasses.replace(cfg, precision="bf16" if native_bf16(default_device()) else "fp32")
        # Checked before any work (process group, data, weights): a DeepSpeed JSON this machine cannot run.
        ds_config = deepspeed_config(cfg, int(os.environ.get("WORLD_SIZE", "1")), cuda=torch.cuda.is_available())
        self.rank, self.world, self.local_rank = init_distributed()
        catch_stop_signals()

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

        # A row of several packed examples attends per example (flash-attn varlen, or per-example sdpa): its
        # row-wide mask would cost L x L scores, most of them masked out.
        per_row = len(self.train_data) / sum(len(mb) for mb in first_epoch) if cfg.data.packing else 0.0
        self.attention = self._choose_attention(per_row, ds_config)
        if cfg.data.packing:
            how = {"flash_attention_2": "flash-attn varlen, per example", "segments": "sdpa per example",
                   "sdpa": "sdpa through the row mask"}[self.attention]
            self.log(f"packed rows of {self.pack_length} tokens hold {per_row:.2f} examples on average; "
                     f"attention: {how}")
        model, tokenizer, peft_config = build_model(cfg, self.attention, ds_config)
        if tokenizer.convert_tokens_to_ids(STEP_MARKER) != tok.convert_tokens_to_ids(STEP_MARKER):
            raise ConfigError(f"{cfg.model}: the step marker got different ids in data and model tokenizers")
        fn = lr_lambda(cfg, total)
        self.engine, _, _, scheduler = deepspeed.initialize(
            model=model, model_parameters=parameter_groups(model, cfg), config=ds_config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, fn))
        if self.world == 1 and not self.engine.zero_optimization():
            self.engine.enable_backward_allreduce = False  # one process: no gradients to average, no copies
        self.comm = Collectives(self.engine.device)
        from prm.train.throughput import model_shape, peak_flops

        n_params, layers, hidden = model_shape(self.engine.module)
        cuda = self.engine.device.type == "cuda"
        peak = peak_flops(cfg.peak_tflops, torch.cuda.get_device_name(self.engine.device) if cuda else None)

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
        self.comm.barrier()
        wandb_run = self._init_wandb() if self.rank == 0 and cfg.report_to == "wandb" else None

        self.engine.train()
        start = time.time()
        tokens_seen = 0
        flops_seen = 0.0
        last_saved = first_step = step
        while step < total:
            # The loss sum stays on the device, the counts on the host: one read-back per optimizer step.
            loss_sum_dev = torch.zeros((), dtype=torch.float64, device=self.engine.device)
            counts = [0, 0, 0]  # labelled steps, tokens, sum of squared example lengths
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
                loss_sum_dev += loss_sum.detach().to(torch.float64)
                counts[0] += count
                counts[1] += batch["n_tokens"]
                counts[2] += sum(len(ex) ** 2 for row in mb for ex in row)
            sums = torch.cat([loss_sum_dev.reshape(1), torch.tensor(counts, dtype=torch.float64)
                              .to(self.engine.device)])
            loss_total, n_steps, n_tokens, sum_sq = self.comm.all_reduce(sums).tolist()
            step += 1
            tokens_seen += int(n_tokens)
            flops_seen += step_flops(n_params, layers, hidden, int(n_tokens), int(sum_sq))
            lr = scheduler.get_last_lr()[0] if scheduler is not None else cfg.optim.lr
            record = {"step": step, "loss": loss_total / max(n_steps, 1), "lr": lr,
                      "tokens": int(n_tokens), "steps": int(n_steps), "elapsed": round(time.time() - start, 3)}
            if cuda:
                record["peak_mem_mib"] = round(torch.cuda.max_memory_allocated(self.engine.device) / 2**20)
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
                self.log(f"first optimizer step {time.time() - process_start():.1f} s after the process started")
            if step % max(cfg.log_every, 1) == 0 or step == total:
                seconds = max(time.time() - start, 1e-9)
                rate = tokens_seen / seconds
                mfu = "n/a" if peak is None else f"{100 * flops_seen / (seconds * peak * self.world):.1f}%"
                eta = (total - step) * (time.time() - start) / max(step - first_step, 1)
                self.log(f"step {step}/{total}  loss {record['loss']:.4f}  lr {lr:.2e}  {rate:.0f} tok/s  "
                         f"MFU {mfu}  eta {eta:.0f}s")
            if val_data and cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                self._validate(val_data, tokenizer, step, wandb_run)
            if self.rank == 0 and cfg.debug_signal_at_step and step == cfg.debug_signal_at_step:
                os.kill(os.getpid(), signal.SIGTERM)
            flag = self.comm.all_reduce(torch.tensor([stop_signal()], dtype=torch.long), op="max")
            if int(flag):
                if last_saved != step:
                    save_checkpoint(self.engine, self.comm, self.ckpt_dir, step, cfg.save_total_limit, self.rank, self.log)
                if self.rank == 0:
                    (self.out / "PREEMPTED").write_text(json.dumps({"step": step, "signal": int(flag)}) + "\n")
                self.log(f"signal {int(flag)}: checkpoint at step {step} saved; rerun with --resume "
                         f"(exit {PREEMPTED_EXIT_CODE})")
                self.comm.barrier()
                if wandb_run is not None:
                    wandb_run.finish(exit_code=PREEMPTED_EXIT_CODE)
                ignore_stop_signals()
                return PREEMPTED_EXIT_CODE
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                save_checkpoint(self.engine, self.comm, self.ckpt_dir, step, cfg.save_total_limit, self.rank, self.log)
                last_saved = step

        if val_data:
            self._validate(val_data, tokenizer, step, wandb_run)
        save_checkpoint(self.engine, self.comm, self.ckpt_dir, step, cfg.save_total_limit, self.rank, self.log)
        save_final(self.engine, self.comm, self.out, self.rank, cfg.precision, tokenizer, peft_config)
        if wandb_run is not None:
            wandb_run.finish()
        self.comm.barrier()
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

    def _validate(self, val_data: list[Any], tokenizer: Any, step: int, wandb_run: Any) -> dict[str, float]:
        """Every rank scores its share of the validation set (same number of forwards on every rank, as
        ZeRO-3 needs); the results are gathered and the metrics computed once."""
        import torch
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
        gathered = self.comm.all_gather_object(results, self.world)
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

def train(cfg: TrainConfig, resume: bool = False) -> int:
    """Run training; returns 0 when done, PREEMPTED_EXIT_CODE after a signal-triggered checkpoint."""
    import torch.distributed as dist

    try:
        return Trainer(cfg, resume).run()
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
