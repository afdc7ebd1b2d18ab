"""Real training runs of the tiny model on toy data (single process, DeepSpeed ZeRO-2 on CPU/gloo).

The saved folder loads with plain transformers and scores at the marker positions; LoRA is merged on save;
wandb offline writes a run with the loss curve, report_to=none writes nothing."""

from __future__ import annotations

import json

import pytest
import torch
from prm.train.toy_data import toy_examples

from prm.prm_model import encode_steps
from prm.scoring import load_scorer
from prm.steps import STEP_MARKER
from tests.train.trainer_helpers import base_overrides, losses, run_train, write_toy


def _check_final_folder(final, examples):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    assert AutoModelForTokenClassification.from_pretrained(final).num_labels == 2  # saved dtype, as is
    model = AutoModelForTokenClassification.from_pretrained(final, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(final)
    mid = tok.convert_tokens_to_ids(STEP_MARKER)
    assert model.config.step_marker_id == mid and model.config.num_labels == 2
    scorer = load_scorer(str(final), device="cpu", dtype="fp32")  # what `prm score` uses
    assert scorer.format == "ours"
    for ex in examples:
        enc = encode_steps(tok, ex.prompt, ex.completions)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0].float()
        assert [enc.input_ids[p] for p in enc.marker_positions] == [mid] * len(ex.completions)
        plain = torch.softmax(logits[enc.marker_positions], -1)[:, 1].tolist()
        assert len(plain) == len(ex.completions) and all(0.0 <= p <= 1.0 for p in plain)
        assert scorer.score([ex.prompt], [ex.completions])[0] == pytest.approx(plain, abs=1e-4)
    return model


def test_full_run_wandb_offline_and_plain_loading(tmp_path, tiny_model_dir):
    data = write_toy(tmp_path, 24, seed=0)
    val = write_toy(tmp_path, 8, seed=1)
    out = tmp_path / "run"
    ops = tmp_path / "torch_extensions"
    res = run_train(base_overrides(tiny_model_dir, out, data, max_steps=8, report_to="wandb",
                                   **{"data.val_files": f"[{val}]", "optim.lr": 2e-3, "save_every": 4}),
                    extra_env={"TORCH_EXTENSIONS_DIR": str(ops)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "first optimizer step" in res.stdout and "s after the process started" in res.stdout
    assert not ops.exists() or not any(ops.iterdir())  # one process: no DeepSpeed op JIT-built
    curve = losses(out)
    assert len(curve) == 8 and sum(curve[-3:]) / 3 < curve[0]
    ev = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert ev[-1]["step"] == 8 and 0.0 <= ev[-1]["f1"] <= 1.0 and ev[-1]["items"] == 8
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    blobs = list(runs[0].glob("*.wandb"))
    assert blobs and blobs[0].read_bytes().count(b"train/loss") >= 8
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_8"
    _check_final_folder(out / "final", toy_examples(4, seed=7))


def test_lora_bf16_merged_on_save_report_none(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    data = write_toy(tmp_path, 24, seed=0)
    out = tmp_path / "lora"
    res = run_train(base_overrides(tiny_model_dir, out, data, precision="bf16", loss="soft",
                                   gradient_checkpointing="true", **{"lora.enabled": "true", "lora.r": 4,
                                                                     "optim.lr": 5e-3, "data.packing": "false"}))
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(losses(out)) == 6 and not (out / "wandb").exists()
    model = _check_final_folder(out / "final", toy_examples(3, seed=8))
    names = [n for n, _ in model.named_parameters()]
    assert not any("lora" in n for n in names)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    q_trained = model.model.layers[0].self_attn.q_proj.weight.float()
    q_base = base.model.layers[0].self_attn.q_proj.weight
    k_trained = model.model.layers[0].mlp.up_proj.weight.float()
    k_base = base.model.layers[0].mlp.up_proj.weight
    assert not torch.allclose(q_trained, q_base, atol=1e-3)  # adapter merged into a target module
    assert torch.allclose(k_trained, k_base, atol=1e-2)  # a non-target module only saw the bf16 round trip


def test_top_layers_only_keep_the_frozen_weights(tmp_path, tiny_model_dir):
    """trainable_layers=1 with a separate head learning rate: block 0 and the embeddings come out as they
    went in, block 1 and the head moved, and the loss (soft_mse on the toy MC values) still falls."""
    from transformers import AutoModelForCausalLM

    data = write_toy(tmp_path, 24, seed=0)
    out = tmp_path / "top"
    res = run_train(base_overrides(tiny_model_dir, out, data, trainable_layers=1, max_steps=8, loss="soft_mse",
                                   **{"optim.lr": 1e-3, "optim.head_lr": 4e-3}))
    assert res.returncode == 0, res.stderr[-3000:]
    curve = losses(out)
    assert sum(curve[-3:]) / 3 < curve[0]
    model = _check_final_folder(out / "final", toy_examples(2, seed=9))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = base.model.embed_tokens.weight.shape[0]  # the marker's row was added after the base
    assert torch.equal(model.model.embed_tokens.weight[:rows], base.model.embed_tokens.weight)
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    assert not torch.allclose(model.model.layers[1].mlp.up_proj.weight, base.model.layers[1].mlp.up_proj.weight)


def test_trains_on_testbed_examples_and_scores_them_with_plain_transformers(tmp_path, tiny_model_dir):
    """The synthetic testbed's labelled solutions (`prm data testbed`, converted with the known labels) train
    for a few steps; the final folder scores them at the marker positions with plain transformers."""
    from prm.train.data import read_examples

    from prm.app.cli import main

    problems, testbed, data = (str(tmp_path / name) for name in ("problems.jsonl", "testbed.jsonl", "train.jsonl"))
    assert main(["data", "problems", "--source", "gsm_symbolic", "-n", "16", "-o", problems]) == 0
    assert main(["data", "testbed", "-i", problems, "-o", testbed, "--error-rate", "0.5"]) == 0
    assert main(["data", "convert", testbed, data, "--from", "ours", "--to", "trl", "--label-source", "truth"]) == 0
    examples = [s.example for s in read_examples(data)]
    assert any(not all(ex.labels) for ex in examples) and any(all(ex.labels) for ex in examples)
    out = tmp_path / "testbed-run"
    res = run_train(base_overrides(tiny_model_dir, out, data, max_steps=4))
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(losses(out)) == 4
    _check_final_folder(out / "final", examples[:4])
