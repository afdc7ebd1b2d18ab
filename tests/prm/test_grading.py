"""Answer extraction and grading, checked against the real math-verify (no mocks)."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import pytest
from math_verify import parse, verify

import prm.grading as grading
from prm.errors import ConfigError, PrmError
from prm.grading import extract_answer, grade, grade_many, grade_response, normalize_answer

logging.getLogger("math_verify").setLevel(logging.ERROR)


@pytest.fixture(scope="module", autouse=True)
def _stop_sandboxes():
    yield
    grading.close_workers()


def _mv(gold: str, response: str) -> bool:
    """math-verify's own verdict (main thread, its signal timeouts on), gold given as `$gold$`."""
    return verify(parse(f"${gold}$"), parse(response))


# ------------------------------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the result is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("First \\boxed{3}, corrected: \\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}"),
        ("\\fbox{7}", "7"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{x^{2}+\\frac{1}{x}}", "x^{2}+\\frac{1}{x}"),
        ("The answer is 42.", "42"),
        ("Thus, the final answer is: **-3**.", "-3"),
        ("Final answer: $\\frac{3}{4}$", "\\frac{3}{4}"),
        ("**Answer:** 3.5.", "3.5"),
        ("Final Answer: The final answer is $7$. I hope it is correct.", "7"),
        ("The answer is:\n\n12", "12"),
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
        ("#### 1,234", "1,234"),
        ("we get 5-3 = 2, then half of 10 is -3", "-3"),
        ("the total is 1,234,567 dollars", "1,234,567"),
        ("each costs 3.5 and 1 / 2 of them", "1/2"),
        ("so x equals -\\frac{1}{2}", "-\\frac{1}{2}"),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_extract_methods_are_ordered_and_configurable() -> None:
    text = "The answer is 5. Check: \\boxed{6}, and 7 more."
    assert extract_answer(text) == "6"
    assert extract_answer(text, ("answer_is", "boxed")) == "5"
    assert extract_answer(text, ("last_number",)) == "7"
    assert extract_answer("no digits at all", ("boxed", "answer_is", "hash")) is None
    assert extract_answer("") is None
    assert extract_answer("\\boxed{} is empty, so 9", ("boxed",)) is None
    with pytest.raises(ConfigError, match="last_numbr"):
        extract_answer("1", ("last_numbr",))


def test_normalize_answer() -> None:
    assert normalize_answer("$3.50") == "3.50"
    assert normalize_answer("\\$1,234") == "1234"
    assert normalize_answer("3.50 dollars") == "3.50"
    assert normalize_answer("42 \\text{ cm}") == "42"
    assert normalize_answer("90^\\circ") == "90"
    assert normalize_answer("$\\boxed{\\dfrac{1}{2}}$") == "\\frac{1}{2}"
    assert normalize_answer("50\\%") == "50%"
    assert normalize_answer("1\\,000") == "1000"
    assert normalize_answer("2 pi") == "2 pi"  # a math word is never taken for a unit
    assert normalize_answer("1,2") == "1,2"  # not a thousands separator: a pair


# ------------------------------------------------------------------------------------------ grading


BOXED_RESPONSES = [
    ("The answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("So we get $\\boxed{\\dfrac{3}{4}}$", "0.75"),
    ("Hence $\\boxed{\\frac{\\sqrt{2}}{2}}$", "\\frac{1}{\\sqrt{2}}"),
    ("Therefore $\\boxed{\\frac{1}{3}}$", "\\frac{2}{3}"),
    ("$\\boxed{x^2 + 2x + 1}$", "(x+1)^2"),
    ("$\\boxed{-7}$", "-7"),
    ("$\\boxed{1,234}$", "1234"),
    ("$\\boxed{\\frac{\\pi}{3}}$", "60"),
]


@pytest.mark.parametrize(("response", "gold"), BOXED_RESPONSES)
def test_boxed_grading_agrees_with_math_verify(response: str, gold: str) -> None:
    answer, ok = grade_response(response, gold)
    assert answer is not None
    assert ok == _mv(gold, response)


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("1/2", "0.5", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("0.333333", "\\frac{1}{3}", True),
        ("0.33", "\\frac{1}{3}", False),
        ("1234", "1,234", True),
        ("1,234,567", "1234567", True),
        ("1,235", "1,234", False),
        ("-3", "-3", True),
        ("3", "-3", False),
        ("-\\frac{1}{2}", "-0.5", True),
        ("$3.50", "3.5", True),
        ("3.50 dollars", "$3.50", True),
        ("50\\%", "0.5", True),
        ("50%", "50", True),
        ("12 \\text{ cm}", "12", True),
    ],
)
def test_grade_numbers_and_notation(predicted: str, gold: str, expected: bool) -> None:
    assert grade(predicted, gold) is expected


def test_grade_response_formats() -> None:
    assert grade_response("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72") == ("72", True)
    assert grade_response("The answer is 1,234.", "1234") == ("1,234", True)
    assert grade_response("The answer is -5.", "5") == ("-5", False)
    assert grade_response("Step 1: x = -2\nAnswer: -2", "-2") == ("-2", True)


def test_no_answer_is_false_not_a_crash() -> None:
    assert grade_response("I am not sure how to solve this.", "5") == (None, False)
    assert grade(None, "5") is False
    assert grade("", "5") is False
    assert grade("   ", "\\frac{1}{2}") is False
    assert grade("\\frac{1}{", "\\frac{1}{2}") is False  # unparsable prediction
    assert grade_many([(None, "1"), ("", "2"), ("2", "2")]) == [False, False, True]


def test_bad_arguments_raise() -> None:
    with pytest.raises(PrmError, match="gold answer"):
        grade("5", "")
    with pytest.raises(PrmError, match="pair 1"):
        grade_many([("1", "1"), ("1", " ")])
    with pytest.raises(ConfigError):
        grade("5", "5", timeout_s=0)
    with pytest.raises(ConfigError):
        grade_many([("5", "5")], workers=-1)


def test_grading_in_a_worker_thread() -> None:
    # Control: math-verify's own signal.alarm timeout cannot run outside the main thread.
    errors: list[BaseException] = []

    def raw() -> None:
        try:
            parse("$\\frac{\\pi}{2}$", parsing_timeout=5)
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=raw)
    t.start()
    t.join()
    assert errors and "thread" in str(errors[0])

    # Ours: symbolic answers (math-verify path, not the numeric fast path) from several threads.
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        results[i] = grade("\\frac{\\pi}{2}", "\\pi/2") and not grade("\\frac{\\pi}{3}", "\\pi/2")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {0: True, 1: True, 2: True}


