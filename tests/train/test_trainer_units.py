"""Trainer pieces without a training run: metrics, schedule, DeepSpeed config filling, config loading,
and bad training files failing before training (exit 2, one line naming file, line and record)."""

from __future__ import annotations

import json

import pytest
from prm.train.config import TrainConfig
from prm.train.distributed import use_own_op_cache
from prm.train.ds_config import deepspeed_config
from prm.train.metrics import step_metrics
from prm.train.model_setup import freeze_lower_layers, lr_lambda, parameter_groups

from prm.config import load_section
from prm.errors import ConfigError
from tests.train.trainer_helpers import REPO, run_train


def test_step_metrics_hand_values():
    probs = [[0.9, 0.2, 0.9], [0.8, 0.7], [0.9, 0.4], [0.3]]
    labels = [[1, 0, 0], [1, 1], [1, 1], [0]]
    m = step_metrics(probs, labels, 0.5)
    # steps: (t,t,f) (t,t) (t,f) (t): 6 right of 8
    assert m["step_accuracy"] == pytest.approx(6 / 8)
    # error items: #0 gold 1 pred 1 (hit), #3 gold 0 pred 0 (hit); correct items: #1 pred -1 (hit), #2 pred 1 (miss)
    assert m["acc_error"] == 1.0 and m["acc_correct"] == 0.5
    assert m["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("trainable", [0, 1])
def test_freeze_lower_layers_and_head_lr_group(tiny_model_dir, trainable):
    from prm.prm_model import build_prm

    model, _ = build_prm(tiny_model_dir)  # 2 blocks
    freeze_lower_layers(model, trainable)
    names = _trainable(model)
    assert {"score.weight", "score.bias"} <= names
    assert not any(n.startswith(("model.embed_tokens", "model.layers.0.")) for n in names)
    assert any(n.startswith("model.layers.1.") for n in names) == (trainable == 1)
    assert ("model.norm.weight" in names) == (trainable == 1)
    cfg = load_section(TrainConfig, "train", None, ["optim.lr=1e-4", "optim.head_lr=1e-2"])
    groups = parameter_groups(model, cfg)
    assert groups[-1]["lr"] == 1e-2 and {id(p) for p in groups[-1]["params"]} == {
        id(model.score.weight), id(model.score.bias)}
    assert len(groups) == (2 if trainable else 1) and (not trainable or groups[0]["lr"] == 1e-4)
    with pytest.raises(ConfigError, match="has 2 blocks"):
        freeze_lower_layers(model, 3)


def test_head_lr_defaults_to_lr(tiny_model_dir):
    from prm.prm_model import build_prm

    model, _ = build_prm(tiny_model_dir)
    groups = parameter_groups(model, load_section(TrainConfig, "train", None, ["optim.lr=3e-4"]))
    assert [g["lr"] for g in groups] == [3e-4, 3e-4]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_head_lr_group_with_lora(tiny_model_dir):
    """Under peft the trained head is the `modules_to_save` copy of `score`; the LoRA adapters are body."""
    from peft import LoraConfig, TaskType, get_peft_model

    from prm.prm_model import build_prm, is_head_parameter

    model, _ = build_prm(tiny_model_dir)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.TOKEN_CLS, r=2, target_modules=["q_proj"],
                                             modules_to_save=["score"]))
    groups = parameter_groups(model, load_section(TrainConfig, "train", None, ["optim.lr=1e-4",
                                                                               "optim.head_lr=1e-2"]))
    names = {id(p): n for n, p in model.named_parameters()}
    body, head = ([names[id(p)] for p in g["params"]] for g in groups)
    assert groups[1]["lr"] == 1e-2 and sorted(head) == [
        "base_model.model.score.modules_to_save.default.bias", "base_model.model.score.modules_to_save.default.weight"]
    assert body and all("lora_" in n for n in body)
    assert not is_head_parameter(model, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")


def test_lr_schedule():
    cfg = load_section(TrainConfig, "train", None, ["optim.warmup_steps=4", "optim.schedule=linear"])
    fn = lr_lambda(cfg, 20)
    assert [round(fn(s), 3) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert fn(4) == 1.0 and fn(12) == pytest.approx(0.5) and fn(20) == 0.0
    cos = lr_lambda(load_section(TrainConfig, "train", None, ["optim.min_lr_ratio=0.1"]), 10)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.55) and cos(10) == pytest.approx(0.1)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_config_auto_filled(stage):
    cfg = load_section(TrainConfig, "train", None, [f"deepspeed={stage}", "data.micro_batch_size=3",
                                                    "gradient_accumulation_steps=2", "precision=fp32"])
    ds = deepspeed_config(cfg, world_size=4)
    assert "auto" not in json.dumps(ds)
    assert ds["train_batch_size"] == 24 and ds["zero_optimization"]["stage"] == int(stage[-1])
    params = ds["optimizer"]["params"]
    assert ds["bf16"]["enabled"] is False and params["torch_adam"] is True and params["fused"] is True
    with pytest.raises(ConfigError):
        deepspeed_config(load_section(TrainConfig, "train", None, ["deepspeed=nope.json"]), 1)


def test_op_cache_folder_keyed_by_versions(tmp_path, monkeypatch):
    from importlib.metadata import version

    monkeypatch.setenv("PRM_CACHE", str(tmp_path))
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    folder = use_own_op_cache()
    assert folder.parent == tmp_path / "torch_extensions"
    assert folder.name == f"torch-{version('torch')}_deepspeed-{version('deepspeed')}"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))
    assert use_own_op_cache() == tmp_path / "mine"  # one set by the user is kept


