"""2-process CPU training (torchrun, gloo) with DeepSpeed ZeRO-2 and ZeRO-3 on the tiny model: the loss
falls, both stages give the same losses, and a run stopped by SIGTERM after a checkpoint, then resumed,
reproduces the uninterrupted run's losses (a torn last line of losses.jsonl dropped)."""

from __future__ import annotations

import json

import pytest

from tests.train.trainer_helpers import base_overrides, losses, run_train, write_toy

pytestmark = pytest.mark.slow
STEPS = 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("dist")
    data = write_toy(root, 32, seed=0)
    out = {}
    for stage in ("zero2", "zero3"):
        res = run_train(base_overrides(tiny_model_dir, root / stage, data, deepspeed=stage, max_steps=STEPS,
                                       **{"optim.lr": 2e-3}), nproc=2)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        out[stage] = root / stage
    out["root"], out["data"], out["model"] = root, data, tiny_model_dir
    return out


def test_loss_falls_and_stages_agree(runs):
    z2, z3 = losses(runs["zero2"]), losses(runs["zero3"])
    assert len(z2) == len(z3) == STEPS
    assert sum(z2[-3:]) / 3 < z2[0]
    assert z2 == pytest.approx(z3, abs=1e-4)
    rec = json.loads((runs["zero2"] / "losses.jsonl").read_text().splitlines()[0])
    assert rec["tokens"] > 0 and rec["steps"] > 0  # summed over both ranks
    for stage in ("zero2", "zero3"):
        assert (runs[stage] / "final" / "model.safetensors").exists()


def test_sigterm_checkpoint_and_resume_reproduces(runs):
    out = runs["root"] / "preempted"
    args = base_overrides(runs["model"], out, runs["data"], deepspeed="zero3", max_steps=STEPS,
                          **{"optim.lr": 2e-3})
    first = run_train(args + ["debug_signal_at_step=3"], nproc=2)
    assert first.returncode != 0  # torchrun reports the workers' exit 75
    assert "exitcode  : 75" in first.stderr or "exitcode: 75" in first.stderr
    assert json.loads((out / "PREEMPTED").read_text())["step"] == 3
    assert len(losses(out)) == 3 and not (out / "final").exists()
    with open(out / "losses.jsonl", "a") as fh:
        fh.write('{"step": 4, "lo')  # a torn last line, as a kill mid-write leaves: dropped on resume
    second = run_train(args, nproc=2, resume=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and not (out / "PREEMPTED").exists()
    assert losses(out) == pytest.approx(losses(runs["zero3"]), abs=1e-6)


def test_zero3_lora_bf16_checkpointing_merged_final(runs):
    """ZeRO-3 partitions the LoRA model; the final save gathers the 16-bit weights and merges the adapters."""
    from transformers import AutoModelForTokenClassification

    out = runs["root"] / "lora3"
    res = run_train(base_overrides(runs["model"], out, runs["data"], deepspeed="zero3", max_steps=3,
                                   precision="bf16", gradient_checkpointing="true",
                                   **{"lora.enabled": "true", "lora.r": 4, "optim.lr": 5e-3}), nproc=2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(losses(out)) == 3
    model = AutoModelForTokenClassification.from_pretrained(out / "final")
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert model.config.step_marker_id is not None and model.score.weight.abs().sum() > 0


def test_zero3_top_layers_with_head_lr(runs):
    """ZeRO-3 partitions a model whose lower block is frozen, with two learning rates; the frozen block comes
    out of the final save unchanged."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    out = runs["root"] / "top3"
    res = run_train(base_overrides(runs["model"], out, runs["data"], deepspeed="zero3", max_steps=3,
                                   trainable_layers=1, **{"optim.lr": 1e-3, "optim.head_lr": 4e-3}), nproc=2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(losses(out)) == 3
    model = AutoModelForTokenClassification.from_pretrained(out / "final", dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(runs["model"])
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(model.model.layers[1].self_attn.q_proj.weight,
                           base.model.layers[1].self_attn.q_proj.weight)
