"""Final-answer extraction and grading against a gold answer.

`extract_answer` pulls the final answer out of a solution (`\\boxed{}`, "The answer is X", GSM8K's
`#### N`, the last number). `grade` decides whether a predicted answer equals the gold one: both are
normalised (currency, units, thousands separators, `\\dfrac`, degrees, ...); when both are then plain
numbers they are compared here, exactly as math-verify would compare them but without calling it (it is
slow); anything else goes to math-verify.

math-verify 0.9 bounds its own run time with `signal.alarm`, which raises outside the main thread, and a
signal cannot interrupt a long C-level computation anyway (`9^{9^{9}}` spends its time inside one big
integer power). So math-verify always runs here with its own timeouts off, in child processes
("sandboxes") that are killed and replaced when an item overruns its time; this works the same from any
thread and any process, and one pathological expression costs `timeout_s` and a restart, never a hang.
The children start once (about a second, importing sympy) and are reused across calls.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from prm.errors import ConfigError, PrmError

DEFAULT_METHODS: tuple[str, ...] = ("boxed", "answer_is", "hash", "last_number")

# ------------------------------------------------------------------------------------------ extraction

_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
# "The (final) answer is X", "final answer: X", "Answer: X", "**Answer:** X", "**Answer**: X".
# Only the phrase is matched: "Final Answer: The final answer is X" holds two, and the last one wins.
_ANSWER_IS = re.compile(r"\banswer(?:\*\*)?\s*(?:\bis\b\s*:?|:)", re.IGNORECASE)
_HASH = re.compile(r"####\s*(?P<ans>[^\n]*\S)")
# A number token: \frac{a}{b}, 1,234(.5), 3.5, 1/2, .5, each optionally negative. The look-behind keeps
# "x2" and "5-3" from yielding "2" and "-3".
_NUMBER_TOKEN = re.compile(
    r"(?<![\w.])(?:-\s?)?"
    r"(?:\\[dt]?frac\{\d+\}\{\d+\}"
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])"
    r"|\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"|\.\d+)"
)
# Cut an "answer is" capture at the end of its sentence: a period followed by a space or the line end
# (a decimal point is followed by a digit, so 3.5 survives).
_SENTENCE_END = re.compile(r"\.(?=\s|$)")


def _balanced(text: str, open_at: int) -> str | None:
    """The content between the brace at `open_at` and its matching close brace (None if unclosed).

    Escaped braces (`\\{`, `\\}`) are content, not structure.
    """
    depth = 0
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    return None


def _extract_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` / `\\fbox{...}` (also `\\boxed 5`)."""
    for m in reversed(list(_BOX_START.finditer(text))):
        i = m.end()
        if i < len(text) and text[i] == "{":
            content = _balanced(text, i)
        else:
            # `\boxed 5`: TeX takes one token; take up to whitespace or a math delimiter.
            bare = re.match(r"[^\s${}]+", text[i:])
            content = bare.group(0) if bare and m.group(0)[-1].isspace() else None
        if content and content.strip():
            return content.strip()
    return None


def _box_only(text: str) -> str:
    """The leading `\\boxed{...}` of `text` (text must start with it), or all of it if unclosed."""
    m = _BOX_START.match(text)
    if m and m.end() < len(text) and text[m.end()] == "{":
        inner = _balanced(text, m.end())
        if inner is not None:
            return text[: m.end() + len(inner) + 2]
    return text


def _clean_tail(answer: str) -> str | None:
    """Strip decoration around an answer captured from prose: `$`, `**`, `:`, a trailing period."""
    answer = answer.strip()
    prev = None
    while answer != prev:
        prev = answer
        answer = answer.strip().strip("*").strip()
        answer = answer.removeprefix(":").strip()
        answer = answer.removesuffix(".")
        if answer.startswith("$") and answer.endswith("$") and len(answer) >= 2:
            answer = answer[1:-1]
        elif answer.endswith("$") and answer.count("$") == 1:
            answer = answer[:-1]
    return answer or None


def _extract_answer_is(text: str) -> str | None:
    """The answer after the last "answer is" / "answer:" phrase, up to the end of its sentence."""
    for m in reversed(list(_ANSWER_IS.finditer(text))):
        # The rest of the line, or the next non-blank line when the phrase ends its line.
        rest = re.match(r"\s*([^\n]*)", text[m.end() :])
        ans = rest.group(1) if rest else ""
        # "The answer is $\boxed{X}$": the box right after the phrase (not one in a later sentence).
        lead = re.match(r"[\s$*:]*(?=\\(?:boxed|fbox)(?![A-Za-z]))", ans)
        if lead:
            boxed = _extract_boxed(ans[: lead.end()] + _box_only(ans[lead.end() :]))
            if boxed:
                return boxed
        end = _SENTENCE_END.search(ans)
        if end:
            ans = ans[: end.start()]
        cleaned = _clean_tail(ans)
        if cleaned:
            return cleaned
    return None


