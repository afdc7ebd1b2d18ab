"""Bad training config values and inputs fail up front with one `error:` line naming the key or file (exit 2),
before any training starts or any file is written."""

from __future__ import annotations

import json

import pytest
from prm.train.checkpoints import read_losses
from prm.train.config import TrainConfig
from prm.train.ds_config import deepspeed_config

from prm.app.cli import main
from prm.config import load_section
from prm.errors import ConfigError, InputError
from tests.train.trainer_helpers import REPO

TINY = str(REPO / "configs" / "train_tiny.yaml")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("override, key", [
    ("data.micro_batch_size=0", "train.data.micro_batch_size"),
    ("data.val_micro_batch_size=0", "train.data.val_micro_batch_size"),
    ("data.max_length=0", "train.data.max_length"),
    ("data.pack_length=100", "train.data.pack_length"),  # below train_tiny's max_length 256, packing on
    ("data.pad_to_multiple_of=0", "train.data.pad_to_multiple_of"),
    ("gradient_accumulation_steps=0", "train.gradient_accumulation_steps"),
    ("optim.betas=[0.9]", "train.optim.betas"),
    ("optim.betas=[0.9,1.5]", "train.optim.betas"),
    ("optim.lr=-1", "train.optim.lr"),
    ("optim.lr=0", "train.optim.lr"),
    ("optim.head_lr=-1e-3", "train.optim.head_lr"),
    ("optim.eps=0", "train.optim.eps"),
    ("optim.weight_decay=-0.1", "train.optim.weight_decay"),
    ("optim.warmup_ratio=5", "train.optim.warmup_ratio"),
    ("optim.warmup_steps=-1", "train.optim.warmup_steps"),
    ("optim.min_lr_ratio=2", "train.optim.min_lr_ratio"),
    ("optim.grad_clip=-1", "train.optim.grad_clip"),
    ("class_weights=[1.0]", "train.class_weights"),
    ("class_weights=[-1,1]", "train.class_weights"),
    ("class_weights=[0,0]", "train.class_weights"),
    ("max_steps=-3", "train.max_steps"),
    ("epochs=0", "train.epochs"),
    ("threshold=5", "train.threshold"),
    ("save_total_limit=0", "train.save_total_limit"),
    ("save_every=-1", "train.save_every"),
    ("eval_every=-1", "train.eval_every"),
    ("log_every=0", "train.log_every"),
    ("trainable_layers=-2", "train.trainable_layers"),
    ("lora.r=0", "train.lora.r"),
    ("lora.dropout=1", "train.lora.dropout"),
    ("deepspeed=''", "train.deepspeed"),
])
def test_out_of_range_values_are_config_errors(override, key):
    with pytest.raises(ConfigError, match=rf"^{TINY}: {key} must be "):
        load_section(TrainConfig, "train", TINY, [override])


@pytest.mark.parametrize("value", [".nan", ".inf", "nan"])
def test_non_finite_values_are_config_errors(value):
    with pytest.raises(ConfigError, match=rf"^{TINY}: config key 'train.optim.lr': expected a finite number"):
        load_section(TrainConfig, "train", TINY, [f"optim.lr={value}"])


def test_lora_with_trainable_layers_is_rejected_at_load():
    with pytest.raises(ConfigError, match="train.trainable_layers and train.lora.enabled"):
        load_section(TrainConfig, "train", None, ["lora.enabled=true", "trainable_layers=1"])


@pytest.mark.parametrize("override", [
    "max_steps=0", "epochs=0.5", "threshold=0", "threshold=1", "optim.head_lr=0", "optim.grad_clip=0",
    "data.pack_length=0", "save_total_limit=1", "trainable_layers=0", "optim.warmup_ratio=1",
    "class_weights=[0,1]", "data.packing=false data.pack_length=8",
])
def test_documented_values_are_accepted(override):
    load_section(TrainConfig, "train", TINY, override.split())


def test_config_get_rejects_a_bad_value_in_one_line(capsys):
    assert main(["config", "get", TINY, "train.max_steps", "max_steps=-3"]) == 2
    assert "train.max_steps must be >= 0" in _error_line(capsys)


def test_trainer_revalidates_a_config_changed_in_code(tmp_path):
    from prm.train.trainer import train

    cfg = load_section(TrainConfig, "train", TINY, [f"output_dir={tmp_path / 'run'}"])
    cfg.data.micro_batch_size = 0
    with pytest.raises(ConfigError, match="train.data.micro_batch_size"):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "expected a JSON object of DeepSpeed settings, got a list"),
    ('"zero2"', "expected a JSON object of DeepSpeed settings, got a str"),
    ("{not json", "invalid JSON"),
    (None, "is neither zero2, zero3, zero3_offload nor a JSON file"),  # missing
    ("dir", "is neither zero2, zero3, zero3_offload nor a JSON file"),
])
def test_bad_deepspeed_file(tmp_path, content, match):
    path = tmp_path / "ds.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    cfg = load_section(TrainConfig, "train", None, [f"deepspeed={path}"])
    with pytest.raises(ConfigError, match=f"train.deepspeed: .*ds.json.*{match}"):
        deepspeed_config(cfg, 1)


