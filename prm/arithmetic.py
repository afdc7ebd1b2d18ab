"""The arithmetic of a worked solution, one step a line: read a step's equations (`28 x 4 = 112`), check them,
and inject an error that is carried forward (`28 x 4 = 115`, then every later use of 112 becomes 115 and every
later equation that used it is recomputed). The synthetic testbed (prm/data_synthesis/testbed.py) builds its
solutions with known first errors from it; the simulated search policy uses it too.

    from prm.arithmetic import arithmetic_steps, inject_error
    arithmetic_steps(["28 x 4 = 112", "132 - 112 = 20", "#### 20"])   # -> [0, 1]
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"(?P<num>(?P<cur>[$€£])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<dec>\.\d+)?(?P<pct>%)?)"
    r"|(?P<unit>/[A-Za-z][A-Za-z']*(?:/[A-Za-z]+)*)"  # "/day" in "$40/day"
    r"|(?P<word>[A-Za-z][A-Za-z']*(?:/[A-Za-z]+)*)"  # "days/week" is one unit word
    r"|(?P<op>[+\-*/×÷−–])"
    r"|(?P<lp>\()|(?P<rp>\))|(?P<eq>=)"
    r"|(?P<other>\S)"
)
_OPS = {"+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "×": "*", "x": "*", "X": "*", "/": "/", "÷": "/"}


@dataclass
class Tok:
    kind: str  # num | word | op | lp | rp | eq | other
    text: str
    start: int
    end: int
    value: float = 0.0  # numbers only (a percentage is value/100)
    cur: str = ""
    commas: bool = False
    decimals: int = 0
    pct: bool = False


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        if kind in ("cur", "int", "dec", "pct"):
            kind = "num"
        if m.group("num"):
            digits = m.group("int").replace(",", "")
            dec = m.group("dec") or ""
            value = float(digits + dec)
            pct = bool(m.group("pct"))
            toks.append(Tok("num", m.group(0), m.start(), m.end(), value / 100 if pct else value,
                            m.group("cur") or "", "," in m.group("int"), max(len(dec) - 1, 0), pct))
        elif m.group("unit"):
            toks.append(Tok("word", m.group(0), m.start(), m.end()))
        else:
            toks.append(Tok(kind, m.group(0), m.start(), m.end()))
    # "x" between two numbers is a multiplication sign: "28 x 4".
    for i, t in enumerate(toks):
        if t.kind == "word" and t.text in ("x", "X") and 0 < i < len(toks) - 1:
            if toks[i - 1].kind in ("num", "rp") and toks[i + 1].kind in ("num", "lp"):
                t.kind = "op"
    return toks


@dataclass
class Equation:
    """`expr = result` inside a step: token indices of the expression and of the stated result."""

    expr: list[int]
    result: int
    holds: bool  # the stated result matches the expression (within the stated precision)


def _evaluate(toks: list[Tok], idxs: list[int], values: dict[int, float] | None = None) -> float | None:
    """Evaluate numbers, + - * / and parentheses (no eval()); None when malformed or dividing by zero."""
    pos = 0

    def val(i: int) -> float:
        return values[i] if values is not None and i in values else toks[i].value

    def peek() -> Tok | None:
        return toks[idxs[pos]] if pos < len(idxs) else None

    def atom() -> float:
        nonlocal pos
        t = peek()
        if t is None:
            raise ValueError
        if t.kind == "num":
            pos += 1
            return val(idxs[pos - 1])
        if t.kind == "lp":
            pos += 1
            v = expr()
            if peek() is None or peek().kind != "rp":  # type: ignore[union-attr]
                raise ValueError
            pos += 1
            return v
        raise ValueError

    def term() -> float:
        nonlocal pos
        v = atom()
        while (t := peek()) is not None and t.kind == "op" and _OPS[t.text] in "*/":
            pos += 1
            rhs = atom()
            v = v * rhs if _OPS[t.text] == "*" else v / rhs
        return v

    def expr() -> float:
        nonlocal pos
        v = term()
        while (t := peek()) is not None and t.kind == "op" and _OPS[t.text] in "+-":
            pos += 1
            rhs = term()
            v = v + rhs if _OPS[t.text] == "+" else v - rhs
        return v

    try:
        v = expr()
    except (ValueError, ZeroDivisionError):
        return None
    return v if pos == len(idxs) else None


def _close(computed: float, tok: Tok) -> bool:
    """Does `computed` round to the number as written (its decimals; a percentage as written)?"""
    shown = computed * 100 if tok.pct else computed
    written = tok.value * 100 if tok.pct else tok.value
    return abs(shown - written) <= 0.5 * 10 ** (-tok.decimals) + 1e-9 * max(1.0, abs(written))


def find_equations(toks: list[Tok]) -> list[Equation]:
    """Every `a op b ... = r` in the step: walk left from each '=' over numbers, operators, parentheses
    and unit words that directly follow a number ("34 signatures", "7 days/week"); stop at anything else."""
    eqs = []
    for e, t in enumerate(toks):
        if t.kind != "eq":
            continue
        # the result: the first number after '=' (a currency sign is part of the number token)
        r = e + 1
        if r >= len(toks) or toks[r].kind != "num":
            continue
        idxs: list[int] = []
        i = e - 1
        while i >= 0 and toks[i].kind == "word" and i > 0 and toks[i - 1].kind in ("num", "rp"):
            i -= 1  # trailing unit: "17 + 34 signatures ="
        expect_operand, depth = True, 0
        while i >= 0:
            tk = toks[i]
            if tk.kind == "word" and i > 0 and toks[i - 1].kind in ("num", "rp"):
                i -= 1  # a unit after a number ("$40/day * 35"): skip it
                continue
            if expect_operand:
                if tk.kind == "num":
                    idxs.append(i)
                    expect_operand = False
                elif tk.kind == "rp":
                    idxs.append(i)
                    depth += 1
                else:
                    break
            else:
                if tk.kind == "op":
                    idxs.append(i)
                    expect_operand = True
                elif tk.kind == "lp" and depth > 0:
                    idxs.append(i)
                    depth -= 1
                else:
                    break
            i -= 1
        idxs.reverse()
        # drop a dangling leading operator ("... - 5 * 2 =" read from a word boundary) and unmatched parens
        while idxs and toks[idxs[0]].kind == "op":
            idxs.pop(0)
        if depth != 0 or not any(toks[j].kind == "op" for j in idxs):
            continue
        value = _evaluate(toks, idxs)
        if value is None:
            continue
        eqs.append(Equation(idxs, r, _close(value, toks[r])))
    return eqs


def format_like(value: float, tok: Tok) -> str:
    """Write `value` in the style of `tok`: currency sign, thousands commas, decimals, percent sign."""
    shown = value * 100 if tok.pct else value
    decimals = tok.decimals
    trim = False
    if decimals == 0 and abs(shown - round(shown)) > 1e-9:
        decimals, trim = 2, True  # a result that stopped being whole: at most 2 decimals, no trailing zeros
    body = f"{shown:,.{decimals}f}" if tok.commas else f"{shown:.{decimals}f}"
    if trim:
        body = body.rstrip("0").rstrip(".")
    if body.startswith("-"):
        return f"-{tok.cur}{body[1:]}{'%' if tok.pct else ''}"
    return f"{tok.cur}{body}{'%' if tok.pct else ''}"


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _lookup(mapping: list[tuple[float, float]], value: float) -> float | None:
    for old, new in reversed(mapping):
        if _same(old, value):
            return new
    return None


def _rewrite_step(text: str, mapping: list[tuple[float, float]], start_at: int = 0,
                  forced: dict[int, float] | None = None) -> str:
    """Carry wrong values through one step, left to right, from character `start_at` on.

    A number equal to a changed value is replaced by its new value; the result of an equation that held
    in the original text is recomputed from its (possibly changed) operands and, when it changes, joins
    `mapping` so later steps see it. `forced` sets the new value of given token indices (the injected error).
    A number outside every equation that restates a changed value is replaced wherever it stands.
    """
    toks = tokenize(text)
    eqs = find_equations(toks)
    eq_by_result = {eq.result: eq for eq in eqs if eq.holds}
    in_equation = {j for eq in eqs for j in (*eq.expr, eq.result)}
    new: dict[int, float] = {}
    for i, t in enumerate(toks):
        if t.kind != "num" or t.start < start_at:
            continue
        if forced and i in forced:
            new[i] = forced[i]
            mapping.append((t.value, forced[i]))
            continue
        eq = eq_by_result.get(i)
        if eq is not None and any(j in new for j in eq.expr):
            value = _evaluate(toks, eq.expr, new)
            if value is not None and not _same(value, t.value):
                if t.decimals == 0 and not t.pct and abs(value - round(value)) < 1e-6:
                    value = float(round(value))
                new[i] = value
                mapping.append((t.value, value))
            continue
        repl = _lookup(mapping, t.value)
        if repl is not None:
            new[i] = repl
    # Prose that restates a changed value ("spent 774.9 on pretzels because 776.0 - 1.1 = 774.9") follows
    # it, wherever in the step it stands; numbers inside equations were handled above.
    for i, t in enumerate(toks):
        if t.kind == "num" and i not in new and i not in in_equation:
            repl = _lookup(mapping, t.value)
            if repl is not None:
                new[i] = repl
    out, last = [], 0
    for i, t in enumerate(toks):
        if i in new:
            out.append(text[last:t.start])
            out.append(format_like(new[i], t))
            last = t.end
    out.append(text[last:])
    return "".join(out)


_FINAL_LINE = re.compile(r"^\s*####\s*(.+?)\s*$")


def final_answer_of(steps: list[str]) -> str | None:
    """The answer a reference-style solution states: its `#### X` line, else the last number of the last
    step that has one (gsm_symbolic's last line ends with the result)."""
    for step in reversed(steps):
        m = _FINAL_LINE.match(step)
        if m:
            return m.group(1).replace(",", "").lstrip("$€£")
    for step in reversed(steps):
        nums = [t for t in tokenize(step) if t.kind == "num"]
        if nums:
            t = nums[-1]
            return format_like(t.value, Tok("num", "", 0, 0, decimals=t.decimals, pct=t.pct))
    return None


def arithmetic_steps(steps: list[str]) -> list[int]:
    """Indices of the steps holding at least one equation whose arithmetic checks out."""
    return [k for k, s in enumerate(steps) if any(eq.holds for eq in find_equations(tokenize(s)))]


def _wrong_value(value: float, tok: Tok, rng: random.Random, avoid: set[float]) -> float:
    """A nearby wrong value in the same style (an integer stays an integer, a price keeps its cents)."""
    shown = value * 100 if tok.pct else value
    # a whole number written with decimals ("900.0") moves by whole units, a price ("0.95") by cents
    scale = 1.0 if abs(shown - round(shown)) < 1e-9 else 10 ** (-tok.decimals)
    magnitude = max(1, int(math.log10(abs(shown) + 1)))
    for _ in range(50):
        step = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20])
        if magnitude >= 3 and rng.random() < 0.5:
            step *= 10 ** (magnitude - 2)
        sign = -1 if rng.random() < 0.5 and shown - step * scale > 0 else 1
        cand = round(shown + sign * step * scale, tok.decimals)
        cand_value = cand / 100 if tok.pct else cand
        if not any(_same(cand_value, a) for a in avoid) and not _same(cand_value, value):
            return cand_value
    return (shown + 7 * scale) / 100 if tok.pct else shown + 7 * scale