def _extract_hash(text: str) -> str | None:
    """GSM8K's `#### N` (the last one)."""
    matches = list(_HASH.finditer(text))
    return _clean_tail(matches[-1].group("ans")) if matches else None


def _extract_last_number(text: str) -> str | None:
    """The last number in the text, spaces inside it removed (`- 3` -> `-3`, `1 / 2` -> `1/2`)."""
    matches = list(_NUMBER_TOKEN.finditer(text))
    return re.sub(r"\s+", "", matches[-1].group(0)) if matches else None


_EXTRACTORS = {
    "boxed": _extract_boxed,
    "answer_is": _extract_answer_is,
    "hash": _extract_hash,
    "last_number": _extract_last_number,
}


def extract_answer(text: str, methods: Sequence[str] = DEFAULT_METHODS) -> str | None:
    """The final answer of a solution, by the first of `methods` that finds one; None if none does.

    Methods: `boxed` (last `\\boxed{}`/`\\fbox{}`, nested braces kept), `answer_is` ("The answer is X",
    "final answer: X", "Answer: X"), `hash` (GSM8K `#### N`), `last_number` (-3, 1,234, 3.5, 1/2).
    """
    if isinstance(methods, str):
        methods = (methods,)
    unknown = [m for m in methods if m not in _EXTRACTORS]
    if unknown:
        raise ConfigError(f"unknown answer extraction method(s) {unknown}; valid: {list(_EXTRACTORS)}")
    if not text:
        return None
    for method in methods:
        answer = _EXTRACTORS[method](text)
        if answer:
            return answer
    return None


# ------------------------------------------------------------------------------------------ normalising

# Words that may follow a number as part of the math, never as a unit ("3 pi", "2 sqrt 2").
_MATH_WORDS = {"pi", "sqrt", "infty", "inf", "infinity", "and", "or", "mod", "sin", "cos", "tan", "log",
               "ln", "exp", "i", "e"}
_UNIT_WORDS_TAIL = re.compile(r"^(?P<head>.*?[\d}%])\s+(?P<tail>(?:[A-Za-z]{2,}\.?(?:\^\{?\d\}?)?\s*)+)$")
_TEXT_UNIT_TAIL = re.compile(r"^(?P<head>.*?[\d}%])\s*\\(?:text|mbox|mathrm|textbf)\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\{?\d\}?)?$")


def _unwrap(s: str) -> str:
    """Remove a `\\boxed{}` or math delimiters enclosing the whole string (repeatedly)."""
    prev = None
    while s != prev:
        prev = s
        s = s.strip()
        m = _BOX_START.match(s)
        if m and m.end() < len(s) and s[m.end()] == "{":
            inner = _balanced(s, m.end())
            if inner is not None and m.end() + len(inner) + 2 == len(s):
                s = inner
                continue
        for a, b in (("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")):
            if len(s) >= len(a) + len(b) and s.startswith(a) and s.endswith(b):
                s = s[len(a) : -len(b)]
                break
    return s