def _losses_text(steps: list[int]) -> str:
    return "".join(json.dumps({"step": s, "loss": 0.5}) + "\n" for s in steps)


def test_read_losses_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "losses.jsonl"
    path.write_text(_losses_text([1, 2]) + '{"step": 3, "lo')
    assert [s for s, _ in read_losses(path)] == [1, 2]
    path.write_text(_losses_text([1, 2]))
    assert read_losses(path) == [(s, json.dumps({"step": s, "loss": 0.5})) for s in (1, 2)]
    assert read_losses(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize("bad, match", [('{"step": 2, "lo', r"losses.jsonl:2: invalid JSON"),
                                        ('{"loss": 1.0}', r"losses.jsonl:2: field 'step'"),
                                        ('{"step": "2"}', r"losses.jsonl:2: field 'step'")])
def test_read_losses_rejects_a_corrupt_inner_line(tmp_path, bad, match):
    path = tmp_path / "losses.jsonl"
    path.write_text(_losses_text([1]) + bad + "\n" + _losses_text([3]))
    with pytest.raises(InputError, match=match):
        read_losses(path)


def test_resume_with_corrupt_losses_fails_before_touching_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "latest").write_text("step_2")
    (out / "losses.jsonl").write_text(_losses_text([1]) + "garbage\n" + _losses_text([2]))
    (out / "PREEMPTED").write_text("{}\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["train", "--config", TINY, "--resume", f"output_dir={out}"]) == 2
    assert f"{out / 'losses.jsonl'}:2: invalid JSON" in _error_line(capsys)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("args, match", [
    (["-n", "-1"], "-n must be at least 1"),
    (["-n", "0"], "-n must be at least 1"),
    (["--error-rate", "5"], "--error-rate must be a probability in [0, 1]"),
    (["--error-rate", "-0.1"], "--error-rate must be a probability in [0, 1]"),
])
def test_toy_data_rejects_bad_arguments(tmp_path, capsys, args, match):
    out = tmp_path / "toy.jsonl"
    assert main(["train-data", "toy", "-o", str(out)] + args) == 2
    assert match in _error_line(capsys)
    assert not out.exists()


def test_check_rejects_a_non_positive_max_length(tmp_path, capsys):
    data = tmp_path / "toy.jsonl"
    assert main(["train-data", "toy", "-o", str(data), "-n", "2"]) == 0
    capsys.readouterr()
    assert main(["train-data", "check", str(data), "--max-length", "0"]) == 2
    assert "--max-length must be at least 1" in _error_line(capsys)


@pytest.mark.parametrize("settings, cuda, match", [
    ({"fp16": {"enabled": True}}, False, "fp16.enabled needs a CUDA GPU"),
    ({"fp16": {"enabled": True}, "bf16": {"enabled": True}}, True, "fp16.enabled and bf16.enabled are both true"),
    ({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "gpu7"}}}, True,
     "zero_optimization.offload_optimizer.device must be one of none, cpu, nvme, got 'gpu7'"),
    ({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/no/such/nvme"}}}, True,
     "zero_optimization.offload_param.nvme_path '/no/such/nvme' is not an existing folder"),
    ({"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}}, True,
     "zero_optimization.offload_param needs stage 3, got stage 2"),
    ({"zero_optimization": {"stage": 5}}, False, "zero_optimization.stage must be 0, 1, 2 or 3, got 5"),
    ({"zero_optimization": {"stage": "3"}}, False, "zero_optimization.stage must be 0, 1, 2 or 3, got '3'"),
])
def test_deepspeed_json_the_machine_cannot_run(tmp_path, settings, cuda, match):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", **settings}))
    cfg = load_section(TrainConfig, "train", None, [f"deepspeed={path}", "precision=fp32"])
    with pytest.raises(ConfigError, match=f"ds.json: {match}"):
        deepspeed_config(cfg, 1, cuda=cuda)


def test_fp16_json_on_cpu_is_one_line_before_any_work(tmp_path, capsys):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "fp16": {"enabled": True}}))
    out = tmp_path / "run"
    assert main(["train", "--config", TINY, f"deepspeed={path}", f"output_dir={out}", "precision=fp32"]) == 2
    assert "fp16.enabled needs a CUDA GPU" in _error_line(capsys)
    assert not out.exists()
