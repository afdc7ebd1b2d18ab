"""The synthetic testbed: equation reading, error injection and propagation, determinism, the CLI, the
held-out ProcessBench-style items and the simulated completer."""

from __future__ import annotations

import json

import pytest
from prm.data_synthesis.problems import gsm_symbolic_problems
from prm.data_synthesis.simulated_completer import SimulatedCompleter
from prm.data_synthesis.testbed import make_solutions
from prm.data_synthesis.testbed_heldout import heldout_step_items

from prm.app.cli import main
from prm.arithmetic import final_answer_of, find_equations, inject_error, tokenize
from prm.errors import PrmError
from prm.generation import SamplingConfig
from prm.grading import grade
from prm.records import Problem, Solution


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return gsm_symbolic_problems(60, seed=0)


def _holding(step: str) -> list[tuple[str, str]]:
    toks = tokenize(step)
    return [(" ".join(toks[i].text for i in eq.expr), toks[eq.result].text)
            for eq in find_equations(toks) if eq.holds]


@pytest.mark.parametrize("step, expected", [
    ("John will be able to place a total of 28 x 4 = 112 bananas.", [("28 x 4", "112")]),
    ("he earns $40/day * 35 days/month = $1400/month", [("$40 * 35", "$1400")]),
    ("The brokerage fee is $410,000 x 7/100 = $28,700.", [("$410,000 x 7 / 100", "$28,700")]),
    ("collected 17 + 34 signatures = 51 signatures.", [("17 + 34", "51")]),
    ("Michael paid 29 * €0.67 = €19.43 for the nails.", [("29 * €0.67", "€19.43")]),
    ("Thus, T = 182 - 139 = 43 bouncy balls came in the tube.", [("182 - 139", "43")]),
    ("the chance is 50% * 50% = 25%.", [("50% * 50%", "25%")]),
    ("Ava has 72 + 43 + 24 + T = 139 + T = 182 toys", []),  # an unknown: nothing checkable
    ("Let T be the number of bouncy balls in the tube.", []),
])
def test_equations_are_read_with_units_currency_and_percentages(step, expected):
    assert _holding(step) == expected


def test_a_wrong_equation_is_read_but_does_not_hold():
    toks = tokenize("so 3 * 4 = 13 apples")
    (eq,) = find_equations(toks)
    assert not eq.holds


def test_injected_error_breaks_step_k_and_is_carried_to_the_answer():
    steps = ["Her cousin ate 3 + 5 = 8 slices.", "Her friend ate 8 + 10 = 18 slices.",
             "They ate a total of 3 + 8 + 18 = 29 slices.", "The answer is 29."]
    import random

    out = inject_error(steps, 0, random.Random(1), context="Her cousin ate 5 more than her 3 ...")
    assert out is not None and out[0] != steps[0]
    assert not any(eq.holds for eq in find_equations(tokenize(out[0])))  # step 0's arithmetic is wrong
    wrong = tokenize(out[0])[find_equations(tokenize(out[0]))[0].result].value
    # later steps use the wrong value, and their own arithmetic is redone with it
    assert f"{wrong:g} + 10" in out[1]
    assert all(eq.holds for s in out[1:3] for eq in find_equations(tokenize(s)))
    assert final_answer_of(out) != "29"
    assert final_answer_of(out) == out[3].removeprefix("The answer is ").rstrip(".")


def test_solutions_match_their_declared_first_error(problems):
    sols = [s for p in problems for s in make_solutions(p, 0.5, seed=3)]
    by_problem = {p.id: p for p in problems}
    wrong = [s for s in sols if s.extra["true_first_error"] >= 0]
    right = [s for s in sols if s.extra["true_first_error"] == -1]
    assert len(sols) >= 55 and 0.3 < len(wrong) / len(sols) < 0.7
    for s in right:
        ref = by_problem[s.problem_id].meta["reference_steps"]
        assert s.steps == ref and s.correct and s.generator == "testbed"
    for s in wrong:
        ref = by_problem[s.problem_id].meta["reference_steps"]
        k = s.extra["true_first_error"]
        assert s.steps[:k] == ref[:k]  # every step before k is the reference's (correct)
        assert s.steps[k] != ref[k]
        assert not all(eq.holds for eq in find_equations(tokenize(s.steps[k])))  # step k's arithmetic is off
        assert any(eq.holds for eq in find_equations(tokenize(ref[k])))  # k had arithmetic to break
        assert not s.correct and not grade(s.final_answer, s.answer)
    assert {s.extra["true_first_error"] for s in wrong} >= {0, 1, 2}


def test_testbed_is_deterministic_and_seeded(problems):
    a = [s.to_dict() for p in problems[:20] for s in make_solutions(p, 0.5, seed=7)]
    b = [s.to_dict() for p in problems[:20] for s in make_solutions(p, 0.5, seed=7)]
    c = [s.to_dict() for p in problems[:20] for s in make_solutions(p, 0.5, seed=8)]
    assert a == b and a != c
    # a problem's solutions do not depend on which other problems are in the file
    alone = [s.to_dict() for s in make_solutions(problems[5], 0.5, seed=7)]
    assert alone == [d for d in a if d["problem_id"] == problems[5].id]


def test_error_rate_extremes(problems):
    assert all(s.extra["true_first_error"] == -1 for p in problems[:10] for s in make_solutions(p, 0.0, 0))
    errs = [s.extra["true_first_error"] for p in problems[:30] for s in make_solutions(p, 1.0, 0)]
    assert sum(e >= 0 for e in errs) >= 25  # a few problems have no checkable arithmetic


