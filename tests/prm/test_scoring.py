"""One-pass batched step scoring vs each format's per-step reference; format detection; tags; `prm score`.

    pytest tests/prm/test_scoring.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.errors import PrmError
from prm.scoring import detect_format, load_scorer, plan_batches
from prm.scoring.base import find_token
from testkit.tiny_checkpoints import FORMATS, make_tiny_checkpoint

# Different lengths (1 to 6 steps, short and long problems) so that batches are padded.
PROBLEMS = [
    "What is 2 + 3 * 4?",
    "A train travels 60 km in 1.5 hours. What is its average speed in km/h? Give the answer as a number.",
    "Compute 7 * 8.",
    "Solve for x: 3x - 7 = 11. Then report x squared.",
    "Ein Quadrat hat den Umfang 20 cm. Wie groß ist seine Fläche?",
]
STEPS = [
    ["First compute 3 * 4 = 12.", "Then 2 + 12 = 14.", "The answer is 14."],
    ["Speed is distance over time.", "60 / 1.5 = 40.", "So the speed is 40 km/h.",
     "Check: 40 * 1.5 = 60, which matches.", "Answer: 40"],
    ["7 * 8 = 56."],
    ["Add 7 to both sides: 3x = 18.", "Divide by 3:\nx = 6.", "x squared is 36.", "Double-check: 3*6-7 = 11.",
     "So x^2 = 36.", "The answer is $\\boxed{36}$."],
    ["Seitenlänge = 20 / 4 = 5 cm.", "Fläche = 5 * 5 = 25 cm²."],
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and do not fight other processes for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, tokenizer) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-prms")
    return {fmt: make_tiny_checkpoint(fmt, root / fmt) for fmt in FORMATS}


@pytest.fixture(scope="session")
def scorers(checkpoints) -> dict:
    return {fmt: load_scorer(path, format="auto", device="cpu") for fmt, path in checkpoints.items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_tiny_checkpoint_detected(fmt, checkpoints, scorers):
    assert detect_format(checkpoints[fmt]) == fmt
    assert scorers[fmt].format == fmt
    assert "float32" in scorers[fmt].describe()


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_pass_batched_equals_reference(fmt, scorers):
    scorer = scorers[fmt]
    fast = scorer.score(PROBLEMS, STEPS, batch_size=3)
    assert scorer.stats.batches == 2 and scorer.stats.padded_tokens > scorer.stats.tokens  # padding exercised
    assert scorer.stats.steps == sum(map(len, STEPS))
    slow = scorer.reference_scores(PROBLEMS, STEPS)
    assert [len(s) for s in fast] == [len(s) for s in STEPS] == [len(s) for s in slow]
    for got, want in zip(fast, slow, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    flat = [x for s in fast for x in s]
    assert all(0.0 <= x <= 1.0 for x in flat)
    assert max(flat) - min(flat) > 0.05  # scores vary: a wrong position would not go unnoticed


def test_batch_size_does_not_change_scores(scorers):
    scorer = scorers["qwen_prm"]
    one = scorer.score(PROBLEMS, STEPS, batch_size=1)
    all_ = scorer.score(PROBLEMS, STEPS, batch_size=8, max_tokens=10_000)
    for a, b in zip(one, all_, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_qwen_extra_0_is_one_id_and_content_cannot_fake_it(scorers):
    scorer = scorers["qwen_prm"]
    assert len(scorer.tokenizer.encode("<extra_0>", add_special_tokens=False)) == 1
    steps = ["I write <extra_0> inside a step.", "Next step."]
    enc = scorer.encode("A problem with <extra_0> in it.", steps)
    assert len(enc.positions) == 2 and all(enc.input_ids[p] == scorer.tag_id for p in enc.positions)


def test_math_shepherd_tag_is_one_id(scorers, tokenizer):
    scorer = scorers["math_shepherd"]
    ids = scorer.tokenizer("a ки\nb ки", add_special_tokens=False)["input_ids"]
    assert ids.count(scorer.tag_id) == 2
    assert scorer.tokenizer.decode([scorer.tag_id]).strip() == "ки"
    enc = scorer.encode("Problem", ["step one", "step two", "step three"])
    assert len(enc.positions) == 3 and all(enc.input_ids[p] == scorer.tag_id for p in enc.positions)
    # The bare SmolLM2 tokenizer splits " ки" into two ids: that tokenizer cannot read Math-Shepherd tags.
    with pytest.raises(PrmError, match="not one token"):
        find_token(tokenizer, "x ки", "ки", "step tag")


def test_rlhflow_reads_where_the_answer_is_predicted(scorers):
    scorer = scorers["rlhflow"]
    enc = scorer.encode(PROBLEMS[1], STEPS[1])
    for k, pos in enumerate(enc.positions):
        prefix = scorer.tokenizer.apply_chat_template(scorer._conversation(PROBLEMS[1], STEPS[1][: k + 1], "+"),
                                                      tokenize=True, return_dict=False)
        assert pos == len(prefix) - 3  # RLHFlow's script: logits[:, -3] for the Llama 3.1 template
        assert enc.input_ids[: len(prefix)] == prefix
        assert enc.input_ids[pos + 1] == scorer.good_id


def test_rlhflow_strips_each_step_as_prm_evaluate_does(scorers):
    """RLHFlow's prm_evaluate.py strips every step (`[j.strip() for j in ans_list]`), so padded steps score as
    the bare ones, in one pass and in the reference procedure; the problem is kept as given."""
    scorer = scorers["rlhflow"]
    padded = ["  \n" + STEPS[1][0] + "  ", *[f"\n{s}\n\n" for s in STEPS[1][1:]]]
    bare = scorer.score([PROBLEMS[1]], [STEPS[1]])[0]
    assert scorer.score([PROBLEMS[1]], [padded])[0] == bare
    assert scorer.reference_scores([PROBLEMS[1]], [padded])[0] == pytest.approx(bare, abs=1e-4)
    assert scorer._conversation("Q? ", [" a ", "b\n"], "+")[0]["content"] == "Q?  a"


def test_skywork_reads_each_step_token(scorers):
    scorer = scorers["skywork"]
    enc = scorer.encode("P", ["a", "b\nc", "d"])
    assert len(enc.positions) == 3 and all(enc.input_ids[p] == scorer.step_id for p in enc.positions)
    assert enc.positions[-1] == len(enc.input_ids) - 1


def test_plan_batches_sorts_and_caps():
    lengths = [5, 50, 20, 40, 10, 30]
    batches = plan_batches(lengths, batch_size=2)
    assert batches == [[1, 3], [5, 2], [4, 0]]
    capped = plan_batches(lengths, batch_size=4, max_tokens=90)
    assert all(len(b) * lengths[b[0]] <= 90 or len(b) == 1 for b in capped)
    assert sorted(i for b in capped for i in b) == list(range(len(lengths)))
    with pytest.raises(PrmError):
        plan_batches(lengths, batch_size=0)


def test_plan_batches_padding_cap():
    lengths = [100, 98, 97, 60, 59, 30, 100, 20]
    batches = plan_batches(lengths, batch_size=8, max_padding=0.05)
    # longest first; a batch ends where the next one would push its pad positions over 5% of its real tokens
    assert batches == [[0, 6, 1, 2], [3, 4], [5], [7]]
    for b in batches:
        assert lengths[b[0]] * len(b) <= 1.05 * sum(lengths[i] for i in b)
    assert plan_batches(lengths, batch_size=8, max_padding=0.0) == [[0, 6], [1], [2], [3], [4], [5], [7]]
    assert plan_batches(lengths, batch_size=8) == [sorted(range(8), key=lambda i: (-lengths[i], i))]
    with pytest.raises(PrmError, match="max_padding"):
        plan_batches(lengths, batch_size=8, max_padding=-0.1)


def test_undetectable_checkpoint_and_bad_format(tmp_path, checkpoints):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(PrmError, match="cannot tell"):
        detect_format(str(tmp_path))
    with pytest.raises(PrmError, match="unknown PRM format"):
        load_scorer(checkpoints["qwen_prm"], format="nope", device="cpu")


def test_empty_step_list_is_an_error(scorers):
    with pytest.raises(PrmError, match="no steps"):
        scorers["skywork"].score(["P"], [[]])


# ------------------------------------------------------------------------------------------- CLI


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _solutions() -> list[dict]:
    return [{"id": f"s{i}", "problem_id": f"p{i}", "problem": p, "answer": "0", "steps": s, "final_answer": "0",
             "correct": i % 2 == 0, "generator": "tiny", "note": "kept"}
            for i, (p, s) in enumerate(zip(PROBLEMS, STEPS, strict=True))]


def test_cli_scores_solutions_and_resumes(tmp_path, checkpoints, scorers, capsys):
    src = _write(tmp_path / "sols.jsonl", _solutions())
    out = tmp_path / "scored.jsonl"
    args = ["score", "--model", checkpoints["math_shepherd"], "-i", str(src), "-o", str(out), "--batch-size", "2",
            "--device", "cpu"]
    assert main(args) == 0
    assert "solutions/s" in capsys.readouterr().out
    rows = _read(out)
    expected = scorers["math_shepherd"].score(PROBLEMS, STEPS)
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(len(PROBLEMS))]
    for row, want, original in zip(rows, expected, _solutions(), strict=True):
        assert row["step_scores"] == pytest.approx(want, abs=1e-5)
        assert {k: v for k, v in row.items() if k != "step_scores"} == original
    # A kill mid-write leaves a torn last line: the rerun cuts it and scores only what is missing.
    text = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(text[:2]) + text[2][:25], encoding="utf-8")
    assert main(args) == 0
    assert "3 solution(s) in 3 record(s)" in capsys.readouterr().out
    again = _read(out)
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    for a, b in zip(again, rows, strict=True):
        assert a["step_scores"] == pytest.approx(b["step_scores"], abs=1e-5)
    assert main(args) == 0
    assert "already scored" in capsys.readouterr().out


def test_cli_scores_bon_candidates_and_processbench_items(tmp_path, checkpoints, scorers):
    bon = [{"problem_id": "p0", "problem": PROBLEMS[0], "answer": "14",
            "candidates": [{"steps": s, "final_answer": "14", "correct": j == 0} for j, s in enumerate(STEPS)]},
           {"problem_id": "p1", "problem": PROBLEMS[1], "answer": "40",
            "candidates": [{"steps": STEPS[1], "final_answer": "40", "correct": True}]}]
    src = _write(tmp_path / "bon.jsonl", bon)
    out = tmp_path / "bon_scored.jsonl"
    assert main(["score", "--model", checkpoints["qwen_prm"], "-i", str(src), "-o", str(out), "--device", "cpu",
                 "--format", "qwen_prm"]) == 0
    rows = _read(out)
    want = scorers["qwen_prm"].score([PROBLEMS[0]] * len(STEPS) + [PROBLEMS[1]], STEPS + [STEPS[1]])
    got = [c["step_scores"] for r in rows for c in r["candidates"]]
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    items = [{"id": f"gsm8k-{i}", "generator": "g", "problem": p, "steps": s, "final_answer_correct": True,
              "label": -1} for i, (p, s) in enumerate(zip(PROBLEMS, STEPS, strict=True))]
    src = _write(tmp_path / "pb.jsonl", items)
    out = tmp_path / "pb_scored.jsonl"
    assert main(["score", "--model", checkpoints["skywork"], "-i", str(src), "-o", str(out), "--device", "cpu"]) == 0
    assert [len(r["step_scores"]) for r in _read(out)] == [len(s) for s in STEPS]


def test_cli_bad_input_is_one_line_exit_2(tmp_path, checkpoints, capsys):
    src = _write(tmp_path / "problems.jsonl", [{"id": "p", "problem": "x", "answer": "1", "source": "s"}])
    assert main(["score", "--model", checkpoints["skywork"], "-i", str(src), "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no steps to score" in err
    bad = _write(tmp_path / "bad.jsonl", [_solutions()[0], {**_solutions()[1], "steps": "not a list"}])
    assert main(["score", "--model", checkpoints["skywork"], "-i", str(bad), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "bad.jsonl:2: field 'steps'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    assert main(["score", "-i", str(bad), "-o", str(tmp_path / "o.jsonl")]) == 2