@functools.lru_cache(maxsize=1 << 16)  # rollouts of one problem share a gold answer and repeat answers
def normalize_answer(answer: str) -> str:
    """A canonical string for an answer: what grading compares and what majority voting can group by.

    Conservative: only notation that never changes the value is rewritten — enclosing `\\boxed{}`/`$`,
    `\\dfrac`/`\\tfrac`, `\\left`/`\\right`, thin spaces, currency signs, degree marks, unit words after a
    number ("3.50 dollars", "12 \\text{cm}"), a trailing period; thousands separators of a lone number.
    """
    s = _unwrap(answer.strip())
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = re.sub(r"\\[,;:! ]", "", s)  # thin spaces, also LaTeX's thousands separator 1\,000
    s = s.replace("{,}", ",").replace("\\%", "%")
    s = re.sub(r"\\\$|\$|€|£|¥", "", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°", "", s)
    # A whole answer in \text{} that starts with a number ("\text{7 dollars}") is that number plus words.
    m = re.fullmatch(r"\\(?:text|mbox|textbf)\{\s*(-?\d[^{}]*)\}", s)
    if m:
        s = m.group(1)
    s = s.strip()
    m = _TEXT_UNIT_TAIL.match(s)
    if m:
        s = m.group("head")
    m = _UNIT_WORDS_TAIL.match(s)
    if m and not any(w.lower().rstrip(".") in _MATH_WORDS for w in re.findall(r"[A-Za-z]+", m.group("tail"))):
        s = m.group("head")
    s = s.strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    s = re.sub(r"\s+", " ", s).strip()
    if _THOUSANDS.fullmatch(s.rstrip("%").strip()):
        s = s.replace(",", "")
    return s


# ------------------------------------------------------------------------------------------ fast path

_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_SLASH = re.compile(r"(?P<sign>[+-]?)(?P<num>\d+)\s*/\s*(?P<den>\d+)")
_FRAC = re.compile(r"(?P<sign>[+-]?)\\frac(?:\{\s*(?P<num>[+-]?\d+)\s*\}|(?P<num1>\d))"
                   r"(?:\{\s*(?P<den>[+-]?\d+)\s*\}|(?P<den1>\d))")


@dataclass(frozen=True)
class _Number:
    """A plain number as math-verify would see it: its value, whether it is a decimal (a sympy Float,
    compared after rounding to 6 places), whether it carries a percent sign."""

    value: Fraction
    is_float: bool
    percent: bool

    @property
    def effective(self) -> Fraction:
        return self.value / 100 if self.percent else self.value


@functools.lru_cache(maxsize=1 << 16)
def _as_number(normalised: str) -> _Number | None:
    """Parse a normalised answer that is one plain number (42, -3.5, 1/2, \\frac{1}{2}, 50%), else None."""
    s = normalised
    percent = s.endswith("%")
    if percent:
        s = s[:-1].strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    try:
        if _PLAIN.fullmatch(s):
            return _Number(Fraction(s), "." in s, percent)
        m = _SLASH.fullmatch(s) or _FRAC.fullmatch(s)
        if m:
            parts = {k: v for k, v in m.groupdict().items() if v is not None}
            value = Fraction(int(parts.get("num") or parts["num1"]), int(parts.get("den") or parts["den1"]))
            return _Number(-value if m.group("sign") == "-" else value, False, percent)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _numbers_equal(gold: _Number, pred: _Number) -> bool:
    """math-verify's numeric rule without sympy: decimals compare rounded to 6 places; two integers
    compare ignoring a percent sign (9% == 9); otherwise exact values, a percent being value/100."""
    g, p = gold.effective, pred.effective
    if gold.is_float or pred.is_float:
        return round(g, 6) == round(p, 6)
    if gold.value.denominator == 1 and pred.value.denominator == 1:
        return gold.value == pred.value
    return g == p


def _fast_grade(norm_pred: str, norm_gold: str) -> bool | None:
    """True/False when both answers are plain numbers (or identical strings); None when math-verify is needed."""
    if norm_pred == norm_gold:
        return True
    gold, pred = _as_number(norm_gold), _as_number(norm_pred)
    if gold is None or pred is None:
        return None
    return _numbers_equal(gold, pred)


# ------------------------------------------------------------------------------------------ sandboxes

# A runaway expression gets MemoryError rather than the machine's memory while its time limit runs.
_CHILD_MEMORY_BYTES = 4 << 30
_STARTUP_TIMEOUT_S = 180.0  # importing sympy on a busy 2-core machine can take a while
_CHILD_CMD = "from prm.grading import _child_main; _child_main()"


def _math_verify(pred: str, gold: str) -> bool:
    """math-verify on two normalised answers, its signal-based timeouts off (the caller bounds time)."""
    from math_verify import parse, verify

    gold_parsed = parse(f"${gold}$", parsing_timeout=None)  # type: ignore[arg-type]
    pred_parsed = parse(f"${pred}$", parsing_timeout=None)  # type: ignore[arg-type]
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _child_main() -> None:
    """A sandbox: read `[pred, gold]` JSON lines on stdin, answer `1`/`0` lines; exit on EOF."""
    import logging
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY_BYTES, _CHILD_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # Warm up before announcing readiness (imports, grammar building: ~0.2 s, more on a busy machine),
    # so that an item's time limit measures its own work.
    _math_verify("\\frac{\\sqrt{2}}{2}", "x^{2}+0.5")
    proto.write(b"ready\n")
    for line in sys.stdin.buffer:
        try:
            pred, gold = json.loads(line)
            ok = _math_verify(pred, gold)
        except Exception:  # noqa: BLE001 - any failure inside math-verify grades the item False
            ok = False
        proto.write(b"1\n" if ok else b"0\n")


class _Sandbox:
    """One child process running math-verify, fed one item at a time over pipes."""

    def __init__(self) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CMD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self.ready = False
        self.started = time.monotonic()
        self.item: int | None = None  # index (into the caller's work list) of the item in flight
        self.deadline = float("inf")
        self._buf = b""

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, item: int, pred: str, gold: str, timeout_s: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps([pred, gold]).encode() + b"\n")
        self.proc.stdin.flush()
        self.item = item
        self.deadline = time.monotonic() + timeout_s

    def read_lines(self) -> list[str] | None:
        """Complete lines now readable (call when select says so); None at end of file (child died)."""
        chunk = os.read(self.fileno(), 65536)
        if not chunk:
            return None
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode() for line in lines]

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()

    def close(self) -> None:
        """Ask the child to exit (end of its input); kill it if it does not promptly."""
        if not self.ready:  # still importing: it would only read its input once ready
            self.kill()
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=0.5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