def test_cli_writes_resumes_and_holds_out(tmp_path, problems, capsys):
    src = tmp_path / "problems.jsonl"
    src.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems[:30]))
    out, held = tmp_path / "tb.jsonl", tmp_path / "held.jsonl"
    args = ["data", "testbed", "-i", str(src), "-o", str(out), "--seed", "2",
            "--heldout-fraction", "0.3", "--heldout-out", str(held)]
    assert main(args) == 0
    kept = [Solution.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    items = [json.loads(line) for line in held.read_text().splitlines()]
    assert len(kept) + len(items) == 30 and items and kept
    assert not {s.problem_id for s in kept} & {i["problem_id"] for i in items}
    for item in items:
        assert item["generator"] == "testbed" and -1 <= item["label"] < len(item["steps"])
        assert item["final_answer_correct"] == (item["label"] == -1)
    before = out.read_text()
    assert main(args) == 0 and out.read_text() == before  # resume: nothing written twice


def test_heldout_function_splits_by_problem(problems):
    sols = [s for p in problems for s in make_solutions(p, 0.5, 0, per_problem=2)]
    kept, held = heldout_step_items(sols, 0.25, seed=0)
    assert len(kept) + len(held) == len(sols) and 0 < len(held) < len(sols)
    held_problems = {i.extra["problem_id"] for i in held}
    assert not held_problems & {s.problem_id for s in kept}
    truth = {s.id: s.extra["true_first_error"] for s in sols}
    assert all(i.label == truth[i.id] for i in held)


def test_cli_rejects_problems_without_reference_steps(tmp_path, capsys):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "problem": "1+1?", "answer": "2", "source": "x"}) + "\n")
    out = tmp_path / "tb.jsonl"
    assert main(["data", "testbed", "-i", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reference_steps" in err[0]
    assert not out.exists()
    assert main(["data", "testbed", "-i", str(src), "-o", str(out), "--error-rate", "2"]) == 2


# ---------------------------------------------------------------------------------------------------------
# Simulated completer
# ---------------------------------------------------------------------------------------------------------


def _completer(sols, **kw) -> tuple[SimulatedCompleter, dict]:
    prompts = {}

    def prompt_for(sol, k):
        prompts[(sol.id, k)] = f"P:{sol.problem}\n\n" + "\n\n".join(sol.steps[: k + 1]) + "\n\n"
        return prompts[(sol.id, k)]

    return SimulatedCompleter.for_solutions(sols, prompt_for, **kw), prompts


def _reaches_gold(completion, gold) -> bool:
    from prm.grading import extract_answer

    return grade(extract_answer(completion.text), gold)


def test_simulated_completer_answers_gold_exactly_on_clean_prefixes(problems):
    sols = [s for p in problems[:20] for s in make_solutions(p, 0.7, 1)]
    gen, prompts = _completer(sols)
    keys = list(prompts)
    outs = gen.generate([prompts[k] for k in keys], SamplingConfig(n=3, seed=0))
    by_id = {s.id: s for s in sols}
    for (sid, k), comps in zip(keys, outs, strict=True):
        sol = by_id[sid]
        tfe = sol.extra["true_first_error"]
        clean = tfe == -1 or k < tfe
        assert len(comps) == 3
        assert all(_reaches_gold(c, sol.answer) == clean for c in comps)
        rest = sum(len(s.split()) for s in sol.steps[k + 1:])
        assert all(c.tokens >= 0.5 * rest and c.finish_reason == "stop" for c in comps)


def test_simulated_completer_noise_seed_and_batching(problems):
    sols = [s for p in problems[:15] for s in make_solutions(p, 0.5, 1)]
    gen, prompts = _completer(sols, noise=1.0)
    keys = list(prompts)
    by_id = {s.id: s for s in sols}
    outs = gen.generate([prompts[k] for k in keys], SamplingConfig(n=2))
    for (sid, k), comps in zip(keys, outs, strict=True):
        tfe = by_id[sid].extra["true_first_error"]
        assert all(_reaches_gold(c, by_id[sid].answer) != (tfe == -1 or k < tfe) for c in comps)  # all flipped
    noisy, _ = _completer(sols, noise=0.3, seed=5)
    all_at_once = noisy.generate([prompts[k] for k in keys], SamplingConfig(n=4, seed=1))
    one_by_one = [noisy.generate([prompts[k]], SamplingConfig(n=4, seed=1))[0] for k in keys]
    assert all_at_once == one_by_one  # a prompt's samples do not depend on the batch
    flips = sum(_reaches_gold(c, by_id[sid].answer) != (by_id[sid].extra["true_first_error"] in (-1,) or
                k < by_id[sid].extra["true_first_error"])
                for (sid, k), comps in zip(keys, all_at_once, strict=True) for c in comps)
    total = 4 * len(keys)
    assert 0.15 * total < flips < 0.45 * total


def test_simulated_completer_rejects_unknown_prompts_and_truncates(problems):
    sols = make_solutions(problems[0], 0.0, 0)
    gen, prompts = _completer(sols)
    with pytest.raises(PrmError, match="unknown prompt"):
        gen.generate(["something else"], SamplingConfig())
    (comps,) = gen.generate([prompts[(sols[0].id, 0)]], SamplingConfig(n=2, max_new_tokens=3))
    assert all(c.finish_reason == "length" and c.tokens == 3 and "boxed" not in c.text for c in comps)
    plain = Solution(id="x", problem_id="p", problem="q", answer="1", steps=["a"], final_answer="1",
                     correct=True, generator="g")
    with pytest.raises(PrmError, match="true_first_error"):
        gen.register("p", plain, 0)