def test_grade_many_with_two_workers_matches_grade(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs: list[tuple[str | None, str]] = [
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("x^2+2x+1", "(x+1)^2"),
        ("x^2+1", "(x+1)^2"),
        ("1,234", "1234"),
        (None, "3"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("$\\frac{\\sqrt{2}}{2}$", "\\frac{1}{\\sqrt{2}}"),  # the first pair again, once normalised
        ("0.5", "\\frac{1}{2}"),
        ("\\{1, 2\\}", "\\{2, 1\\}"),
        ("\\sqrt{3}", "\\sqrt{2}"),
    ]
    expected = [True, True, False, True, False, True, True, True, True, False]
    sent: list[int] = []
    real = grading._run_sandboxed

    def spy(items, workers, timeout_s):  # counts what reaches math-verify; grading stays real
        sent.append(len(items))
        return real(items, workers, timeout_s)

    monkeypatch.setattr(grading, "_run_sandboxed", spy)
    assert grade_many(pairs, workers=2) == expected
    # 10 pairs: one None, two plain-number pairs (fast path), one repeat (cache) -> 6 to math-verify.
    assert sent == [6]
    assert [grade(p, g) for p, g in pairs] == expected
    assert grade_many(pairs, workers=0) == expected
    assert grade_many([]) == []


def _grade_in_forked_child(pred: str, gold: str) -> tuple[bool, list[int]]:
    ok = grade(pred, gold)
    return ok, [sb.proc.pid for sb in grading._POOL]


def test_grading_in_a_forked_process() -> None:
    grade("\\sqrt{2}^2", "2")  # the parent holds sandboxes; a forked child must start its own
    parent_pids = {sb.proc.pid for sb in grading._POOL}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        ok, child_pids = pool.apply(_grade_in_forked_child, ("\\frac{\\pi}{2}", "\\pi/2"))
        assert ok is True
        assert child_pids and not parent_pids & set(child_pids)
        assert pool.apply(_grade_in_forked_child, ("\\frac{\\pi}{3}", "\\pi/2"))[0] is False
    assert grade("\\sqrt{2}^2", "2") is True


def test_timeout_grades_false_and_recovers() -> None:
    # A pair math-verify calls equal, given time; with a deliberately tiny limit it grades False.
    # (The limit runs from when a sandbox has the item, never over a sandbox's start-up.)
    pred = "\\frac{\\sqrt{2}}{2}+\\frac{\\sqrt{3}}{7}+\\frac{\\sqrt{5}}{11}"
    gold = "\\frac{1}{\\sqrt{2}}+\\frac{\\sqrt{3}}{7}+\\frac{\\sqrt{5}}{11}"
    assert grade(pred, gold, timeout_s=1e-4) is False

    # 9^(9^9) is a 370-million-digit integer: sympy grinds for minutes inside C calls that no signal
    # interrupts. Its sandbox is killed at the limit, the others go on, and the killed one (like the
    # one above) is replaced.
    start = time.monotonic()
    results = grade_many(
        [(pred, gold), ("9^{9^{9}}", "3"), ("\\frac{\\pi}{2}", "\\pi/2"), ("x", "y"), ("\\sqrt{4}", "2")],
        workers=2,
        timeout_s=3.0,  # room for a loaded machine; 9^(9^9) needs minutes
    )
    assert results == [True, False, True, False, True]
    assert time.monotonic() - start < 60
    assert grade("\\sqrt{9}", "3") is True


# Plain-number pairs: graded without math-verify, and the verdicts must be math-verify's.
NUMERIC_PAIRS = [
    ("42", "42"), ("42", "24"), ("-3", "-3"), ("-3", "3"), ("1,234", "1234"), ("1234.0", "1234"),
    ("0.5", "1/2"), ("\\frac{1}{2}", "0.5"), ("\\dfrac12", "0.5"), ("\\frac{-1}{2}", "-0.5"),
    ("-\\frac{1}{2}", "\\frac{1}{-2}"), ("1/3", "0.333333"), ("1/3", "0.33"), ("2/3", "0.666667"),
    ("2/3", "0.666666"), ("3.50", "3.5"), ("$3.50", "7/2"), ("50%", "0.5"), ("50%", "50"),
    ("0.5%", "0.5"), ("5.0%", "5"), ("75%", "\\frac{3}{4}"), ("1,000,000", "1000000"),
    ("12345678901234567890", "12345678901234567891"), ("0.1", "1/10"), ("+5", "5"), ("007", "7"),
    ("2.0", "2"), ("-0", "0"), (".5", "0.5"), ("1/0", "1"),
]


def test_fast_path_agrees_with_math_verify() -> None:
    checked = 0
    for pred, gold in NUMERIC_PAIRS:
        npred, ngold = normalize_answer(pred), normalize_answer(gold)
        fast = grading._fast_grade(npred, ngold)
        if pred == "1/0":
            assert fast is None  # not a number: left to math-verify
            continue
        assert fast is not None, (pred, gold)
        assert fast == grading._math_verify(npred, ngold), (pred, gold)
        checked += 1
    assert checked == len(NUMERIC_PAIRS) - 1


def test_numeric_pairs_never_start_math_verify() -> None:
    grading.close_workers()
    pairs = [(p, g) for p, g in NUMERIC_PAIRS if p != "1/0"] * 50
    start = time.monotonic()
    results = grade_many(pairs, workers=2)
    elapsed = time.monotonic() - start
    assert grading._POOL == []  # no sandbox was started
    assert results[: len(NUMERIC_PAIRS) - 1] == [
        grading._fast_grade(normalize_answer(p), normalize_answer(g)) for p, g in NUMERIC_PAIRS if p != "1/0"
    ]
    assert elapsed < 2.0
