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


def online(monkeypatch):
    """No offline switch (tests/conftest.py sets them all)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to reach the hub fails the test: proves a code path never waits on the network."""
    import prm.hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"network used: {args}")

    prm.hub._can_connect.cache_clear()
    monkeypatch.setattr(prm.hub.socket, "create_connection", refuse)
    yield
    prm.hub._can_connect.cache_clear()


@pytest.mark.parametrize("name", ["./prm", "../prm", "~/prm", "/abs/prm", "a/b/c", "runs/prm-typo", "has space/x",
                                  "C:\\models\\prm", "org/.hidden"])
def test_a_missing_folder_fails_at_once(tmp_path, monkeypatch, no_network, name):
    """A name that reads as a path is never looked up on the hub, online or not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    online(monkeypatch)
    with pytest.raises(PrmError) as info:
        models.load_tokenizer(name)
    assert str(info.value) == f"cannot load model '{name}': no such model folder"


def test_an_existing_folder_is_that_folder(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "prm").mkdir(parents=True)
    (tmp_path / "runs" / "prm" / "config.json").write_text("{}")
    assert models.resolve_model("runs/prm") == "runs/prm"


@pytest.mark.parametrize(("name", "hub_id"), [
    ("Qwen/Qwen2.5-Math-PRM-7B", True), ("gpt2", True), ("org/name.v1_2-3", True),
    ("./x", False), ("/x", False), ("~/x", False), ("a/b/c", False), ("a\\b", False), ("org/../x", False),
    (".org/x", False), ("org/-x", False), ("", False),
])
def test_hub_id_syntax(name, hub_id):
    from prm.hub import looks_like_hub_id

    assert looks_like_hub_id(name) is hub_id


def test_offline_a_hub_id_comes_from_the_cache_or_fails_at_once(tmp_path, monkeypatch, no_network, tokenizer):
    """HF_HUB_OFFLINE=1: `runs/tiny-lm` before it exists (a valid hub id) is not in the cache: one line at
    once; a hub id that is in the cache is its snapshot folder, loaded without the network."""
    import huggingface_hub.constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(PrmError) as info:
        models.load_tokenizer("runs/tiny-lm")
    assert str(info.value).startswith("cannot load model 'runs/tiny-lm': no such model folder, and no hub model "
                                      "of that id in the local Hugging Face cache (offline mode (HF_HUB_OFFLINE=1")
    # The cache layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<revision>/...}.
    repo = tmp_path / "hf-cache" / "models--org--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    models.save_tiny_causal_lm(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    assert models.resolve_model("org/tiny") == str(snapshot)
    assert len(models.load_tokenizer("org/tiny")) == len(tokenizer)


def test_online_without_a_reachable_hub_fails_at_once(tmp_path, monkeypatch):
    """No offline switch, but no route to the hub: one quick probe, then one line (not a minute of retries)."""
    import huggingface_hub.constants

    import prm.hub

    calls = []

    def unreachable(address, timeout):
        calls.append((address, timeout))
        raise OSError("Name or service not known")

    prm.hub._can_connect.cache_clear()
    monkeypatch.setattr(prm.hub.socket, "create_connection", unreachable)
    online(monkeypatch)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    try:
        with pytest.raises(PrmError, match=r"cannot load model 'org/never-cached': no such model folder, .*"
                                           r"the Hugging Face hub \(huggingface.co\) cannot be reached"):
            models.load_tokenizer("org/never-cached")
        with pytest.raises(PrmError, match="cannot be reached"):
            models.load_tokenizer("org/other")
        assert calls == [(("huggingface.co", 443), 3.0)]  # probed once per process
    finally:
        prm.hub._can_connect.cache_clear()


def test_online_a_hub_id_goes_to_the_hub(monkeypatch):
    import prm.hub

    prm.hub._can_connect.cache_clear()
    online(monkeypatch)
    monkeypatch.setattr(prm.hub, "_can_connect", lambda host, timeout: True)
    assert models.resolve_model("Qwen/Qwen2.5-Math-PRM-7B") == "Qwen/Qwen2.5-Math-PRM-7B"


def test_a_stage_with_a_missing_model_folder_fails_at_once(tmp_path, monkeypatch, capsys, no_network):
    from prm.app.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problems = tmp_path / "p.jsonl"
    assert main(["data", "problems", "--source", "gsm_symbolic", "-n", "2", "-o", str(problems)]) == 0
    assert main(["sample", "-i", str(problems), "-o", "s.jsonl", "generator.model=runs/tiny-lm", "n=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load model 'runs/tiny-lm': no such model folder")
    assert not (tmp_path / "s.jsonl").exists()
