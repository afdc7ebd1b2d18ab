"""Models: the embedded SmolLM2 (GGUF -> cached safetensors, offline), safe concurrent conversion, tiny models.

    pytest -s tests/prm/test_models.py     # -s shows the measured conversion and load times
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

import prm.models as models
from prm.errors import ConfigError, PrmError
from prm.models import EMBEDDED_MODEL


def test_embedded_model_converts_once_then_loads_fast(tmp_path, monkeypatch, record_property):
    """First use converts the GGUF (a real conversion into a fresh cache); the second load reads the folder.

    The converted model's logits equal those of the GGUF loaded directly by transformers.
    """
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PRM_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "cache" / "models" / EMBEDDED_MODEL
    assert not target.exists()

    start = time.perf_counter()
    path = models.resolve_model(EMBEDDED_MODEL)
    model = models.load_causal_lm(EMBEDDED_MODEL)
    tokenizer = models.load_tokenizer(EMBEDDED_MODEL)
    first = time.perf_counter() - start
    assert Path(path) == target and models._is_converted(target)
    assert not [p.name for p in target.parent.iterdir() if p.name.startswith(f".{EMBEDDED_MODEL}.tmp")]

    start = time.perf_counter()
    again = models.load_causal_lm(EMBEDDED_MODEL)
    models.load_tokenizer(EMBEDDED_MODEL)
    second = time.perf_counter() - start

    print(f"\nembedded model: first load (GGUF conversion) {first:.1f} s, second load (cached) {second:.2f} s")
    record_property("first_load_s", round(first, 2))
    record_property("second_load_s", round(second, 2))
    assert second * 3 < first

    # Same weights as the GGUF loaded directly (same de-quantization), hence the same logits.
    gguf = models.embedded_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    batch = tokenizer(["Natalia sold 48/2 = 24 clips in May. The answer is 72."], return_tensors="pt")
    with torch.no_grad():
        ours = model(**batch).logits
        theirs = reference(**batch).logits
        cached = again(**batch).logits
    assert ours.shape == (1, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.equal(ours, theirs)
    assert torch.equal(cached, ours)
    assert model.dtype == torch.float32
    assert not hasattr(model.config, "quantization_config")
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    del model, again, reference
    shutil.rmtree(tmp_path / "cache")  # 540 MB; pytest keeps recent tmp folders


def _fake_writer(calls: list[str], delay: float = 0.3):
    def write(name: str, folder: Path) -> None:
        calls.append(str(folder))
        folder.mkdir(parents=True)
        time.sleep(delay)  # slow enough for the other thread to arrive mid-conversion
        for f in models._CONVERTED_FILES:
            (folder / f).write_text(f"{f} from {folder.name}")

    return write


def _resolve_concurrently(n: int = 2) -> list[str]:
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(models.resolve_model(EMBEDDED_MODEL))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_conversion_waits_on_lock(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setenv("PRM_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_write_converted", _fake_writer(calls))
    results = _resolve_concurrently(3)
    target = tmp_path / "models" / EMBEDDED_MODEL
    assert set(results) == {str(target)}
    assert len(calls) == 1  # the others waited and found the finished folder
    assert models._is_converted(target)
    assert sorted(p.name for p in target.parent.iterdir()) == [f".{EMBEDDED_MODEL}.lock", EMBEDDED_MODEL]


def test_concurrent_conversion_without_lock_is_still_safe(tmp_path, monkeypatch):
    """Where the file system has no locks, every process converts; the renames never mix two copies."""
    import contextlib

    calls: list[str] = []
    monkeypatch.setenv("PRM_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_write_converted", _fake_writer(calls))
    monkeypatch.setattr(models, "_conversion_lock", lambda path: contextlib.nullcontext())
    results = _resolve_concurrently(3)
    target = tmp_path / "models" / EMBEDDED_MODEL
    assert set(results) == {str(target)}
    assert len(calls) == 3
    # one winner's complete folder, every file from the same copy; no temporary folder left behind
    contents = {(target / f).read_text().split(" from ")[1] for f in models._CONVERTED_FILES}
    assert len(contents) == 1
    assert [p.name for p in target.parent.iterdir()] == [EMBEDDED_MODEL]


def test_incomplete_leftover_is_replaced(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setenv("PRM_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_write_converted", _fake_writer(calls, delay=0))
    target = tmp_path / "models" / EMBEDDED_MODEL
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # a half-written folder from an old, non-atomic writer
    assert models.resolve_model(EMBEDDED_MODEL) == str(target)
    assert len(calls) == 1 and models._is_converted(target)


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    def broken(name: str, folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setenv("PRM_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_write_converted", broken)
    with pytest.raises(OSError, match="disk full"):
        models.resolve_model(EMBEDDED_MODEL)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f".{EMBEDDED_MODEL}.lock"]


def test_tiny_model_factory(tmp_path, tokenizer):
    import torch

    model, tok = models.tiny_causal_lm()
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size) == (2, 64)
    assert config.vocab_size == len(tok) == len(tokenizer)
    batch = tok(["2+2=4", "The answer is 4."], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    assert sum(p.numel() for p in model.parameters()) < 10_000_000

    # same seed, same weights; a saved folder loads back by path with the same outputs
    model2, _ = models.tiny_causal_lm()
    with torch.no_grad():
        assert torch.equal(model2(**batch).logits, logits)
    folder = models.save_tiny_causal_lm(tmp_path / "tiny")
    loaded = models.load_causal_lm(folder)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, logits)
    assert len(models.load_tokenizer(folder)) == len(tok)


def test_bad_names_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown dtype 'fp8'"):
        models.resolve_dtype("fp8", "cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        models.resolve_device("gpu0")
    assert models.resolve_device("cpu") == "cpu"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            models.resolve_device("cuda:0")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrmError, match="the folder has no config.json"):
        models.load_tokenizer(str(tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(PrmError, match="cannot load model"):
        models.load_tokenizer(str(tmp_path / "empty"))
    # A missing folder is named at once, before transformers would try (and retry) the hub.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "prm").mkdir(parents=True)
    (tmp_path / "runs" / "prm" / "config.json").write_text("{}")
    assert models.resolve_model("runs/prm") == "runs/prm"
    assert models.resolve_model("Qwen/Qwen2.5-Math-PRM-7B") == "Qwen/Qwen2.5-Math-PRM-7B"  # a hub id: for the hub
    for missing in ["runs/prm-typo", "./prm", str(tmp_path / "nope"), "a/b/c"]:
        with pytest.raises(PrmError, match=f"cannot load model '{missing}': no such folder"):
            models.load_tokenizer(missing)
