"""Splitting solutions into steps and joining steps with the step marker.

Styles: `blank_line` (paragraphs, as ProcessBench and Qwen2.5-Math-PRM split), `newline` (one step a line,
as gsm_symbolic's reference solutions), `step_prefix` ("Step 1: ...", "Step 2: ..."), and `auto`, which
picks step_prefix when at least two lines start with "Step k", else blank_line when the text has blank
lines, else newline.
"""

from __future__ import annotations

import re
from typing import Literal

SplitStyle = Literal["auto", "blank_line", "newline", "step_prefix"]

# The marker that follows every step in training and scoring text. It is added to the tokenizer as one
# special token, so tokenization never merges it with neighbouring text and content never produces it.
STEP_MARKER = "<|prm_step|>"

_STEP_PREFIX = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?step\s*\d+\s*[:.)]", re.IGNORECASE | re.MULTILINE)


def split_steps(text: str, style: SplitStyle = "auto") -> list[str]:
    """Split a solution into non-empty, stripped steps (never an empty list for non-blank text)."""
    text = text.replace("\r\n", "\n").strip()
    if not text:
        return []
    if style == "auto":
        if len(_STEP_PREFIX.findall(text)) >= 2:
            style = "step_prefix"
        elif re.search(r"\n\s*\n", text):
            style = "blank_line"
        else:
            style = "newline"
    if style == "blank_line":
        parts = re.split(r"\n\s*\n", text)
    elif style == "newline":
        parts = text.split("\n")
    elif style == "step_prefix":
        starts = [m.start() for m in _STEP_PREFIX.finditer(text)]
        if not starts:
            parts = [text]
        else:
            # Text before "Step 1" (a restatement, say) is kept with the first step.
            bounds = [0, *starts[1:], len(text)]
            parts = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    else:
        raise ValueError(f"unknown split style {style!r}")
    return [p.strip() for p in parts if p.strip()]


def join_steps(steps: list[str], marker: str = STEP_MARKER, separator: str = "\n") -> str:
    """Each step followed by the marker: 'step1<m>\\nstep2<m>' (no separator after the last marker)."""
    return separator.join(f"{step}{marker}" for step in steps)


def strip_markers(text: str, marker: str = STEP_MARKER) -> str:
    """Remove any literal marker from content so it can never be mistaken for a step boundary."""
    return text.replace(marker, "")
