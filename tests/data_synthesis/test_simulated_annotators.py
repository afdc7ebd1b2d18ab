"""The simulated annotators of the testbed: the simulated judge's accuracy, error mix, correlation with MC,
determinism; the MC simulator's false-negative / false-positive modes; flawed steps with a right answer."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from prm.data_synthesis.mc import MCConfig, RolloutRunner, build_generator, label_solutions
from prm.data_synthesis.problems import gsm_symbolic_problems
from prm.data_synthesis.simulated_judge import error_given_mc
from prm.data_synthesis.testbed import make_solutions

from prm.app.cli import main
from prm.arithmetic import find_equations, tokenize
from prm.config import build
from prm.records import Solution


@pytest.fixture(scope="module")
def problems():
    return gsm_symbolic_problems(250, seed=3)


@pytest.fixture(scope="module")
def testbed(problems) -> list[Solution]:
    return [s for p in problems for s in make_solutions(p, 0.45, seed=0, per_problem=4, flawed_correct_rate=0.1)]


def _within(measured: float, expected: float, n: int) -> bool:
    """Inside 4 binomial standard errors (a false alarm about once in 15,000 runs)."""
    return abs(measured - expected) <= 4 * math.sqrt(max(expected * (1 - expected), 1e-12) / n) + 1e-9


def _write(path, records) -> str:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    return str(path)


def _read(path) -> list[Solution]:
    return [Solution.from_dict(json.loads(line)) for line in open(path)]


def _mc_label(sols, **kw) -> list[Solution]:
    cfg = build(MCConfig, {"backend": "simulated", "k": 4, **kw})
    gen, prompts = build_generator(cfg, sols)
    return label_solutions(sols, RolloutRunner(gen, cfg, prompts), cfg)


# ---------------------------------------------------------------------------------------------------------
# Testbed: flawed steps with a right final answer
# ---------------------------------------------------------------------------------------------------------


def test_flawed_steps_keep_the_final_answer_and_break_one_equation(problems, testbed):
    flawed = [s for s in testbed if s.correct and s.extra["true_first_error"] >= 0]
    carried = [s for s in testbed if not s.correct]
    assert _within(len(flawed) / len(testbed), 0.1, len(testbed)) or len(flawed) > 0.08 * len(testbed)
    assert carried and all(s.extra["true_first_error"] >= 0 for s in carried)
    refs = {p.id: p.meta["reference_steps"] for p in problems}
    for s in flawed:
        k, ref = s.extra["true_first_error"], [x.strip() for x in refs[s.problem_id]]
        assert s.steps[:k] == ref[:k] and s.steps[k + 1:] == ref[k + 1:]  # only step k differs
        assert not all(eq.holds for eq in find_equations(tokenize(s.steps[k])))
    # the rate 0 draws exactly the records of before (one draw decides error / flaw / clean)
    plain = [s.to_dict() for p in problems[:40] for s in make_solutions(p, 0.45, seed=0, per_problem=4)]
    mixed = [s.to_dict() for p in problems[:40] for s in make_solutions(p, 0.45, seed=0, per_problem=4,
                                                                         flawed_correct_rate=0.1)]
    assert [d for d in mixed if not (d["correct"] and d["true_first_error"] >= 0)] == [
        d for d, m in zip(plain, mixed, strict=True) if not (m["correct"] and m["true_first_error"] >= 0)]


def test_testbed_cli_flawed_rate_is_checked(tmp_path, problems, capsys):
    src = _write(tmp_path / "p.jsonl", problems[:5])
    out = tmp_path / "tb.jsonl"
    assert main(["data", "testbed", "-i", src, "-o", str(out), "--error-rate", "0.8", "--flawed-correct-rate", "0.3"]) == 2
    assert "flawed-correct-rate" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------------------------------------
# MC simulator noise modes
# ---------------------------------------------------------------------------------------------------------


def test_mc_false_negative_and_false_positive_rates_match_their_settings(testbed):
    labeled = _mc_label(testbed, mode="exhaustive", early_stop=False, last_step_from_answer=False,
                        **{"simulated": {"false_negative": 0.15, "false_positive": 0.3, "seed": 2}})
    clean, dirty = [], []  # values of prefixes from which the gold answer is / is not reachable
    for s in labeled:
        tfe = s.extra["true_first_error"]
        for j, v in enumerate(s.mc.values):
            (clean if tfe == -1 or j < tfe or s.correct else dirty).append(v)
    fn = sum(v == 0.0 for v in clean) / len(clean)
    fp = sum(v > 0.0 for v in dirty) / len(dirty)
    assert _within(fn, 0.15, len(clean)), fn
    assert _within(fp, 0.3, len(dirty)), fp
    assert any(0 < v < 1 for v in dirty)  # 1..k lucky rollouts: soft values in between
    # without the modes the oracle is exact, and a flaw that keeps the answer is invisible to rollouts
    exact = _mc_label(testbed, mode="exhaustive")
    missed = 0
    for s in exact:
        tfe = s.extra["true_first_error"]
        if s.correct and tfe >= 0:  # missed unless a carried error of the same problem shares the prefix
            assert s.mc.first_error in (-1, tfe)
            missed += s.mc.first_error == -1
        else:
            assert s.mc.first_error == tfe
    assert missed > 0.8 * sum(s.correct and s.extra["true_first_error"] >= 0 for s in exact)


def test_mc_bad_noise_knob_is_one_line(tmp_path, testbed, capsys):
    src = _write(tmp_path / "tb.jsonl", testbed[:5])
    out = tmp_path / "mc.jsonl"
    assert main(["annotate", "mc", "-i", src, "-o", str(out), "backend=simulated", "simulated.false_positive=1.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mc.simulated.false_positive must be in [0, 1]" in err[0] and not out.exists()


# ---------------------------------------------------------------------------------------------------------
# The simulated judge
# ---------------------------------------------------------------------------------------------------------


def _judge(tmp_path, src: str, *overrides: str, name: str = "j.jsonl", shard: str | None = None) -> list[Solution]:
    out = tmp_path / name
    args = ["annotate", "judge", "-i", src, "-o", str(out), "backend=simulated", *overrides]
    assert main(args + (["--shard", shard] if shard else [])) == 0
    return _read(out if shard is None else tmp_path / f"{out.stem}.shard-{int(shard[0]):05d}-of-{int(shard[2]):05d}.jsonl")


def test_simulated_judge_accuracy_matches_its_setting(tmp_path, testbed):
    src = _write(tmp_path / "tb.jsonl", testbed)
    judged = _judge(tmp_path, src, "simulated.accuracy_erroneous=0.7", "simulated.accuracy_correct=0.85",
                    "simulated.seed=4")
    err = [s for s in judged if s.extra["true_first_error"] >= 0]
    ok = [s for s in judged if s.extra["true_first_error"] == -1]
    acc_err = sum(s.judge.first_error == s.extra["true_first_error"] for s in err) / len(err)
    acc_ok = sum(s.judge.first_error == -1 for s in ok) / len(ok)
    assert _within(acc_err, 0.7, len(err)), acc_err
    assert _within(acc_ok, 0.85, len(ok)), acc_ok
    for s in judged:  # the real judge's record shape, parse outcome included
        assert s.judge.parsed and s.judge.extra["reasons"] == ["parsed"] and len(s.judge.raw) == 1
        assert s.judge.votes == [s.judge.first_error]
    report = json.loads((tmp_path / "j.jsonl.report.json").read_text())
    assert report["truth"]["accuracy_on_erroneous"] == pytest.approx(acc_err)


def test_simulated_judge_wrong_verdict_mix(tmp_path, testbed):
    src = _write(tmp_path / "tb.jsonl", testbed)
    judged = _judge(tmp_path, src, "simulated.accuracy_erroneous=0", "simulated.wrong_none=2",
                    "simulated.wrong_earlier=1", "simulated.wrong_later=1", "simulated.unparsed=0.1")
    kinds: Counter[str] = Counter()
    for s in judged:
        t, v = s.extra["true_first_error"], s.judge.first_error
        if t < 0:
            continue
        assert v != t
        if v is None:
            assert s.judge.extra["reasons"] == ["no_box"] and not s.judge.parsed
            kinds["unparsed"] += 1
        elif 0 < t < len(s.steps) - 1:  # all three kinds possible: weights 2 : 1 : 1
            kinds["none" if v == -1 else "earlier" if v < t else "later"] += 1
    total = kinds["none"] + kinds["earlier"] + kinds["later"]
    assert _within(kinds["none"] / total, 0.5, total) and _within(kinds["earlier"] / total, 0.25, total)
    assert kinds["unparsed"] > 0


def test_simulated_judge_correlates_with_mc_errors_and_keeps_its_accuracy(tmp_path, testbed):
    mc = _mc_label(testbed, mode="exhaustive", **{"simulated": {"noise": 0.15}})
    src = _write(tmp_path / "mc.jsonl", mc)
    erroneous = [s for s in mc if s.extra["true_first_error"] >= 0]
    mc_wrong = {s.id for s in erroneous if s.mc.first_error != s.extra["true_first_error"]}
    q = len(mc_wrong) / len(erroneous)
    assert 0.2 < q < 0.8  # a noisy MC: both groups are large
    for rho in (0.0, 0.8):
        judged = _judge(tmp_path, src, "simulated.accuracy_erroneous=0.75", f"simulated.correlation={rho}",
                        name=f"j{rho}.jsonl")
        wrong = {s.id for s in judged if s.judge.first_error != s.extra["true_first_error"]
                 and s.extra["true_first_error"] >= 0}
        assert _within(len(wrong) / len(erroneous), 0.25, len(erroneous))  # the accuracy holds at any rho
        if_erred, if_right = error_given_mc(0.25, q, rho)
        n_erred, n_right = len(mc_wrong), len(erroneous) - len(mc_wrong)
        assert _within(len(wrong & mc_wrong) / n_erred, if_erred, n_erred)
        assert _within(len(wrong - mc_wrong) / n_right, if_right, n_right)
    assert error_given_mc(0.25, q, 0.0) == (0.25, 0.25)
    assert error_given_mc(0.25, q, 0.8)[0] > 0.25 + 0.1  # mistakes gather where MC erred
    if_erred, if_right = error_given_mc(0.25, 0.4, 1.0)
    assert 0.4 * if_erred + 0.6 * if_right == pytest.approx(0.25) and if_right == 0.0


def test_simulated_judge_is_deterministic_across_shards_and_order(tmp_path, testbed):
    sols = testbed[:120]
    whole = _judge(tmp_path, _write(tmp_path / "a.jsonl", sols), "simulated.accuracy_erroneous=0.5")
    shuffled = _judge(tmp_path, _write(tmp_path / "b.jsonl", sols[::-1]), "simulated.accuracy_erroneous=0.5",
                      name="b_out.jsonl")
    parts = [s for i in range(2) for s in _judge(tmp_path, _write(tmp_path / "a.jsonl", sols),
                                                 "simulated.accuracy_erroneous=0.5", name="c.jsonl", shard=f"{i}/2")]
    verdicts = {s.id: s.judge.first_error for s in whole}
    by_text: dict[tuple, set] = {}
    for s in whole:  # one text, one verdict (a greedy judge sees only the text)
        by_text.setdefault((s.problem, *s.steps), set()).add(s.judge.first_error)
    assert all(len(v) == 1 for v in by_text.values()) and len(by_text) < len(whole)
    assert verdicts == {s.id: s.judge.first_error for s in shuffled} == {s.id: s.judge.first_error for s in parts}
    other_seed = _judge(tmp_path, _write(tmp_path / "a.jsonl", sols), "simulated.accuracy_erroneous=0.5",
                        "simulated.seed=9", name="d.jsonl")
    assert verdicts != {s.id: s.judge.first_error for s in other_seed}


@pytest.mark.parametrize("overrides, records, message", [
    (["simulated.accuracy_correct=1.2"], "testbed", "judge.simulated.accuracy_correct must be in [0, 1]"),
    (["simulated.accuracy_erroneous=-0.1"], "testbed", "judge.simulated.accuracy_erroneous must be in [0, 1]"),
    (["simulated.correlation=0.5"], "testbed", "field 'mc': solution"),
    ([], "no_truth", "field 'true_first_error': solution"),
])
def test_simulated_judge_bad_knobs_stop_with_one_line(tmp_path, testbed, capsys, overrides, records, message):
    sols = testbed[:6]
    if records == "no_truth":
        sols = [Solution.from_dict({**s.to_dict(), "true_first_error": None}) for s in sols]
        sols = [Solution.from_dict({k: v for k, v in s.to_dict().items() if k != "true_first_error"}) for s in sols]
    src = _write(tmp_path / "in.jsonl", sols)
    out = tmp_path / "judged.jsonl"
    assert main(["annotate", "judge", "-i", src, "-o", str(out), "backend=simulated", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("template", ["processbench", "paper"])
def test_simulated_judge_replies_parse_in_every_protocol(template):
    from prm.data_synthesis.judge_templates import JUDGE_TEMPLATES
    from prm.data_synthesis.simulated_judge import SimulatedJudge, SimulatedJudgeConfig

    judge = SimulatedJudge(SimulatedJudgeConfig(), [], lambda s: "", "", template)
    for n in (1, 4):
        for value in range(-1, n):
            assert JUDGE_TEMPLATES[template].parse(judge.reply(value, n), n) == (value, "parsed")