def inject_error(steps: list[str], k: int, rng: random.Random, context: str = "",
                 propagate: bool = True) -> list[str] | None:
    """Steps with the result of one true equation of step k made wrong and carried into later steps;
    None when step k has no equation that holds. With `propagate=False` the wrong value stays in step k
    (the rest of that step and every later step keep the right values): a flaw that later steps undo or
    never use, so the final answer stays right.

    Later numbers equal to the old result are taken to be that result, so an equation whose result also
    appears as a given (in `context`, the problem, or in earlier steps) is avoided where step k has another.
    """
    toks = tokenize(steps[k])
    eqs = [eq for eq in find_equations(toks) if eq.holds]
    if not eqs:
        return None
    givens = [t.value for text in (context, *steps[:k]) for t in tokenize(text) if t.kind == "num"]
    unique = [eq for eq in eqs if not any(_same(toks[eq.result].value, g) for g in givens)]
    eq = rng.choice(unique or eqs)
    target = toks[eq.result]
    avoid = {t.value for s in steps for t in tokenize(s) if t.kind == "num"}
    wrong = _wrong_value(target.value, target, rng, avoid)
    mapping: list[tuple[float, float]] = []
    out = list(steps[:k])
    if not propagate:
        text = steps[k]
        return [*steps[:k], text[:target.start] + format_like(wrong, target) + text[target.end:], *steps[k + 1:]]
    out.append(_rewrite_step(steps[k], mapping, start_at=target.start, forced={eq.result: wrong}))
    for later in steps[k + 1:]:
        out.append(_rewrite_step(later, mapping))
    return out