_POOL: list[_Sandbox] = []
_POOL_LOCK = threading.Lock()


def _forget_pool_in_child() -> None:
    """After fork the sandboxes belong to the parent: start afresh rather than share its pipes."""
    global _POOL, _POOL_LOCK
    _POOL = []
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def close_workers() -> None:
    """Stop the grading sandboxes (they restart on demand). Runs at interpreter exit too."""
    # At exit a daemon thread may still hold the lock mid-grade: do not wait for it forever.
    locked = _POOL_LOCK.acquire(timeout=10)
    try:
        for sb in _POOL:
            sb.close()
        _POOL.clear()
    finally:
        if locked:
            _POOL_LOCK.release()


atexit.register(close_workers)


def _replace(pool: list[_Sandbox], sb: _Sandbox) -> None:
    """Kill `sb` and put a fresh sandbox (starting in the background) in its place."""
    sb.kill()
    fresh = _Sandbox()
    pool[pool.index(sb)] = fresh
    _POOL[_POOL.index(sb)] = fresh


def _checkout(n: int) -> list[_Sandbox]:
    """`n` sandboxes, ready ones first, dead ones replaced, missing ones started (hold the lock)."""
    starting = [sb for sb in _POOL if not sb.ready and sb.alive]
    for sb in select.select(starting, [], [], 0)[0] if starting else []:
        lines = sb.read_lines()  # a replacement's "ready" may be waiting in its pipe
        if lines is None:
            sb.kill()
        elif "ready" in lines:
            sb.ready = True
    for i, sb in enumerate(_POOL):
        if not sb.alive:
            sb.kill()
            _POOL[i] = _Sandbox()
    while len(_POOL) < n:
        _POOL.append(_Sandbox())
    # Prefer warm sandboxes: a lone grade() should not wait for one still restarting after a timeout.
    return sorted(_POOL, key=lambda sb: not sb.ready)[:n]


def _dispatch(pool: list[_Sandbox], items: list[tuple[str, str]], results: list[bool], timeout_s: float) -> None:
    """Feed `items` to the sandboxes one at a time each, filling `results`, until all are answered."""
    pending = list(range(len(items)))[::-1]  # pop() from the end hands items out in order
    resent: set[int] = set()
    while True:
        for sb in list(pool):
            if sb.ready and sb.item is None and pending:
                i = pending.pop()
                try:
                    sb.send(i, items[i][0], items[i][1], timeout_s)
                except OSError:  # it died while idle: try the item once more elsewhere
                    sb.item = None
                    if i not in resent:
                        resent.add(i)
                        pending.append(i)
                    _replace(pool, sb)
        # Wait on sandboxes with an item in flight, and on starting ones only while items remain
        # (a replacement started after a timeout warms up in the background for the next call).
        waiting = [sb for sb in pool if sb.item is not None or (not sb.ready and pending)]
        if not waiting:
            return
        wake = min(sb.deadline if sb.ready else sb.started + _STARTUP_TIMEOUT_S for sb in waiting)
        readable, _, _ = select.select(waiting, [], [], max(0.0, wake - time.monotonic()))
        dead: list[_Sandbox] = []
        for sb in readable:
            lines = sb.read_lines()
            if lines is None:  # the child died: a crash on its item (which stays False), or at start-up
                if not sb.ready:
                    raise PrmError(
                        f"the grading sandbox failed to start (exit code {sb.proc.wait()}); "
                        f"check that `{sys.executable} -c 'import prm.grading, math_verify'` works"
                    )
                dead.append(sb)
                continue
            for line in lines:
                if line == "ready":
                    sb.ready = True
                elif sb.item is not None:
                    results[sb.item] = line == "1"
                    sb.item, sb.deadline = None, float("inf")
        now = time.monotonic()
        for sb in waiting:
            if sb.ready and sb.item is not None and now >= sb.deadline and sb not in dead:
                dead.append(sb)  # overran its time: the item stays False
            elif not sb.ready and now >= sb.started + _STARTUP_TIMEOUT_S:
                raise PrmError(f"the grading sandbox did not start within {_STARTUP_TIMEOUT_S:.0f} s")
        for sb in dead:
            sb.item = None
            _replace(pool, sb)