def test_one_process_runs_the_presets_without_zero_and_a_json_file_as_written(tmp_path):
    """A world of one has nothing to shard: zero2/zero3 become stage 0 there; a file of one's own is kept."""
    for stage in ("zero2", "zero3"):
        cfg = load_section(TrainConfig, "train", None, [f"deepspeed={stage}", "precision=bf16"])
        assert deepspeed_config(cfg, world_size=1)["zero_optimization"] == {"stage": 0}
        assert deepspeed_config(cfg, world_size=2)["zero_optimization"]["stage"] == int(stage[-1])
        one = deepspeed_config(cfg, world_size=1)  # bf16 on one process: torch autocast over fp32 weights
        assert one["bf16"]["enabled"] is False and one["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
        assert deepspeed_config(cfg, world_size=2)["bf16"]["enabled"] is True
    own = tmp_path / "offload.json"
    own.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {
        "stage": 2, "offload_optimizer": {"device": "cpu"}}}))
    cfg = load_section(TrainConfig, "train", None, [f"deepspeed={own}", "precision=fp32"])
    assert deepspeed_config(cfg, world_size=1)["zero_optimization"]["stage"] == 2


def test_configs_load():
    cfg = load_section(TrainConfig, "train", REPO / "configs" / "train_tiny.yaml", ["lora.enabled=true"])
    assert cfg.lora.enabled and cfg.data.packing and cfg.max_steps > 0
    with pytest.raises(ConfigError):
        load_section(TrainConfig, "train", None, ["loss=mse"])
    assert (REPO / "configs" / "train_tiny.yaml").read_text().startswith("#")


def test_bad_training_file_fails_before_training(tmp_path, tiny_model_dir):
    rows = [{"id": "a", "prompt": "p", "completions": ["s1", "s2"], "labels": [True, False]},
            {"id": "bad-one", "prompt": "p", "completions": ["s1", "s2"], "labels": [True]}]
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    res = run_train(["model=" + tiny_model_dir, f"output_dir={out}", f"data.train_files=[{data}]",
                     "data.val_files=[]"])
    assert res.returncode == 2, res.stderr[-2000:]
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in res.stderr
    assert f"{data}:2" in err[0] and "bad-one" in err[0] and "labels" in err[0]
    assert not out.exists()  # nothing was trained or written


def test_soft_loss_on_an_example_without_soft_labels_fails_naming_it(tmp_path, tiny_model_dir):
    """loss=soft* never falls back to hard labels: a record without soft_labels stops the run before training."""
    rows = [{"id": "a", "prompt": "p", "completions": ["s1", "s2"], "labels": [True, False],
             "soft_labels": [0.75, 0.0]},
            {"id": "no-soft", "prompt": "p", "completions": ["s1", "s2"], "labels": [True, False]}]
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    res = run_train(["model=" + tiny_model_dir, f"output_dir={out}", f"data.train_files=[{data}]",
                     "data.val_files=[]", "loss=soft_mse"])
    assert res.returncode == 2, res.stderr[-2000:]
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in res.stderr
    assert f"{data}:2" in err[0] and "no-soft" in err[0] and "soft_labels" in err[0] and "soft_mse" in err[0]
    assert not out.exists()