def _run_sandboxed(items: list[tuple[str, str]], workers: int, timeout_s: float) -> list[bool]:
    """math-verify on each (pred, gold), spread over `workers` sandboxes; an item that runs past
    `timeout_s` (or kills its sandbox) grades False and its sandbox is replaced."""
    results = [False] * len(items)
    if not items:
        return results
    with _POOL_LOCK:
        pool = _checkout(max(1, min(workers, len(items))))
        try:
            _dispatch(pool, items, results, timeout_s)
        except BaseException:
            # A child still busy with this call's item would answer into the next call: stop it
            # (also on Ctrl-C). Children still starting are kept; their "ready" is read later.
            for sb in pool:
                if sb.item is not None or not sb.alive:
                    sb.kill()
                    if sb in _POOL:
                        _POOL.remove(sb)
            raise
    return results


# ------------------------------------------------------------------------------------------ grading


def _check_timeout(timeout_s: float) -> None:
    if not timeout_s > 0:
        raise ConfigError(f"grading timeout must be > 0 seconds, got {timeout_s!r}")


def _check_gold(gold: str, where: str = "") -> str:
    if not isinstance(gold, str) or not gold.strip():
        raise PrmError(f"gold answer{where} is empty or not a string ({gold!r}); cannot grade against it")
    return normalize_answer(gold)


def grade(predicted: str | None, gold: str, timeout_s: float = 5.0) -> bool:
    """True when `predicted` equals the `gold` answer. None/empty predictions are False.

    Plain numbers on both sides are compared here; anything else goes to math-verify in a sandbox
    process, bounded by `timeout_s` (an overrun grades False). Safe from any thread.
    """
    _check_timeout(timeout_s)
    norm_gold = _check_gold(gold)
    if predicted is None or not str(predicted).strip():
        return False
    norm_pred = normalize_answer(str(predicted))
    if not norm_pred:
        return False
    fast = _fast_grade(norm_pred, norm_gold)
    if fast is not None:
        return fast
    return _run_sandboxed([(norm_pred, norm_gold)], 1, timeout_s)[0]


def grade_many(
    pairs: Sequence[tuple[str | None, str]], workers: int = 0, timeout_s: float = 5.0
) -> list[bool]:
    """`grade` over many (predicted, gold) pairs, in order.

    Plain-number pairs are graded inline; the rest go to math-verify, once per distinct
    (normalised pred, normalised gold), over `workers` sandbox processes (0 or 1: one, items in turn),
    each item bounded by `timeout_s`.
    """
    _check_timeout(timeout_s)
    if workers < 0:
        raise ConfigError(f"grading workers must be >= 0, got {workers}")
    results: list[bool] = [False] * len(pairs)
    cache: dict[tuple[str, str], bool] = {}
    slow: dict[tuple[str, str], list[int]] = {}
    for i, (predicted, gold) in enumerate(pairs):
        norm_gold = _check_gold(gold, f" of pair {i}")
        if predicted is None or not str(predicted).strip():
            continue
        norm_pred = normalize_answer(str(predicted))
        key = (norm_pred, norm_gold)
        if not norm_pred:
            continue
        if key in cache:
            results[i] = cache[key]
        elif key in slow:
            slow[key].append(i)
        else:
            fast = _fast_grade(norm_pred, norm_gold)
            if fast is None:
                slow[key] = [i]
            else:
                cache[key] = results[i] = fast
    keys = list(slow)
    for key, ok in zip(keys, _run_sandboxed(keys, workers, timeout_s), strict=True):
        for i in slow[key]:
            results[i] = ok
    return results


def grade_response(
    response: str, gold: str, methods: Sequence[str] = DEFAULT_METHODS, timeout_s: float = 5.0
) -> tuple[str | None, bool]:
    """Extract the final answer of `response` and grade it: (answer or None, correct)."""
    answer = extract_answer(response, methods)
    return answer, grade(answer, gold, timeout_s=timeout_s)