def test_auto_precision_is_bf16_only_where_the_hardware_runs_it():
    """`precision: auto` (the default) trains fp32 on a CPU that would emulate bf16, many times slower."""
    import torch

    from prm.models import native_bf16

    cpu_native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert native_bf16("cpu") == cpu_native
    assert native_bf16("cuda") == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert load_section(TrainConfig, "train", None, []).precision == "auto"
    with pytest.raises(ValueError, match="auto"):  # resolved by the trainer before DeepSpeed sees it
        deepspeed_config(load_section(TrainConfig, "train", None, []), world_size=1)


def test_gpu_presets_keep_zero_and_the_optimizer_follows_offload(tmp_path):
    """On a GPU a world of one keeps the preset's ZeRO stage (bf16 weights, partitioned optimizer state);
    offloaded optimizer state gets DeepSpeedCPUAdam (torch_adam false, no `fused`), else torch's fused AdamW."""
    cfg = load_section(TrainConfig, "train", None, ["deepspeed=zero2", "precision=bf16"])
    ds = deepspeed_config(cfg, world_size=1, cuda=True)
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"] is True and "torch_autocast" not in ds
    assert ds["optimizer"]["params"]["torch_adam"] is True and ds["optimizer"]["params"]["fused"] is True
    cfg = load_section(TrainConfig, "train", None, ["deepspeed=zero3_offload", "precision=bf16"])
    ds = deepspeed_config(cfg, world_size=1, cuda=True)
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["optimizer"]["params"]["torch_adam"] is False and "fused" not in ds["optimizer"]["params"]
    own = tmp_path / "offload.json"  # a JSON of one's own with "auto" optimizer settings follows its offload too
    own.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "optimizer": {"type": "AdamW", "params": {
        "lr": "auto", "torch_adam": "auto", "fused": "auto"}}, "zero_optimization": {
        "stage": 2, "offload_optimizer": {"device": "cpu"}}}))
    cfg = load_section(TrainConfig, "train", None, [f"deepspeed={own}", "precision=bf16"])
    params = deepspeed_config(cfg, world_size=1, cuda=True)["optimizer"]["params"]
    assert params["torch_adam"] is False and "fused" not in params


def test_zero3_final_weights_go_into_a_meta_skeleton_without_a_copy(tiny_model_dir):
    """The ZeRO-3 final save: the gathered 16-bit state becomes the saved model's weights as they are (no fp32
    model is built), LoRA merged."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from prm.train.checkpoints import model_from_state

    from prm.prm_model import build_prm

    model, _ = build_prm(tiny_model_dir, dtype="bf16")
    state = model.state_dict()
    rebuilt = model_from_state(model.config, state)
    for name, t in rebuilt.state_dict().items():
        assert t.dtype == torch.bfloat16 and t.data_ptr() == state[name].data_ptr(), name
    peft_config = LoraConfig(task_type=TaskType.TOKEN_CLS, r=4, lora_alpha=8, target_modules=["q_proj"],
                             modules_to_save=["score"])
    lora = get_peft_model(model, peft_config)
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    expected = get_peft_model(build_prm(tiny_model_dir, dtype="bf16")[0], peft_config)
    expected.load_state_dict(lora.state_dict())
    expected = expected.merge_and_unload()
    # merging writes into the state's tensors (as the final save may: its state is read from a file)
    merged = model_from_state(model.config, {k: v.clone() for k, v in lora.state_dict().items()}, peft_config)
    for name, t in expected.state_dict().items():
        if "rotary" not in name:
            assert torch.equal(merged.state_dict()[name], t), name


def test_mfu_arithmetic():
    from prm.train.throughput import peak_flops, step_flops

    assert peak_flops(0, "NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops(0, "NVIDIA H100 PCIe") == 756e12
    assert peak_flops(100, "NVIDIA H100 80GB HBM3") == 100e12  # the setting wins
    assert peak_flops(0, None) is None and peak_flops(0, "Some Future GPU") is None
    # 0.5B-like: 6 N per token plus 6 L d sum(n^2) of attention
    assert step_flops(10, 2, 4, 100, 1000) == 6 * 10 * 100 + 6 * 2 * 4 * 1000
